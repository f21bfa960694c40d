//! Logging in with a face, and everything tokens do afterwards: refresh, authentication of a
//! bearer token, revocation and introspection. Also the two-photo comparison.

use std::{sync::Arc, time::Duration};

use serde_json::json;

use super::{
    liveness::LivenessProof, Actor, AuditKind, Caller, ClientCredentials, Error, FaceLock, Origin,
};
use crate::{
    clock::Timestamp,
    domain::{InvalidInput, Role, Similarity, User, UserId},
    engine::{SearchQuery, SearchScope, Upload},
    store::{Admission, StoreError},
    tokens::{
        issuer::{grant_of, is_refresh_token, Spent},
        Assurance, Claims, Introspection, Issued, SessionGrant, TokenError, TokenProblem,
    },
};

/// The lock an admitted attempt set by reaching the threshold.
#[derive(Clone, Copy)]
struct SetLock {
    failures: u32,
    until: Timestamp,
    seconds: u64,
}

/// What a face login shows of the person.
pub enum Evidence {
    /// One photo: proves the face matches, not that its owner is at the camera.
    Photo(Vec<u8>),
    /// A burst of frames answering a liveness challenge.
    Live(LivenessProof),
}

/// A face login.
pub struct LoginRequest {
    pub evidence: Evidence,
    /// The similarity the client asks for; it can only raise the server's floor.
    pub min_similarity: Option<Similarity>,
    /// Check only this user's faces (1:1) instead of every user's (1:N).
    pub claimed: Option<UserId>,
    /// The audience the token is for; the first configured one by default.
    pub audience: Option<String>,
    pub origin: Origin,
}

/// An access token and the refresh token that continues its session.
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: Duration,
}

/// Who a face login found at the camera, how similar, how surely, and when.
pub struct Proof {
    pub user: User,
    pub similarity: Similarity,
    pub assurance: Assurance,
    pub at: Timestamp,
}

/// What a successful face login gives: who, how similar, and the session's tokens.
pub struct Session {
    pub user: User,
    pub role: Role,
    pub similarity: Similarity,
    pub assurance: Assurance,
    pub tokens: TokenPair,
}

/// The similarity of two photos' dominant faces, and the verdict at the server's floor.
pub struct Comparison {
    pub similarity: Similarity,
    pub threshold: Similarity,
    pub is_match: bool,
}

impl FaceLock {
    /// Logs a face in: finds the enrolled face it matches (under the policy) and starts a
    /// session for its user.
    ///
    /// A login at a claimed account is admitted by the account's lockout, which counts it
    /// before its face is compared: a single photo before any image work (so a burst of
    /// guesses gets no more comparisons than the lockout allows), a liveness answer once the
    /// challenge is passed. What is refused before any comparison (a malformed upload, no
    /// face, a challenge unknown, expired or failed) counts against the address instead, so
    /// that junk sent under someone's user id cannot lock them out. While an account is
    /// locked, single photos are refused and only a passed liveness challenge is compared, at
    /// the stricter floor of [`Policy::locked_floor`]: the owner's way in, which an attacker
    /// with photos alone does not have.
    #[tracing::instrument(skip_all, fields(claimed = req.claimed.as_ref().map(|u| u.as_str())))]
    pub async fn login(&self, req: LoginRequest) -> Result<Session, Error> {
        let audience = self
            .tokens
            .audience(req.audience.as_deref())
            .ok_or_else(|| {
                InvalidInput::new("audience", "is not one of the configured audiences")
            })?;
        let claimed = req.claimed.is_some();
        let proof = self
            .prove(req.evidence, req.min_similarity, req.claimed, &req.origin)
            .await?;
        let grant = SessionGrant {
            audience: audience.clone(),
            id: self.tokens.new_session_id(),
            scope: None,
        };
        let (role, tokens) = self.open_session(&proof, &grant).await?;
        self.audit_login(
            &proof,
            &req.origin,
            json!({ "claimed": claimed, "audience": audience }),
        )
        .await;
        Ok(Session {
            tokens,
            user: proof.user,
            role,
            similarity: proof.similarity,
            assurance: proof.assurance,
        })
    }

