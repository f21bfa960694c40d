//! A convolutional network read from an ONNX graph and run by the engine's kernels: the
//! operators of a MobileNet-style descriptor (convolutions, dense or depthwise, PReLU,
//! residual additions, and a final flattening), each node's weights laid out for the kernels
//! at load, and every PReLU that follows a convolution applied by that convolution as it
//! writes its output.
//!
//! Any other operator, or an attribute the kernels do not implement (dilation, uneven padding
//! or strides, grouped convolutions other than depthwise), refuses the model at load.

use std::collections::HashMap;

use crate::{
    kernels::{
        subnormals,
        tensor::{self, Activation, Conv, Depthwise, Padding, Tensor},
    },
    models::{
        onnx::{Graph, Node},
        weights::ModelError,
    },
};

/// A convolution's weights, laid out for the kernels.
enum Weights {
    Dense(Conv),
    Depthwise(Depthwise),
}

enum Op {
    Conv {
        weights: Weights,
        stride: usize,
        pad: usize,
        /// A PReLU's slopes, applied by the convolution itself.
        prelu: Option<Vec<f32>>,
    },
    PRelu(Vec<f32>),
    Add(usize),
    Flatten,
}

/// One step: an operation on the value in slot `input`, writing slot `output`.
struct Step {
    op: Op,
    input: usize,
    output: usize,
}

pub struct ConvNet {
    steps: Vec<Step>,
    /// The last step that reads each slot: its value is dropped after it.
    last_read: Vec<usize>,
    input: usize,
    output: usize,
}

impl ConvNet {
    /// Lays out the graph's nodes as steps, fusing each PReLU into the convolution before it
    /// when nothing else reads that convolution's output.
    pub fn compile(graph: &Graph) -> Result<Self, ModelError> {
        let [input] = graph.inputs.as_slice() else {
            return Err(graph.invalid("the graph must have one input"));
        };
        let [output] = graph.outputs.as_slice() else {
            return Err(graph.invalid("the graph must have one output"));
        };
        let mut slot_of: HashMap<&str, usize> = HashMap::from([(input.as_str(), 0)]);
        let readers = count_readers(graph);
        let mut steps: Vec<Step> = Vec::new();
        for node in &graph.nodes {
            let [out] = node.outputs.as_slice() else {
                return Err(graph.invalid(format!("{} must have one output", node.op)));
            };
            let slot = |name: &str| {
                slot_of.get(name).copied().ok_or_else(|| {
                    graph.invalid(format!("{} reads {name:?} before it is written", node.op))
                })
            };
            let first = slot(node.inputs.first().map_or("", String::as_str))?;
            let op = match node.op.as_str() {
                "Conv" => conv(graph, node)?,
                "PRelu" => {
                    let slopes = per_channel(graph, node, 1)?;
                    if let Some(fused) = fusable(&mut steps, first, &readers, node) {
                        *fused = Some(slopes);
                        slot_of.insert(out, first);
                        continue;
                    }
                    Op::PRelu(slopes)
                }
                "Add" => Op::Add(slot(node.inputs.get(1).map_or("", String::as_str))?),
                "Reshape" | "Flatten" => Op::Flatten,
                other => return Err(graph.invalid(format!("operator {other} is not supported"))),
            };
            let output = slot_of.len();
            slot_of.insert(out, output);
            steps.push(Step {
                op,
                input: first,
                output,
            });
        }
        let output = *slot_of
            .get(output.as_str())
            .ok_or_else(|| graph.invalid("no node writes the graph's output"))?;
        let mut last_read = vec![usize::MAX; slot_of.len()];
        for (i, step) in steps.iter().enumerate() {
            last_read[step.input] = i;
            if let Op::Add(other) = step.op {
                last_read[other] = i;
            }
        }
        Ok(Self {
            steps,
            last_read,
            input: 0,
            output,
        })
    }

    /// Runs the network, subnormal numbers flushed to zero ([`subnormals`]); each value is
    /// dropped once no later step reads it.
    pub fn forward(&self, x: Tensor) -> Tensor {
        subnormals::flushed(|| self.run(x))
    }

    fn run(&self, x: Tensor) -> Tensor {
        let mut values: Vec<Option<Tensor>> = (0..self.last_read.len()).map(|_| None).collect();
        values[self.input] = Some(x);
        for (i, step) in self.steps.iter().enumerate() {
            // The input itself when no later step reads it (added to or activated in place),
            // else a copy.
            let read_twice = matches!(step.op, Op::Add(other) if other == step.input);
            let owned = |values: &mut [Option<Tensor>]| {
                let slot = &mut values[step.input];
                let last = self.last_read[step.input] == i && step.input != self.output;
                let last = last && !read_twice;
                let value = if last { slot.take() } else { slot.clone() };
                value.expect("compiled in order")
            };
            let y = match &step.op {
                Op::Conv {
                    weights,
                    stride,
                    pad,
                    prelu,
                } => {
                    let x = values[step.input].as_ref().expect("compiled in order");
                    let act = prelu
                        .as_deref()
                        .map_or(Activation::Linear, Activation::PRelu);
                    let padding = Padding::Explicit(*pad);
                    match weights {
                        Weights::Dense(conv) => tensor::conv2d(x, conv, *stride, padding, act),
                        Weights::Depthwise(dw) => {
                            tensor::depthwise_through(x, dw, *stride, padding, act)
                        }
                    }
                }
                Op::PRelu(slopes) => {
                    let mut y = owned(&mut values);
                    tensor::prelu(&mut y, slopes);
                    y
                }
                Op::Add(other) => {
                    let mut y = owned(&mut values);
                    tensor::add_assign(&mut y, values[*other].as_ref().expect("compiled"));
                    y
                }
                Op::Flatten => {
                    let x = owned(&mut values);
                    // NCHW flattening equals this HWC layout's only when there is one position.
                    assert_eq!((x.h, x.w), (1, 1), "flattening a map of several positions");
                    x
                }
            };
            for (slot, last) in self.last_read.iter().enumerate() {
                if *last == i && slot != self.output {
                    values[slot] = None;
                }
            }
            values[step.output] = Some(y);
        }
        values[self.output].take().expect("the output was written")
    }
}

