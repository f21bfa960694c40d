//! The published API description and documentation pages.

use axum::http::{header, StatusCode};

use crate::helpers::TestApp;

#[tokio::test]
async fn the_document_lists_every_route_with_its_errors() {
    let app = TestApp::spawn().await;
    let res = app.get("/openapi.json", None).await;
    assert_eq!(res.status, StatusCode::OK);
    let doc = res.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("/register/", "post"),
        ("/verify/", "post"),
        ("/compare/", "post"),
        ("/liveness/challenge", "post"),
        ("/token", "post"),
        ("/revoke", "post"),
        ("/introspect", "post"),
        ("/.well-known/jwks.json", "get"),
        ("/.well-known/openid-configuration", "get"),
        ("/authorize", "get"),
        ("/authorize/{request_id}", "get"),
        ("/authorize/{request_id}", "post"),
        ("/authorize/{request_id}/decline", "post"),
        ("/userinfo", "get"),
        ("/userinfo", "post"),
        ("/end_session", "get"),
        ("/users/me/", "get"),
        ("/users/", "get"),
        ("/users/{user_id}/", "delete"),
        ("/users/{user_id}/role", "put"),
        ("/", "get"),
        ("/health", "get"),
        ("/health/live", "get"),
        ("/health/ready", "get"),
        ("/api-docs", "get"),
        ("/metrics", "get"),
    ];
    for (path, method) in expected {
        assert!(paths[path][method].is_object(), "{method} {path} missing");
    }
    let distinct: std::collections::BTreeSet<&str> = expected.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        paths.len(),
        distinct.len(),
        "undocumented or unexpected paths: {:?}",
        paths.keys()
    );

    // Multipart bodies are described, with the file as binary.
    let register = &paths["/register/"]["post"]["requestBody"]["content"]["multipart/form-data"];
    assert!(register["schema"].is_object());
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["RegisterForm"]["properties"]["face_image"]["format"],
        "binary"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // Guarded routes need the bearer scheme and document 401.
    for (path, method) in [
        ("/users/me/", "get"),
        ("/users/", "get"),
        ("/users/{user_id}/", "delete"),
        ("/users/{user_id}/role", "put"),
        ("/compare/", "post"),
        ("/introspect", "post"),
    ] {
        let op = &paths[path][method];
        assert!(op["security"].to_string().contains("bearer"), "{path}");
        assert!(op["responses"]["401"].is_object(), "{path}");
    }
    for status in ["400", "413", "415", "422", "503"] {
        assert!(
            paths["/verify/"]["post"]["responses"][status].is_object(),
            "verify {status}"
        );
    }
    // The token fields of verify are described.
    let verify = &schemas["VerifyResponse"]["properties"];
    for field in [
        "token",
        "refresh_token",
        "expires_in",
        "token_type",
        "similarity",
    ] {
        assert!(verify[field].is_object(), "VerifyResponse.{field}");
    }
    assert!(schemas["VerifyForm"]["properties"]["audience"].is_object());
}