    /// Finds the enrolled user whose face the evidence shows (only `claimed`'s faces, when
    /// given), under the policy, the lockout and the address delay described at
    /// [`FaceLock::login`]. Starts no session.
    pub(super) async fn prove(
        &self,
        evidence: Evidence,
        min_similarity: Option<Similarity>,
        claimed: Option<UserId>,
        origin: &Origin,
    ) -> Result<Proof, Error> {
        self.refuse_if_delayed(origin).await?;
        let threshold = self.accounts.policy().threshold(min_similarity);
        let mut gate = Gate::Unclaimed;
        let attempt = async {
            let (upload, assurance) = match (&claimed, evidence) {
                (Some(user), Evidence::Photo(bytes)) => {
                    gate = Gate::Admitted(self.admit_attempt(user, origin).await?);
                    self.examine(Evidence::Photo(bytes), origin).await?
                }
                (Some(user), evidence) => {
                    let examined = self.examine(evidence, origin).await?;
                    gate = self.admit_live_attempt(user).await?;
                    examined
                }
                (None, evidence) => self.examine(evidence, origin).await?,
            };
            let floor = match gate {
                Gate::WayIn => self.accounts.policy().locked_floor(threshold),
                _ => threshold,
            };
            let (user, similarity) = self.match_face(upload, claimed.clone(), floor).await?;
            Ok::<_, Error>((user, similarity, assurance))
        };
        let (user, similarity, assurance) = match attempt.await {
            Ok(found) => found,
            Err(e) => {
                self.count_failure(claimed.as_ref(), origin, &e, gate).await;
                return Err(e);
            }
        };
        if claimed.is_none() {
            // A locked account stays locked whichever way it is reached: at 1:N too only a
            // liveness login at the stricter floor gets through.
            self.refuse_if_locked(&user.user_id, origin, assurance, similarity, threshold)
                .await?;
        }
        // A success takes back its own count and nothing more: the failures before it (and a
        // lock) run their course, or every genuine login would hand whoever is guessing a fresh
        // allowance of comparisons.
        if let (Gate::Admitted(_), Some(claimed)) = (gate, &claimed) {
            if let Err(e) = self.store.forgive_attempt(claimed, &self.lockout).await {
                tracing::warn!(error = %crate::telemetry::error_chain(&e), "could not take back the count of a login that succeeded");
            }
        }
        Ok(Proof {
            user,
            similarity,
            assurance,
            at: Timestamp::now(),
        })
    }

    /// Starts session `grant` for the user a face login proved: an access token and the
    /// session's first refresh token.
    pub(super) async fn open_session(
        &self,
        proof: &Proof,
        grant: &SessionGrant,
    ) -> Result<(Role, TokenPair), Error> {
        let role = self.accounts.policy().role_of(&proof.user);
        let access = self
            .tokens
            .issue(
                &proof.user,
                role,
                (Some(proof.similarity), proof.assurance),
                grant,
            )
            .await?;
        let refresh_token = match self.tokens.start_session(&proof.user, grant).await {
            Ok(token) => token,
            // Deleted while logging in: nobody to log in any more.
            Err(TokenError::Store(StoreError::UserNotFound)) => return Err(Error::NoMatch),
            Err(e) => return Err(e.into()),
        };
        Ok((role, self.pair(access, refresh_token)))
    }

    /// Records a successful face login; `detail` says where it leads.
    pub(super) async fn audit_login(
        &self,
        proof: &Proof,
        origin: &Origin,
        mut detail: serde_json::Value,
    ) {
        detail["similarity"] = json!(proof.similarity.value());
        detail["acr"] = json!(proof.assurance.acr());
        self.accounts
            .audit(
                AuditKind::LoginSucceeded,
                origin,
                Some(&proof.user.user_id),
                Actor::Anonymous,
                detail,
            )
            .await;
    }

