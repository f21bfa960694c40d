//! One contract, two stores: every store operation behaves the same on SQLite and on a real
//! PostgreSQL server started for the test.

use std::{sync::Arc, time::Duration};

use facelock::{
    clock::Timestamp,
    domain::{Page, UserId},
    images::Format,
    store::{
        postgres::PostgresStore, sqlite::SqliteStore, Admission, AuditQuery, AuditRecord,
        ChallengeSpend, CodeRedemption, FaceChange, FaceOwner, LockoutRule, MasterKey, NewFace,
        NewRefreshToken, NewUser, ReferencePhoto, RefreshUse, Store, StoreError, StoredChallenge,
        StoredGrant, StoredKey, UserStore,
    },
};

use crate::postgres::{PgServer, TestCertificates};

fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

fn master() -> MasterKey {
    MasterKey::parse(&"A".repeat(43)).unwrap()
}

fn face(id: &str) -> NewFace {
    NewFace {
        face_id: id.into(),
        engine: "local".into(),
        model: "m1".into(),
        photo: ReferencePhoto {
            format: Format::Png,
            bytes: format!("photo of {id}").into_bytes(),
        },
        descriptor: Some(vec![0.25, -1.5, 3.0]),
    }
}

fn new_user(id: &str) -> FaceOwner {
    FaceOwner::New(NewUser {
        user_id: uid(id),
        full_name: None,
        email: None,
    })
}

