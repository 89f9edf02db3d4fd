"""The MobileNet transfer model and the preprocessing contract shared by Python and the browser.

Preprocessing (the browser does exactly the same, reading these facts from the model metadata):
1. decode to RGB 0-255 (EXIF orientation applied);
2. centre-crop to the model's aspect (width / height);
3. while the crop is at least twice the model input in both sides, halve it with a 2x2 average (`avg_pool`, VALID):
   plain bilinear resizing aliases badly when it shrinks a photo many times;
4. bilinear resize to (height, width) with half-pixel centres (`tf.image.resize`, TF.js `resizeBilinear(..., true)`).
Scaling to MobileNet's [-1, 1] happens inside the model (a Rescaling layer): the model takes raw 0-255 RGB.

Weights are stored as float16 (`weights.npz`, keyed by variable path): the Keras model built from them computes what
the float16-quantized TF.js export computes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import SkinLesionError
from .classes import CODES

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402  (after the log level, so TF stays quiet)
import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")  # retracing notes and SavedModel chatter

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.npz"
# Pillow refuses images over ~179 megapixels (decompression-bomb guard); the site downscales huge photos itself.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS
OOD_FEATURES = ("frozen", "pooled")  # ModelConfig.ood_features


class Backbone(NamedTuple):
    build: Callable[..., keras.Model]  # the Keras application
    name: str  # as the report and the model card name it


BACKBONES = {"mobilenet": Backbone(keras.applications.MobileNet, "MobileNet v1"),  # ModelConfig.backbone -> it
             "mobilenet_v2": Backbone(keras.applications.MobileNetV2, "MobileNetV2")}


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines the network and its input; saved next to the weights."""

    backbone: str = "mobilenet"  # a key of BACKBONES: MobileNet v1 or MobileNetV2
    alpha: float = 1.0
    # HAM10000's photos are 200 x 150 (4:3): nothing is squashed or cropped away from them. A larger input upsamples
    # them: 225 x 300 beat this size by 1.7 and 0.2 points of val BA at two starts (u1, u1s1), at twice the retrain time
    height: int = 150
    width: int = 200
    # Backbone layers up to here stay frozen, those above are fine-tuned. In MobileNetV2 a cut must lie between
    # residual blocks (e.g. "block_5_add"): nothing above it may read a tensor from below it.
    cut_layer: str = "conv_pw_4_relu"
    dropout: float = 0.25
    temperature: float = 1.0  # logits are divided by it before the softmax (calibration)
    ood_components: int = 64  # principal axes of the training features kept for the out-of-distribution score
    # The features that score reads: "frozen", the pooled ImageNet features at the cut (never trained), or "pooled",
    # the fine-tuned ones the classifier reads (models before e8). Fine-tuning pulls any photo towards some lesion
    # class: e8's fine-tuned features flagged 9% of non-skin photos as unlike the training images (bench/README.md)
    ood_features: str = "frozen"
    # > 0: Shades-of-Grey colour constancy with this Minkowski power (6 is the usual choice) as the model's first
    # layer, so that a photo's white balance and exposure (a gain per colour channel) cancel out; 0 = off
    color_constancy: int = 0

    def preprocessing(self) -> dict:
        """The preprocessing contract, as written into the metadata the browser reads."""
        return {"height": self.height, "width": self.width, "channels": 3, "value_range": [0, 255],
                "crop": "center", "halve_while_at_least": 2, "resize": "bilinear", "half_pixel_centers": True}

    @classmethod
    def from_settings(cls, settings: dict) -> "ModelConfig":
        """The network a training config asks for (`TrainConfig.network`); the temperature is fit, never set."""
        settable = sorted({f.name for f in fields(cls)} - {"temperature"})
        unknown = sorted(set(settings) - set(settable))
        if unknown:
            raise SkinLesionError(f"unknown network setting(s) {', '.join(unknown)}; valid: {', '.join(settable)}")
        if settings.get("ood_features", "frozen") not in OOD_FEATURES:
            raise SkinLesionError(f"ood_features must be one of {', '.join(OOD_FEATURES)}")
        if settings.get("backbone", "mobilenet") not in BACKBONES:
            raise SkinLesionError(f"backbone must be one of {', '.join(BACKBONES)}")
        power = settings.get("color_constancy", 0)
        if not isinstance(power, int) or isinstance(power, bool) or power < 0:
            raise SkinLesionError("color_constancy must be a whole number: a Minkowski power such as 6, or 0 (off)")
        return cls(**settings)

    def backbone_description(self) -> str:
        """E.g. "MobileNet v1 alpha 1.0", as the report and the model card name the network."""
        return f"{BACKBONES[self.backbone].name} alpha {self.alpha}"

    def save(self, folder: Path) -> None:
        (folder / CONFIG_NAME).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> "ModelConfig":
        path = folder / CONFIG_NAME
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise SkinLesionError(f"no trained model in {folder} ({CONFIG_NAME} is missing); "
                                  f"train one with `python build.py --retrain --data DIR`") from None
        known = {f.name for f in fields(cls)}
        raw.setdefault("ood_features", "pooled")  # written before the setting existed, when that was the only way
        return cls(**{k: v for k, v in raw.items() if k in known})