/// How many nodes read each value, and the graph's output as one more reader.
fn count_readers(graph: &Graph) -> HashMap<&str, usize> {
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for name in graph.nodes.iter().flat_map(|n| &n.inputs) {
        *readers.entry(name.as_str()).or_default() += 1;
    }
    for name in &graph.outputs {
        *readers.entry(name.as_str()).or_default() += 1;
    }
    readers
}

/// The PReLU slot of the convolution that wrote slot `input`, when it was the last step, has
/// no activation yet, and its output is read by this PReLU alone.
fn fusable<'s>(
    steps: &'s mut [Step],
    input: usize,
    readers: &HashMap<&str, usize>,
    node: &Node,
) -> Option<&'s mut Option<Vec<f32>>> {
    let last = steps.last_mut()?;
    let only_reader = readers.get(node.inputs[0].as_str()) == Some(&1);
    match &mut last.op {
        Op::Conv { prelu, .. } if last.output == input && only_reader && prelu.is_none() => {
            Some(prelu)
        }
        _ => None,
    }
}

/// An initializer named by input `index` of `node`, as one value per channel (PReLU's slopes,
/// stored as `[C, 1, 1]`).
fn per_channel(graph: &Graph, node: &Node, index: usize) -> Result<Vec<f32>, ModelError> {
    let name = node.inputs.get(index).map_or("", String::as_str);
    let init = graph
        .initializers
        .get(name)
        .ok_or_else(|| graph.invalid(format!("{} needs stored {name:?}", node.op)))?;
    if init.dims.iter().skip(1).any(|&d| d != 1) {
        return Err(graph.invalid(format!("{name}: not one value per channel")));
    }
    Ok(init.values.clone())
}

/// A convolution node: ONNX's weights `[cout][cin / group][kh][kw]` laid out as the kernels'
/// `[kh][kw][cin][cout]` (dense) or `[kh][kw][c]` (depthwise).
fn conv(graph: &Graph, node: &Node) -> Result<Op, ModelError> {
    let invalid = |reason: String| graph.invalid(format!("Conv: {reason}"));
    let w_name = node.inputs.get(1).map_or("", String::as_str);
    let w = graph
        .initializers
        .get(w_name)
        .ok_or_else(|| invalid(format!("weights {w_name:?} are not stored")))?;
    let &[cout, cin_g, kh, kw] = w.dims.as_slice() else {
        return Err(invalid(format!("weights of shape {:?}", w.dims)));
    };
    let bias = match node.inputs.get(2) {
        Some(name) => per_channel(graph, node, 2).map_err(|_| invalid(format!("bias {name}")))?,
        None => vec![0.0; cout],
    };
    if bias.len() != cout {
        return Err(invalid(format!("{} biases for {cout} outputs", bias.len())));
    }
    let uniform = |name: &str, default: i64| -> Result<usize, ModelError> {
        let values = node.ints(name).unwrap_or(&[]);
        let first = values.first().copied().unwrap_or(default);
        if values.iter().any(|&v| v != first) || first < 0 {
            return Err(invalid(format!("{name} {values:?} are not supported")));
        }
        Ok(first as usize)
    };
    let (stride, pad, dilation) = (
        uniform("strides", 1)?,
        uniform("pads", 0)?,
        uniform("dilations", 1)?,
    );
    let group = uniform("group", 1)?;
    if dilation != 1 || stride == 0 {
        return Err(invalid(format!("dilation {dilation}, stride {stride}")));
    }
    let weights = if group == 1 {
        let mut laid = vec![0.0; w.values.len()];
        for (o, filter) in w.values.chunks_exact(cin_g * kh * kw).enumerate() {
            for (i, plane) in filter.chunks_exact(kh * kw).enumerate() {
                for (t, v) in plane.iter().enumerate() {
                    laid[(t * cin_g + i) * cout + o] = *v;
                }
            }
        }
        Weights::Dense(Conv::new([kh, kw, cin_g, cout], laid, bias))
    } else if group == cout && cin_g == 1 {
        let mut laid = vec![0.0; w.values.len()];
        for (c, plane) in w.values.chunks_exact(kh * kw).enumerate() {
            for (t, v) in plane.iter().enumerate() {
                laid[t * cout + c] = *v;
            }
        }
        Weights::Depthwise(Depthwise {
            kh,
            kw,
            c: cout,
            weights: laid,
            bias,
        })
    } else {
        return Err(invalid(format!("group {group} of {cout} outputs")));
    };
    Ok(Op::Conv {
        weights,
        stride,
        pad,
        prelu: None,
    })
}
