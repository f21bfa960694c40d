//! Logging: `RUST_LOG` when set, otherwise info (debug with the original's `DEBUG=True`).

use tracing_subscriber::EnvFilter;

pub fn init(debug: bool) {
    let default = if debug {
        "facelock=debug,tower_http=debug,info"
    } else {
        "facelock=info,tower_http=info,warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}