    /// The photo to match and how surely it is of a person at the camera: a single photo
    /// (unless the server demands liveness), or the frontal frame of a burst that passed its
    /// liveness challenge.
    async fn examine(
        &self,
        evidence: Evidence,
        origin: &Origin,
    ) -> Result<(Arc<Upload>, Assurance), Error> {
        match evidence {
            Evidence::Photo(_) if self.require_liveness => Err(Error::LivenessRequired),
            Evidence::Photo(bytes) => Ok((self.prepare_image(bytes).await?, Assurance::Face)),
            Evidence::Live(proof) => Ok((
                self.check_liveness(proof, origin).await?,
                Assurance::FaceAndLiveness,
            )),
        }
    }

    /// The enrolled user whose face best matches the photo, under the policy.
    async fn match_face(
        &self,
        upload: Arc<Upload>,
        claimed: Option<UserId>,
        threshold: Similarity,
    ) -> Result<(User, Similarity), Error> {
        let query = SearchQuery {
            scope: claimed.map_or(SearchScope::All, SearchScope::User),
            min_similarity: threshold,
        };
        let found = self.candidates(upload, &query).await?;
        let (face, similarity) = self
            .accounts
            .policy()
            .choose(
                &found.matches,
                &found.known,
                &query.scope,
                threshold,
                self.engine.name(),
            )
            .ok_or(Error::NoMatch)?;
        let user = self
            .store
            .current_user(&face.user_id, face.user_generation)
            .await?
            .ok_or(Error::NoMatch)?;
        tracing::info!(user_id = %user.user_id, similarity = similarity.value(), "face verified");
        Ok((user, similarity))
    }

    /// Lets a single photo at a claimed account compare a face, or refuses it before any
    /// image work. The store counts the attempt as a failure and locks the account in one
    /// step, so a burst of guesses sent at once gets no more comparisons than the lockout
    /// allows; a login that compares no face takes its count back, and so does one that
    /// succeeds (the failures before it stay). Returns the lock the attempt set, to be
    /// recorded if it fails.
    async fn admit_attempt(
        &self,
        user: &UserId,
        origin: &Origin,
    ) -> Result<Option<SetLock>, Error> {
        let now = Timestamp::now();
        match self.admission(user, now).await? {
            Admission::Locked(until) => Err(self.refused_locked(user, origin, until, now).await),
            Admission::Admitted { failures, locked } => Ok(set_lock(failures, locked, now)),
        }
    }

    /// Lets a passed liveness answer at a claimed account compare its face: counted like a
    /// photo while the account is open, at the stricter floor (and not counted) while it is
    /// locked.
    async fn admit_live_attempt(&self, user: &UserId) -> Result<Gate, Error> {
        let now = Timestamp::now();
        Ok(match self.admission(user, now).await? {
            Admission::Locked(_) => Gate::WayIn,
            Admission::Admitted { failures, locked } => {
                Gate::Admitted(set_lock(failures, locked, now))
            }
        })
    }

    async fn admission(&self, user: &UserId, now: Timestamp) -> Result<Admission, Error> {
        Ok(self
            .store
            .admit_attempt(user, now, now - self.lockout_window, &self.lockout)
            .await?)
    }

    /// The refusal of a login at an account locked until `until`, recorded in the audit trail.
    async fn refused_locked(
        &self,
        user: &UserId,
        origin: &Origin,
        until: Timestamp,
        now: Timestamp,
    ) -> Error {
        self.accounts
            .audit(
                AuditKind::LoginRefusedLocked,
                origin,
                Some(user),
                Actor::Anonymous,
                json!({ "locked_until": until.rfc3339() }),
            )
            .await;
        Error::AccountLocked {
            retry_after: until - now,
        }
    }

