"""Convert the Keras network to a TF.js graph model and write the metadata the browser reads.

Writes `<model_dir>/tfjs/`: model.json + weight shards (from `tensorflowjs_converter`, SavedModel input, graph-model
output, weights quantized as asked) and metadata.json: the class list (from classes.py), the preprocessing contract
(from model.py), the calibration temperature and decision thresholds. The JS reads all of that; it hard-codes none.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np

from . import SkinLesionError, log
from .classes import as_dicts
from .model import Network

TFJS_DIR = "tfjs"
METADATA_NAME = "metadata.json"
QUANTIZATIONS = ("float32", "float16", "uint8")


def _converter() -> str:
    beside_python = Path(sys.executable).with_name("tensorflowjs_converter")
    found = str(beside_python) if beside_python.exists() else shutil.which("tensorflowjs_converter")
    if not found:
        raise SkinLesionError("tensorflowjs_converter not found; install the project (pip install -e .)")
    return found


def _version(folder: Path) -> str:
    """A short hash of the model files: changes whenever the model does (the service worker keys its cache on it)."""
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.name != METADATA_NAME:
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _layers(model: keras.Model):
    """Every layer of `model`, descending into nested models."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _layers(layer)


def _convolution_name(batchnorm: str) -> str:
    """The name of the convolution a Keras MobileNet BatchNorm follows: conv_pw_1_bn (v1), block_1_expand_BN,
    Conv_1_bn and bn_Conv1 (V2)."""
    return batchnorm.removeprefix("bn_").removesuffix("_bn").removesuffix("_BN")


def _folded_weights(conv: keras.layers.Layer, bn: keras.layers.BatchNormalization) -> list[np.ndarray]:
    """[kernel, bias] of `conv` with the inference-mode `bn` after it folded in."""
    gamma, beta, mean, variance = (w.astype(np.float64) for w in bn.get_weights())
    scale = gamma / np.sqrt(variance + bn.epsilon)
    kernel, *bias = (w.astype(np.float64) for w in conv.get_weights())
    bias = bias[0] if bias else np.zeros_like(mean)
    if isinstance(conv, keras.layers.DepthwiseConv2D):  # (kh, kw, channels, multiplier): channel-major outputs
        kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:  # (kh, kw, in, out)
        kernel = kernel * scale
    return [kernel.astype(np.float32), ((bias - mean) * scale + beta).astype(np.float32)]


class _PaddedDepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """A "valid" DepthwiseConv2D that zero-pads the bottom and right of its input itself, by `pad` = (rows, columns):
    one TensorFlow op (a depthwise convolution with explicit padding, which TF.js fuses with the bias and ReLU6 that
    follow) where a ZeroPadding2D and a convolution were two, the padding a pass over the whole activation."""

    def __init__(self, pad: tuple[int, int], **kwargs):
        super().__init__(**kwargs)
        self.pad = tuple(pad)

    def get_config(self) -> dict:
        return super().get_config() | {"pad": self.pad}

    def compute_output_shape(self, input_shape):
        batch, rows, columns, channels = input_shape
        return super().compute_output_shape((batch, rows + self.pad[0], columns + self.pad[1], channels))

    def call(self, x):
        import tensorflow as tf  # the export runs on TensorFlow (SavedModel); training never builds this layer

        padding = [[0, 0], [0, self.pad[0]], [0, self.pad[1]], [0, 0]]
        y = tf.nn.depthwise_conv2d(x, self.kernel, [1, *self.strides, 1], padding, dilations=self.dilation_rate)
        if self.use_bias:
            y = tf.nn.bias_add(y, self.bias)
        return y if self.activation is None else self.activation(y)


class _SqueezeRowsAndColumns(keras.layers.Layer):
    """(batch, 1, 1, channels) -> (batch, channels) as one Squeeze op: a Reshape of a batch of any size takes four
    ops in the graph (its shape is computed from the input's)."""

    def call(self, x):
        return keras.ops.squeeze(x, axis=(1, 2))


