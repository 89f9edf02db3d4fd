"""How often the page's input warnings fire: out-of-distribution ("not a dermatoscopic lesion photo") and uncertain.

    python bench/ood.py [--model model] [--data ../shared/data/ham10000] [--ood ../shared/data/out_of_distribution]

Prints, per image set, the share flagged as out of distribution (ood_score above the metadata's ood_threshold) and
the share flagged uncertain (calibrated top probability under uncertain_below). Both thresholds were chosen on the
validation split; nothing here was used to choose them. Sets: the lesion test split (these flags are false
alarms), the clinical (non-dermatoscopic) skin photos, the non-skin photos, and synthetic images made here
(reported apart: a warning that fires on noise proves little).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from skinlesion import ood  # noqa: E402
from skinlesion.data import load_metadata  # noqa: E402
from skinlesion.evaluate import CONFIDENT_ACCURACY  # noqa: E402
from skinlesion.export import TFJS_DIR, read_metadata  # noqa: E402
from skinlesion.model import load_network, predict_all, preprocess, read_image  # noqa: E402
from skinlesion.pipeline import SPLIT_NAME  # noqa: E402


def _synthetic(height: int, width: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None].repeat(height, 0).repeat(3, 2)
    return {
        "white": np.full((height, width, 3), 255, np.uint8),
        "black": np.zeros((height, width, 3), np.uint8),
        "grey": np.full((height, width, 3), 128, np.uint8),
        "noise": rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        "gradient": ramp.astype(np.uint8),
        "skin-tone flat": np.broadcast_to(np.array([224, 172, 150], np.uint8), (height, width, 3)).copy(),
    }


def _scores(network, pixel_arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    outputs = [predict_all(network, preprocess(p, network.config)[None]) for p in pixel_arrays]
    return {k: np.concatenate([o[k] for o in outputs]) for k in ("probabilities", "ood_score")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "model")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ham10000")
    parser.add_argument("--ood", type=Path, default=ROOT.parent / "shared" / "data" / "out_of_distribution")
    args = parser.parse_args()

    network = load_network(args.model)
    metadata = read_metadata(args.model / TFJS_DIR)
    ood_threshold, uncertain_below = metadata["ood_threshold"], metadata["uncertain_below"]

    sets: dict[str, list[np.ndarray]] = {}
    frame = load_metadata(args.data)
    split = pd.read_csv(args.model / SPLIT_NAME)
    test_ids = set(split.loc[split["split"] == "test", "image_id"])
    sets["HAM10000 test split (lesions)"] = [read_image(p) for p in frame.loc[frame["image_id"].isin(test_ids), "path"]]
    listing = pd.read_csv(args.ood / "images.csv")
    for name, rows in (("clinical photos SD-198", listing["set"] == "clinical_sd198"),
                       ("clinical photos MED-NODE", listing["set"] == "clinical_mednode"),
                       ("non-skin photos", listing["set"].str.startswith("nonskin"))):
        sets[name] = [read_image(args.ood / f) for f in listing.loc[rows, "file"]]
    synthetic = _synthetic(450, 600)
    sets["synthetic (" + ", ".join(synthetic) + ")"] = list(synthetic.values())

    print(f"ood_threshold {ood_threshold:.2f} (exceeded by {ood.FLAGGED_SHARE:.0%} of validation lesions), uncertain "
          f"below top probability {uncertain_below:.3f} (validation accuracy >= {CONFIDENT_ACCURACY:.0%} above it)")
    print(f"{'set':<44} {'images':>6} {'flagged OOD':>12} {'uncertain':>10} {'either':>8}")
    for name, pixels in sets.items():
        out = _scores(network, pixels)
        unlike = out["ood_score"][:, 0] > ood_threshold
        uncertain = out["probabilities"].max(1) < uncertain_below
        print(f"{name[:44]:<44} {len(pixels):>6} {unlike.mean():>11.1%} {uncertain.mean():>10.1%} "
              f"{(unlike | uncertain).mean():>8.1%}")
        if name.startswith("non-skin") or name.startswith("synthetic"):
            names = listing.loc[listing["set"].str.startswith("nonskin"), "file"].tolist() \
                if name.startswith("non-skin") else list(synthetic)
            missed = [n for n, flag in zip(names, unlike) if not flag]
            if missed:
                print(f"    not flagged OOD: {', '.join(Path(m).stem for m in missed)}")


if __name__ == "__main__":
    main()
