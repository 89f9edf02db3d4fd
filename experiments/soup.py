"""Does averaging the weights of several fine-tuned models ("model soup", Wortsman et al. 2022) help? Validation only.

Every model must share the architecture (one `config.json`); they were all fine-tuned from the same ImageNet weights.
Prints validation balanced accuracy and accuracy of each model, of their uniform weight average (one model, same
size) and of their probability ensemble (n models: n times the download, for reference), and the paired bootstrap
interval of the soup's change against the first model. The rule fixed before a run is in docs/experiments.md.

    .venv/bin/python experiments/soup.py --data ../shared/data/ham10000 runs/e2s-model runs/e2s1-model
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from skinlesion.data import load_metadata, split_by_lesion  # noqa: E402
from skinlesion.model import WEIGHTS_NAME, load_inputs, load_network, predict  # noqa: E402
from skinlesion.recipe import TrainConfig  # noqa: E402
from compare import describe, paired_bootstrap  # noqa: E402


def soup(folders: list[Path]):
    """The first folder's network with every weight replaced by the mean over all folders' weights."""
    network = load_network(folders[0])
    stored = [np.load(folder / WEIGHTS_NAME) for folder in folders]
    for variable in network.full.weights:
        variable.assign(np.mean([s[variable.path].astype(np.float32) for s in stored], axis=0))
    return network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", type=Path, nargs="+", help="model folders (config.json + weights.npz)")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=1000)
    args = parser.parse_args()

    networks = [load_network(folder) for folder in args.models]
    split = split_by_lesion(load_metadata(args.data), seed=TrainConfig().seed)
    images, labels = load_inputs(list(split.val["path"]), networks[0].config), split.val["label"].to_numpy()
    print(f"validation: {len(labels)} images")
    # The temperature only rescales logits: it changes no argmax, so the figures below do not depend on it.
    probabilities = [predict(network, images, batch_size=64) for network in networks]
    for folder, p in zip(args.models, probabilities):
        describe(folder.name, labels, p.argmax(1))
    ensemble = np.mean(probabilities, axis=0).argmax(1)
    souped = predict(soup(args.models), images, batch_size=64).argmax(1)
    describe(f"ensemble of {len(networks)}", labels, ensemble)
    describe(f"soup of {len(networks)}", labels, souped)
    paired_bootstrap(labels, souped, probabilities[0].argmax(1), split.val["group"].to_numpy(), args.rounds,
                     f"soup - {args.models[0].name}")


if __name__ == "__main__":
    main()