def read_image(path: Path) -> np.ndarray:
    """Decode an image file to uint8 RGB (h, w, 3), EXIF orientation applied; SkinLesionError if unreadable."""
    try:
        with Image.open(path) as image:
            image.seek(0)  # first frame of an animation
            image = ImageOps.exif_transpose(image)
            if image.mode in ("RGBA", "LA", "P", "PA"):
                # composite transparency on white, as the page shows it
                image = image.convert("RGBA")
                background = Image.new("RGBA", image.size, (255, 255, 255, 255))
                image = Image.alpha_composite(background, image)
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise SkinLesionError(f"{path}: not a readable image ({err})") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise SkinLesionError(f"{path}: corrupt or truncated image ({err})") from None


def center_crop_box(width: int, height: int, model_width: int, model_height: int) -> tuple[int, int, int, int]:
    """(left, top, crop_width, crop_height) of the largest centred crop with the model's aspect.

    Integer arithmetic, rounding halves up, so that the browser (Math.floor) computes the very same box.
    """
    if width * model_height > height * model_width:  # wider than the model: keep the middle columns
        crop_w = (2 * height * model_width + model_height) // (2 * model_height)
        return (width - crop_w) // 2, 0, crop_w, height
    crop_h = (2 * width * model_height + model_width) // (2 * model_width)
    return 0, (height - crop_h) // 2, width, crop_h


def preprocess(pixels: np.ndarray, config: ModelConfig) -> np.ndarray:
    """uint8 RGB (h, w, 3) -> float32 (height, width, 3) in 0-255, by the contract in this module's docstring."""
    left, top, crop_w, crop_h = center_crop_box(pixels.shape[1], pixels.shape[0], config.width, config.height)
    x = tf.convert_to_tensor(pixels[top:top + crop_h, left:left + crop_w], tf.float32)[tf.newaxis]
    while x.shape[1] >= 2 * config.height and x.shape[2] >= 2 * config.width:
        x = tf.nn.avg_pool2d(x, 2, 2, "VALID")
    x = tf.image.resize(x, (config.height, config.width), method="bilinear")
    return x[0].numpy()


def load_inputs(paths: list[Path], config: ModelConfig) -> np.ndarray:
    """Read and preprocess image files into one float32 batch (n, height, width, 3)."""
    batch = np.empty((len(paths), config.height, config.width, 3), np.float32)
    for i, path in enumerate(paths):
        batch[i] = preprocess(read_image(path), config)
    return batch


