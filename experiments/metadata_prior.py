"""m1 and m1p: does the patient's age, sex and body site, combined with the image, tell the classes apart better? Chosen
inside the validation split only (the test split is never read here); the rules are experiments/configs/m1.decision
and m1p.decision.

Per field, log p(class | value) - log p(class) is counted on the training split (add-one smoothing, m1; or, with
`--smoothing prior`, m1p, seven pseudo-photos spread by the class shares, so that a rare value says little); the
combined logits are z / T + w * (the sum of the present fields' log-ratios), T and w fitted by NLL on 4 of 5
lesion-grouped folds of validation and scored on the fifth, for several fold seeds, against the temperature alone.

    .venv/bin/python experiments/metadata_prior.py --data ../shared/data/ham10000 [--model model] [--smoothing prior]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import softmax
from sklearn.model_selection import StratifiedGroupKFold

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from experiments.calibration import (  # noqa: E402
    Temperature,
    fold_arguments,
    print_out_of_fold,
    scores,
    uncalibrated_logits,
)
from experiments.compare import paired_bootstrap  # noqa: E402
from skinlesion.classes import CODES  # noqa: E402
from skinlesion.data import load_metadata, split_by_lesion  # noqa: E402
from skinlesion.model import load_network  # noqa: E402
from skinlesion.recipe import TrainConfig  # noqa: E402


def _age_decade(value: str) -> str:
    try:
        return str(min(int(float(value)) // 10 * 10, 80))
    except (TypeError, ValueError):
        return "unknown"


FIELDS = {"age": _age_decade, "sex": lambda v: v if isinstance(v, str) else "unknown",
          "localization": lambda v: v if isinstance(v, str) else "unknown"}


PSEUDO_PHOTOS = len(CODES)  # per value: add-one smoothing's total, for either way of spreading them


def field_log_ratios(train: pd.DataFrame, smoothing: str = "uniform") -> dict[str, pd.DataFrame]:
    """Per field: a table value x class of log p(class | value) - log p(class), from the training rows; each value's
    counts get PSEUDO_PHOTOS more, spread evenly over the classes ("uniform") or by their shares ("prior")."""
    shares = np.bincount(train["label"], minlength=len(CODES)) / len(train)
    pseudo = PSEUDO_PHOTOS * (shares if smoothing == "prior" else np.full(len(CODES), 1 / len(CODES)))
    tables = {}
    for field, value_of in FIELDS.items():
        values = train[field].map(value_of)
        counts = pd.crosstab(values, train["label"]).reindex(columns=range(len(CODES)), fill_value=0) + pseudo
        table = np.log(counts.div(counts.sum(axis=1), axis=0)) - np.log(shares)
        table.loc["unknown"] = 0.0
        tables[field] = table
    return tables


def metadata_logits(frame: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> np.ndarray:
    total = np.zeros((len(frame), len(CODES)))
    for field, value_of in FIELDS.items():
        values = frame[field].map(value_of)
        total += tables[field].reindex(values).fillna(0.0).to_numpy()  # a value training never saw adds 0
    return total


class TemperatureAndMetadata:
    name = "temperature + metadata"

    def __init__(self, meta: np.ndarray):
        self.meta = meta

    def fit(self, logits: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> "TemperatureAndMetadata":
        def nll(params: np.ndarray) -> float:
            p = softmax(logits * np.exp(-params[0]) + params[1] * self.meta[rows], axis=1)
            return float(-np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, 1.0)).mean())
        params = minimize(nll, np.array([0.0, 0.5]), method="L-BFGS-B").x
        self.temperature, self.weight = float(np.exp(params[0])), float(params[1])
        return self

    def apply(self, logits: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return softmax(logits / self.temperature + self.weight * self.meta[rows], axis=1)


def main() -> None:
    parser = fold_arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--smoothing", choices=["uniform", "prior"], default="uniform",
                        help="spread each value's pseudo-photos evenly (m1) or by the class shares (m1p)")
    args = parser.parse_args()
    network = load_network(args.model)
    split = split_by_lesion(load_metadata(args.data), seed=TrainConfig().seed)
    val = split.val
    labels, groups = val["label"].to_numpy(), val["group"].to_numpy()
    logits = uncalibrated_logits(network, val)
    tables = field_log_ratios(split.train, args.smoothing)
    meta = metadata_logits(val, tables)
    print(f"{args.model}: {len(labels)} validation images; field tables from {len(split.train)} training images")

    table = {"temperature": [], TemperatureAndMetadata.name: []}
    kept = {}
    for fold_seed in range(args.fold_seeds):
        folds = StratifiedGroupKFold(args.folds, shuffle=True, random_state=fold_seed)
        oof = {name: np.zeros_like(logits) for name in table}
        for fit_rows, held_rows in folds.split(logits, labels, groups):
            oof["temperature"][held_rows] = Temperature().fit(logits[fit_rows], labels[fit_rows]).apply(
                logits[held_rows])
            fused = TemperatureAndMetadata(meta).fit(logits[fit_rows], labels[fit_rows], fit_rows)
            oof[TemperatureAndMetadata.name][held_rows] = fused.apply(logits[held_rows], held_rows)
        for name, probabilities in oof.items():
            table[name].append(scores(probabilities, labels))
        if fold_seed == 0:
            kept = oof

    print_out_of_fold("validation", table, args.folds)
    paired_bootstrap(labels, kept[TemperatureAndMetadata.name].argmax(1), kept["temperature"].argmax(1), groups, 1000,
                     "metadata - temperature alone, fold seed 0")
    fitted = TemperatureAndMetadata(meta).fit(logits, labels, np.arange(len(labels)))
    print(f"fitted on all of validation: T {fitted.temperature:.3f}, metadata weight {fitted.weight:.3f}")
    for field, ratios in tables.items():
        print(f"\n{field}: log p(class | value) - log p(class), training split\n"
              + ratios.set_axis(CODES, axis=1).round(2).to_string())


if __name__ == "__main__":
    main()