/// Everything a store must do, in the order a server does it.
async fn keeps_the_contract(store: Arc<dyn Store>) {
    store.ping().await.unwrap();

    // Users and faces.
    let alice = store.add_face(new_user("alice"), face("a1")).await.unwrap();
    assert_eq!((alice.face_count, alice.admin), (1, false));
    assert!(matches!(
        store.add_face(new_user("alice"), face("a9")).await,
        Err(StoreError::UserExists)
    ));
    let again = FaceOwner::Existing {
        user_id: uid("alice"),
        generation: alice.generation,
    };
    assert_eq!(
        store.add_face(again, face("a2")).await.unwrap().face_count,
        2
    );
    let stale = FaceOwner::Existing {
        user_id: uid("alice"),
        generation: alice.generation + 1000,
    };
    assert!(matches!(
        store.add_face(stale, face("a3")).await,
        Err(StoreError::UserNotFound)
    ));
    for id in ["bob", "carol", "Zed", "dave"] {
        store
            .add_face(new_user(id), face(&format!("{id}1")))
            .await
            .unwrap();
    }
    let faces = store.faces(&["a1".into(), "nope".into()]).await.unwrap();
    assert_eq!(faces.len(), 1);
    assert_eq!(faces[0].descriptor.as_deref(), Some(&[0.25, -1.5, 3.0][..]));
    assert_eq!(faces[0].user_id, uid("alice"));
    assert_eq!(store.faces_for_engine("local").await.unwrap().len(), 6);
    // What a start-up loads: faces of one model, in batches, and a count of the others.
    let (into, mut batches) = tokio::sync::mpsc::channel(4);
    let sent = store
        .send_enrolled_faces("local", "m1", into)
        .await
        .unwrap();
    assert_eq!((sent.sent, sent.left_out), (6, 0));
    let mut loaded = Vec::new();
    while let Some(batch) = batches.recv().await {
        for f in batch.iter() {
            loaded.push((
                f.face_id.to_owned(),
                f.user_id.to_owned(),
                f.descriptor.to_vec(),
            ));
        }
    }
    loaded.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(loaded.len(), 6);
    assert_eq!(
        loaded[0],
        ("Zed1".to_owned(), "Zed".to_owned(), vec![0.25, -1.5, 3.0])
    );
    assert!(loaded.iter().any(|(f, u, _)| f == "a2" && u == "alice"));
    let (into, batches) = tokio::sync::mpsc::channel(4);
    let other_model = store
        .send_enrolled_faces("local", "m2", into)
        .await
        .unwrap();
    assert_eq!((other_model.sent, other_model.left_out), (0, 6));
    drop(batches);
    let (into, batches) = tokio::sync::mpsc::channel(4);
    drop(batches);
    let nobody_listening = store
        .send_enrolled_faces("local", "m1", into)
        .await
        .unwrap();
    assert_eq!(nobody_listening.sent, 0, "stops when the receiver is gone");
    assert_eq!(store.count_faces("local").await.unwrap(), 6);
    assert_eq!(store.count_faces("rekognition").await.unwrap(), 0);
    assert_eq!(store.count_users().await.unwrap(), 5);
    let photo = store.reference_photo("a2").await.unwrap().unwrap();
    assert_eq!(photo.bytes, b"photo of a2");

    // Pages in byte order (upper case first), each user once.
    let first = store
        .list_users(Page {
            limit: 2,
            after: None,
        })
        .await
        .unwrap();
    let ids: Vec<&str> = first.iter().map(|u| u.user_id.as_str()).collect();
    assert_eq!(ids, ["Zed", "alice"]);
    let rest = store
        .list_users(Page {
            limit: 10,
            after: Some(uid("alice")),
        })
        .await
        .unwrap();
    let ids: Vec<&str> = rest.iter().map(|u| u.user_id.as_str()).collect();
    assert_eq!(ids, ["bob", "carol", "dave"]);

    // Roles.
    assert!(store.set_admin(&uid("bob"), true).await.unwrap().admin);
    assert!(store.user(&uid("bob")).await.unwrap().unwrap().admin);
    assert!(matches!(
        store.set_admin(&uid("nobody"), true).await,
        Err(StoreError::UserNotFound)
    ));

    // The face change log: additions in order, with the face as stored.
    let log = store.face_changes_since("local", 0).await.unwrap().unwrap();
    let added: Vec<String> = log
        .changes
        .iter()
        .map(|c| match c {
            FaceChange::Added(f) => f.face_id.clone(),
            FaceChange::Removed { face_id } => format!("-{face_id}"),
        })
        .collect();
    assert_eq!(added, ["a1", "a2", "bob1", "carol1", "Zed1", "dave1"]);
    assert_eq!(log.through, store.face_log_position().await.unwrap());
    let before_deletion = log.through;

    // Deletion queues the engine's faces in the same transaction.
    let deleted = store.delete_user(&uid("alice")).await.unwrap();
    assert_eq!(deleted.len(), 2);
    let mut queued = store.pending_engine_deletions("local").await.unwrap();
    queued.sort();
    assert_eq!(queued, ["a1", "a2"]);
    store
        .clear_pending_engine_deletions(&["a1".into()])
        .await
        .unwrap();
    assert_eq!(
        store.pending_engine_deletions("local").await.unwrap(),
        ["a2"]
    );
    assert!(store.user(&uid("alice")).await.unwrap().is_none());
    assert!(store.reference_photo("a1").await.unwrap().is_none());
    assert!(matches!(
        store.delete_user(&uid("alice")).await,
        Err(StoreError::UserNotFound)
    ));
    // The log says which faces went; an addition since removed is left out.
    let log = store
        .face_changes_since("local", before_deletion)
        .await
        .unwrap()
        .unwrap();
    let mut gone: Vec<String> = log
        .changes
        .iter()
        .map(|c| match c {
            FaceChange::Removed { face_id } => face_id.clone(),
            FaceChange::Added(f) => panic!("{} was not added", f.face_id),
        })
        .collect();
    gone.sort();
    assert_eq!(gone, ["a1", "a2"]);
    let from_start = store.face_changes_since("local", 0).await.unwrap().unwrap();
    assert_eq!(
        from_start.changes.len(),
        4 + 2,
        "four additions left, two removals"
    );
    assert!(store
        .face_changes_since("rekognition", 0)
        .await
        .unwrap()
        .unwrap()
        .changes
        .is_empty());

    // The same id again is a new generation: the old one's tokens stay dead.
    let reborn = store.add_face(new_user("alice"), face("a4")).await.unwrap();
    assert_ne!(reborn.generation, alice.generation);
    assert!(store
        .current_user(&uid("alice"), alice.generation)
        .await
        .unwrap()
        .is_none());

    // Signing keys: a new key retires the old; the private part is sealed and opened.
    let t0 = Timestamp::from_unix_seconds(2_000_000_000);
    let key = |kid: &str, at: Timestamp| StoredKey {
        kid: kid.into(),
        alg: "ES256".into(),
        private_der: format!("secret of {kid}").into_bytes(),
        public_jwk: "{}".into(),
        created_at: at,
        retired_at: None,
    };
    store.add_signing_key(key("k1", t0), t0).await.unwrap();
    let t1 = t0 + Duration::from_secs(60);
    store.add_signing_key(key("k2", t1), t1).await.unwrap();
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys[0].kid, "k2");
    assert_eq!(keys[0].private_der, b"secret of k2");
    assert_eq!(keys[1].retired_at, Some(t1));
    assert_eq!(
        store
            .drop_keys_retired_before(t1 + Duration::from_secs(1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.signing_keys().await.unwrap().len(), 1);

    // Refresh tokens: one use, and a replay revokes the session.
    let now = Timestamp::now();
    let bob = store.user(&uid("bob")).await.unwrap().unwrap();
    let refresh = |hash: &str| NewRefreshToken {
        token_hash: hash.into(),
        family_id: "fam1".into(),
        user_generation: bob.generation,
        audience: "facelock".into(),
        scope: Some("openid email".into()),
        created_at: now,
        expires_at: now + Duration::from_secs(3600),
    };
    store.add_refresh_token(refresh("h1")).await.unwrap();
    assert!(matches!(
        store.use_refresh_token("h1", now).await.unwrap(),
        RefreshUse::Fresh(r) if r.scope.as_deref() == Some("openid email")
    ));
    assert!(!store
        .is_access_token_revoked("j1", Some("fam1"))
        .await
        .unwrap());
    assert!(matches!(
        store.use_refresh_token("h1", now).await.unwrap(),
        RefreshUse::Replayed(_)
    ));
    assert!(store
        .is_access_token_revoked("j1", Some("fam1"))
        .await
        .unwrap());
    assert!(matches!(
        store.use_refresh_token("unknown", now).await.unwrap(),
        RefreshUse::Unknown
    ));
    store
        .revoke_access_token("j2", now + Duration::from_secs(60))
        .await
        .unwrap();
    assert!(store.is_access_token_revoked("j2", None).await.unwrap());
    store
        .purge_expired_tokens(now + Duration::from_secs(7200))
        .await
        .unwrap();
    assert!(!store.is_access_token_revoked("j2", None).await.unwrap());
    assert!(store.refresh_token("h1").await.unwrap().is_none());

    // One refresh token presented many times at once is used exactly once.
    store.add_refresh_token(refresh("h2")).await.unwrap();
    let uses = futures_join_all((0..8).map(|_| {
        let store = store.clone();
        async move {
            store
                .use_refresh_token("h2", Timestamp::now())
                .await
                .unwrap()
        }
    }))
    .await;
    let fresh = uses
        .iter()
        .filter(|u| matches!(u, RefreshUse::Fresh(_)))
        .count();
    assert_eq!(fresh, 1, "{uses:?}");

    // A session for a user deleted meanwhile (a login racing a deletion) is refused as such,
    // not as a database failure.
    let gone = NewRefreshToken {
        user_generation: i64::MAX - 7,
        ..refresh("h3")
    };
    assert!(matches!(
        store.add_refresh_token(gone).await,
        Err(StoreError::UserNotFound)
    ));

    // Attempts at an account are admitted and counted up to the threshold, which locks it;
    // while locked nothing is admitted or counted; one that compared no face is taken back.
    let mallory = uid("mallory");
    let rule = LockoutRule {
        threshold: 3,
        first_lock: Duration::from_secs(30),
        max_lock: Duration::from_secs(900),
    };
    let admit = |at: Timestamp| {
        let (store, mallory, rule) = (store.clone(), mallory.clone(), rule.clone());
        async move {
            store
                .admit_attempt(&mallory, at, at - Duration::from_secs(600), &rule)
                .await
                .unwrap()
        }
    };
    for n in 1..=2 {
        assert_eq!(
            admit(now).await,
            Admission::Admitted {
                failures: n,
                locked: None
            }
        );
    }
    store.forgive_attempt(&mallory, &rule).await.unwrap();
    assert_eq!(
        admit(now).await,
        Admission::Admitted {
            failures: 2,
            locked: None
        },
        "the forgiven attempt no longer counts"
    );
    let locked = now + Duration::from_secs(30);
    assert_eq!(
        admit(now).await,
        Admission::Admitted {
            failures: 3,
            locked: Some(locked)
        }
    );
    assert_eq!(admit(now).await, Admission::Locked(locked));
    assert_eq!(store.locked_until(&mallory).await.unwrap(), Some(locked));
    // After the lock, the next attempt is admitted and locks for twice as long.
    let after = locked + Duration::from_secs(1);
    assert_eq!(
        admit(after).await,
        Admission::Admitted {
            failures: 4,
            locked: Some(after + Duration::from_secs(60))
        }
    );
    // Many attempts at once: exactly one is admitted once the lock is over.
    let burst_at = after + Duration::from_secs(61);
    let burst = futures_join_all((0..8).map(|_| admit(burst_at))).await;
    let admitted = burst
        .iter()
        .filter(|a| matches!(a, Admission::Admitted { .. }))
        .count();
    assert_eq!(admitted, 1, "{burst:?}");
    // Failures older than the window are forgotten at the next attempt.
    let later = burst_at + Duration::from_secs(7200);
    assert_eq!(
        admit(later).await,
        Admission::Admitted {
            failures: 1,
            locked: None
        }
    );
    assert!(store.clear_lockout(&mallory).await.unwrap());
    assert!(!store.clear_lockout(&mallory).await.unwrap());
    assert_eq!(store.locked_until(&mallory).await.unwrap(), None);

    // An address's failed 1:N logins and the wait they earn.
    let old = now - Duration::from_secs(3600);
    let address = "198.51.100.4";
    assert_eq!(store.address_wait(address).await.unwrap(), None);
    for n in 1..=3 {
        assert_eq!(
            store
                .record_address_failure(address, now, old)
                .await
                .unwrap(),
            n
        );
    }
    store
        .set_address_wait(address, now + Duration::from_secs(4))
        .await
        .unwrap();
    store
        .set_address_wait(address, now + Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        store.address_wait(address).await.unwrap(),
        Some(now + Duration::from_secs(4))
    );
    // A failure taken back is no longer counted; the wait stays.
    store.forgive_address_failure(address).await.unwrap();
    store.forgive_address_failure("203.0.113.9").await.unwrap();
    assert_eq!(
        store
            .record_address_failure(address, now, old)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store.address_wait(address).await.unwrap(),
        Some(now + Duration::from_secs(4))
    );
    // Failures are forgotten once both the last of them and its wait are old.
    assert_eq!(
        store
            .record_address_failure(address, now, now + Duration::from_secs(2))
            .await
            .unwrap(),
        4,
        "not while the wait runs"
    );
    assert_eq!(
        store
            .record_address_failure(address, later, later - Duration::from_secs(600))
            .await
            .unwrap(),
        1,
        "old failures are forgotten"
    );

    // The audit trail, newest first, filtered.
    for (i, kind) in ["login_failed", "login_succeeded", "login_failed"]
        .iter()
        .enumerate()
    {
        store
            .record_event(AuditRecord {
                at: now + Duration::from_millis(i as u64),
                kind: (*kind).into(),
                user_id: Some("bob".into()),
                actor: None,
                address: Some("127.0.0.1".into()),
                request_id: Some(format!("r{i}")),
                detail: serde_json::json!({ "n": i }),
            })
            .await
            .unwrap();
    }
    let failed = store
        .audit_events(AuditQuery {
            kind: Some("login_failed".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0].detail, serde_json::json!({ "n": 2 }));
    store
        .purge_audit(now + Duration::from_secs(1))
        .await
        .unwrap();
    let all = store
        .audit_events(AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(all.is_empty());

    // Request counters count per key and window, also from many tasks at once.
    let counts = futures_join_all((0..10).map(|_| {
        let store = store.clone();
        async move { store.count_request("192.0.2.1", 60_000).await.unwrap() }
    }))
    .await;
    let mut sorted = counts.clone();
    sorted.sort();
    assert_eq!(sorted, (1..=10).collect::<Vec<u32>>());
    assert_eq!(store.count_request("192.0.2.2", 60_000).await.unwrap(), 1);
    assert_eq!(store.count_request("192.0.2.1", 120_000).await.unwrap(), 1);
    store
        .purge_counters(Timestamp::from_unix_millis(100_000))
        .await
        .unwrap();
    assert_eq!(store.count_request("192.0.2.1", 60_000).await.unwrap(), 1);

    // Once old changes are purged, a position before them is answered with `None`: reload.
    let position = store.face_log_position().await.unwrap();
    store
        .purge_change_log(Timestamp::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert!(store
        .face_changes_since("local", 0)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .face_changes_since("local", position)
        .await
        .unwrap()
        .is_some());

    // Liveness challenges: answered once, by whichever of several concurrent answers comes
    // first; an expired one says so; an unknown one too; expired ones are purged.
    let now = Timestamp::now();
    let challenge = |id: &str, expires_at: Timestamp| StoredChallenge {
        id: id.into(),
        actions: "turn_left,turn_right".into(),
        created_at: now,
        expires_at,
    };
    let live = challenge("c-live", now + Duration::from_secs(60));
    store.save_challenge(&live).await.unwrap();
    let spends = futures_join_all((0..4).map(|_| {
        let store = store.clone();
        async move {
            store
                .spend_challenge("c-live", Timestamp::now())
                .await
                .unwrap()
        }
    }))
    .await;
    assert_eq!(
        spends
            .iter()
            .filter(|s| **s == ChallengeSpend::Spent(live.clone()))
            .count(),
        1,
        "{spends:?}"
    );
    assert_eq!(
        spends
            .iter()
            .filter(|s| **s == ChallengeSpend::Used)
            .count(),
        3
    );
    store
        .save_challenge(&challenge("c-old", now - Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(
        store.spend_challenge("c-old", now).await.unwrap(),
        ChallengeSpend::Expired
    );
    assert_eq!(
        store.spend_challenge("c-none", now).await.unwrap(),
        ChallengeSpend::Unknown
    );
    store.purge_challenges(now).await.unwrap();
    assert_eq!(
        store.spend_challenge("c-old", now).await.unwrap(),
        ChallengeSpend::Unknown
    );
    assert_eq!(
        store.spend_challenge("c-live", now).await.unwrap(),
        ChallengeSpend::Used
    );

    // A face described again (`facelock reindex`): the new face takes the old one's user,
    // photo and enrolment time; the old one goes, queued for deletion in its engine; the log
    // says both; a face gone meanwhile is not replaced.
    let erin = store.add_face(new_user("erin"), face("e1")).await.unwrap();
    let enrolled_at = store.faces(&["e1".into()]).await.unwrap()[0].created_at;
    let before_replacing = store.face_log_position().await.unwrap();
    let redescribed = NewFace {
        face_id: "e1-m2".into(),
        model: "m2".into(),
        descriptor: Some(vec![9.0, 8.0, 7.0]),
        photo: store.reference_photo("e1").await.unwrap().unwrap(),
        ..face("unused")
    };
    assert!(store.replace_face("e1", redescribed).await.unwrap());
    assert!(store.faces(&["e1".into()]).await.unwrap().is_empty());
    assert!(store.reference_photo("e1").await.unwrap().is_none());
    let new = store.faces(&["e1-m2".into()]).await.unwrap().remove(0);
    assert_eq!(
        (
            new.user_id.as_str(),
            new.user_generation,
            new.model.as_str()
        ),
        ("erin", erin.generation, "m2")
    );
    assert_eq!(new.descriptor.as_deref(), Some(&[9.0, 8.0, 7.0][..]));
    assert_eq!(new.created_at, enrolled_at);
    assert_eq!(
        store.reference_photo("e1-m2").await.unwrap().unwrap().bytes,
        b"photo of e1"
    );
    assert_eq!(
        store.user(&uid("erin")).await.unwrap().unwrap().face_count,
        1
    );
    assert!(store
        .pending_engine_deletions("local")
        .await
        .unwrap()
        .contains(&"e1".to_owned()));
    let log = store
        .face_changes_since("local", before_replacing)
        .await
        .unwrap()
        .unwrap();
    let seen: Vec<String> = log
        .changes
        .iter()
        .map(|c| match c {
            FaceChange::Added(f) => format!("+{}:{}", f.face_id, f.model),
            FaceChange::Removed { face_id } => format!("-{face_id}"),
        })
        .collect();
    assert_eq!(seen, ["-e1", "+e1-m2:m2"]);
    let (into, mut batches) = tokio::sync::mpsc::channel(4);
    store
        .send_enrolled_faces("local", "m2", into)
        .await
        .unwrap();
    let mut loaded = Vec::new();
    while let Some(batch) = batches.recv().await {
        loaded.extend(batch.iter().map(|f| f.face_id.to_owned()));
    }
    assert_eq!(loaded, ["e1-m2"], "a server on the new model loads it");
    assert!(!store.replace_face("e1", face("e1-again")).await.unwrap());
    assert!(store.faces(&["e1-again".into()]).await.unwrap().is_empty());

    // OpenID Connect clients: registered once, secrets kept as hashes, rotated, removed.
    clients_keep_the_contract(&store).await;
    grants_keep_the_contract(&store).await;

    // A new master key re-seals the data key; the old one no longer opens the store.
    let new_master = MasterKey::generate().unwrap();
    store.reseal_data_key(&master(), &new_master).await.unwrap();
    assert!(store.reseal_data_key(&master(), &new_master).await.is_err());
}

/// An authorization request is answered once, and its code redeemed once, whichever of two
/// servers gets there first.
async fn grants_keep_the_contract(store: &Arc<dyn Store>) {
    let now = Timestamp::now();
    let minute = Duration::from_secs(60);
    let grant = |id: &str| StoredGrant {
        id: id.into(),
        client_id: "app".into(),
        request: "{}".into(),
        created_at: now,
        expires_at: now + minute,
        code_hash: None,
        login: None,
        redeemed_at: None,
    };
    store.add_grant(&grant("g1")).await.unwrap();
    store.add_grant(&grant("g2")).await.unwrap();
    assert_eq!(
        store.pending_grant("g1", now).await.unwrap(),
        Some(grant("g1"))
    );
    assert!(store
        .pending_grant("g1", now + minute)
        .await
        .unwrap()
        .is_none());
    assert!(store.pending_grant("nope", now).await.unwrap().is_none());
    // Two answers at once: one wins.
    let answers = futures_join_all(["c1", "c2"].into_iter().map(|code| {
        let store = store.clone();
        async move {
            store
                .answer_grant("g1", code, "{\"u\":1}", now, now + minute)
                .await
                .unwrap()
        }
    }))
    .await;
    let won: Vec<StoredGrant> = answers.into_iter().flatten().collect();
    assert_eq!(won.len(), 1);
    let code = won[0].code_hash.clone().unwrap();
    assert!(store.pending_grant("g1", now).await.unwrap().is_none());
    // A lapsed request is not answered.
    assert!(store
        .answer_grant("g2", "c3", "{}", now + minute, now + minute)
        .await
        .unwrap()
        .is_none());
    // Two redemptions at once: one redeems, the other finds a replay.
    let redemptions = futures_join_all([0, 1].into_iter().map(|_| {
        let (store, code) = (store.clone(), code.clone());
        async move { store.redeem_code(&code, now).await.unwrap() }
    }))
    .await;
    let redeemed = redemptions
        .iter()
        .filter(
            |r| matches!(r, CodeRedemption::Redeemed(g) if g.login.as_deref() == Some("{\"u\":1}")),
        )
        .count();
    let replayed = redemptions
        .iter()
        .filter(|r| matches!(r, CodeRedemption::Replayed(_)))
        .count();
    assert_eq!((redeemed, replayed), (1, 1));
    assert_eq!(
        store.redeem_code("unknown", now).await.unwrap(),
        CodeRedemption::Unknown
    );
    store.purge_grants(now + minute * 2).await.unwrap();
    assert_eq!(
        store.redeem_code(&code, now).await.unwrap(),
        CodeRedemption::Unknown
    );
}

async fn clients_keep_the_contract(store: &Arc<dyn Store>) {
    use facelock::oidc::{ClientError, ClientId, Clients, NewClient, RedirectUri};
    let clients = Clients::new(store.clone());
    let uris = |u: &[&str]| -> Vec<RedirectUri> {
        u.iter().map(|u| RedirectUri::parse(u).unwrap()).collect()
    };
    let new = |id: &str, public: bool| NewClient {
        client_id: ClientId::parse(id).unwrap(),
        name: format!("The {id} app"),
        redirect_uris: uris(&["https://app.example.com/cb", "http://127.0.0.1:9000/cb"]),
        post_logout_redirect_uris: uris(&["https://app.example.com/bye"]),
        public,
    };
    let (web, secret) = clients.add(new("web", false)).await.unwrap();
    let secret = secret.expect("a confidential client gets a secret");
    assert!(!web.public && web.secret_matches(secret.expose()));
    let (spa, none) = clients.add(new("spa", true)).await.unwrap();
    assert!(spa.public && none.is_none());
    assert!(matches!(
        clients.add(new("web", true)).await,
        Err(ClientError::Exists(id)) if id == "web"
    ));
    let found = clients.find("web").await.unwrap().unwrap();
    assert_eq!(found, web);
    assert!(found.secret_matches(secret.expose()) && !found.secret_matches("guess"));
    assert_eq!(
        found.redirect_uris,
        ["https://app.example.com/cb", "http://127.0.0.1:9000/cb"]
    );
    assert!(found.allows_post_logout_redirect("https://app.example.com/bye"));
    let listed: Vec<String> = clients
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.client_id)
        .collect();
    assert_eq!(listed, ["spa", "web"]);
    let rotated = clients.rotate_secret("web").await.unwrap();
    let found = clients.find("web").await.unwrap().unwrap();
    assert!(found.secret_matches(rotated.expose()));
    assert!(
        !found.secret_matches(secret.expose()),
        "the old secret stops working"
    );
    assert!(matches!(
        clients.rotate_secret("spa").await,
        Err(ClientError::Public(_))
    ));
    assert!(matches!(
        clients.rotate_secret("nobody").await,
        Err(ClientError::Unknown(_))
    ));
    clients.remove("web").await.unwrap();
    assert!(clients.find("web").await.unwrap().is_none());
    assert!(matches!(
        clients.remove("web").await,
        Err(ClientError::Unknown(_))
    ));
}

/// Runs the futures concurrently, in order of their results.
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db.sqlite"), &master()).unwrap();
    keeps_the_contract(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_the_store_contract() {
    let Some(server) = PgServer::start() else {
        return;
    };
    let url = server.database("contract").await;
    let store = PostgresStore::open(&url, &master()).await.unwrap();
    keeps_the_contract(Arc::new(store)).await;
    // Reopened, the schema is current and the (re-sealed) data key refuses the old master.
    assert!(matches!(
        PostgresStore::open(&url, &master()).await,
        Err(StoreError::Vault(_))
    ));
}

/// Two servers on one PostgreSQL: each hears the other's changes at once, never its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_servers_hear_each_others_changes() {
    let Some(server) = PgServer::start() else {
        return;
    };
    let url = server.database("changes").await;
    let (a, b) = (
        PostgresStore::open(&url, &master()).await.unwrap(),
        PostgresStore::open(&url, &master()).await.unwrap(),
    );
    let mut heard_by_b = b.change_feed().unwrap();
    let mut heard_by_a = a.change_feed().unwrap();
    let marker_b = b.outside_change_marker().await.unwrap();
    // Give both listeners a moment to subscribe.
    tokio::time::sleep(Duration::from_millis(300)).await;
    heard_by_a.borrow_and_update();
    heard_by_b.borrow_and_update();

    a.add_face(new_user("alice"), face("a1")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(1), heard_by_b.changed())
        .await
        .expect("b hears a's change within a second")
        .unwrap();
    assert_ne!(b.outside_change_marker().await.unwrap(), marker_b);
    // a's own change is no news to a.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), heard_by_a.changed())
            .await
            .is_err()
    );
    assert_eq!(
        a.outside_change_marker().await.unwrap(),
        0,
        "only a has written"
    );
    assert!(!server.log().contains("FATAL"), "{}", server.log());
}

/// `sslmode=verify-full` (or `require`) reaches a server that takes only TLS, checking its
/// certificate against `sslrootcert`; without the authority, or in plaintext, the server is not
/// reached; modes that could fall back to plaintext are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_checks_the_server_certificate() {
    let certs = TestCertificates::new();
    let Some(server) = PgServer::start_with_tls(&certs) else {
        return;
    };
    let url = server.database("secure").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &certs.ca_pem).unwrap();
    let ca = ca.display().to_string().replace('/', "%2F");
    for mode in ["verify-full", "require"] {
        let secure = format!("{url}?sslmode={mode}&sslrootcert={ca}");
        let store = PostgresStore::open(&secure, &master())
            .await
            .unwrap_or_else(|e| panic!("{mode}: {}\n{}", facelock::error_chain(&e), server.log()));
        store.ping().await.unwrap();
    }
    let untrusted = PostgresStore::open(&format!("{url}?sslmode=verify-full"), &master()).await;
    let why = facelock::error_chain(&untrusted.err().expect("an unknown authority is refused"));
    assert!(why.contains("UnknownIssuer"), "{why}");
    let plaintext = PostgresStore::open(&url, &master()).await;
    assert!(plaintext.is_err(), "plaintext reached a TLS-only server");
    assert!(
        PostgresStore::open(&format!("{url}?sslmode=prefer"), &master())
            .await
            .is_err()
    );
}