def inference_model(network: Network, tolerance: float = 1e-4, explicit_padding: bool = True) -> keras.Model:
    """A copy of `network.full` that computes the same with fewer, fusable ops: what gets exported.

    TF's graph optimizer folds an inference-mode BatchNorm into a Conv2D but not into a DepthwiseConv2D, and keeps
    MobileNet's explicit zero padding before its stride-2 blocks; in TF.js each left-over op is one more pass over
    a large activation. Here every BatchNorm is folded into the convolution before it (kernel scaled, bias added),
    so each convolution + bias + ReLU6 becomes one fused TF.js kernel, and the (0, 1) zero padding before a stride-2
    convolution moves into the convolution: "same" padding where both sides are even (it pads exactly so), else
    explicit padding of the even sides only (a stride-2 3x3 "valid" convolution never reads the padded row or
    column of an odd side). The classifier applied at every position of the feature map (the class activation map)
    becomes the 1x1 convolution it is: one kernel, where a Dense on a 4-D input is a matrix product wrapped in
    reshapes and shape arithmetic. Global average pooling becomes an average pool over the whole feature map: TF.js's
    WASM Mean transposes the whole activation first (its axes are not the innermost), AvgPool is an XNNPACK kernel
    that reads it as it is (0.07 ms instead of 0.47 here).

    `explicit_padding=False` keeps the ZeroPadding2D where one side is odd and the other even: TensorFlow 2.19's
    graph optimizer aborts the process on a depthwise convolution with explicit padding and a bias (its CPU fusion of
    the two), so a graph that native TensorFlow runs in a tf.function needs it. The TF.js converter is unharmed.

    The copy is checked against the original on random images (max difference of every output, relative to its
    largest value when that is over 1, under `tolerance`).
    """
    batchnorm_after = {_convolution_name(layer.name): layer for layer in _layers(network.full)
                       if isinstance(layer, keras.layers.BatchNormalization)}
    convolutions = {layer.name: layer for layer in _layers(network.full)
                    if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D)
                    and layer.name in batchnorm_after}
    padding_of = {}  # id of a tensor whose zero padding was left out -> (rows, columns) its convolution pads
    maps = {}  # name of a 1x1 convolution -> the Dense whose weights it takes

    def call(layer, *args, **kwargs):
        x = args[0]
        if isinstance(layer, keras.layers.BatchNormalization) and _convolution_name(layer.name) in convolutions:
            return x
        if (isinstance(layer, keras.layers.ZeroPadding2D) and layer.padding == ((0, 1), (0, 1))
                and all(side is not None for side in x.shape[1:3])):
            pad = tuple(int(side % 2 == 0) for side in x.shape[1:3])
            if explicit_padding or pad in ((1, 1), (0, 0)):  # (0, 0): both sides odd, nothing to pad
                padding_of[id(x)] = pad
                return x
        if isinstance(layer, keras.layers.GlobalAveragePooling2D) and all(x.shape[1:3]):
            pooled = keras.layers.AveragePooling2D(tuple(x.shape[1:3]), name=f"{layer.name}_window")(x)
            return _SqueezeRowsAndColumns(name=f"{layer.name}_flat")(pooled)
        if isinstance(layer, keras.layers.Dense) and len(x.shape) == 4:
            conv = keras.layers.Conv2D(layer.units, 1, name=f"{layer.name}_map")
            maps[conv.name] = layer.name
            return conv(x)
        if layer.name in convolutions:
            config = layer.get_config() | {"use_bias": True}
            pad = padding_of.get(id(x))
            if pad == (1, 1):
                layer = type(layer).from_config(config | {"padding": "same"})
            elif pad and pad != (0, 0):
                if not isinstance(layer, keras.layers.DepthwiseConv2D):
                    raise SkinLesionError(f"export.inference_model cannot move a zero padding into {layer.name}")
                layer = _PaddedDepthwiseConv2D(pad, **config)
            else:
                layer = type(layer).from_config(config)
        return layer(*args, **kwargs)

    model = keras.models.clone_model(network.full, call_function=call, recursive=True)
    originals = {layer.name: layer for layer in _layers(network.full)}
    for layer in _layers(model):
        if layer.name in convolutions:
            layer.set_weights(_folded_weights(originals[layer.name], batchnorm_after[layer.name]))
        elif layer.name in maps:
            kernel, bias = originals[maps[layer.name]].get_weights()
            layer.set_weights([kernel.reshape(1, 1, *kernel.shape), bias])
        elif layer.weights and not isinstance(layer, keras.Model):
            layer.set_weights(originals[layer.name].get_weights())

    images = np.random.default_rng(0).uniform(0, 255, (2, *network.full.input.shape[1:])).astype(np.float32)
    expected, got = ({k: np.asarray(v) for k, v in m(images, training=False).items()} for m in (network.full, model))
    worst = max(float(np.max(np.abs(expected[k] - got[k]) / np.maximum(1.0, np.max(np.abs(expected[k])))))
                for k in expected)  # relative to each output's scale (ood_score runs into the hundreds)
    if worst > tolerance:
        raise SkinLesionError(f"folding BatchNorm into the convolutions changed the model's outputs by up to "
                              f"{worst:.2g} (relative), a bug in export.inference_model for this network; "
                              f"no TF.js model was written")
    log.info("folded %d BatchNorms and %d zero paddings into their convolutions (max relative output change %.1g)",
             len(convolutions), len(padding_of), worst)
    return model


