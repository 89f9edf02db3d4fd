"""Why uint8 weights cost the shipped model ~10 points of balanced accuracy: the exported network's weights
quantized the way TF.js's converter does it (`tensorflowjs.quantization.quantize_weights`: one affine uint8 range per
tensor), for chosen layers' kernels, everything else as float16 (what ships), on the validation split.

    KERAS_HOME=$(realpath ../shared/weights/keras) .venv/bin/python experiments/uint8_layers.py \
        --data ../shared/data/ham10000 [--model model] [--layers 'conv_pw_.*' 'conv_dw_.*' conv_pw_8 ...]

Each --layers entry is a regular expression over the layer names of `export.inference_model` (BatchNorm folded into
the kernels, as exported); the kernels of the layers it matches are quantized together. Prints, per entry, validation
balanced accuracy and accuracy (biases stay float16), how many top answers change against float16, and the size of
uint8's rounding error beside what training changed: its rms over the rms of the kernel's move from the ImageNet
weights it started from (backbone layers only, folded the same way; for never-trained layers that move is only
float16's storage rounding). Inference only, in Python; `bench/quantization.py` measures whole variants in the
browser.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
from tensorflowjs.quantization import dequantize_weights, quantize_weights

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from skinlesion.evaluate import metrics  # noqa: E402
from skinlesion.export import _layers, inference_model  # noqa: E402
from skinlesion.model import build_network, keras, load_inputs, load_network  # noqa: E402
from skinlesion.pipeline import folder_frame  # noqa: E402

DEFAULT_LAYERS = [".*", "conv_pw_.*", "conv_dw_.*", *(f"conv_pw_{block}" for block in range(1, 14))]


def _weighted_layers(model) -> list:
    """The layers of `model` that hold weights, nested models opened (as `inference_model` copies them)."""
    return [layer for layer in _layers(model) if layer.weights and not isinstance(layer, keras.Model)]


def _as_uint8(kernel: np.ndarray) -> np.ndarray:
    quantized, meta = quantize_weights(kernel.astype(np.float32), np.uint8)
    return dequantize_weights(quantized, meta, np.float32)


def _rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(values))))


def _as_float16(weights: np.ndarray) -> np.ndarray:
    return weights.astype(np.float16).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=Path("model"))
    parser.add_argument("--layers", nargs="+", default=DEFAULT_LAYERS)
    args = parser.parse_args()

    frame, _ = folder_frame(args.model, args.data, only_split="val")
    labels = frame["label"].to_numpy()
    network = load_network(args.model)
    model = inference_model(network)
    inputs = load_inputs(list(frame["path"]), network.config)
    layers = _weighted_layers(model)
    stored = {layer.name: layer.get_weights() for layer in layers}
    backbone = {layer.name for part in (network.frozen, network.upper) for layer in part.layers}
    started = {layer.name: layer.get_weights()[0]
               for layer in _weighted_layers(inference_model(build_network(network.config, "imagenet")))
               if layer.name in backbone}

    def probabilities(pattern: str | None) -> tuple[np.ndarray, int, list[float]]:
        matched, ratios = 0, []
        for layer in layers:
            kernel, *rest = stored[layer.name]
            if pattern is not None and re.fullmatch(pattern, layer.name):
                matched += 1
                rounded = _as_uint8(kernel)
                if layer.name in started:
                    ratios.append(_rms(rounded - kernel) / _rms(kernel - started[layer.name]))
                kernel = rounded
            else:
                kernel = _as_float16(kernel)
            layer.set_weights([kernel, *(_as_float16(w) for w in rest)])
        # called directly: model.predict() on this graph aborted in TensorFlow here (a tensor_format.h check)
        out = [np.asarray(model(inputs[i:i + 64], training=False)["probabilities"]) for i in range(0, len(inputs), 64)]
        return np.concatenate(out), matched, ratios

    reference, _, _ = probabilities(None)
    base = metrics(reference, labels)
    print(f"validation split, {len(labels)} images; {args.model}")
    print("uint8 kernels | val BA | val accuracy | top answers changed | uint8 rounding / training's move (rms)")
    print(f"none (float16) | {base['balanced_accuracy']:.4f} | {base['accuracy']:.4f} | 0 | -")
    for pattern in args.layers:
        got, matched, ratios = probabilities(pattern)
        if not matched:
            print(f"{pattern} | no layer matches")
            continue
        m = metrics(got, labels)
        changed = int((got.argmax(1) != reference.argmax(1)).sum())
        span = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"
        print(f"{pattern} ({matched} layers) | {m['balanced_accuracy']:.4f} | {m['accuracy']:.4f} | {changed} | {span}")


if __name__ == "__main__":
    main()
