//! Reading `multipart/form-data` bodies into named text and file fields, with every failure
//! turned into the API's JSON errors (413 when the body limit is hit, 400/415 otherwise).

use std::collections::HashMap;

use axum::extract::{multipart::MultipartRejection, Multipart};

use crate::{
    domain::{InvalidField, Similarity, UserId},
    error::ApiError,
};

/// Text fields are names, e-mails and numbers: anything longer is not one of ours.
const MAX_TEXT_BYTES: usize = 4096;

#[derive(Default)]
pub struct Form {
    text: HashMap<String, String>,
    files: HashMap<String, Vec<u8>>,
}

impl Form {
    /// Reads the whole body; fields named in `file_fields` are kept as bytes.
    pub async fn read(
        multipart: Result<Multipart, MultipartRejection>,
        file_fields: &[&'static str],
    ) -> Result<Self, ApiError> {
        let mut multipart = multipart.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest(
                    "Expected a multipart/form-data body (Content-Type: multipart/form-data)"
                        .into(),
                )
            }
        })?;
        let mut form = Form::default();
        loop {
            let field = match multipart.next_field().await {
                Ok(Some(field)) => field,
                Ok(None) => break,
                Err(e) => return Err(multipart_error(e)),
            };
            let Some(name) = field.name().map(str::to_owned) else {
                continue;
            };
            let is_file = file_fields.contains(&name.as_str());
            let bytes = field.bytes().await.map_err(multipart_error)?;
            if form.text.contains_key(&name) || form.files.contains_key(&name) {
                return Err(ApiError::validation(
                    field_name(&name, file_fields),
                    "the field is given more than once",
                ));
            }
            if is_file {
                form.files.insert(name, bytes.to_vec());
            } else {
                if bytes.len() > MAX_TEXT_BYTES {
                    // Unknown fields are ignored, but not read into memory without bound.
                    continue;
                }
                let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                    ApiError::validation(field_name(&name, file_fields), "must be UTF-8 text")
                })?;
                form.text.insert(name, text);
            }
        }
        Ok(form)
    }

    /// A required file field.
    pub fn file(&mut self, name: &'static str) -> Result<Vec<u8>, ApiError> {
        self.files
            .remove(name)
            .ok_or_else(|| ApiError::validation(name, "field required (an image file)"))
    }

    /// An optional text field; blank counts as absent, as HTML forms send it.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.text
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// An optional text field parsed into a domain type.
    pub fn parsed<T>(
        &self,
        name: &'static str,
        parse: impl Fn(&str) -> Result<T, InvalidField>,
    ) -> Result<Option<T>, ApiError> {
        self.text(name)
            .map(|raw| parse(raw).map_err(|e| ApiError::validation(name, e.0)))
            .transpose()
    }

    pub fn user_id(&self, name: &'static str) -> Result<Option<UserId>, ApiError> {
        self.parsed(name, UserId::parse)
    }

    pub fn similarity(&self, name: &'static str) -> Result<Option<Similarity>, ApiError> {
        self.parsed(name, |raw| {
            raw.trim()
                .parse::<f32>()
                .map_err(|_| InvalidField(format!("{name} must be a number from 0 to 100")))
                .and_then(Similarity::new)
        })
    }
}

/// Maps a caller-supplied field name to a static one for error messages.
fn field_name(name: &str, file_fields: &[&'static str]) -> &'static str {
    const KNOWN: &[&str] = &["user_id", "full_name", "email", "similarity_threshold"];
    file_fields
        .iter()
        .chain(KNOWN)
        .find(|known| **known == name)
        .copied()
        .unwrap_or("form")
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE || hit_body_limit(&e) {
        ApiError::PayloadTooLarge
    } else {
        ApiError::BadRequest(format!("Malformed multipart body: {}", e.body_text()))
    }
}

/// Whether the body limit middleware cut the stream (axum only recognises its own limit).
fn hit_body_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}
