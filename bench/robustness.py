"""How the model's answers move when the photos look as if another camera had taken them.

    python bench/robustness.py [--model model] [--data ../shared/data/ham10000] [--split test] [--rounds 1000]

Each row changes every photo of the model's own lesion-grouped test split (`--split val` for what experiments may
read) in one way, by a fixed amount: colour (saturation, white balance, hue), light, sharpness or JPEG compression,
with Pillow, before the page's preprocessing. It prints the figures of the model in Python on the changed photos,
the change of balanced accuracy against the photos as taken with a paired-bootstrap 95% interval (resampling
images), and the share of photos whose top answer changed.

A stand-in for another device or period of the ISIC archive, which this repository does not have: real devices
differ in several ways at once, and in ways none of these rows capture (optics, polarisation, the mix of lesions).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter
from sklearn.metrics import balanced_accuracy_score

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from skinlesion.evaluate import metrics  # noqa: E402
from skinlesion.export import TFJS_DIR, read_metadata  # noqa: E402
from skinlesion.model import load_network, predict, preprocess, read_image  # noqa: E402
from skinlesion.pipeline import folder_frame  # noqa: E402


def white_balance(red: float, blue: float) -> Callable[[Image.Image], Image.Image]:
    """Red and blue channels scaled, green kept: a warmer or cooler white balance."""
    def change(image: Image.Image) -> Image.Image:
        pixels = np.asarray(image, np.float32) * np.array([red, 1.0, blue], np.float32)
        return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
    return change


def hue_turn(degrees: float) -> Callable[[Image.Image], Image.Image]:
    def change(image: Image.Image) -> Image.Image:
        hue, saturation, value = image.convert("HSV").split()
        turned = hue.point(lambda h: (h + round(degrees / 360 * 256)) % 256)
        return Image.merge("HSV", (turned, saturation, value)).convert("RGB")
    return change


def jpeg(quality: int) -> Callable[[Image.Image], Image.Image]:
    def change(image: Image.Image) -> Image.Image:
        from io import BytesIO
        buffer = BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        return Image.open(BytesIO(buffer.getvalue())).convert("RGB")
    return change


SHIFTS: dict[str, Callable[[Image.Image], Image.Image] | None] = {
    "as taken": None,
    "saturation x0.7": lambda image: ImageEnhance.Color(image).enhance(0.7),
    "saturation x1.3": lambda image: ImageEnhance.Color(image).enhance(1.3),
    "warmer (red x1.1, blue x0.9)": white_balance(1.1, 0.9),
    "cooler (red x0.9, blue x1.1)": white_balance(0.9, 1.1),
    "hue +10 degrees": hue_turn(10),
    "hue -10 degrees": hue_turn(-10),
    "darker (brightness x0.8)": lambda image: ImageEnhance.Brightness(image).enhance(0.8),
    "brighter (brightness x1.2)": lambda image: ImageEnhance.Brightness(image).enhance(1.2),
    "blurred (Gaussian, radius 1 px)": lambda image: image.filter(ImageFilter.GaussianBlur(1)),
    "JPEG quality 30": jpeg(30),
}


def paired_interval(labels: np.ndarray, base: np.ndarray, changed: np.ndarray, rounds: int,
                    seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of BA(changed) - BA(base), resampling images (the same draw for both)."""
    rng = np.random.default_rng(seed)
    deltas = []
    with warnings.catch_warnings():  # a resample may lack a class that some photo is still predicted as
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(rounds):
            pick = rng.integers(0, len(labels), len(labels))
            deltas.append(balanced_accuracy_score(labels[pick], changed[pick])
                          - balanced_accuracy_score(labels[pick], base[pick]))
    low, high = np.percentile(deltas, [2.5, 97.5])
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "model")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ham10000")
    parser.add_argument("--split", choices=("test", "val"), default="test")
    parser.add_argument("--rounds", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--limit", type=int, help="only N images of the split, drawn at random (a quick look)")
    args = parser.parse_args()

    frame, _ = folder_frame(args.model, args.data, only_split=args.split)
    frame = frame.sample(n=min(args.limit, len(frame)), random_state=0) if args.limit else frame
    labels = frame["label"].to_numpy()
    photos = [Image.fromarray(read_image(path)) for path in frame["path"]]
    network = load_network(args.model)
    mel_threshold = read_metadata(args.model / TFJS_DIR).get("thresholds", {}).get("mel")
    print(f"{args.model}, {args.split} split of its own lesion-grouped split: {len(labels)} images; each row changes "
          f"every photo one way before the page's preprocessing")
    print("change | accuracy | BA | BA change [95% interval] | mel sensitivity top-1 / at the alert | "
          "top answer changed")
    base, changed_ba, flipped = None, [], []
    for name, change in SHIFTS.items():
        inputs = np.stack([preprocess(np.asarray(change(photo) if change else photo), network.config)
                           for photo in photos])
        probabilities = predict(network, inputs)
        figures, predicted = metrics(probabilities, labels, mel_threshold), probabilities.argmax(1)
        if base is None:
            base = predicted
            delta = "-"
        else:
            low, high = paired_interval(labels, base, predicted, args.rounds)
            delta = (f"{figures['balanced_accuracy'] - balanced_accuracy_score(labels, base):+.3f} "
                     f"[{low:+.3f}, {high:+.3f}]")
            changed_ba.append(figures["balanced_accuracy"])
            flipped.append((predicted != base).mean())
        print(f"{name} | {figures['accuracy']:.3f} | {figures['balanced_accuracy']:.3f} | {delta} | "
              f"{figures['melanoma']['sensitivity']:.3f} / {figures['melanoma_at_threshold']['sensitivity']:.3f} | "
              f"{(predicted != base).mean():.1%}")
    print(f"mean over the {len(changed_ba)} changes: BA {np.mean(changed_ba):.3f}, top answer changed "
          f"{np.mean(flipped):.1%}")


if __name__ == "__main__":
    main()
