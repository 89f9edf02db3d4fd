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
from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from skinlesion.classes import CODES  # noqa: E402
from skinlesion.data import load_metadata, split_by_lesion  # noqa: E402
from skinlesion.model import WEIGHTS_NAME, load_inputs, load_network, predict  # noqa: E402
from skinlesion.recipe import TrainConfig  # noqa: E402


def soup(folders: list[Path]):
    """The first folder's network with every weight replaced by the mean over all folders' weights."""
    network = load_network(folders[0])
    stored = [np.load(folder / WEIGHTS_NAME) for folder in folders]
    for variable in network.full.weights:
        variable.assign(np.mean([s[variable.path].astype(np.float32) for s in stored], axis=0))
    return network


def report(name: str, labels: np.ndarray, predicted: np.ndarray) -> None:
    recalls = recall_score(labels, predicted, average=None, labels=range(len(CODES)))
    print(f"{name:>24}: BA {balanced_accuracy_score(labels, predicted):.4f}, "
          f"accuracy {accuracy_score(labels, predicted):.4f}, recall "
          + " ".join(f"{code} {r:.3f}" for code, r in zip(CODES, recalls)), flush=True)


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
        report(folder.name, labels, p.argmax(1))
    ensemble = np.mean(probabilities, axis=0).argmax(1)
    souped = predict(soup(args.models), images, batch_size=64).argmax(1)
    report(f"ensemble of {len(networks)}", labels, ensemble)
    report(f"soup of {len(networks)}", labels, souped)

    first = probabilities[0].argmax(1)
    rng = np.random.default_rng(0)
    changes = []
    for _ in range(args.rounds):
        rows = rng.integers(0, len(labels), len(labels))
        changes.append([metric(labels[rows], souped[rows]) - metric(labels[rows], first[rows])
                        for metric in (balanced_accuracy_score, accuracy_score)])
    for name, column in zip(("BA", "accuracy"), np.array(changes).T):
        low, mid, high = np.percentile(column, [2.5, 50, 97.5])
        print(f"soup - {args.models[0].name}, change in {name}, paired bootstrap ({args.rounds} rounds): "
              f"median {mid:+.4f}, 95% interval [{low:+.4f}, {high:+.4f}]")


if __name__ == "__main__":
    main()
