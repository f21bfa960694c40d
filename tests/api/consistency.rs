//! Register and delete touch the engine and the database (user, face, descriptor and photo in
//! one transaction): a failure half way must leave no face in one place and not the other.

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
    assert!(app.reference_photos().is_empty(), "no photo kept");
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
async fn a_photo_that_cannot_be_kept_fails_the_whole_registration() {
    let app = TestApp::spawn().await;
    app.db()
        .execute_batch(
            "CREATE TRIGGER fail_photos BEFORE INSERT ON reference_photos
             BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
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
async fn photos_an_older_server_kept_as_files_move_into_the_store() {
    let app = TestApp::spawn().await;
    let res = app.register("alice", face_of(1), None).await;
    let face_id = res.body["face_id"].as_str().unwrap().to_owned();
    // The data folder as a server before 0.2 left it: the photo a file, maybe a torn write.
    let folder = app.settings.storage.reference_dir.join("alice");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join(format!("{face_id}.png")), face_of(1)).unwrap();
    std::fs::write(folder.join(".tmp-0badc0de"), b"half a photo").unwrap();
    app.db()
        .execute_batch(&format!(
            "DELETE FROM reference_photos;
             UPDATE faces SET reference_path = 'alice/{face_id}.png';"
        ))
        .unwrap();

    let restarted = facelock::build_state(app.settings.clone()).await.unwrap();
    assert_eq!(app.reference_photos(), [format!("alice/{face_id}.png")]);
    assert!(!app.settings.storage.reference_dir.join("alice").exists());
    let legacy: Option<String> = app
        .db()
        .query_row("SELECT reference_path FROM faces", [], |r| r.get(0))
        .unwrap();
    assert_eq!(legacy, None);
    let photo =
        facelock::store::UserStore::reference_photo(restarted.facelock.store().as_ref(), &face_id)
            .await
            .unwrap()
            .unwrap();
    let decoded = facelock::images::decode(
        &photo.bytes,
        facelock::images::DecodeLimits {
            max_pixels: 1 << 20,
        },
    )
    .unwrap();
    assert!(decoded.image.width() >= 32);
}

/// A master key rotation that stopped after the store took the new key, before the key file
/// was replaced: the next start finds the new key beside the old one and finishes the job.
#[tokio::test]
async fn an_interrupted_master_key_rotation_is_finished_at_the_next_start() {
    use facelock::store::MasterKey;
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let key_file = app.settings.storage.data_dir.join("master.key");
    let old = MasterKey::parse(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    let new = MasterKey::generate().unwrap();
    let pending = facelock::pending_master_key_file(&key_file);
    facelock::files::write_private(&pending, new.to_base64().as_bytes()).unwrap();
    app.state
        .facelock
        .store()
        .reseal_data_key(&old, &new)
        .await
        .unwrap();
    // Crash here: the key file still holds the old key.

    let restarted = facelock::build_state(app.settings.clone()).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap().trim(),
        new.to_base64()
    );
    assert!(!pending.exists());
    let router = facelock::app(restarted.clone());
    let again = TestApp {
        router,
        state: restarted,
        ..app
    };
    assert_eq!(
        again.get("/users/me/", Some(&token)).await.status,
        StatusCode::OK,
        "the signing keys still open"
    );
}

#[tokio::test]
async fn descriptors_photos_and_signing_keys_are_sealed_at_rest() {
    let app = TestApp::spawn_with(|s| {
        s.engine.kind = facelock::config::EngineKind::Rekognition;
    })
    .await;
    let token = app.admin_token().await;
    assert!(!token.is_empty());
    let db = app.db();
    let photo: Vec<u8> = db
        .query_row("SELECT photo FROM reference_photos LIMIT 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    let key: Vec<u8> = db
        .query_row("SELECT private_der FROM signing_keys LIMIT 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    for sealed in [&photo, &key] {
        assert!(facelock::store::Vault::is_sealed(sealed));
    }
    // PNG's signature and DER's sequence tag appear nowhere in the sealed values.
    assert!(!photo.windows(4).any(|w| w == b"\x89PNG"));
    assert_ne!(key.first(), Some(&0x30));

    // The folder and the files are the owner's alone.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let data = &app.settings.storage.data_dir;
        assert_eq!(mode(data), 0o700);
        assert_eq!(mode(&data.join("master.key")), 0o600);
        assert_eq!(mode(&app.settings.storage.database_path), 0o600);
    }

    // Another master key does not open the store, and says what to do.
    let mut wrong = app.settings.clone();
    wrong.storage.master_key = Some(facelock::store::MasterKey::generate().unwrap());
    let err = facelock::error_chain(&facelock::build_state(wrong).await.err().unwrap());
    assert!(err.contains("FACELOCK_MASTER_KEY"), "{err}");
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
