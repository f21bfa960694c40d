//! The error side of the OpenAPI document, derived from the errors themselves so it cannot
//! drift: `ErrorBody.code` is an enum of every code the API answers, and every error response
//! carries one example per code it can answer (with its real status and sentence). A response
//! whose description names codes in backticks gets those; otherwise every code of its status.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde_json::{json, Value};
use utoipa::openapi::{
    example::ExampleBuilder,
    schema::{Object, Schema},
    OpenApi as OpenApiDoc, RefOr,
};

use super::error::{generic_error, ApiError};
use crate::{
    engine::QualityProblem,
    liveness::{Action, Refusal},
    service::ChallengeProblem,
    tokens::TokenProblem,
};

/// One answer the API can give: status, code and sentence.
struct Documented {
    status: StatusCode,
    code: String,
    detail: String,
    /// OAuth2's `error` field, for the answers of `/token`, `/revoke` and `/introspect`.
    oauth: Option<&'static str>,
}

/// Every error answer: one of each `ApiError`, the generic answers of the router, and the
/// OAuth2 errors.
fn catalogue() -> Vec<Documented> {
    let mut errors = vec![
        ApiError::NoFace,
        ApiError::MultipleFaces,
        ApiError::AmbiguousFaces,
        ApiError::NoMatch,
        ApiError::InvalidImage("The image data could not be decoded".into()),
        ApiError::UnsupportedImage,
        ApiError::ImageTooLarge(
            "The image is 20000x20000 pixels; at most 40000000 are accepted".into(),
        ),
        ApiError::PayloadTooLarge,
        ApiError::BodyTooSlow,
        ApiError::BadRequest("Expected a multipart/form-data body".into()),
        ApiError::validation("face_image", "the field is required"),
        ApiError::Forbidden("This action needs an admin token"),
        ApiError::UserNotFound,
        ApiError::AuthorizationUnknown,
        ApiError::FaceAlreadyEnrolled,
        ApiError::UserExists,
        ApiError::RateLimited {
            retry_after_secs: 30,
        },
        ApiError::AccountLocked {
            retry_after_secs: 30,
        },
        ApiError::UpstreamAuth,
        ApiError::Unavailable {
            retry_after_secs: 5,
        },
        ApiError::LivenessRequired,
        ApiError::LivenessUnavailable,
        ApiError::StorageFull("no space left on the device".into()),
        ApiError::internal("hidden cause"),
    ];
    errors.extend(
        [
            ChallengeProblem::Unknown,
            ChallengeProblem::Expired,
            ChallengeProblem::Used,
        ]
        .map(ApiError::ChallengeRefused),
    );
    errors.extend(
        [
            Refusal::FaceChanged { frame: 3 },
            Refusal::MotionMissing {
                seen: vec![Action::TurnRight],
            },
            Refusal::Flat { residual: 0.02 },
        ]
        .map(ApiError::NotLive),
    );
    errors.extend(
        [
            TokenProblem::Missing,
            TokenProblem::Invalid,
            TokenProblem::Expired,
            TokenProblem::Revoked,
        ]
        .map(ApiError::Unauthorized),
    );
    errors.extend(QualityProblem::ALL.map(|q| ApiError::PoorQuality {
        code: q.code(),
        detail: q.detail().into(),
    }));
    let mut all: Vec<Documented> = errors
        .iter()
        .map(|e| Documented {
            status: e.status(),
            code: e.code().into(),
            detail: e.to_string(),
            oauth: None,
        })
        .collect();
    for status in [
        StatusCode::NOT_FOUND,
        StatusCode::METHOD_NOT_ALLOWED,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    ] {
        let (code, detail) = generic_error(status);
        all.push(Documented {
            status,
            code: code.into(),
            detail: detail.into(),
            oauth: None,
        });
    }
    for (error, detail) in [
        ("invalid_request", "refresh_token is required"),
        (
            "unsupported_grant_type",
            "grant_type must be authorization_code or refresh_token",
        ),
        (
            "invalid_grant",
            "The refresh token is unknown, expired, already used or revoked",
        ),
    ] {
        all.push(Documented {
            status: StatusCode::BAD_REQUEST,
            code: error.to_ascii_uppercase(),
            detail: detail.into(),
            oauth: Some(error),
        });
    }
    all.push(Documented {
        status: StatusCode::UNAUTHORIZED,
        code: "INVALID_CLIENT".into(),
        detail: "client authentication failed".into(),
        oauth: Some("invalid_client"),
    });
    all
}

/// Every code, in order, once.
pub fn codes() -> Vec<String> {
    let set: BTreeSet<String> = catalogue().into_iter().map(|d| d.code).collect();
    set.into_iter().collect()
}

/// Codes named in backticks in a response description (`NO_MATCH`, or OAuth's
/// `invalid_grant`), among the known ones.
fn named_codes(description: &str, known: &[String]) -> Vec<String> {
    description
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_ascii_uppercase)
        .filter(|c| known.contains(c))
        .collect()
}

fn example_body(d: &Documented) -> Value {
    let request_id = "1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b";
    match d.oauth {
        Some(error) => json!({
            "error": error,
            "error_description": d.detail,
            "detail": d.detail,
            "code": d.code,
            "request_id": request_id,
        }),
        None => json!({ "detail": d.detail, "code": d.code, "request_id": request_id }),
    }
}

/// Fills in the error enum and examples of `doc`.
pub fn document(doc: &mut OpenApiDoc) {
    let catalogue = catalogue();
    let known = codes();
    if let Some(components) = doc.components.as_mut() {
        if let Some(RefOr::T(Schema::Object(body))) = components.schemas.get_mut("ErrorBody") {
            if let Some(RefOr::T(Schema::Object(code))) = body.properties.get_mut("code") {
                let mut with_enum: Object = code.clone();
                with_enum.enum_values = Some(known.iter().map(|c| json!(c)).collect());
                with_enum.example = None;
                *code = with_enum;
            }
        }
    }
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            for (status, response) in operation.responses.responses.iter_mut() {
                let (Ok(status), RefOr::T(response)) = (status.parse::<u16>(), response) else {
                    continue;
                };
                let named = named_codes(&response.description, &known);
                for content in response.content.values_mut() {
                    let is_error = matches!(&content.schema, Some(RefOr::Ref(r))
                        if r.ref_location.ends_with("/ErrorBody") || r.ref_location.ends_with("/OAuthError"));
                    if !is_error {
                        continue;
                    }
                    for d in catalogue.iter().filter(|d| {
                        d.status.as_u16() == status && (named.is_empty() || named.contains(&d.code))
                    }) {
                        let example = ExampleBuilder::new()
                            .summary(d.detail.clone())
                            .value(Some(example_body(d)))
                            .build();
                        content.examples.insert(d.code.clone(), RefOr::T(example));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backticked_codes_are_recognised_in_either_case() {
        let known = codes();
        assert_eq!(
            named_codes("`USER_EXISTS`: taken; `invalid_grant`, `nonsense`", &known),
            ["USER_EXISTS", "INVALID_GRANT"]
        );
        assert!(named_codes("no codes here", &known).is_empty());
    }
}