    /// Refuses a 1:N login that found a locked account's face, unless it is the owner's way
    /// in: a passed liveness challenge at the stricter floor.
    async fn refuse_if_locked(
        &self,
        user: &UserId,
        origin: &Origin,
        assurance: Assurance,
        similarity: Similarity,
        threshold: Similarity,
    ) -> Result<(), Error> {
        let now = Timestamp::now();
        let way_in = assurance == Assurance::FaceAndLiveness
            && similarity >= self.accounts.policy().locked_floor(threshold);
        match self.store.locked_until(user).await? {
            Some(until) if until > now && !way_in => {
                Err(self.refused_locked(user, origin, until, now).await)
            }
            _ => Ok(()),
        }
    }

    pub(super) async fn refuse_if_delayed(&self, origin: &Origin) -> Result<(), Error> {
        let Some(address) = origin.address else {
            return Ok(());
        };
        self.address_failures
            .check(address)
            .await
            .map_err(|retry_after| {
                self.metrics.rate_limited("failed_logins");
                Error::SlowDown { retry_after }
            })
    }

    /// A failed login, recorded in the audit trail and counted where it belongs: a face
    /// compared at a claimed account was counted by its admission (with the lock that set,
    /// recorded here); one compared at 1:N, or on the way in to a locked account, counts
    /// against the address; and so does anything refused before a comparison, whose
    /// admission (if any) is taken back.
    async fn count_failure(
        &self,
        claimed: Option<&UserId>,
        origin: &Origin,
        error: &Error,
        gate: Gate,
    ) {
        let counted = counted_failure(error);
        if let (Gate::Admitted(_), Some(user), Counted::Refused(_) | Counted::Not) =
            (gate, claimed, counted)
        {
            if let Err(e) = self.store.forgive_attempt(user, &self.lockout).await {
                tracing::warn!(error = %crate::telemetry::error_chain(&e), "could not take back an attempt that compared no face");
            }
        }
        let (Counted::Compared(code) | Counted::Refused(code)) = counted else {
            return;
        };
        self.accounts
            .audit(
                AuditKind::LoginFailed,
                origin,
                claimed,
                Actor::Anonymous,
                json!({ "code": code }),
            )
            .await;
        let against_address = !matches!((counted, gate), (Counted::Compared(_), Gate::Admitted(_)));
        if let (true, Some(address)) = (against_address, origin.address) {
            self.address_failures.failed(address).await;
        }
        if let (
            Counted::Compared(_),
            Some(user),
            Gate::Admitted(Some(SetLock {
                failures,
                until,
                seconds,
            })),
        ) = (counted, claimed, gate)
        {
            self.accounts
                .audit(
                    AuditKind::AccountLocked,
                    origin,
                    Some(user),
                    Actor::Anonymous,
                    json!({ "failures": failures, "locked_until": until.rfc3339(), "seconds": seconds }),
                )
                .await;
        }
    }

    /// `grant_type=refresh_token`: spends the refresh token, returns the session's next pair.
    ///
    /// The refresh token of an OpenID Connect session is the client's: it must authenticate
    /// as at the code exchange (a public client names itself).
    pub async fn refresh(
        &self,
        refresh_token: &str,
        credentials: Option<&ClientCredentials>,
        origin: &Origin,
    ) -> Result<TokenPair, Error> {
        if let Some(live) = self.tokens.live_refresh(refresh_token).await? {
            if live.scope.is_some() {
                let client = self.authenticate_client(credentials).await?;
                if client.client_id != live.audience {
                    return Err(Error::InvalidGrant);
                }
            } else if credentials.is_some() {
                // Not a client's session: nothing to authenticate, and no client to accept.
                return Err(Error::InvalidGrant);
            }
        }
        let record = match self.tokens.spend_refresh(refresh_token).await? {
            Spent::Live(record) => record,
            Spent::Invalid => return Err(Error::InvalidGrant),
            Spent::Replayed(record) => {
                self.accounts
                    .audit(
                        AuditKind::RefreshReplayed,
                        origin,
                        Some(&record.user_id),
                        Actor::Anonymous,
                        json!({ "session_revoked": true }),
                    )
                    .await;
                return Err(Error::InvalidGrant);
            }
        };
        let user = self
            .store
            .current_user(&record.user_id, record.user_generation)
            .await?
            .ok_or(Error::InvalidGrant)?;
        let role = self.accounts.policy().role_of(&user);
        let access = self
            .tokens
            .issue(&user, role, (None, Assurance::Face), &grant_of(&record))
            .await?;
        let refresh_token = self.tokens.continue_session(&record).await?;
        Ok(self.pair(access, refresh_token))
    }

