//! Reading ONNX model files: the graph's nodes in order, their attributes, and the initial
//! tensors (the weights) as `f32`.
//!
//! The file is a protobuf `ModelProto`. Its wire format is decoded by `prost`, from the
//! messages below: the part of the ONNX schema (`onnx.proto`, field numbers as published) that
//! a feed-forward graph of stored weights uses. Fields not declared are skipped by the
//! decoder, as protobuf intends.

use std::{collections::HashMap, path::Path};

use prost::Message;

use super::weights::ModelError;
use crate::files::FileError;

#[derive(Clone, PartialEq, prost::Message)]
struct ModelProto {
    #[prost(int64, tag = "1")]
    ir_version: i64,
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ValueInfoProto {
    #[prost(string, tag = "1")]
    name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    output: Vec<String>,
    #[prost(string, tag = "4")]
    op_type: String,
    #[prost(string, tag = "7")]
    domain: String,
    #[prost(message, repeated, tag = "5")]
    attribute: Vec<AttributeProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct AttributeProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(float, tag = "2")]
    f: f32,
    #[prost(int64, tag = "3")]
    i: i64,
    #[prost(int64, repeated, tag = "8")]
    ints: Vec<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(float, repeated, tag = "4")]
    float_data: Vec<f32>,
    #[prost(int64, repeated, tag = "7")]
    int64_data: Vec<i64>,
    #[prost(string, tag = "8")]
    name: String,
    #[prost(bytes = "vec", tag = "9")]
    raw_data: Vec<u8>,
}

/// `TensorProto.DataType` values this reader converts.
const FLOAT: i32 = 1;
const INT64: i32 = 7;

/// One operation of the graph.
#[derive(Clone, Debug)]
pub struct Node {
    pub op: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    ints: HashMap<String, Vec<i64>>,
}

impl Node {
    /// An integer or integer-list attribute, if the node has it.
    pub fn ints(&self, name: &str) -> Option<&[i64]> {
        self.ints.get(name).map(Vec::as_slice)
    }
}

/// A stored tensor: its shape and its values, as `f32`.
#[derive(Clone, Debug)]
pub struct Initializer {
    pub dims: Vec<usize>,
    pub values: Vec<f32>,
}

/// A model's graph as the engine reads it.
pub struct Graph {
    /// Names the model in error messages.
    pub model: String,
    /// The nodes, in the file's order (ONNX requires it to be topological).
    pub nodes: Vec<Node>,
    pub initializers: HashMap<String, Initializer>,
    /// The graph's inputs that are not initializers, and its outputs.
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

impl Graph {
    /// Reads and decodes `path`.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(FileError::at("reading", path))?;
        let model = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        Self::decode(&model, &bytes)
    }

