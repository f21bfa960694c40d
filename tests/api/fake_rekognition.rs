//! A fake AWS Rekognition, speaking the real wire protocol (JSON 1.1 over HTTP: `POST /`,
//! `X-Amz-Target: RekognitionService.<Operation>`, errors as HTTP 400 with `__type`), so the
//! real AWS SDK is exercised end to end. It stands in for AWS, which cannot be reached here.
//!
//! It cannot recognise faces, so test images carry their scene in their colour: see
//! [`scene_image`]. Everything else (collections, face ids, thresholds, MaxFaces, deletion,
//! throttling, refused credentials) behaves as the service documents.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Router,
};
use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde_json::{json, Value};

/// What a test image shows, encoded in its colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scene {
    /// Who is in the picture (1-9).
    pub person: u8,
    /// How many faces (0-2).
    pub faces: u8,
    /// A quality problem Rekognition would report when indexing, by index into `QUALITY`.
    pub quality: u8,
}

const QUALITY: [&str; 4] = ["", "LOW_SHARPNESS", "SMALL_BOUNDING_BOX", "EXTREME_POSE"];

/// A 160x160 PNG whose solid colour encodes `scene`; survives the server's JPEG re-encoding.
pub fn scene_image(scene: Scene) -> Vec<u8> {
    let rgb = [
        scene.person * 25,
        scene.faces * 60 + 20,
        scene.quality * 50 + 20,
    ];
    let img = image::RgbImage::from_pixel(160, 160, image::Rgb(rgb));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// One person's ordinary photo.
pub fn face_of(person: u8) -> Vec<u8> {
    scene_image(Scene {
        person,
        faces: 1,
        quality: 0,
    })
}

fn read_scene(bytes: &[u8]) -> Option<Scene> {
    let img = image::load_from_memory(bytes).ok()?.to_rgb8();
    let p = img.get_pixel(img.width() / 2, img.height() / 2);
    let round =
        |v: u8, step: f32, offset: f32| ((f32::from(v) - offset) / step).round().max(0.0) as u8;
    Some(Scene {
        person: round(p[0], 25.0, 0.0),
        faces: round(p[1], 60.0, 20.0),
        quality: round(p[2], 50.0, 20.0),
    })
}

#[derive(Clone, Debug)]
struct StoredFace {
    face_id: String,
    external_image_id: String,
    person: u8,
}

#[derive(Default)]
struct FakeState {
    collections: HashMap<String, Vec<StoredFace>>,
    throttle_next: u32,
    reject_credentials: bool,
    calls: Vec<String>,
    unsigned_requests: u32,
}

#[derive(Clone)]
pub struct FakeRekognition {
    pub addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
}

impl FakeRekognition {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let app = Router::new()
            .route("/", post(handle))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, state }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next `n` calls answer `ThrottlingException`.
    pub fn throttle_next(&self, n: u32) {
        self.state.lock().unwrap().throttle_next = n;
    }

    /// Every call answers `UnrecognizedClientException`, as AWS does for bad keys.
    pub fn reject_credentials(&self, on: bool) {
        self.state.lock().unwrap().reject_credentials = on;
    }

    pub fn drop_collection(&self, id: &str) {
        self.state.lock().unwrap().collections.remove(id);
    }

    pub fn face_ids(&self, collection: &str) -> Vec<String> {
        let state = self.state.lock().unwrap();
        state
            .collections
            .get(collection)
            .map(|faces| faces.iter().map(|f| f.face_id.clone()).collect())
            .unwrap_or_default()
    }

    pub fn has_collection(&self, id: &str) -> bool {
        self.state.lock().unwrap().collections.contains_key(id)
    }

    /// Operations called so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn unsigned_requests(&self) -> u32 {
        self.state.lock().unwrap().unsigned_requests
    }
}

fn aws_error(kind: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [("content-type", "application/x-amz-json-1.1")],
        json!({"__type": kind, "Message": message}).to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/x-amz-json-1.1")],
        body.to_string(),
    )
        .into_response()
}

fn image_scene(image: &Value) -> Option<Scene> {
    let b64 = image.get("Bytes")?.as_str()?;
    read_scene(&STANDARD.decode(b64).ok()?)
}

fn face_json(face: &StoredFace) -> Value {
    json!({
        "FaceId": face.face_id,
        "ExternalImageId": face.external_image_id,
        "ImageId": uuid::Uuid::new_v4().to_string(),
        "Confidence": 99.9,
        "BoundingBox": {"Left": 0.3, "Top": 0.2, "Width": 0.4, "Height": 0.5},
    })
}

fn similarity(a: u8, b: u8) -> f64 {
    if a == b {
        99.5
    } else {
        12.0 + f64::from(a.abs_diff(b))
    }
}

