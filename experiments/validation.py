"""Validation-split figures of trained model folders, side by side: what the shipping rules in docs/experiments.md
are judged on (the test split is never read here).

    .venv/bin/python experiments/validation.py --data ../shared/data/ham10000 runs/e9-model runs/e9s1-model
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from skinlesion.classes import CODES  # noqa: E402
from skinlesion.data import load_metadata, split_by_lesion  # noqa: E402
from skinlesion.model import load_inputs, load_network, predict  # noqa: E402
from skinlesion.recipe import TRAIN_CONFIG_NAME, TrainConfig  # noqa: E402

MEL = CODES.index("mel")


def figures(model_dir: Path, data: Path) -> dict:
    """Validation figures of one model folder, on the split of the seed it was trained with."""
    config = TrainConfig.load(model_dir / TRAIN_CONFIG_NAME)
    network = load_network(model_dir)
    split = split_by_lesion(load_metadata(data), seed=config.seed)
    labels = split.val["label"].to_numpy()
    probabilities = predict(network, load_inputs(list(split.val["path"]), network.config), batch_size=64)
    predicted = probabilities.argmax(1)
    threshold = json.loads((model_dir / "tfjs" / "metadata.json").read_text())["thresholds"]["mel"]
    alerted, is_mel = probabilities[:, MEL] >= threshold, labels == MEL
    return {
        "balanced_accuracy": balanced_accuracy_score(labels, predicted),
        "accuracy": accuracy_score(labels, predicted),
        "recall": dict(zip(CODES, recall_score(labels, predicted, labels=range(len(CODES)), average=None))),
        "mel_alert_sensitivity": float(alerted[is_mel].mean()),
        "mel_alert_specificity": float(1 - alerted[~is_mel].mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("models", type=Path, nargs="+")
    args = parser.parse_args()
    print("model | val BA | val accuracy | " + " | ".join(f"{c} recall" for c in CODES)
          + " | mel alert sensitivity / specificity")
    for model_dir in args.models:
        f = figures(model_dir, args.data)
        print(f"{model_dir} | {f['balanced_accuracy']:.3f} | {f['accuracy']:.3f} | "
              + " | ".join(f"{f['recall'][c]:.2f}" for c in CODES)
              + f" | {f['mel_alert_sensitivity']:.2f} / {f['mel_alert_specificity']:.2f}")


if __name__ == "__main__":
    main()
