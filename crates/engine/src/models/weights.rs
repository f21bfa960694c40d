//! Reading TensorFlow.js weight files: a JSON manifest naming each tensor, its shape, type and
//! quantisation, and binary shards holding the values back to back.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::files::{self, FileError};
use crate::kernels::tensor::{Conv, Depthwise, Separable};

#[derive(Deserialize)]
struct Group {
    paths: Vec<String>,
    weights: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    name: String,
    shape: Vec<usize>,
    dtype: String,
    quantization: Option<Quantization>,
}

#[derive(Deserialize)]
struct Quantization {
    dtype: String,
    #[serde(default)]
    scale: f32,
    #[serde(default)]
    min: f32,
}

/// Why a model's weights could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Fetch(#[from] super::FetchError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{} is not a weights manifest", path.display())]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{model}: {reason}")]
    Invalid { model: String, reason: String },
}

/// Every tensor of one model, dequantised to `f32`, by name.
pub struct Weights {
    model: String,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Weights {
    /// Loads `<dir>/<model>-weights_manifest.json` and its shards.
    pub fn load(dir: &Path, model: &str) -> Result<Self, ModelError> {
        let manifest_path = dir.join(format!("{model}-weights_manifest.json"));
        let text = std::fs::read_to_string(&manifest_path)
            .map_err(FileError::at("reading", &manifest_path))?;
        let groups: Vec<Group> =
            serde_json::from_str(&text).map_err(|source| ModelError::Manifest {
                path: manifest_path.clone(),
                source,
            })?;
        let invalid = |reason: String| ModelError::Invalid {
            model: model.to_owned(),
            reason,
        };
        let mut tensors = HashMap::new();
        for group in groups {
            let mut bytes = Vec::new();
            for shard in &group.paths {
                if shard.contains('/') || shard.contains("..") {
                    return Err(invalid(format!("unexpected shard path {shard:?}")));
                }
                let path = dir.join(shard);
                bytes.extend(files::read(&path)?);
            }
            let mut offset = 0usize;
            for entry in group.weights {
                let count: usize = entry.shape.iter().product();
                let (values, used) = decode(&entry, count, &bytes[offset.min(bytes.len())..])
                    .ok_or_else(|| {
                        invalid(format!("{} is truncated or of an unknown type", entry.name))
                    })?;
                offset += used;
                tensors.insert(entry.name, (entry.shape, values));
            }
            if offset != bytes.len() {
                return Err(invalid("weight data does not match its manifest".into()));
            }
        }
        Ok(Self {
            model: model.to_owned(),
            tensors,
        })
    }

    /// A tensor by name, checked against the expected shape.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        let invalid = |reason: String| ModelError::Invalid {
            model: self.model.clone(),
            reason,
        };
        let (actual, values) = self
            .tensors
            .remove(name)
            .ok_or_else(|| invalid(format!("missing tensor {name}")))?;
        if actual != shape {
            return Err(invalid(format!(
                "tensor {name} has shape {actual:?}, expected {shape:?}"
            )));
        }
        Ok(values)
    }

    /// A convolution `prefix/<filters>` + `prefix/<bias>`.
    pub fn conv(
        &mut self,
        filters: &str,
        bias: &str,
        [kh, kw, cin, cout]: [usize; 4],
    ) -> Result<Conv, ModelError> {
        Ok(Conv::new(
            [kh, kw, cin, cout],
            self.take(filters, &[kh, kw, cin, cout])?,
            self.take(bias, &[cout])?,
        ))
    }

    /// A depthwise separable convolution `prefix/depthwise_filter`, then
    /// `prefix/pointwise_filter` with `prefix/bias`.
    pub fn separable(
        &mut self,
        prefix: &str,
        cin: usize,
        cout: usize,
    ) -> Result<Separable, ModelError> {
        Ok(Separable {
            depthwise: self.depthwise3(&format!("{prefix}/depthwise_filter"), cin)?,
            pointwise: self.conv(
                &format!("{prefix}/pointwise_filter"),
                &format!("{prefix}/bias"),
                [1, 1, cin, cout],
            )?,
        })
    }

    /// A depthwise 3x3 filter (no bias of its own).
    pub fn depthwise3(&mut self, name: &str, c: usize) -> Result<Depthwise, ModelError> {
        Ok(Depthwise {
            kh: 3,
            kw: 3,
            c,
            weights: self.take(name, &[3, 3, c, 1])?,
            bias: vec![0.0; c],
        })
    }
}

fn decode(entry: &Entry, count: usize, bytes: &[u8]) -> Option<(Vec<f32>, usize)> {
    if let Some(q) = &entry.quantization {
        return match q.dtype.as_str() {
            "uint8" => {
                let raw = bytes.get(..count)?;
                Some((
                    raw.iter()
                        .map(|&b| f32::from(b) * q.scale + q.min)
                        .collect(),
                    count,
                ))
            }
            "uint16" => {
                let raw = bytes.get(..count * 2)?;
                let values = raw
                    .chunks_exact(2)
                    .map(|c| f32::from(u16::from_le_bytes([c[0], c[1]])) * q.scale + q.min)
                    .collect();
                Some((values, count * 2))
            }
            _ => None,
        };
    }
    let raw = bytes.get(..count * 4)?;
    let values = match entry.dtype.as_str() {
        "float32" => raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        "int32" => raw
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
            .collect(),
        _ => return None,
    };
    Some((values, count * 4))
}