async fn handle(
    State(state): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(op) = target.strip_prefix("RekognitionService.") else {
        return aws_error(
            "UnknownOperationException",
            "missing or foreign X-Amz-Target",
        );
    };
    if content_type != "application/x-amz-json-1.1" {
        return aws_error(
            "SerializationException",
            "expected application/x-amz-json-1.1",
        );
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return aws_error("SerializationException", "body is not JSON");
    };

    let mut s = state.lock().unwrap();
    s.calls.push(op.to_owned());
    let signed = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 Credential="));
    if !signed {
        s.unsigned_requests += 1;
        return aws_error(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        );
    }
    if s.reject_credentials {
        return aws_error(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        );
    }
    if s.throttle_next > 0 {
        s.throttle_next -= 1;
        return aws_error("ThrottlingException", "Rate exceeded");
    }
    let collection = req["CollectionId"].as_str().unwrap_or_default().to_owned();
    let missing = || {
        aws_error(
            "ResourceNotFoundException",
            &format!("The collection id: {collection} does not exist"),
        )
    };

    match op {
        "CreateCollection" => {
            if s.collections.contains_key(&collection) {
                return aws_error("ResourceAlreadyExistsException", "collection exists");
            }
            s.collections.insert(collection.clone(), Vec::new());
            ok(
                json!({"StatusCode": 200, "CollectionArn": format!("aws:rekognition:us-east-1:000000000000:collection/{collection}"), "FaceModelVersion": "7.0"}),
            )
        }
        "DescribeCollection" => match s.collections.get(&collection) {
            Some(faces) => ok(
                json!({"FaceCount": faces.len(), "FaceModelVersion": "7.0", "CollectionARN": "arn", "CreationTimestamp": 1_700_000_000.0}),
            ),
            None => missing(),
        },
        "IndexFaces" => {
            let scene = image_scene(&req["Image"]);
            let external = req["ExternalImageId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let max_faces = req["MaxFaces"].as_u64().unwrap_or(100) as u8;
            let Some(faces) = s.collections.get_mut(&collection) else {
                return missing();
            };
            let Some(scene) = scene.filter(|sc| sc.faces > 0) else {
                return ok(
                    json!({"FaceRecords": [], "UnindexedFaces": [], "FaceModelVersion": "7.0"}),
                );
            };
            if scene.quality > 0 {
                let reason = QUALITY[scene.quality as usize % QUALITY.len()];
                return ok(
                    json!({"FaceRecords": [], "UnindexedFaces": [{"Reasons": [reason], "FaceDetail": {"Confidence": 90.0}}]}),
                );
            }
            let indexed = scene.faces.min(max_faces);
            let mut records = Vec::new();
            for _ in 0..indexed {
                let face = StoredFace {
                    face_id: uuid::Uuid::new_v4().to_string(),
                    external_image_id: external.clone(),
                    person: scene.person,
                };
                records.push(json!({"Face": face_json(&face), "FaceDetail": {"Confidence": 99.9}}));
                faces.push(face);
            }
            let unindexed: Vec<Value> = (indexed..scene.faces)
                .map(|_| json!({"Reasons": ["EXCEEDS_MAX_FACES"], "FaceDetail": {"Confidence": 99.0}}))
                .collect();
            ok(
                json!({"FaceRecords": records, "UnindexedFaces": unindexed, "FaceModelVersion": "7.0"}),
            )
        }
        "SearchFacesByImage" => {
            let Some(faces) = s.collections.get(&collection) else {
                return missing();
            };
            let Some(scene) = image_scene(&req["Image"]).filter(|sc| sc.faces > 0) else {
                return aws_error(
                    "InvalidParameterException",
                    "There are no faces in the image. Should be at least 1.",
                );
            };
            let threshold = req["FaceMatchThreshold"].as_f64().unwrap_or(80.0);
            let max = req["MaxFaces"].as_u64().unwrap_or(4096) as usize;
            let mut matches: Vec<(f64, &StoredFace)> = faces
                .iter()
                .map(|f| (similarity(scene.person, f.person), f))
                .filter(|(sim, _)| *sim >= threshold)
                .collect();
            matches.sort_by(|a, b| b.0.total_cmp(&a.0));
            matches.truncate(max);
            let matches: Vec<Value> = matches
                .into_iter()
                .map(|(sim, f)| json!({"Similarity": sim, "Face": face_json(f)}))
                .collect();
            ok(json!({
                "SearchedFaceBoundingBox": {"Left": 0.3, "Top": 0.2, "Width": 0.4, "Height": 0.5},
                "SearchedFaceConfidence": 99.9,
                "FaceMatches": matches,
                "FaceModelVersion": "7.0",
            }))
        }
        "CompareFaces" => {
            let source = image_scene(&req["SourceImage"]).filter(|sc| sc.faces > 0);
            let target = image_scene(&req["TargetImage"]).filter(|sc| sc.faces > 0);
            let Some(source) = source else {
                return aws_error(
                    "InvalidParameterException",
                    "Request has invalid parameters: no face in the source image",
                );
            };
            let threshold = req["SimilarityThreshold"].as_f64().unwrap_or(80.0);
            let box_json = json!({"Left": 0.3, "Top": 0.2, "Width": 0.4, "Height": 0.5});
            let (matched, unmatched) = match target {
                Some(t) if similarity(source.person, t.person) >= threshold => (
                    vec![
                        json!({"Similarity": similarity(source.person, t.person), "Face": {"BoundingBox": box_json, "Confidence": 99.0}}),
                    ],
                    vec![],
                ),
                Some(_) => (
                    vec![],
                    vec![json!({"BoundingBox": box_json, "Confidence": 99.0})],
                ),
                None => (vec![], vec![]),
            };
            ok(
                json!({"SourceImageFace": {"BoundingBox": box_json, "Confidence": 99.0}, "FaceMatches": matched, "UnmatchedFaces": unmatched}),
            )
        }
        "DeleteFaces" => {
            let Some(faces) = s.collections.get_mut(&collection) else {
                return missing();
            };
            let ids: Vec<String> = req["FaceIds"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let before: Vec<String> = faces.iter().map(|f| f.face_id.clone()).collect();
            faces.retain(|f| !ids.contains(&f.face_id));
            let deleted: Vec<&String> = ids.iter().filter(|id| before.contains(id)).collect();
            ok(json!({"DeletedFaces": deleted}))
        }
        other => aws_error(
            "UnknownOperationException",
            &format!("{other} is not faked"),
        ),
    }
}
