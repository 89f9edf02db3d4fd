"""The training recipe: hyper-parameters (`TrainConfig`, saved with every model) and the training augmentation.

Needs only Keras (no TensorFlow), so that `experiments/gpu_sweep.py` trains with the very same settings and
augmentation on another Keras backend.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import keras
import numpy as np
from PIL import Image, ImageDraw

from . import SkinLesionError
from .classes import CODES
from .views import CLASS_WEIGHTINGS

TRAIN_CONFIG_NAME = "train_config.json"
BLOCK_NUMBER = re.compile(r"^(?:conv_dw|conv_pw|block)_(\d+)[_/]")  # MobileNet v1's and V2's block layer names


class LayerRateDecay:
    """Optimizer mixin for layer-wise learning-rate decay: a variable of backbone block b learns at the rate times
    `layer_decay` ** (top - b), top being the highest block among the variables it trains (its number read from the
    variable's path, e.g. conv_pw_7/kernel); all others (the classifier, V2's Conv_1) at the full rate. The lower
    blocks hold more general features, so they move less (> 1 moves them more). 1 = one rate for all (the steps are
    then unchanged)."""

    def __init__(self, *args, layer_decay: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.layer_decay = layer_decay

    def build(self, variables: list) -> None:
        super().build(variables)
        blocks = [int(m.group(1)) if (m := BLOCK_NUMBER.match(v.path)) else None for v in variables]
        top = max((b for b in blocks if b is not None), default=0)
        self.rate_factors = [1.0 if b is None else self.layer_decay ** (top - b) for b in blocks]

    def update_step(self, gradient, variable, learning_rate):
        factor = self.rate_factors[self._get_variable_index(variable)]
        return super().update_step(gradient, variable, learning_rate if factor == 1.0 else learning_rate * factor)


class AnchorDecay:
    """Optimizer mixin for L2-SP (Li et al., 2018, "Explicit inductive bias for transfer learning"), decoupled as
    AdamW decouples weight decay: before each step, a variable of a backbone block moves `anchor_decay` times the
    learning rate of the way back to the value it had when the optimizer was built (the pretrained weights, at the
    start of fine-tuning); 0 = off. Plain weight decay would pull towards 0, away from what ImageNet taught. Keras
    builds the optimizer before BackupAndRestore loads a checkpoint, and saves the anchors with it, so a resumed
    run keeps the pretrained anchors."""

    def __init__(self, *args, anchor_decay: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.anchor_decay = anchor_decay

    def build(self, variables: list) -> None:
        super().build(variables)
        self.anchors = [None] * len(variables)
        if self.anchor_decay:
            for i, variable in enumerate(variables):
                if BLOCK_NUMBER.match(variable.path):
                    # The value as an initializer, not an assign after creation: Keras (TensorFlow) builds the
                    # optimizer while tracing fit()'s first step, where such an assign left the anchors at 0; an
                    # initializer is lifted out of the trace and reads the weights as they are before that step
                    self.anchors[i] = self.add_variable_from_reference(
                        variable, "anchor", initializer=lambda shape, dtype, start=variable: keras.ops.copy(start))

    def update_step(self, gradient, variable, learning_rate):
        anchor = self.anchors[self._get_variable_index(variable)]
        if anchor is not None:
            pull = keras.ops.cast(learning_rate, variable.dtype) * self.anchor_decay
            variable.assign(variable - pull * (variable - anchor))
        return super().update_step(gradient, variable, learning_rate)


class Adam(AnchorDecay, LayerRateDecay, keras.optimizers.Adam):
    pass


class SGD(AnchorDecay, LayerRateDecay, keras.optimizers.SGD):
    pass


class LogitAdjustedCrossentropy(keras.losses.Loss):
    """Cross-entropy with the logits shifted by `tau` * log(the training split's class shares) while training (Menon
    et al., 2021, "Long-tail learning via logit adjustment"): the shift favours the common classes, so fitting a rare
    class takes a larger logit of its own, and inference, which reads the unshifted probabilities, leans towards the
    rare classes; unlike class weights, their samples do not weigh more in the gradient. On the model's
    probabilities: p * share ** tau, renormalized (the softmax of the shifted logits)."""

    def __init__(self, class_shares: np.ndarray, tau: float, label_smoothing: float = 0.0,
                 name: str = "logit_adjusted_crossentropy"):
        super().__init__(name=name)
        self.factors = np.asarray(class_shares, np.float32) ** np.float32(tau)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        shifted = y_pred * self.factors
        shifted = shifted / keras.ops.sum(shifted, axis=-1, keepdims=True)
        return keras.losses.categorical_crossentropy(y_true, shifted, label_smoothing=self.label_smoothing)


def training_loss(config: TrainConfig, labels: np.ndarray) -> keras.losses.Loss:
    """The loss both phases fit: cross-entropy with the config's label smoothing, logit-adjusted by the class shares
    of `labels` (the training split's) when `config.logit_adjustment` > 0."""
    if not config.logit_adjustment:  # Keras's own loss, so that a retrain without it repeats the runs before it
        return keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    shares = np.bincount(labels, minlength=len(CODES)) / len(labels)
    return LogitAdjustedCrossentropy(np.maximum(shares, 1 / len(labels)), config.logit_adjustment,
                                     config.label_smoothing)


OPTIMIZERS = {"adam": Adam, "sgd": lambda rate, **options: SGD(rate, momentum=0.9, **options)}
SCHEDULE_MONITORS = {"val_balanced_accuracy": "max", "val_loss": "min"}  # what the LR plateau may watch, and its mode
LEARNING_RATE_SCHEDULES = ("plateau", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters; saved with the model so that a retrain can be repeated."""

    seed: int = 42  # the split, the augmented views, and (unless start_seed is set) the start
    # The network's initial weights, dropout and batch order only; None = seed. Several starts of one recipe then
    # share the split and the feature cache (two starts of one recipe moved test BA by 5 points: docs/experiments.md)
    start_seed: int | None = None
    views: int = 8  # cached views per training image: the original + (views - 1) augmented copies (1.65 GB each)
    batch_size: int = 32
    head_epochs: int = 30  # cheap: the head trains on pooled features computed once
    head_learning_rate: float = 1e-3
    fine_tune_epochs: int = 26
    fine_tune_learning_rate: float = 5e-5
    fine_tune_warmup_epochs: int = 0  # linear learning-rate warm-up at the start of fine-tuning; 0 = none
    fine_tune_optimizer: str = "adam"  # "adam", or "sgd" (momentum 0.9: steps scale with the gradient)
    # Layer-wise learning rates while fine-tuning: each backbone block learns at this factor of the rate of the block
    # above it (the top block and the classifier at fine_tune_learning_rate; `LayerRateDecay`). < 1 is the usual
    # decay (lower blocks slower; e35), > 1 the reverse; 1 = off
    fine_tune_layer_decay: float = 1.0
    # > 0: L2-SP while fine-tuning: every step pulls each backbone weight back towards its pretrained value by this
    # times the learning rate of the way (`AnchorDecay`; at 5e-5 over ~5,800 steps, 10 undoes ~95% of a deviation
    # made early and leaves one made late; e37 at 10 lost 2 points of val BA); 0 = off
    fine_tune_anchor_decay: float = 0.0
    # > 0: validate, checkpoint and keep an exponential moving average of the fine-tuned weights (this momentum per
    # step) instead of the weights themselves; it smooths the noisy steps of small-batch training
    fine_tune_ema: float = 0.998
    # What ReduceLROnPlateau and EarlyStopping watch while fine-tuning (the checkpoint keeps the best val BA either
    # way): "val_balanced_accuracy", or "val_loss", which every validation image moves, not a few of a small class
    fine_tune_monitor: str = "val_loss"
    # How the fine-tuning rate moves: "plateau" = ReduceLROnPlateau (halved after 2 epochs without progress on
    # fine_tune_monitor, down to 1e-5), or "cosine" = cosine decay from fine_tune_learning_rate to 0 at the last of
    # fine_tune_epochs (after the warm-up, if any), whatever validation does
    fine_tune_schedule: str = "plateau"
    # > 0: mixup of the cached features (Beta(mixup, mixup) weights; labels and class weights mixed alike) in both
    # phases, a regularizer for the few cached views; 0 = off
    mixup: float = 0.0
    # > 0: while fine-tuning, each cached feature map gets a block of this share of its height and width zeroed at a
    # random place (Cutout on the features at the cut), a new one every time it is drawn; 0 = off
    feature_cutout: float = 0.0
    # Share of the training split's lesions that training sees (drawn by seed, whole lesions); below 1 only to ask how
    # much more data would help (a learning curve). The feature cache still holds all of them; 1 = all
    train_share: float = 1.0
    class_weight_power: float = 0.3  # 1 = fully balanced loss, 0 = plain; between trades accuracy for balance
    # > 0: logit adjustment (`LogitAdjustedCrossentropy`) by this power of the class shares, in both phases: another
    # way to lean towards the rare classes than class_weight_power (1 aims at balanced accuracy); 0 = off
    logit_adjustment: float = 0.0
    # class code -> factor on its weight; the shipped recipe (e18) doubles melanoma's, so fewer melanomas are missed
    class_weight_boost: dict = field(default_factory=lambda: {"mel": 2.0})
    # How the class weights act: "loss" (each sample's loss times its class's weight) or "sampling" (images drawn
    # with replacement that much more often, unweighted; skinlesion/views.py)
    class_weighting: str = "loss"
    label_smoothing: float = 0.1
    early_stopping_patience: int = 6
    rotation: float = 0.5  # fraction of a full turn each way (0.5 = any angle)
    shift: float = 0.1
    # The largest zoom either way, a share of the side (0.1 = in or out by up to 10%); or [lower, upper] as Keras's
    # RandomZoom takes it, negative zooming in: [-0.4, 0.1] shows from 60% of each side (1.67x closer) to 110%
    zoom: float | list = 0.1
    color_jitter: float = 0.1  # brightness and contrast; 0 turns it off
    # > 0: the saturation multiplied by a random factor from 1 / (1 + this) to 1 + this, as dermatoscopes and their
    # white balance differ; 0 = off
    saturation_jitter: float = 0.0
    # > 0: the hue turned by up to this share of the colour circle either way (0.02 = about 7 degrees); 0 = off
    hue_jitter: float = 0.0
    # Share of the augmented views that are crops around the lesion (its box from the data's lesion boxes, with a
    # random margin, the frame's aspect kept), before the augmentation above: the lesion at other scales and centred,
    # as a user's crop on the page shows it. 0 = off (no boxes needed)
    lesion_crop: float = 0.0
    # Share of the augmented views with dark hair-like curves drawn over the photo first (`draw_hairs`), as body hair
    # lies over many lesions under a dermatoscope; 0 = off
    hair_occluders: float = 0.0
    # The network's settings (fields of ModelConfig, skinlesion/model.py; those left out take its defaults), e.g.
    # {"height": 150, "width": 200}. A retrain saves all of them here, so that this one file repeats it
    network: dict = field(default_factory=dict)

    @property
    def training_seed(self) -> int:
        """What seeds the network's start, dropout and batch order."""
        return self.seed if self.start_seed is None else self.start_seed

    def save(self, folder: Path) -> None:
        (folder / TRAIN_CONFIG_NAME).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise SkinLesionError(f"cannot read training config {path}: {err}") from None
        unknown = sorted(set(raw) - {f.name for f in fields(cls)})
        if unknown:
            raise SkinLesionError(f"{path}: unknown setting(s) {', '.join(unknown)}; "
                                  f"valid: {', '.join(f.name for f in fields(cls))}")
        for setting in fields(cls):  # numbers where the default is one (zoom, which may be a list, is checked below)
            value, default = raw.get(setting.name), setting.default
            if setting.name in raw and setting.name != "zoom" and type(default) in (int, float) and (
                    isinstance(value, bool) or not isinstance(value, (int, float))
                    or (type(default) is int and not isinstance(value, int))):
                kind = "a whole number" if type(default) is int else "a number"
                raise SkinLesionError(f"{path}: {setting.name} must be {kind}, not {value!r}")
        if raw.get("fine_tune_optimizer", "adam") not in OPTIMIZERS:
            raise SkinLesionError(f"{path}: fine_tune_optimizer must be one of {', '.join(OPTIMIZERS)}")
        if raw.get("fine_tune_monitor", cls.fine_tune_monitor) not in SCHEDULE_MONITORS:
            raise SkinLesionError(f"{path}: fine_tune_monitor must be one of {', '.join(SCHEDULE_MONITORS)}")
        if raw.get("fine_tune_schedule", cls.fine_tune_schedule) not in LEARNING_RATE_SCHEDULES:
            raise SkinLesionError(f"{path}: fine_tune_schedule must be one of {', '.join(LEARNING_RATE_SCHEDULES)}")
        if raw.get("class_weighting", cls.class_weighting) not in CLASS_WEIGHTINGS:
            raise SkinLesionError(f"{path}: class_weighting must be one of {', '.join(CLASS_WEIGHTINGS)}")
        if not 0 < raw.get("fine_tune_layer_decay", 1) <= 2:
            raise SkinLesionError(f"{path}: fine_tune_layer_decay must be a factor above 0 and at most 2 (1 = off)")
        if not 0 <= raw.get("fine_tune_anchor_decay", 0) <= 1000:
            raise SkinLesionError(f"{path}: fine_tune_anchor_decay must be a number from 0 (off) to 1000")
        if not 0 < raw.get("train_share", 1) <= 1:
            raise SkinLesionError(f"{path}: train_share must be a share above 0 and at most 1 (all)")
        if not 0 <= raw.get("logit_adjustment", 0) <= 2:
            raise SkinLesionError(f"{path}: logit_adjustment must be a number from 0 (off) to 2")
        if not 0 <= raw.get("fine_tune_ema", 0) < 1:
            raise SkinLesionError(f"{path}: fine_tune_ema must be at least 0 (off) and below 1")
        if not 0 <= raw.get("lesion_crop", 0) <= 1:
            raise SkinLesionError(f"{path}: lesion_crop must be a share between 0 (off) and 1")
        if not 0 <= raw.get("hair_occluders", 0) <= 1:
            raise SkinLesionError(f"{path}: hair_occluders must be a share between 0 (off) and 1")
        if not 0 <= raw.get("feature_cutout", 0) < 1:
            raise SkinLesionError(f"{path}: feature_cutout must be a share of the feature map's sides, from 0 (off) "
                                  f"to below 1")
        if raw.get("saturation_jitter", 0) < 0:
            raise SkinLesionError(f"{path}: saturation_jitter must be at least 0 (off)")
        if not 0 <= raw.get("hue_jitter", 0) <= 0.5:
            raise SkinLesionError(f"{path}: hue_jitter must be a share of the colour circle from 0 (off) to 0.5")
        zoom = raw.get("zoom", cls.zoom)
        bounds = zoom if isinstance(zoom, list) else [-zoom, zoom] if isinstance(zoom, (int, float)) else None
        if (bounds is None or len(bounds) != 2 or any(isinstance(b, bool) or not isinstance(b, (int, float))
                                                      for b in bounds) or not -1 < bounds[0] <= bounds[1]):
            raise SkinLesionError(f"{path}: zoom must be a share from 0 to below 1, or [lower, upper] with "
                                  f"-1 < lower <= upper (negative zooms in), e.g. [-0.4, 0.1]")
        if raw.get("mixup", 0) < 0:
            raise SkinLesionError(f"{path}: mixup must be at least 0 (off)")
        boost = raw.get("class_weight_boost", {})
        if not isinstance(boost, dict) or any(code not in CODES or not isinstance(factor, (int, float))
                                              or isinstance(factor, bool) or factor <= 0
                                              for code, factor in boost.items()):
            raise SkinLesionError(f"{path}: class_weight_boost must map class codes ({', '.join(CODES)}) to "
                                  f"positive factors, e.g. {{\"mel\": 2}}")
        if not isinstance(raw.get("network", {}), dict):
            raise SkinLesionError(f"{path}: network must be an object of network settings, e.g. {{\"height\": 150}}")
        if not isinstance(raw.get("start_seed"), (int, type(None))) or isinstance(raw.get("start_seed"), bool):
            raise SkinLesionError(f"{path}: start_seed must be a whole number, or null (= seed)")
        return cls(**raw)


def augmentation(config: TrainConfig) -> keras.Sequential:
    """The training-only augmentation, as Keras preprocessing layers on raw 0-255 images."""
    layers = [
        keras.layers.RandomRotation(config.rotation, fill_mode="nearest", seed=config.seed),
        keras.layers.RandomTranslation(config.shift, config.shift, fill_mode="nearest", seed=config.seed + 1),
        keras.layers.RandomZoom(tuple(config.zoom) if isinstance(config.zoom, list) else config.zoom,
                                fill_mode="nearest", seed=config.seed + 2),
        keras.layers.RandomFlip("horizontal_and_vertical", seed=config.seed + 3),
    ]
    if config.color_jitter:
        layers += [
            keras.layers.RandomBrightness(config.color_jitter, value_range=(0, 255), seed=config.seed + 4),
            keras.layers.RandomContrast(config.color_jitter, value_range=(0, 255), seed=config.seed + 5),
        ]
    if config.saturation_jitter:
        # Keras maps a factor f to the multiplier f / (1 - f): these bounds give 1 / (1 + s) and 1 + s
        s = config.saturation_jitter
        layers.append(keras.layers.RandomSaturation((1 / (2 + s), (1 + s) / (2 + s)), value_range=(0, 255),
                                                    seed=config.seed + 6))
    if config.hue_jitter:
        # Keras turns the hue by up to half its factor either way
        layers.append(keras.layers.RandomHue(2 * config.hue_jitter, value_range=(0, 255), seed=config.seed + 7))
    return keras.Sequential(layers, name="augmentation")


LESION_CROP_MARGIN = (1.25, 2.0)  # the crop's side over the lesion box's longer side (both as shares of the frame)
LESION_CROP_SMALLEST = 0.4  # no crop smaller than this share of the frame: the photos are only 200 x 150


def lesion_crop_boxes(lesions: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Crop boxes (n, 4) as (y1, x1, y2, x2) shares of the frame, for `tf.image.crop_and_resize`: for a random
    `share` of the rows, a square (in shares, so the frame's aspect) around the lesion box `lesions` (n, 4; same
    layout), its side the box's longer side times a random margin, moved inside the frame; the whole frame for the
    other rows and for rows without a box (NaN)."""
    n = len(lesions)
    crops = np.tile(np.array([0, 0, 1, 1], np.float32), (n, 1))
    chosen = (rng.random(n) < share) & ~np.isnan(lesions).any(axis=1)
    margin = rng.uniform(*LESION_CROP_MARGIN, n)
    box = lesions[chosen]
    side = np.clip(np.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]) * margin[chosen],
                   LESION_CROP_SMALLEST, 1.0)
    start = np.clip((box[:, :2] + box[:, 2:]) / 2 - side[:, None] / 2, 0.0, 1.0 - side[:, None])
    crops[chosen] = np.column_stack([start, start + side[:, None]])
    return crops


HAIRS_PER_PHOTO = (2, 12)  # how many hairs a photo with hairs gets (uniform, both included)
HAIR_LENGTH = (0.15, 0.7)  # shares of the frame's width
HAIR_BEND = 0.15  # the curve's middle off the straight line by up to this share of its length
HAIR_WIDTH_PX = (0.5, 1.5)  # at the input's 200 x 150 (HAM10000's photos were 600 x 450: hairs ~1.5-4.5 px there)
HAIR_DRAW_SCALE = 4  # drawn at 4x and averaged down: hairs thinner than a pixel, smooth edges


def draw_hairs(images: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of `images` (n, h, w, 3; raw 0-255) in which a random `share` of the photos have dark hair-like curves
    drawn over them, as body hair lies over a lesion under a dermatoscope: 2-12 gently bent curves each (quadratic
    Bezier), 0.5-1.5 px wide, anywhere in the frame and at any angle, in one near-black to dark-brown colour and
    opacity per photo."""
    out = np.array(images, np.float32)
    n, height, width = out.shape[:3]
    scale, t = HAIR_DRAW_SCALE, np.linspace(0.0, 1.0, 24)[:, None]
    for i in np.nonzero(rng.random(n) < share)[0]:
        mask = Image.new("L", (width * scale, height * scale))
        draw = ImageDraw.Draw(mask)
        for _ in range(rng.integers(HAIRS_PER_PHOTO[0], HAIRS_PER_PHOTO[1] + 1)):
            start = rng.uniform([0, 0], [width, height])
            angle, length = rng.uniform(0, 2 * np.pi), rng.uniform(*HAIR_LENGTH) * width
            direction = np.array([np.cos(angle), np.sin(angle)])
            end = start + length * direction
            across = np.array([-direction[1], direction[0]])
            bend = (start + end) / 2 + rng.uniform(-HAIR_BEND, HAIR_BEND) * length * across
            curve = ((1 - t) ** 2 * start + 2 * (1 - t) * t * bend + t ** 2 * end) * scale
            draw.line([tuple(p) for p in curve], fill=255, width=max(1, round(rng.uniform(*HAIR_WIDTH_PX) * scale)))
        coverage = np.asarray(mask.resize((width, height), Image.Resampling.BOX), np.float32) / 255
        colour = rng.uniform(10, 60) * np.array([1.0, 0.8, 0.65])  # near black to dark brown
        alpha = (coverage * rng.uniform(0.6, 1.0))[..., None]
        out[i] = out[i] * (1 - alpha) + colour * alpha
    return out
