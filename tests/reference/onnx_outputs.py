"""Runs an ONNX model on 112x112 RGB chips with ONNX Runtime, prepared as the MobileFaceNet
was trained: channels in BGR order, (v - 127) / 128, planes in NCHW order.

Usage: onnx_outputs.py MODEL CHIP...   (each CHIP a file of 112 * 112 * 3 bytes, row-major RGB)
Prints one JSON array of output numbers per chip, in order.
"""
import json
import sys

import numpy as np
import onnxruntime

model, chips = sys.argv[1], sys.argv[2:]
session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
for path in chips:
    rgb = np.fromfile(path, dtype=np.uint8).reshape(112, 112, 3)
    pixels = rgb[:, :, ::-1].astype(np.float32)
    x = ((pixels - 127.0) / 128.0).transpose(2, 0, 1)[np.newaxis]
    (out,) = session.run(None, {name: x})
    print(json.dumps([float(v) for v in out.reshape(-1)]))