@dataclass
class Network:
    """The classifier and its parts, sharing layers (training `top` on cached `frozen` features trains `full`).

    - `full`: raw image -> {"probabilities", "class_maps", "ood_score"}, what Python predicts with and what is
      exported: class_maps is the classifier applied at every position of the last feature map (a class activation
      map), ood_score a squared Mahalanobis distance of the pooled features to the training images
      (set by `set_ood_projection`; large for images unlike the training data; on the features
      `config.ood_features` names);
    - `prepare`: raw image -> what the backbone reads (colour constancy if `config.color_constancy`, then MobileNet's
      [-1, 1]); `frozen`: that -> features at `config.cut_layer` (never trained);
    - `top`: those features -> probabilities (what fine-tuning fits);
    - `pool`: those features -> pooled features, and `head`: pooled features -> probabilities (what the first
      training phase fits, on pooled features computed once);
    - `embed`: raw image -> the features the out-of-distribution score reads (to fit its statistics);
    - `upper`: the backbone above the cut, features -> feature map (part of `top`; what fine-tuning unfreezes).
    """

    full: keras.Model
    frozen: keras.Model
    top: keras.Model
    upper: keras.Model
    pool: keras.Model
    head: keras.Model
    embed: keras.Model
    prepare: keras.Model
    config: ModelConfig

    def set_top_trainable(self, backbone: bool) -> None:
        """Head always trainable; the backbone above the cut (`upper`) only when `backbone`. BatchNorm stays frozen."""
        for layer in self.upper.layers:
            layer.trainable = backbone and not isinstance(layer, keras.layers.BatchNormalization)

    def set_ood_projection(self, mean: np.ndarray, components: np.ndarray) -> None:
        """ood_score(f) = |components.T @ (f - mean)|^2 for f = `embed`'s features; components (features, k) are PCA
        axes over sqrt(variance)."""
        layer = self.full.get_layer("explain").get_layer("ood_projection")
        layer.set_weights([components.astype(np.float32), (-mean @ components).astype(np.float32)])

    def save(self, folder: Path) -> None:
        """config.json + weights.npz (float16, keyed by variable path)."""
        folder.mkdir(parents=True, exist_ok=True)
        self.config.save(folder)
        np.savez_compressed(folder / WEIGHTS_NAME,
                            **{v.path: np.asarray(v.numpy(), np.float16) for v in self.full.weights})


@keras.saving.register_keras_serializable(package="skinlesion")
class ShadesOfGrey(keras.layers.Layer):
    """Colour constancy (Finlayson and Trezzi 2004), on raw 0-255 RGB: the light is estimated as each channel's
    Minkowski `power`-mean over the image, and each channel is scaled so that this mean becomes `level` of the full
    range. A gain per channel (white balance, exposure) then cancels out, up to pixels clipped at 255."""

    level = 0.7  # HAM10000 photos come out about as bright as they went in (mean 0.66 vs 0.63), 0.02% clipped

    def __init__(self, power: int = 6, **kwargs):
        super().__init__(**kwargs)
        self.power = power

    def call(self, x):
        ops = keras.ops
        x = ops.maximum(x, 0.0)
        light = ops.power(ops.mean(ops.power(x / 255.0, self.power), axis=(1, 2), keepdims=True), 1 / self.power)
        return ops.minimum(x * (self.level / ops.maximum(light, 1e-3)), 255.0)

    def get_config(self) -> dict:
        return super().get_config() | {"power": self.power}


class SquaredNorm(keras.layers.Layer):
    """Sum of squares over the last axis, keeping it (one number per image)."""

    def call(self, x):
        return keras.ops.sum(keras.ops.square(x), axis=-1, keepdims=True)


def _backbone(config: ModelConfig, weights: str | None) -> keras.Model:
    try:
        return BACKBONES[config.backbone].build(input_shape=(config.height, config.width, 3), alpha=config.alpha,
                                                include_top=False, weights=weights)
    except Exception as err:  # Keras raises a bare Exception when the download fails (offline)
        if not isinstance(err, (OSError, ValueError)) and "URL fetch failure" not in str(err):
            raise
        raise SkinLesionError(f"cannot load MobileNet weights ({err}); offline, point KERAS_HOME at a Keras home "
                              f"holding models/mobilenet_*no_top.h5 (e.g. ../shared/weights/keras) or pass "
                              f"--weights FILE.h5") from None


