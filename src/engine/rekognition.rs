//! The AWS Rekognition engine: faces live in a Rekognition collection, tagged with the user id as
//! `ExternalImageId`; enrolment is IndexFaces, 1:N and 1:1 are SearchFacesByImage, comparison is
//! CompareFaces.
//!
//! The SDK's HTTP client is built here with rustls on `ring`, so the binary carries one TLS and
//! crypto stack. Throttling is retried by the SDK's standard retry strategy with exponential
//! backoff; only when the attempts run out does it surface as [`EngineError::Throttled`].

use std::{future::Future, sync::Arc, time::Duration};

use async_trait::async_trait;
use aws_config::{retry::RetryConfig, timeout::TimeoutConfig, BehaviorVersion, Region};
use aws_sdk_rekognition::{
    config::Credentials,
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
    primitives::Blob,
    types::{Image, QualityFilter, Reason},
    Client,
};
use aws_smithy_http_client::tls;

use super::{
    EngineError, FaceEngine, FaceMatch, Found, IndexedFace, QualityProblem, SearchQuery,
    SearchScope, Upload,
};
use crate::{
    config::RekognitionSettings,
    domain::{Similarity, UserId},
    images,
    metrics::Metrics,
};

/// Rekognition takes at most 5 MB of image bytes.
const MAX_IMAGE_BYTES: usize = 5 * 1024 * 1024;
/// More pixels than this add upload time and nothing to accuracy.
const MAX_SIDE: u32 = 1920;
/// DeleteFaces takes at most 4096 ids a call.
const DELETE_BATCH: usize = 4096;

pub struct RekognitionEngine {
    client: Client,
    collection_id: String,
    /// Where each AWS call's latency is recorded.
    metrics: Arc<Metrics>,
}

/// Why the client could not be built; the message names what to set.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "the rekognition engine needs AWS_REGION (and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY \
         or an AWS profile); set them in .env"
    )]
    NoRegion,
    #[error("set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither")]
    HalfCredentials,
}

impl RekognitionEngine {
    /// Builds the client from settings. Fails with a message naming what to set when there is no
    /// region; without explicit keys the AWS default credential chain is used.
    pub async fn connect(
        settings: &RekognitionSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ConnectError> {
        let region = settings.region.clone().ok_or(ConnectError::NoRegion)?;
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client)
            .region(Region::new(region))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(settings.max_attempts.max(1))
                    .with_initial_backoff(settings.initial_backoff),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(10))
                    .operation_timeout(Duration::from_secs(25))
                    .build(),
            );
        if let Some(endpoint) = &settings.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        match (&settings.access_key_id, &settings.secret_access_key) {
            (Some(key), Some(secret)) => {
                loader = loader.credentials_provider(Credentials::new(
                    key,
                    secret.expose(),
                    settings
                        .session_token
                        .as_ref()
                        .map(|t| t.expose().to_owned()),
                    None,
                    "facelock-settings",
                ));
            }
            (Some(_), None) | (None, Some(_)) => return Err(ConnectError::HalfCredentials),
            (None, None) => {}
        }
        let config = loader.load().await;
        Ok(Self {
            client: Client::new(&config),
            collection_id: settings.collection_id.clone(),
            metrics,
        })
    }

    /// Awaits one AWS call, recording its latency as an engine stage.
    async fn timed<T>(&self, call: &'static str, response: impl Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let out = response.await;
        self.metrics
            .engine_stage("rekognition", call, started.elapsed());
        out
    }

    async fn collection_exists(&self) -> Result<bool, EngineError> {
        match self
            .client
            .describe_collection()
            .collection_id(&self.collection_id)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_missing_collection(&e) => Ok(false),
            Err(e) => Err(map_error(e)),
        }
    }

    async fn create_collection(&self) -> Result<(), EngineError> {
        match self
            .client
            .create_collection()
            .collection_id(&self.collection_id)
            .send()
            .await
        {
            Ok(_) => {
                tracing::info!(collection = %self.collection_id, "created Rekognition collection");
                Ok(())
            }
            Err(e) if e.code() == Some("ResourceAlreadyExistsException") => Ok(()),
            Err(e) => Err(map_error(e)),
        }
    }

    async fn index_once(
        &self,
        user: &UserId,
        bytes: &Blob,
    ) -> Result<aws_sdk_rekognition::operation::index_faces::IndexFacesOutput, EngineError> {
        let attempt = |client: &Client| {
            client
                .index_faces()
                .collection_id(&self.collection_id)
                .image(Image::builder().bytes(bytes.clone()).build())
                .external_image_id(user.as_str())
                .max_faces(1)
                .quality_filter(QualityFilter::Auto)
                .send()
        };
        let attempt = |client| self.timed("index_faces", attempt(client));
        match attempt(&self.client).await {
            Err(e) if is_missing_collection(&e) => {
                tracing::warn!(collection = %self.collection_id, "collection missing; creating it");
                self.create_collection().await?;
                attempt(&self.client).await.map_err(map_error)
            }
            other => other.map_err(map_error),
        }
    }
}