    /// Decodes a model file's bytes.
    pub fn decode(model: &str, bytes: &[u8]) -> Result<Self, ModelError> {
        let invalid = |reason: String| ModelError::Invalid {
            model: model.to_owned(),
            reason,
        };
        let proto =
            ModelProto::decode(bytes).map_err(|e| invalid(format!("not an ONNX model: {e}")))?;
        let graph = proto
            .graph
            .ok_or_else(|| invalid("the model has no graph".into()))?;
        let mut initializers = HashMap::new();
        for tensor in graph.initializer {
            let name = tensor.name.clone();
            let values = tensor_values(&tensor).map_err(|r| invalid(format!("{name}: {r}")))?;
            let dims = tensor
                .dims
                .iter()
                .map(|&d| usize::try_from(d))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| invalid(format!("{name}: a negative dimension")))?;
            if dims.iter().product::<usize>() != values.len() {
                return Err(invalid(format!(
                    "{name}: {} values for the shape {dims:?}",
                    values.len()
                )));
            }
            initializers.insert(name, Initializer { dims, values });
        }
        let nodes = graph
            .node
            .into_iter()
            .map(|node| {
                if !node.domain.is_empty() {
                    return Err(invalid(format!(
                        "operator {} of domain {:?} is not a standard one",
                        node.op_type, node.domain
                    )));
                }
                let ints = node
                    .attribute
                    .into_iter()
                    .map(|a| {
                        let values = if a.ints.is_empty() { vec![a.i] } else { a.ints };
                        (a.name, values)
                    })
                    .collect();
                Ok(Node {
                    op: node.op_type,
                    inputs: node.input,
                    outputs: node.output,
                    ints,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let inputs = graph
            .input
            .into_iter()
            .map(|v| v.name)
            .filter(|name| !initializers.contains_key(name))
            .collect();
        let outputs = graph.output.into_iter().map(|v| v.name).collect();
        Ok(Self {
            model: model.to_owned(),
            nodes,
            initializers,
            inputs,
            outputs,
        })
    }

    /// An error naming this model.
    pub fn invalid(&self, reason: impl Into<String>) -> ModelError {
        ModelError::Invalid {
            model: self.model.clone(),
            reason: reason.into(),
        }
    }
}

/// A tensor's values as `f32`, subnormal ones flushed to zero: see [`flush_subnormal`].
fn tensor_values(t: &TensorProto) -> Result<Vec<f32>, String> {
    let mut values = stored_values(t)?;
    values.iter_mut().for_each(flush_subnormal);
    Ok(values)
}

/// Sets a subnormal value (below 1.2e-38) to zero. An exported network can hold thousands
/// (the MobileFaceNet: 8,938 weights, most in its 14x14 stage), each a multiplication the
/// processor finishes in microcode: that stage's products ran a hundred times slower (75 ms
/// for the descriptor instead of under a millisecond a layer). Their contribution to any sum
/// is below a float's precision.
fn flush_subnormal(v: &mut f32) {
    if v.is_subnormal() {
        *v = 0.0;
    }
}

/// A tensor's stored values as `f32`: floats (raw little-endian bytes or the repeated field),
/// or 64-bit integers (shapes), converted.
fn stored_values(t: &TensorProto) -> Result<Vec<f32>, String> {
    match t.data_type {
        FLOAT if !t.raw_data.is_empty() => {
            if !t.raw_data.len().is_multiple_of(4) {
                return Err("raw float data is not a whole number of floats".into());
            }
            Ok(t.raw_data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        }
        FLOAT => Ok(t.float_data.clone()),
        INT64 if !t.raw_data.is_empty() => {
            if !t.raw_data.len().is_multiple_of(8) {
                return Err("raw int64 data is not a whole number of values".into());
            }
            Ok(t.raw_data
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect())
        }
        INT64 => Ok(t.int64_data.iter().map(|&v| v as f32).collect()),
        other => Err(format!("element type {other} is not supported")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model written by this file's own messages reads back; the decoder is prost's.
    #[test]
    fn a_written_model_reads_back() {
        let weights: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let model = ModelProto {
            ir_version: 7,
            graph: Some(GraphProto {
                node: vec![NodeProto {
                    input: vec!["x".into(), "w".into()],
                    output: vec!["y".into()],
                    op_type: "Conv".into(),
                    domain: String::new(),
                    attribute: vec![
                        AttributeProto {
                            name: "strides".into(),
                            f: 0.0,
                            i: 0,
                            ints: vec![2, 2],
                        },
                        AttributeProto {
                            name: "group".into(),
                            f: 0.0,
                            i: 4,
                            ints: vec![],
                        },
                    ],
                }],
                initializer: vec![TensorProto {
                    dims: vec![2],
                    data_type: FLOAT,
                    float_data: vec![],
                    int64_data: vec![],
                    name: "w".into(),
                    raw_data: weights,
                }],
                input: vec![
                    ValueInfoProto { name: "x".into() },
                    ValueInfoProto { name: "w".into() },
                ],
                output: vec![ValueInfoProto { name: "y".into() }],
            }),
        };
        let graph = Graph::decode("test", &model.encode_to_vec()).expect("decodes");
        assert_eq!(graph.inputs, ["x"]);
        assert_eq!(graph.outputs, ["y"]);
        let node = &graph.nodes[0];
        assert_eq!((node.op.as_str(), node.inputs.len()), ("Conv", 2));
        assert_eq!(node.ints("strides"), Some(&[2, 2][..]));
        assert_eq!(node.ints("group"), Some(&[4][..]));
        assert_eq!(graph.initializers["w"].values, [1.5, -2.0]);
    }

    #[test]
    fn subnormal_weights_are_flushed_to_zero() {
        let tiny = f32::MIN_POSITIVE / 4.0;
        let tensor = TensorProto {
            dims: vec![3],
            data_type: FLOAT,
            float_data: vec![tiny, -tiny, f32::MIN_POSITIVE],
            int64_data: vec![],
            name: "w".into(),
            raw_data: vec![],
        };
        assert_eq!(
            tensor_values(&tensor).unwrap(),
            [0.0, 0.0, f32::MIN_POSITIVE]
        );
    }

    #[test]
    fn damaged_files_are_refused_with_the_model_named() {
        let err = Graph::decode("fr_feature.onnx", &[0xff, 0xff, 0xff]).err();
        let message = err.expect("refused").to_string();
        assert!(
            message.starts_with("fr_feature.onnx: not an ONNX model"),
            "{message}"
        );
        assert!(Graph::decode("empty", &[]).is_err(), "no graph");
    }
}