    fn pair(&self, access: Issued, refresh_token: String) -> TokenPair {
        TokenPair {
            access_token: access.token,
            refresh_token,
            expires_in: self.tokens.access_ttl(),
        }
    }

    /// The caller behind a bearer token: valid, unrevoked, and its user still the same
    /// generation (not deleted, nor deleted and registered again).
    pub async fn authenticate(&self, bearer: &str, origin: &Origin) -> Result<Caller, Error> {
        match self.bearer_caller(bearer).await {
            Err(Error::Unauthenticated(problem)) => {
                self.accounts
                    .audit(
                        AuditKind::TokenRefused,
                        origin,
                        None,
                        Actor::Anonymous,
                        json!({ "reason": format!("{problem:?}").to_ascii_lowercase() }),
                    )
                    .await;
                Err(Error::Unauthenticated(problem))
            }
            other => other,
        }
    }

    async fn bearer_caller(&self, bearer: &str) -> Result<Caller, Error> {
        let claims = self
            .tokens
            .validate(bearer)
            .await
            .map_err(Error::Unauthenticated)?;
        let user = self.user_of(&claims).await?;
        let role = self.accounts.policy().caller_role(&user, claims.role);
        Ok(Caller { user, role, claims })
    }

    /// The user a valid token names: still the same generation (not deleted, nor deleted and
    /// registered again), or the token counts as revoked.
    pub(super) async fn user_of(&self, claims: &Claims) -> Result<User, Error> {
        let user_id = UserId::parse(&claims.sub)
            .map_err(|_| Error::Unauthenticated(TokenProblem::Invalid))?;
        self.store
            .current_user(&user_id, claims.ugen)
            .await?
            .ok_or(Error::Unauthenticated(TokenProblem::Revoked))
    }

    /// RFC 7009: revokes a refresh token's session or an access token; unknown tokens are
    /// ignored.
    pub async fn revoke(&self, token: &str) -> Result<(), Error> {
        Ok(self.tokens.revoke(token).await?)
    }

    /// RFC 7662, for admins: whether a token is active (valid, unrevoked, its user current),
    /// and its claims.
    pub async fn introspect(
        &self,
        caller: &Caller,
        token: &str,
        origin: &Origin,
    ) -> Result<Introspection, Error> {
        if !caller.is_admin() {
            return Err(Error::Forbidden("Introspection needs an admin token"));
        }
        let answer = self.introspection(token).await?;
        self.accounts
            .audit(
                AuditKind::TokenIntrospected,
                origin,
                answer
                    .sub
                    .as_ref()
                    .and_then(|s| UserId::parse(s).ok())
                    .as_ref(),
                Actor::Caller(caller),
                json!({ "active": answer.active }),
            )
            .await;
        Ok(answer)
    }

    async fn introspection(&self, token: &str) -> Result<Introspection, Error> {
        if is_refresh_token(token) {
            let Some(r) = self.tokens.live_refresh(token).await? else {
                return Ok(Introspection::inactive());
            };
            if self
                .store
                .current_user(&r.user_id, r.user_generation)
                .await?
                .is_none()
            {
                return Ok(Introspection::inactive());
            }
            return Ok(Introspection {
                active: true,
                token_type: Some("refresh_token".into()),
                sub: Some(r.user_id.to_string()),
                username: Some(r.user_id.to_string()),
                aud: Some(r.audience.clone()),
                client_id: Some(r.audience),
                iss: Some(self.tokens.issuer().to_owned()),
                exp: Some(r.expires_at.unix_seconds()),
                iat: Some(r.created_at.unix_seconds()),
                ..Default::default()
            });
        }
        match self.bearer_caller(token).await {
            Ok(bearer) => Ok(Introspection::of_access_token(bearer.claims)),
            Err(Error::Unauthenticated(_)) => Ok(Introspection::inactive()),
            Err(e) => Err(e),
        }
    }