#[async_trait]
impl FaceEngine for RekognitionEngine {
    fn name(&self) -> &'static str {
        "rekognition"
    }

    fn model(&self) -> &str {
        // Rekognition upgrades its model inside a collection; faces stay comparable there.
        "rekognition"
    }

    async fn start(&self) -> Result<(), EngineError> {
        if self.collection_exists().await? {
            Ok(())
        } else {
            self.create_collection().await
        }
    }

    async fn index_face(
        &self,
        user: &UserId,
        image: Arc<Upload>,
    ) -> Result<IndexedFace, EngineError> {
        let bytes = engine_bytes(image).await?;
        let out = self.index_once(user, &bytes).await?;
        let indexed: Vec<_> = out.face_records().iter().filter_map(|r| r.face()).collect();
        let unindexed = out.unindexed_faces();
        let too_many = unindexed
            .iter()
            .any(|u| u.reasons().contains(&Reason::ExceedsMaxFaces));
        if too_many {
            // IndexFaces stored the largest face before reporting the others: take it back.
            let ids: Vec<String> = indexed
                .iter()
                .filter_map(|f| f.face_id().map(str::to_owned))
                .collect();
            self.delete_faces(&ids).await?;
            return Err(EngineError::MultipleFaces);
        }
        if let Some(face) = indexed.first() {
            let face_id = face
                .face_id()
                .filter(|id| is_safe_face_id(id))
                .ok_or_else(|| EngineError::internal("IndexFaces returned no usable FaceId"))?
                .to_owned();
            return Ok(IndexedFace {
                face_id,
                descriptor: None,
            });
        }
        let problem = unindexed
            .iter()
            .flat_map(|u| u.reasons())
            .find_map(|r| QualityProblem::from_code(r.as_str()));
        Err(problem.map_or(EngineError::NoFace, EngineError::PoorQuality))
    }

    async fn search(&self, image: Arc<Upload>, query: &SearchQuery) -> Result<Found, EngineError> {
        let bytes = engine_bytes(image).await?;
        let max_faces = match query.scope {
            SearchScope::All => 10,
            // A user has few faces, but others may rank above them: look further for a 1:1.
            SearchScope::User(_) => 100,
        };
        let out = self
            .client
            .search_faces_by_image()
            .collection_id(&self.collection_id)
            .image(Image::builder().bytes(bytes).build())
            .face_match_threshold(query.min_similarity.value())
            .max_faces(max_faces)
            .send();
        let out = match self.timed("search_faces_by_image", out).await {
            Ok(out) => out,
            Err(e) if is_missing_collection(&e) => {
                tracing::warn!(collection = %self.collection_id, "search on a missing collection");
                return Ok(Found::default());
            }
            Err(e) => return Err(map_error(e)),
        };
        let mut matches: Vec<FaceMatch> = out
            .face_matches()
            .iter()
            .filter_map(|m| {
                let face = m.face()?;
                let user_id = UserId::parse(face.external_image_id()?).ok()?;
                Some(FaceMatch {
                    face_id: face.face_id()?.to_owned(),
                    user_id,
                    similarity: Similarity::clamped(m.similarity()?),
                })
            })
            .collect();
        matches.sort_by(|a, b| b.similarity.value().total_cmp(&a.similarity.value()));
        // Rekognition keeps its descriptors: its similarity is the decision.
        Ok(Found {
            matches,
            query: None,
        })
    }

    async fn compare(&self, a: Arc<Upload>, b: Arc<Upload>) -> Result<Similarity, EngineError> {
        let (a, b) = tokio::try_join!(engine_bytes(a), engine_bytes(b))?;
        let out = self
            .client
            .compare_faces()
            .source_image(Image::builder().bytes(a).build())
            .target_image(Image::builder().bytes(b).build())
            .similarity_threshold(0.0)
            .send();
        let out = self.timed("compare_faces", out).await.map_err(map_error)?;
        let best = out
            .face_matches()
            .iter()
            .filter_map(|m| m.similarity())
            .fold(0.0f32, f32::max);
        if out.face_matches().is_empty() && out.unmatched_faces().is_empty() {
            return Err(EngineError::NoFace);
        }
        Ok(Similarity::clamped(best))
    }

    async fn delete_faces(&self, face_ids: &[String]) -> Result<(), EngineError> {
        for batch in face_ids.chunks(DELETE_BATCH) {
            let call = self
                .client
                .delete_faces()
                .collection_id(&self.collection_id)
                .set_face_ids(Some(batch.to_vec()))
                .send();
            match self.timed("delete_faces", call).await {
                Ok(_) => {}
                // No collection, no faces: nothing left to delete.
                Err(e) if is_missing_collection(&e) => return Ok(()),
                Err(e) => return Err(map_error(e)),
            }
        }
        Ok(())
    }

    async fn health(&self) -> Result<(), EngineError> {
        if self.collection_exists().await? {
            Ok(())
        } else {
            Err(EngineError::Unavailable(format!(
                "collection {} does not exist",
                self.collection_id
            )))
        }
    }
}

