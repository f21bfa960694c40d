//! `/redoc`: the API reference in ReDoc's three-pane view, as the original server offered it.
//! ReDoc's standalone bundle is vendored beside this file (`redoc/`, with its version, sha256
//! and licence) and compiled into the binary: the page loads nothing from elsewhere.

use std::sync::LazyLock;

use axum::{response::Response, routing::get, Router};

const PAGE: &str = include_str!("redoc/index.html");
/// `bundles/redoc.standalone.js` of the npm package `redoc` 2.5.4 (MIT), unchanged.
const BUNDLE: &str = include_str!("redoc/redoc.standalone.js");
/// The sidebar's footer shows its publisher's logo from their CDN, whatever the options say.
const REMOTE_LOGO: &str = "https://cdn.redoc.ly/redoc/logo-mini.svg";
const LOCAL_LOGO: &str = "/redoc/logo-mini.svg";
/// The bundle as served: the logo is asked of this server, so the page makes no request
/// elsewhere (the vendored file stays byte for byte the published one).
static SERVED_BUNDLE: LazyLock<String> = LazyLock::new(|| BUNDLE.replace(REMOTE_LOGO, LOCAL_LOGO));
/// A plain page glyph in the logo's place.
const LOGO: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16" width="16" height="16"><rect x="3" y="1.5" width="10" height="13" rx="1.5" fill="none" stroke="#5a6b7b" stroke-width="1.4"/><path d="M5.5 5.5h5M5.5 8h5M5.5 10.5h3" stroke="#5a6b7b" stroke-width="1.4"/></svg>"##;

/// The page runs only the bundle and reads only this server's OpenAPI document. ReDoc writes
/// its styles as `<style>` elements at run time (hence inline styles), and runs its search
/// index in a worker made from a `blob:` URL.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                      img-src 'self' data:; font-src 'self'; connect-src 'self'; \
                      worker-src blob:; base-uri 'none'; form-action 'none'; \
                      frame-ancestors 'none'";

/// ReDoc's routes: the page and its bundle.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/redoc",
            get(|| async { file(PAGE, "text/html; charset=utf-8") }),
        )
        .route(
            "/redoc/redoc.standalone.js",
            get(|| async { file(SERVED_BUNDLE.as_str(), "text/javascript; charset=utf-8") }),
        )
        .route(LOCAL_LOGO, get(|| async { file(LOGO, "image/svg+xml") }))
}

fn file(body: &'static str, content_type: &'static str) -> Response {
    super::embedded::file(body, content_type, POLICY)
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    const REDOC_VERSION: &str = "2.5.4";
    /// The bundle's sha256 as `npm pack redoc@2.5.4` delivers it (`redoc/README.md`).
    const BUNDLE_SHA256: &str = "dcaf76612bc4a3fbcc923a8966dee2f6146a5f32e5ce1b6f02dd60cbbf89500b";

    /// The vendored bundle is the published one, byte for byte.
    #[test]
    fn the_bundle_is_the_pinned_release() {
        let digest = Sha256::digest(BUNDLE.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, BUNDLE_SHA256);
        assert!(
            BUNDLE.contains(REDOC_VERSION),
            "the bundle names its version"
        );
    }

    /// The bundle as served names no other host to load from.
    #[test]
    fn the_served_bundle_loads_its_logo_from_this_server() {
        assert!(
            BUNDLE.contains(REMOTE_LOGO),
            "the logo moved: update the replacement"
        );
        assert!(!SERVED_BUNDLE.contains("cdn.redoc.ly"));
        assert!(SERVED_BUNDLE.contains(&format!("src:\"{LOCAL_LOGO}\"")));
    }
}