def export_tfjs(network: Network, model_dir: Path, quantization: str = "float16",
                extra_metadata: dict | None = None) -> Path:
    """Export `network.full` (as `inference_model`) to `model_dir/tfjs/`, replacing it, and write its metadata.json;
    returns that folder.

    `extra_metadata`: more entries for metadata.json (the pipeline's thresholds). Where one has the name of a fact the
    export writes itself (quantization, version, ...), the export's wins: so passing a model's old metadata keeps
    exactly what the export does not compute.
    """
    if quantization not in QUANTIZATIONS:
        raise SkinLesionError(f"unknown quantization {quantization!r}; valid: {', '.join(QUANTIZATIONS)}")
    out = Path(model_dir) / TFJS_DIR
    with tempfile.TemporaryDirectory() as tmp:
        saved_model = Path(tmp) / "saved_model"
        inference_model(network).export(str(saved_model), verbose=False)
        converted = Path(tmp) / "tfjs"
        command = [_converter(), "--input_format=tf_saved_model", "--output_format=tfjs_graph_model",
                   str(saved_model), str(converted)]
        if quantization != "float32":
            command.append(f"--quantize_{quantization}=*")
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise SkinLesionError(f"tensorflowjs_converter failed:\n{done.stderr[-2000:]}")
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(converted, out)

    own = {
        "name": "skinlesion-mobilenet",
        "model_url": "model.json",
        "format": "tfjs_graph_model",
        "quantization": quantization,
        "input": network.config.preprocessing(),
        "output": "probabilities",
        "classes": as_dicts(),
        "temperature": network.config.temperature,
        "version": _version(out),
    }
    metadata = {**own, **{k: v for k, v in (extra_metadata or {}).items() if k not in own}}
    (out / METADATA_NAME).write_text(json.dumps(metadata, indent=2) + "\n")
    log.info("exported TF.js model (%s) to %s: %d bytes", quantization, out, model_bytes(out))
    return out


def model_bytes(tfjs_dir: Path) -> int:
    """Bytes the browser downloads for the model: model.json plus its weight shards."""
    return sum(p.stat().st_size for p in Path(tfjs_dir).iterdir() if p.name != METADATA_NAME)


def read_metadata(tfjs_dir: Path) -> dict:
    path = Path(tfjs_dir) / METADATA_NAME
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SkinLesionError(f"{path} is missing: export the model first (`python build.py --retrain`)") from None
