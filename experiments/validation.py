"""Validation-split figures of trained model folders, side by side: what the shipping rules in docs/experiments.md
are judged on (the test split is never read here). The images of each model's own validation split (its split.csv),
through the full network, with the pipeline's metrics.

    .venv/bin/python experiments/validation.py --data ../shared/data/ham10000 runs/e9-model runs/e9s1-model
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from skinlesion.classes import CODES  # noqa: E402
from skinlesion.pipeline import evaluate_folder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("models", type=Path, nargs="+")
    args = parser.parse_args()
    print("model | val BA | val accuracy | " + " | ".join(f"{c} recall" for c in CODES)
          + " | mel alert sensitivity / specificity")
    for model_dir in args.models:
        f, _ = evaluate_folder(model_dir, args.data, only_split="val", intervals=False)
        alert = f["melanoma_at_threshold"]
        print(f"{model_dir} | {f['balanced_accuracy']:.3f} | {f['accuracy']:.3f} | "
              + " | ".join(f"{f['per_class'][c]['recall']:.2f}" for c in CODES)
              + f" | {alert['sensitivity']:.2f} / {alert['specificity']:.2f}")


if __name__ == "__main__":
    main()