def build_network(config: ModelConfig, weights: str | None = "imagenet") -> Network:
    """MobileNet (v1 or V2) cut before its classifier, then global pooling, Dropout, Dense(7) and a temperature
    softmax.

    `weights`: "imagenet" (through KERAS_HOME or a download), a no-top .h5 path, or None (random; for loading).
    """
    base = _backbone(config, weights)
    if config.cut_layer not in {layer.name for layer in base.layers}:
        raise SkinLesionError(f"cut_layer {config.cut_layer!r} is not a layer of {config.backbone}; "
                              f"e.g. conv_pw_4_relu (mobilenet) or block_5_add (mobilenet_v2)")
    cut = base.get_layer(config.cut_layer).output
    frozen = keras.Model(base.input, cut, name="frozen_base")
    frozen.trainable = False
    try:
        upper = keras.Model(cut, base.output, name="upper_base")
    except ValueError:  # a layer above the cut reads a tensor from below it (inside a residual block)
        raise SkinLesionError(f"cut_layer {config.cut_layer!r} lies inside a residual block of {config.backbone}; "
                              f"cut at a block's output (e.g. block_5_add)") from None

    features = keras.Input(cut.shape[1:], name="features")
    feature_map = upper(features)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(feature_map)
    pool = keras.Model(features, pooled, name="pool_features")
    classifier = keras.layers.Dense(len(CODES), name="logits")
    head_layers = [keras.layers.Dropout(config.dropout, name="dropout"), classifier,
                   keras.layers.Rescaling(1.0 / config.temperature, name="temperature"),
                   keras.layers.Softmax(name="probabilities")]
    pooled_input = keras.Input(pooled.shape[1:], name="pooled")
    probabilities, head_probabilities = pooled, pooled_input
    for layer in head_layers:
        probabilities, head_probabilities = layer(probabilities), layer(head_probabilities)
    top = keras.Model(features, probabilities, name="top")
    head = keras.Model(pooled_input, head_probabilities, name="head")
    # Inference-only outputs, on the same layers. Pooling and the classifier are linear, so the mean of class_maps
    # over positions is exactly the logits: the map shows where the evidence for each class lies.
    class_maps = classifier(feature_map)
    ood_features = pooled if config.ood_features == "pooled" else \
        keras.layers.GlobalAveragePooling2D(name="ood_pool")(features)
    ood_input = keras.Model(features, ood_features, name="ood_features")
    ood_projection = keras.layers.Dense(config.ood_components, name="ood_projection", trainable=False)(ood_features)
    explain = keras.Model(features, {"probabilities": probabilities, "class_maps": class_maps,
                                     "ood_score": SquaredNorm(name="ood_score")(ood_projection)}, name="explain")

    image = keras.Input((config.height, config.width, 3), name="image")  # raw 0-255 RGB
    balanced = ShadesOfGrey(config.color_constancy, name="color_constancy")(image) if config.color_constancy else image
    scaled = keras.layers.Rescaling(1 / 127.5, offset=-1, name="to_mobilenet_range")(balanced)
    prepare = keras.Model(image, scaled, name="prepare")
    # training=False keeps every BatchNorm in inference mode (the dequantized weights need it; see shared/weights)
    frozen_features = frozen(scaled, training=False)
    full = keras.Model(image, explain(frozen_features, training=False), name="skinlesion")
    embed = keras.Model(image, ood_input(frozen_features, training=False), name="embed")
    network = Network(full, frozen, top, upper, pool, head, embed, prepare, config)
    network.set_top_trainable(backbone=False)
    return network


def load_network(folder: Path) -> Network:
    """The trained network saved in `folder` by Network.save."""
    folder = Path(folder)
    config = ModelConfig.load(folder)
    network = build_network(config, weights=None)
    try:
        stored = np.load(folder / WEIGHTS_NAME)
    except FileNotFoundError:
        raise SkinLesionError(f"{folder / WEIGHTS_NAME} is missing; retrain with `python build.py --retrain`") from None
    missing = [v.path for v in network.full.weights if v.path not in stored]
    if missing:
        raise SkinLesionError(f"{folder / WEIGHTS_NAME} does not match {CONFIG_NAME}: no {missing[0]} "
                              f"({len(missing)} missing); retrain or restore both files together")
    for v in network.full.weights:
        v.assign(stored[v.path].astype(np.float32))
    return network


def predict_all(network: Network, inputs: np.ndarray, batch_size: int = 32) -> dict[str, np.ndarray]:
    """All outputs of the network (probabilities, class_maps, ood_score) for a preprocessed float32 batch."""
    return network.full.predict(inputs, batch_size=batch_size, verbose=0)


def predict(network: Network, inputs: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Class probabilities (n, 7) for a preprocessed float32 batch."""
    return predict_all(network, inputs, batch_size)["probabilities"]
