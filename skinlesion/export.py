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


def inference_model(network: Network, tolerance: float = 1e-4) -> keras.Model:
    """A copy of `network.full` that computes the same with fewer, fusable ops: what gets exported.

    TF's graph optimizer folds an inference-mode BatchNorm into a Conv2D but not into a DepthwiseConv2D, and keeps
    MobileNet's explicit zero padding before its stride-2 blocks; in TF.js each left-over op is one more pass over
    a large activation. Here every BatchNorm is folded into the convolution before it (kernel scaled, bias added),
    so each convolution + bias + ReLU6 becomes one fused TF.js kernel, and the (0, 1) zero padding before a stride-2
    convolution becomes its "same" padding, which pads exactly so when the input's sides are even. The copy is
    checked against the original on random images (max difference of every output, relative to its largest value
    when that is over 1, under `tolerance`).
    """
    batchnorm_after = {layer.name.removesuffix("_bn"): layer for layer in _layers(network.full)
                       if isinstance(layer, keras.layers.BatchNormalization)}  # Keras MobileNet names them so
    convolutions = {layer.name: layer for layer in _layers(network.full)
                    if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D)
                    and layer.name in batchnorm_after}
    unpadded = set()  # ids of tensors whose zero padding was left out: their convolution pads "same" instead

    def call(layer, *args, **kwargs):
        x = args[0]
        if isinstance(layer, keras.layers.BatchNormalization) and layer.name.removesuffix("_bn") in convolutions:
            return x
        if (isinstance(layer, keras.layers.ZeroPadding2D) and layer.padding == ((0, 1), (0, 1))
                and all(side is not None and side % 2 == 0 for side in x.shape[1:3])):
            unpadded.add(id(x))
            return x
        if layer.name in convolutions:
            config = layer.get_config() | {"use_bias": True}
            if id(x) in unpadded:
                config["padding"] = "same"
            layer = type(layer).from_config(config)
        return layer(*args, **kwargs)

    model = keras.models.clone_model(network.full, call_function=call, recursive=True)
    originals = {layer.name: layer for layer in _layers(network.full)}
    for layer in _layers(model):
        if layer.name in convolutions:
            layer.set_weights(_folded_weights(originals[layer.name], batchnorm_after[layer.name]))
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
    log.info("folded %d BatchNorms into their convolutions and %d paddings (max relative output change %.1g)",
             len(convolutions), len(unpadded), worst)
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