#[tokio::test]
async fn documentation_pages_are_served() {
    let app = TestApp::spawn().await;
    let docs = app.get("/docs/", None).await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(docs.body.as_str().unwrap().contains("swagger"));
    // Swagger UI's files are in the binary: the page loads nothing from elsewhere.
    let html = docs.body.as_str().unwrap();
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "{html}"
    );
    assert_eq!(
        app.get("/docs/swagger-ui-bundle.js", None).await.status,
        StatusCode::OK
    );
    // ReDoc's page and bundle are in the binary too, and its policy allows nothing else.
    let redoc = app.get("/redoc", None).await;
    assert_eq!(redoc.status, StatusCode::OK);
    let html = redoc.body.as_str().unwrap();
    assert!(
        html.contains(r#"<redoc spec-url="/openapi.json">"#),
        "{html}"
    );
    assert!(
        html.contains(r#"src="/redoc/redoc.standalone.js""#),
        "{html}"
    );
    assert!(!html.contains("http"), "{html}");
    let policy = redoc.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(
        policy.starts_with("default-src 'none'; script-src 'self';"),
        "{policy}"
    );
    let bundle = app.get("/redoc/redoc.standalone.js", None).await;
    assert_eq!(bundle.status, StatusCode::OK);
    assert!(bundle.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let info = app.get("/api-docs", None).await;
    assert_eq!(info.body["openapi"], "/openapi.json");
    assert_eq!(info.body["swagger_ui"], "/docs");
    assert_eq!(info.body["redoc"], "/redoc");
}

#[tokio::test]
async fn unknown_routes_and_methods_get_the_json_error_shape() {
    let app = TestApp::spawn().await;
    app.get("/nope", None)
        .await
        .assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    app.get("/register/", None)
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED");
}

/// The published document, pinned: any change to the API's description shows as a diff of
/// `tests/api/snapshots/openapi.json`. After an intended change, run the tests once with
/// `UPDATE_SNAPSHOTS=1` and commit the new file with the change.
#[tokio::test]
async fn the_published_document_matches_its_snapshot() {
    let app = TestApp::spawn().await;
    let doc = app.get("/openapi.json", None).await.body;
    let published = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/snapshots/openapi.json");
    if std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &published).unwrap();
        return;
    }
    let pinned = std::fs::read_to_string(&path).unwrap_or_default();
    if pinned != published {
        let first = pinned
            .lines()
            .zip(published.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(pinned.lines().count().min(published.lines().count()));
        panic!(
            "the OpenAPI document changed (first difference at line {}):\n  pinned:    {}\n  published: {}\n\
             If the change is intended, run the tests with UPDATE_SNAPSHOTS=1 and commit {}",
            first + 1,
            pinned.lines().nth(first).unwrap_or("<end>"),
            published.lines().nth(first).unwrap_or("<end>"),
            path.display()
        );
    }
}

/// Every error response shows an example per code it can answer, the codes are an enum, every
/// code is in the README, and the operation ids make usable method names.
#[tokio::test]
async fn errors_bounds_and_operation_ids_are_exact() {
    let app = TestApp::spawn().await;
    let doc = app.get("/openapi.json", None).await.body;
    let codes: Vec<&str> = doc["components"]["schemas"]["ErrorBody"]["properties"]["code"]["enum"]
        .as_array()
        .expect("ErrorBody.code is an enum")
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for code in [
        "NO_FACE",
        "NO_MATCH",
        "ACCOUNT_LOCKED",
        "INVALID_GRANT",
        "LOW_SHARPNESS",
    ] {
        assert!(codes.contains(&code), "{code} not in {codes:?}");
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for code in &codes {
        assert!(
            readme.contains(&format!("`{code}`")),
            "{code} is not in the README"
        );
    }

    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_owned()), "operation id {id} used twice");
            assert!(
                id.contains('_') || ["health", "jwks", "metrics", "welcome"].contains(&id),
                "{method} {path}: {id} says too little to be a method name"
            );
            for (status, response) in op["responses"].as_object().unwrap() {
                let Some(content) = response["content"]["application/json"].as_object() else {
                    continue;
                };
                let schema = content["schema"]["$ref"].as_str().unwrap_or_default();
                if !schema.ends_with("ErrorBody") && !schema.ends_with("OAuthError") {
                    continue;
                }
                let examples = content["examples"]
                    .as_object()
                    .unwrap_or_else(|| panic!("{method} {path} {status} has no examples"));
                for (code, example) in examples {
                    assert_eq!(example["value"]["code"], code.as_str());
                    assert!(codes.contains(&code.as_str()));
                }
            }
        }
    }

    let list = &doc["paths"]["/users/"]["get"]["parameters"];
    let limit = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap();
    assert_eq!(limit["schema"]["minimum"], 1);
    assert_eq!(limit["schema"]["maximum"], 500);
    let verify = &doc["components"]["schemas"]["VerifyForm"]["properties"];
    assert_eq!(verify["similarity_threshold"]["maximum"], 100);
    assert_eq!(verify["user_id"]["maxLength"], 128);
}
