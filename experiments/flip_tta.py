"""Does averaging a model's probabilities over flipped copies of the photo help? Validation split only.

The 4 flips that keep a 4:3 input (none, left-right, up-down, both) are classified and their calibrated
probabilities averaged; the paired bootstrap over validation lesions gives an interval for the change in balanced
accuracy and accuracy. The rule we fixed before the first run is in docs/experiments.md.

    .venv/bin/python experiments/flip_tta.py --data ../shared/data/ham10000 [--model model]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from skinlesion.data import load_metadata, split_by_lesion  # noqa: E402
from skinlesion.model import load_inputs, load_network, predict  # noqa: E402
from skinlesion.recipe import TrainConfig  # noqa: E402
from compare import describe, paired_bootstrap  # noqa: E402

FLIPS = {"none": (), "left-right": (2,), "up-down": (1,), "both": (1, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=Path("model"))
    parser.add_argument("--rounds", type=int, default=1000)
    args = parser.parse_args()

    network = load_network(args.model)
    split = split_by_lesion(load_metadata(args.data), seed=TrainConfig().seed)
    images, labels = load_inputs(list(split.val["path"]), network.config), split.val["label"].to_numpy()
    probabilities = {name: predict(network, np.flip(images, axes) if axes else images, batch_size=64)
                     for name, axes in FLIPS.items()}
    plain, averaged = probabilities["none"].argmax(1), np.mean(list(probabilities.values()), axis=0).argmax(1)

    print(f"validation: {len(labels)} images")
    describe("no flips", labels, plain)
    describe("mean of 4 flips", labels, averaged)
    paired_bootstrap(labels, averaged, plain, split.val["group"].to_numpy(), args.rounds, "flips - no flips")


if __name__ == "__main__":
    main()
