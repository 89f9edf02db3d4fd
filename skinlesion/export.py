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


def export_tfjs(network: Network, model_dir: Path, quantization: str = "float16",
                extra_metadata: dict | None = None) -> Path:
    """Export `network.full` to `model_dir/tfjs/` (replacing it) and write its metadata.json; returns that folder."""
    if quantization not in QUANTIZATIONS:
        raise SkinLesionError(f"unknown quantization {quantization!r}; valid: {', '.join(QUANTIZATIONS)}")
    out = Path(model_dir) / TFJS_DIR
    with tempfile.TemporaryDirectory() as tmp:
        saved_model = Path(tmp) / "saved_model"
        network.full.export(str(saved_model), verbose=False)
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

    metadata = {
        "name": "skinlesion-mobilenet",
        "model_url": "model.json",
        "format": "tfjs_graph_model",
        "quantization": quantization,
        "input": network.config.preprocessing(),
        "output": "probabilities",
        "classes": as_dicts(),
        "temperature": network.config.temperature,
        "version": _version(out),
        **(extra_metadata or {}),
    }
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
