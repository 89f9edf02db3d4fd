"""How the model does for groups of photos: by the patient's sex and age, the body site, and how the diagnosis was
confirmed (HAM10000's metadata columns). A figure over a whole split can hide a group the model serves badly; the
groups also differ in their mix of lesion types, which moves their accuracy as much as the model does."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score

from .evaluate import BOOTSTRAP_RESAMPLED, MEL, balanced_accuracy, bootstrap_intervals, expected_calibration_error

MIN_GROUP_IMAGES = 30  # smaller groups are pooled into one row: their figures alone would be mostly noise
MIN_MELANOMAS = 10  # melanoma sensitivity is left out for a group with fewer
AGE_BANDS = ((0, 30, "under 30"), (30, 45, "30-44"), (45, 60, "45-59"), (60, 75, "60-74"), (75, 200, "75 and over"))
DIAGNOSIS_CONFIRMED_BY = {"histo": "histopathology (biopsy or excision)",
                          "follow_up": "follow-up (unchanged over time)",
                          "consensus": "expert consensus", "confocal": "confocal microscopy"}
UNKNOWN = "unknown"


def _age_band(value: str) -> str:
    try:
        age = float(value)
    except (TypeError, ValueError):
        return UNKNOWN
    return next((name for low, high, name in AGE_BANDS if low <= age < high), UNKNOWN)


def _text(value: str) -> str:
    return value.strip() if isinstance(value, str) and value.strip() else UNKNOWN


# report key -> (metadata column, title, the group of a value, the group's name on the card)
GROUPINGS: dict[str, tuple[str, str, Callable[[str], str], Callable[[str], str]]] = {
    "sex": ("sex", "Sex", _text, str),
    "age": ("age", "Age", _age_band, str),
    "body_site": ("localization", "Body site", _text, str),
    "diagnosis_confirmed_by": ("dx_type", "Diagnosis confirmed by", _text,
                               lambda group: DIAGNOSIS_CONFIRMED_BY.get(group, group)),
}
POOLED = "others"  # the key of the row that pools the small groups


def _order(groups: pd.Series) -> list[str]:
    """Age bands in age order, other groups largest first; unknown last."""
    ages = [name for *_, name in AGE_BANDS]
    counts = groups.value_counts()
    return sorted(counts.index, key=lambda g: (g == UNKNOWN, ages.index(g) if g in ages else -counts[g], g))


def subgroup_tables(frame: pd.DataFrame, probabilities: np.ndarray, rounds: int = 1000, seed: int = 0) -> dict:
    """For each grouping of `GROUPINGS` whose column `frame` has (images in the order of `probabilities`, with the
    columns label and group, the lesion): one row per group with its images, melanomas, accuracy, mean top
    probability and calibration error, balanced accuracy (over the classes the group has) and melanoma sensitivity at
    the top answer (for groups with `MIN_MELANOMAS` or more), with 95% bootstrap intervals over the group's lesions.
    Groups under `MIN_GROUP_IMAGES` images are pooled into one row."""
    labels = frame["label"].to_numpy()
    lesions = frame["group"].to_numpy()
    tables = {}
    for key, (column, title, group_of, name_of) in GROUPINGS.items():
        if column not in frame.columns:
            continue
        groups = frame[column].map(group_of).to_numpy(dtype=object)
        small = sorted(g for g in set(groups) if (groups == g).sum() < MIN_GROUP_IMAGES)
        rows = [_row(group, name_of(group), groups == group, probabilities, labels, lesions, rounds, seed)
                for group in _order(pd.Series(groups)) if group not in small]
        if small:
            rows.append(_row(POOLED, f"others, each under {MIN_GROUP_IMAGES} images: "
                             f"{', '.join(map(name_of, small))}", np.isin(groups, small), probabilities, labels,
                             lesions, rounds, seed))
        tables[key] = {"title": title, "column": column, "min_melanomas": MIN_MELANOMAS,
                       "bootstrap_resampled": BOOTSTRAP_RESAMPLED, "rows": rows}
    return tables


def _row(key: str, name: str, chosen: np.ndarray, probabilities: np.ndarray, labels: np.ndarray,
         lesions: np.ndarray, rounds: int, seed: int) -> dict:
    probabilities, labels, lesions = probabilities[chosen], labels[chosen], lesions[chosen]
    predicted, melanomas = probabilities.argmax(1), int((labels == MEL).sum())
    enough_melanomas = melanomas >= MIN_MELANOMAS
    intervals = bootstrap_intervals(probabilities, labels, lesions, rounds, seed)
    return {"key": key, "group": name, "images": int(len(labels)), "melanomas": melanomas,
            "classes": int(len(np.unique(labels))), "accuracy": float(accuracy_score(labels, predicted)),
            # against the accuracy: how sure the model was in the group, on average (calibrated over all photos, it
            # can still be over- or underconfident in a group)
            "mean_top_probability": float(probabilities.max(1).mean()),
            # 15 bins: biased upwards in small groups
            "expected_calibration_error": expected_calibration_error(probabilities, labels),
            "balanced_accuracy": balanced_accuracy(labels, predicted),
            "melanoma_sensitivity": float((predicted[labels == MEL] == MEL).mean()) if enough_melanomas else None,
            "bootstrap_95": {k: v for k, v in intervals.items() if k != "melanoma_sensitivity" or enough_melanomas}}