    /// The similarity of the dominant faces of two photos.
    pub async fn compare(&self, a: Vec<u8>, b: Vec<u8>) -> Result<Comparison, Error> {
        let (a, b) = tokio::try_join!(self.prepare_image(a), self.prepare_image(b))?;
        let similarity = self.engine.compare(a, b).await?;
        let threshold = self.accounts.policy().threshold(None);
        Ok(Comparison {
            similarity,
            threshold,
            is_match: similarity >= threshold,
        })
    }
}

/// How a failed login counts.
#[derive(Clone, Copy)]
enum Counted {
    /// A face was compared and matched no one (or not well enough).
    Compared(&'static str),
    /// The caller's request was refused before any comparison: a malformed upload, no usable
    /// face, a liveness challenge unknown, expired, reused or failed.
    Refused(&'static str),
    /// Not the caller's doing (the store or the engine failed), or refused for a lock or a
    /// delay already in force.
    Not,
}

fn counted_failure(e: &Error) -> Counted {
    use super::ChallengeProblem as P;
    use crate::{engine::EngineError as E, images::ImageError as I, liveness::Refusal as R};
    let refused = match e {
        Error::NoMatch => return Counted::Compared("NO_MATCH"),
        Error::Challenge(P::Unknown) => "CHALLENGE_UNKNOWN",
        Error::Challenge(P::Expired) => "CHALLENGE_EXPIRED",
        Error::Challenge(P::Used) => "CHALLENGE_USED",
        Error::NotLive(R::FaceChanged { .. }) => "LIVENESS_FACE_CHANGED",
        Error::NotLive(R::MotionMissing { .. }) => "LIVENESS_MOTION_MISSING",
        Error::NotLive(R::Flat { .. }) => "LIVENESS_FLAT",
        Error::Engine(E::NoFace) => "NO_FACE",
        Error::Engine(E::MultipleFaces) => "MULTIPLE_FACES",
        Error::Engine(E::AmbiguousFaces) => "AMBIGUOUS_FACES",
        Error::Engine(E::PoorQuality(problem)) => problem.code(),
        Error::Engine(E::ImageTooLarge(_))
        | Error::Image(I::TooLarge { .. } | I::TooMuchMemory { .. }) => "IMAGE_TOO_LARGE",
        Error::Image(I::UnknownFormat) => "UNSUPPORTED_IMAGE",
        // Re-encoding a photo failing is the server's doing.
        Error::Image(I::Encode(_)) => return Counted::Not,
        Error::Engine(E::InvalidImage(_)) | Error::Image(_) => "INVALID_IMAGE",
        Error::Invalid(_) => "VALIDATION_ERROR",
        Error::LivenessRequired => "LIVENESS_REQUIRED",
        _ => return Counted::Not,
    };
    Counted::Refused(refused)
}

/// How a login at a claimed account was let through to a comparison.
#[derive(Clone, Copy)]
enum Gate {
    /// No account claimed (1:N), or not admitted yet.
    Unclaimed,
    /// Counted by the account's lockout before its face is compared; the lock that set.
    Admitted(Option<SetLock>),
    /// The account is locked: a passed liveness challenge, compared at the stricter floor.
    WayIn,
}

fn set_lock(failures: u32, locked: Option<Timestamp>, now: Timestamp) -> Option<SetLock> {
    locked.map(|until| SetLock {
        failures,
        until,
        seconds: (until - now).as_secs(),
    })
}
