//! Register and delete touch the engine, the reference files and the database: a failure half
//! way must leave no face in one place and not the others.

use axum::http::StatusCode;

use crate::{
    fake_rekognition::face_of,
    helpers::{TestApp, COLLECTION},
};

#[tokio::test]
async fn a_database_failure_during_registration_leaves_nothing_behind() {
    let app = TestApp::spawn().await;
    // A real failure inside the real database: the face insert aborts.
    app.db()
        .execute_batch(
            "CREATE TRIGGER fail_faces BEFORE INSERT ON faces
             BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;",
        )
        .unwrap();
    app.register("alice", face_of(1), None)
        .await
        .assert_error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL");
    assert!(
        app.fake.face_ids(COLLECTION).is_empty(),
        "engine face undone"
    );
    assert!(app.reference_files().is_empty(), "reference file removed");
    assert_eq!(
        app.db_count("users"),
        0,
        "user insert rolled back with the face"
    );

    app.db().execute_batch("DROP TRIGGER fail_faces").unwrap();
    assert_eq!(
        app.register("alice", face_of(1), None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_file_failure_during_registration_leaves_nothing_behind() {
    let app = TestApp::spawn().await;
    // The user's reference folder cannot be created: a file sits where it should go.
    std::fs::create_dir_all(&app.settings.storage.reference_dir).unwrap();
    std::fs::write(
        app.settings.storage.reference_dir.join("alice"),
        b"in the way",
    )
    .unwrap();
    app.register("alice", face_of(1), None)
        .await
        .assert_error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL");
    assert!(app.fake.face_ids(COLLECTION).is_empty());
    assert_eq!(app.db_count("users"), 0);
    assert_eq!(app.db_count("faces"), 0);
}

#[tokio::test]
async fn deletion_the_engine_cannot_finish_is_queued_and_completed_at_next_start() {
    let app = TestApp::spawn().await;
    app.register("alice", face_of(1), None).await;
    let token = app.login(face_of(1)).await;
    let face_ids = app.fake.face_ids(COLLECTION);
    assert_eq!(face_ids.len(), 1);

    app.fake.reject_credentials(true);
    let res = app.delete("/users/alice/", Some(&token)).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    app.fake.reject_credentials(false);

    // The user is gone at once; the engine still holds the face, and it logs nobody in.
    assert_eq!(app.fake.face_ids(COLLECTION), face_ids);
    assert_eq!(app.db_count("pending_engine_deletions"), 1);
    app.get("/users/me/", Some(&token))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "TOKEN_REVOKED");
    app.verify(face_of(1), None, None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "NO_MATCH");

    // The next start (same data folder, same collection) finishes the job.
    facelock::build_state(app.settings.clone()).await.unwrap();
    assert!(app.fake.face_ids(COLLECTION).is_empty());
    assert_eq!(app.db_count("pending_engine_deletions"), 0);
}
