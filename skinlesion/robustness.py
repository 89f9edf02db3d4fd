"""How the model's answers move when the photos look as if another camera had taken them, or are framed closer.

Each change alters every photo one way by a fixed amount (colour, light, sharpness, compression; Pillow), before
the page's preprocessing. A stand-in for another device or period, which HAM10000 alone cannot give: real devices
differ in several ways at once, and in ways none of these capture (optics, polarisation, the mix of lesions).
They are made with Pillow, not with the Keras layers of the training augmentation (skinlesion/recipe.py), though a
recipe's colour jitter resembles some of them: a recipe that trains with a change will look robust to its likeness.
The framings (`FRAMINGS`) zoom in on the photo's centre, as the page's crop step does when a user zooms in to make
the lesion fill more of the frame; HAM10000 frames its lesions centred, with skin around them.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pandas as pd
from PIL import Image, ImageEnhance, ImageFilter

from .evaluate import BOOTSTRAP_RESAMPLED, balanced_accuracy, metrics, paired_changes
from .model import ModelConfig, Network, predict, preprocess, read_image
from .train import lesion_boxes_in_inputs

AS_TAKEN = "as taken"


def _white_balance(red: float, blue: float) -> Callable[[Image.Image], Image.Image]:
    """Red and blue scaled, green kept: a warmer or cooler white balance."""
    def change(image: Image.Image) -> Image.Image:
        pixels = np.asarray(image, np.float32) * np.array([red, 1.0, blue], np.float32)
        return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
    return change


def _hue_turn(degrees: float) -> Callable[[Image.Image], Image.Image]:
    def change(image: Image.Image) -> Image.Image:
        hue, saturation, value = image.convert("HSV").split()
        step = round(degrees / 360 * 256)  # Pillow's hue runs 0-255 around the circle
        return Image.merge("HSV", (hue.point(lambda h: (h + step) % 256), saturation, value)).convert("RGB")
    return change


def _jpeg(quality: int) -> Callable[[Image.Image], Image.Image]:
    def change(image: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        with Image.open(io.BytesIO(buffer.getvalue())) as compressed:
            return compressed.convert("RGB")
    return change


PHOTO_CHANGES: dict[str, Callable[[Image.Image], Image.Image]] = {
    "saturation x0.7": lambda image: ImageEnhance.Color(image).enhance(0.7),
    "saturation x1.3": lambda image: ImageEnhance.Color(image).enhance(1.3),
    "warmer (red x1.1, blue x0.9)": _white_balance(1.1, 0.9),
    "cooler (red x0.9, blue x1.1)": _white_balance(0.9, 1.1),
    "hue +10 degrees": _hue_turn(10),
    "hue -10 degrees": _hue_turn(-10),
    "darker (brightness x0.8)": lambda image: ImageEnhance.Brightness(image).enhance(0.8),
    "brighter (brightness x1.2)": lambda image: ImageEnhance.Brightness(image).enhance(1.2),
    "blurred (Gaussian, radius 1 px)": lambda image: image.filter(ImageFilter.GaussianBlur(1)),
    "JPEG quality 30": _jpeg(30),
}


def _centre_zoom(factor: float) -> Callable[[Image.Image], Image.Image]:
    """The centre 1 / factor of each side: the page's crop step zoomed in `factor` times (the aspect kept)."""
    def change(image: Image.Image) -> Image.Image:
        width, height = round(image.width / factor), round(image.height / factor)
        left, top = (image.width - width) // 2, (image.height - height) // 2
        return image.crop((left, top, left + width, top + height))
    return change


FRAMINGS: dict[str, Callable[[Image.Image], Image.Image]] = {
    f"zoomed in x{factor:g} on the centre": _centre_zoom(factor) for factor in (1.25, 1.5, 2)
}


def lesion_size(frame: pd.DataFrame, config: ModelConfig) -> dict | None:
    """How much of the network's input the lesions of `frame` (with the box columns of `with_lesion_boxes`) fill: the
    longer side of each lesion box as a share of the input's matching side, its median and quartiles over the photos
    with a box; None when none has one. For the training split, how closely the model learned lesions framed."""
    boxes = lesion_boxes_in_inputs(frame, config)
    shares = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    shares = shares[~np.isnan(shares)]
    if not len(shares):
        return None
    low, median, high = np.percentile(shares, [25, 50, 75])
    return {"images": int(len(shares)), "median": float(median), "quartiles": [float(low), float(high)]}


def _probabilities(network: Network, photos: list[Image.Image],
                   change: Callable[[Image.Image], Image.Image] | None) -> np.ndarray:
    inputs = np.stack([preprocess(np.asarray(change(photo) if change else photo), network.config) for photo in photos])
    return predict(network, inputs)


# The report's tables of changed photos: its key -> the changes, each table led by the photos as taken
CHANGE_TABLES: dict[str, dict[str, Callable[[Image.Image], Image.Image]]] = {
    "robustness": PHOTO_CHANGES, "framing": FRAMINGS}


def change_tables(network: Network, frame: pd.DataFrame, mel_threshold: float | None = None, rounds: int = 1000,
                  seed: int = 0) -> dict[str, list[dict]]:
    """For each table of `CHANGE_TABLES`, one row per change (the photos as taken first) for the images of `frame`
    (path, label, group: the lesion): accuracy, balanced accuracy and its change against the photos as taken with a
    paired-bootstrap 95% interval (`rounds` resamples of the lesions), melanoma sensitivity at the top answer and at
    `mel_threshold`, and the share of photos whose top answer changed. The photos are read, and classified as taken,
    once for all tables."""
    labels = frame["label"].to_numpy()
    lesions = frame["group"].to_numpy()
    photos = [Image.fromarray(read_image(path)) for path in frame["path"]]
    as_taken = _probabilities(network, photos, None)
    base = as_taken.argmax(1)
    base_balanced_accuracy = balanced_accuracy(labels, base)

    def row(name: str, change: Callable[[Image.Image], Image.Image] | None) -> dict:
        probabilities = _probabilities(network, photos, change) if change else as_taken
        figures, predicted = metrics(probabilities, labels, mel_threshold), probabilities.argmax(1)
        row = {"change": name, "accuracy": figures["accuracy"], "balanced_accuracy": figures["balanced_accuracy"],
               "balanced_accuracy_change": figures["balanced_accuracy"] - base_balanced_accuracy,
               # the photos as taken against themselves differ by 0 in every resample
               "balanced_accuracy_change_95": np.percentile(paired_changes(
                   labels, lesions, predicted, base, balanced_accuracy, rounds, seed), [2.5, 97.5]).tolist()
               if change else [0.0, 0.0],
               "melanoma_sensitivity": figures["melanoma"]["sensitivity"],
               "top_answer_changed": float((predicted != base).mean())}
        if mel_threshold is not None:
            row["melanoma_alert_sensitivity"] = figures["melanoma_at_threshold"]["sensitivity"]
        return row

    first = row(AS_TAKEN, None)
    return {table: [dict(first), *(row(name, change) for name, change in changes.items())]
            for table, changes in CHANGE_TABLES.items()}


def report_sections(tables: dict[str, list[dict]], images: int, training_lesion_size: dict | None) -> dict:
    """The report's sections (`CHANGE_TABLES`' keys) for `change_tables` of the `images` test photos; the framing's
    with how large the training photos' lesions are (`lesion_size`), which the page's crop step draws."""
    sections = {table: {"split": "test", "images": images, "bootstrap_resampled": BOOTSTRAP_RESAMPLED,
                        "rows": rows} for table, rows in tables.items()}
    sections["framing"]["training_lesion_size"] = training_lesion_size
    return sections