/// Rekognition's FaceIds are UUIDs; anything else must not become a file name.
fn is_safe_face_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// The image as Rekognition takes it, re-encoded off the async workers when it must be.
async fn engine_bytes(image: Arc<Upload>) -> Result<Blob, EngineError> {
    tokio::task::spawn_blocking(move || {
        images::encode_for_engine(&image.bytes, &image.decoded, MAX_IMAGE_BYTES, MAX_SIDE)
    })
    .await
    .map_err(EngineError::internal)?
    .map(Blob::new)
    .map_err(EngineError::internal)
}

fn is_missing_collection<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.code() == Some("ResourceNotFoundException")
}

fn map_error<E, R>(e: SdkError<E, R>) -> EngineError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let message = e.message().unwrap_or_default().to_owned();
    match &e {
        SdkError::ServiceError(_) => match e.code().unwrap_or_default() {
            "ThrottlingException"
            | "ProvisionedThroughputExceededException"
            | "LimitExceededException" => EngineError::Throttled,
            "InvalidParameterException" if message.to_ascii_lowercase().contains("face") => {
                EngineError::NoFace
            }
            "InvalidParameterException" | "InvalidImageFormatException" => {
                EngineError::InvalidImage(format!(
                    "the face service could not use the image: {message}"
                ))
            }
            "ImageTooLargeException" => EngineError::ImageTooLarge(message),
            "AccessDeniedException"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "ExpiredTokenException"
            | "MissingAuthenticationTokenException" => {
                EngineError::AccessDenied(DisplayErrorContext(&e).to_string())
            }
            "InternalServerError" | "ServiceUnavailableException" => {
                EngineError::Unavailable(DisplayErrorContext(&e).to_string())
            }
            _ => EngineError::internal(DisplayErrorContext(&e).to_string()),
        },
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            EngineError::Unavailable(DisplayErrorContext(&e).to_string())
        }
        _ => EngineError::internal(DisplayErrorContext(&e).to_string()),
    }
}
