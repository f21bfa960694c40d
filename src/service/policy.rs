//! Who logs in, decided in one place: the similarity floor a client can only raise, the scope
//! of a 1:1 check, faces the store knows, and the role a user holds.

use std::collections::BTreeSet;

pub use crate::store::LockoutRule;
use crate::{
    domain::{Role, Similarity, User, UserId},
    engine::{FaceMatch, SearchScope},
    store::FaceRecord,
};

/// The floor of the owner's way in to a locked account. On every different-person pair of the
/// development set's photos (172,774, `facelock eval --all-impostors`) none reached 95 with the
/// default descriptor (the false-match rate there is under 1e-5), against 1.4e-4 at the
/// default floor of 90: an attacker who could pass liveness with someone else's face still
/// gets no further than a false match this rare.
pub const LOCKED_FLOOR: f32 = 95.0;

pub struct Policy {
    /// The lowest similarity that logs in, whatever a client asks for.
    floor: Similarity,
    admins: BTreeSet<UserId>,
}

impl Policy {
    pub fn new(floor: f32, admins: BTreeSet<UserId>) -> Self {
        Self {
            floor: Similarity::clamped(floor),
            admins,
        }
    }

    /// The policy the settings describe.
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        Self::new(settings.engine.min_similarity, settings.admin_users.clone())
    }

    /// The similarity a match needs: the client may ask for more than the server's floor,
    /// never less.
    pub fn threshold(&self, requested: Option<Similarity>) -> Similarity {
        match requested {
            Some(t) if t > self.floor => t,
            _ => self.floor,
        }
    }

    /// The similarity a login needs to reach a locked account: a passed liveness challenge
    /// at [`LOCKED_FLOOR`] (or the threshold asked for, if higher). Photos alone never do.
    pub fn locked_floor(&self, threshold: Similarity) -> Similarity {
        let locked = Similarity::clamped(LOCKED_FLOOR);
        if threshold > locked {
            threshold
        } else {
            locked
        }
    }

    /// The role `user` holds now: granted in the store, or listed in `FACELOCK_ADMIN_USERS`.
    pub fn role_of(&self, user: &User) -> Role {
        if user.admin || self.is_listed_admin(&user.user_id) {
            Role::Admin
        } else {
            Role::User
        }
    }

    /// Whether `FACELOCK_ADMIN_USERS` names this user id: its role cannot be withdrawn in
    /// the store, and nobody but an admin may enrol it.
    pub fn is_listed_admin(&self, user_id: &UserId) -> bool {
        self.admins.contains(user_id)
    }

    /// The role of a caller whose token claims `claimed`: never more than the token says, nor
    /// more than the user holds now (an admin whose role is withdrawn loses it at once).
    pub fn caller_role(&self, user: &User, claimed: Role) -> Role {
        match claimed {
            Role::Admin => self.role_of(user),
            Role::User => Role::User,
        }
    }

    /// The best candidate, at or above the floor, whose face belongs to someone other than
    /// `user`: enrolling this photo under `user` would give two people one face.
    pub fn duplicate_of<'a>(
        &self,
        candidates: &[FaceMatch],
        known: &'a [FaceRecord],
        engine: &str,
        user: &UserId,
    ) -> Option<(&'a FaceRecord, Similarity)> {
        let others: Vec<FaceMatch> = candidates
            .iter()
            .filter(|c| &c.user_id != user)
            .cloned()
            .collect();
        self.choose(&others, known, &SearchScope::All, self.floor, engine)
    }

    /// The best candidate that may log in: at or above `threshold`, in scope, and a face the
    /// store knows for the same user and engine. A face left in the engine by an interrupted
    /// registration or deletion is not in `known`, so it logs nobody in.
    pub fn choose<'a>(
        &self,
        candidates: &[FaceMatch],
        known: &'a [FaceRecord],
        scope: &SearchScope,
        threshold: Similarity,
        engine: &str,
    ) -> Option<(&'a FaceRecord, Similarity)> {
        let mut best: Option<(&FaceRecord, Similarity)> = None;
        for candidate in candidates.iter().filter(|c| c.similarity >= threshold) {
            let in_scope = match scope {
                SearchScope::All => true,
                SearchScope::User(user) => &candidate.user_id == user,
            };
            let Some(face) = known.iter().find(|f| f.face_id == candidate.face_id) else {
                tracing::warn!(face_id = %candidate.face_id, "engine matched a face the store does not know");
                continue;
            };
            if in_scope
                && face.user_id == candidate.user_id
                && face.engine == engine
                && best.is_none_or(|(_, s)| candidate.similarity > s)
            {
                best = Some((face, candidate.similarity));
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::Timestamp;

    fn uid(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn candidate(face: &str, user: &str, similarity: f32) -> FaceMatch {
        FaceMatch {
            face_id: face.into(),
            user_id: uid(user),
            similarity: Similarity::clamped(similarity),
        }
    }

    fn record(face: &str, user: &str, engine: &str) -> FaceRecord {
        FaceRecord {
            face_id: face.into(),
            user_id: uid(user),
            user_generation: 1,
            engine: engine.into(),
            model: "m".into(),
            legacy_photo_path: None,
            descriptor: None,
            created_at: Timestamp::now(),
        }
    }

    #[test]
    fn a_client_can_raise_the_floor_but_not_lower_it() {
        let p = Policy::new(90.0, BTreeSet::new());
        assert_eq!(p.threshold(None).value(), 90.0);
        assert_eq!(p.threshold(Some(Similarity::clamped(0.0))).value(), 90.0);
        assert_eq!(p.threshold(Some(Similarity::clamped(95.0))).value(), 95.0);
    }

    #[test]
    fn only_known_in_scope_faces_above_the_threshold_log_in() {
        let p = Policy::new(90.0, BTreeSet::new());
        let t = p.threshold(None);
        let candidates = [
            candidate("ghost", "alice", 99.0),
            candidate("b1", "bob", 97.0),
            candidate("a1", "alice", 95.0),
            candidate("a2", "alice", 80.0),
        ];
        let known = [
            record("a1", "alice", "local"),
            record("a2", "alice", "local"),
            record("b1", "bob", "local"),
        ];
        let all = p.choose(&candidates, &known, &SearchScope::All, t, "local");
        assert_eq!(all.map(|(f, _)| f.face_id.as_str()), Some("b1"));
        let alice = SearchScope::User(uid("alice"));
        let one = p.choose(&candidates, &known, &alice, t, "local");
        assert_eq!(one.map(|(f, _)| f.face_id.as_str()), Some("a1"));
        let strict = p.threshold(Some(Similarity::clamped(96.0)));
        assert!(p
            .choose(&candidates, &known, &alice, strict, "local")
            .is_none());
        // A face recorded under another engine or another user does not count.
        let moved = [
            record("b1", "carol", "local"),
            record("a1", "alice", "rekognition"),
        ];
        assert!(p
            .choose(&candidates, &moved, &SearchScope::All, t, "local")
            .is_none());
    }

    #[test]
    fn locks_start_at_the_threshold_and_double_up_to_the_cap() {
        let rule = LockoutRule {
            threshold: 5,
            first_lock: Duration::from_secs(30),
            max_lock: Duration::from_secs(900),
        };
        let secs = |n| rule.lock_for(n).map(|d| d.as_secs());
        assert_eq!(secs(4), None);
        assert_eq!(secs(5), Some(30));
        assert_eq!(secs(6), Some(60));
        assert_eq!(secs(9), Some(480));
        assert_eq!(secs(10), Some(900));
        assert_eq!(secs(1000), Some(900));
    }

    #[test]
    fn a_face_of_another_user_is_a_duplicate_and_ones_own_is_not() {
        let p = Policy::new(90.0, BTreeSet::new());
        let known = [record("a1", "alice", "local"), record("b1", "bob", "local")];
        let own_best = [candidate("a1", "alice", 98.0), candidate("b1", "bob", 91.0)];
        let dup = p.duplicate_of(&own_best, &known, "local", &uid("alice"));
        assert_eq!(dup.map(|(f, _)| f.face_id.as_str()), Some("b1"));
        let only_own = [candidate("a1", "alice", 98.0), candidate("b1", "bob", 85.0)];
        assert!(p
            .duplicate_of(&only_own, &known, "local", &uid("alice"))
            .is_none());
    }

    fn user(id: &str, admin: bool) -> User {
        User {
            generation: 1,
            user_id: uid(id),
            full_name: None,
            email: None,
            registered_at: crate::clock::Timestamp::now(),
            face_count: 1,
            admin,
        }
    }

    #[test]
    fn roles_follow_the_store_and_the_admin_list_now() {
        let p = Policy::new(90.0, [uid("root")].into());
        assert_eq!(p.role_of(&user("root", false)), Role::Admin);
        assert_eq!(p.role_of(&user("carol", true)), Role::Admin);
        assert_eq!(p.role_of(&user("alice", false)), Role::User);
        assert_eq!(p.caller_role(&user("root", false), Role::User), Role::User);
        assert_eq!(
            p.caller_role(&user("alice", false), Role::Admin),
            Role::User
        );
        assert_eq!(
            p.caller_role(&user("root", false), Role::Admin),
            Role::Admin
        );
        assert_eq!(
            p.caller_role(&user("carol", true), Role::Admin),
            Role::Admin
        );
    }
}
