"""Which calibration to ship, chosen inside the validation split only (the test split is never read here).

The model folder's network gives its uncalibrated probabilities on its own validation images (the shipped
temperature undone). Each candidate calibration is fitted on 4 of 5 lesion-grouped, class-stratified folds of the
validation split and applied to the fifth; the out-of-fold probabilities of all validation images are then scored
(ECE over 15 bins, negative log-likelihood, balanced accuracy, accuracy, melanoma recall), for several fold seeds,
on all of validation and on its lesions confirmed by histopathology (HAM10000's dx_type "histo"). c1's rule, fixed
before its first run, is in docs/experiments.md; h1's ("temperature on biopsied", fitted on those lesions only) in
experiments/configs/h1.decision.

    .venv/bin/python experiments/calibration.py --data ../shared/data/ham10000 [--model model]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import softmax
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedGroupKFold

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from skinlesion.classes import CODES  # noqa: E402
from skinlesion.data import load_metadata, split_by_lesion  # noqa: E402
from skinlesion.evaluate import MEL, balanced_accuracy, expected_calibration_error, fit_temperature  # noqa: E402
from skinlesion.model import Network, load_network  # noqa: E402
from skinlesion.pipeline import predict_frame  # noqa: E402
from skinlesion.recipe import TrainConfig  # noqa: E402


class Identity:
    name = "none"
    fit_only = None  # a dx_type: fitted on the fit rows confirmed that way only (else on every fit row)

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> "Identity":
        return self

    def apply(self, logits: np.ndarray) -> np.ndarray:
        return softmax(logits, axis=1)


class Temperature:
    """softmax(z / T), T by NLL: what the pipeline ships; the argmax never changes."""
    name = "temperature"
    fit_only = None

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> "Temperature":
        self.temperature = fit_temperature(softmax(logits, axis=1), labels)
        return self

    def apply(self, logits: np.ndarray) -> np.ndarray:
        return softmax(logits / self.temperature, axis=1)


class TemperatureAndBias:
    """softmax(z / T + b), T and b by NLL (b sums to 0): undoes a class lean, so the argmax can change."""
    name = "temperature + class bias"
    fit_only = None

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> "TemperatureAndBias":
        def nll(params: np.ndarray) -> float:
            p = softmax(logits * np.exp(-params[0]) + (params[1:] - params[1:].mean()), axis=1)
            return float(-np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, 1.0)).mean())
        params = minimize(nll, np.zeros(1 + logits.shape[1]), method="L-BFGS-B").x
        self.temperature, self.bias = float(np.exp(params[0])), params[1:] - params[1:].mean()
        return self

    def apply(self, logits: np.ndarray) -> np.ndarray:
        return softmax(logits / self.temperature + self.bias, axis=1)


class BiopsiedTemperature(Temperature):
    """The temperature fitted on the lesions confirmed by histopathology only (h1): those a worried user brings."""
    name = "temperature on biopsied"
    fit_only = "histo"


CANDIDATES = (Identity, Temperature, TemperatureAndBias, BiopsiedTemperature)


def scores(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    predicted = probabilities.argmax(1)
    return {"ECE": expected_calibration_error(probabilities, labels),
            "NLL": log_loss(labels, probabilities, labels=list(range(len(CODES)))),
            "BA": balanced_accuracy(labels, predicted),
            "accuracy": float((predicted == labels).mean()),
            "mel recall": float((predicted[labels == MEL] == MEL).mean())}


def fold_arguments(description: str) -> argparse.ArgumentParser:
    """The options of the out-of-fold experiments on validation (this one, metadata_prior.py)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=Path("model"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--fold-seeds", type=int, default=10)
    return parser


def uncalibrated_logits(network: Network, frame: pd.DataFrame) -> np.ndarray:
    """The network's logits for the frame's images, the shipped temperature undone: log p of the shipped probabilities
    is z / T plus a constant per row, so times T it is z (up to that constant, which softmax ignores)."""
    return np.log(np.clip(predict_frame(network, frame)["probabilities"], 1e-12, 1.0)) * network.config.temperature


def print_out_of_fold(title: str, figures: dict[str, list[dict[str, float]]], folds: int) -> None:
    """One line per candidate: the mean [min, max] over fold seeds of each score."""
    keys = list(next(iter(figures.values()))[0])
    print(f"out-of-fold scores on {title}, {folds} folds, mean [min, max] over "
          f"{len(next(iter(figures.values())))} fold seeds:")
    print("calibration | " + " | ".join(keys))
    for name, rows in figures.items():
        cells = [f"{np.mean([r[k] for r in rows]):.4f} [{min(r[k] for r in rows):.4f}, {max(r[k] for r in rows):.4f}]"
                 for k in keys]
        print(f"{name} | " + " | ".join(cells))


def main() -> None:
    args = fold_arguments(__doc__.split("\n\n")[0]).parse_args()
    network = load_network(args.model)
    val = split_by_lesion(load_metadata(args.data), seed=TrainConfig().seed).val
    labels, groups = val["label"].to_numpy(), val["group"].to_numpy()
    confirmed_by = val["dx_type"].to_numpy() if "dx_type" in val else np.full(len(val), "")
    biopsied = confirmed_by == "histo"
    logits = uncalibrated_logits(network, val)
    print(f"{args.model}: {len(labels)} validation images, {len(set(groups))} lesions; "
          f"shipped temperature {network.config.temperature:.3f}")

    candidates = [c for c in CANDIDATES if c.fit_only is None or biopsied.any()]
    table = {c.name: [] for c in candidates}
    biopsied_table = {c.name: [] for c in candidates}
    for fold_seed in range(args.fold_seeds):
        folds = StratifiedGroupKFold(args.folds, shuffle=True, random_state=fold_seed)
        out_of_fold = {c.name: np.zeros_like(logits) for c in candidates}
        for fit_rows, held_rows in folds.split(logits, labels, groups):
            for candidate in candidates:
                rows = fit_rows if candidate.fit_only is None \
                    else fit_rows[confirmed_by[fit_rows] == candidate.fit_only]
                fitted = candidate().fit(logits[rows], labels[rows])
                out_of_fold[candidate.name][held_rows] = fitted.apply(logits[held_rows])
        for name, probabilities in out_of_fold.items():
            table[name].append(scores(probabilities, labels))
            if biopsied.any():
                biopsied_table[name].append(scores(probabilities[biopsied], labels[biopsied]))

    print_out_of_fold(f"all {len(labels)} validation images", table, args.folds)
    if biopsied.any():
        print_out_of_fold(f"the {biopsied.sum()} confirmed by histopathology", biopsied_table, args.folds)
    for candidate in candidates[1:]:
        rows = np.ones(len(labels), bool) if candidate.fit_only is None else confirmed_by == candidate.fit_only
        fitted = candidate().fit(logits[rows], labels[rows])
        print(f"{candidate.name}, fitted on all {rows.sum()} of its validation images: T {fitted.temperature:.3f}"
              + (f", bias {dict(zip(CODES, np.round(fitted.bias, 3).tolist()))}" if hasattr(fitted, "bias") else ""))


if __name__ == "__main__":
    main()
