"""What the validation experiments share: one line of figures per model, and the paired bootstrap of a change."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, recall_score

from skinlesion.classes import CODES
from skinlesion.evaluate import balanced_accuracy, paired_changes


def describe(name: str, labels: np.ndarray, predicted: np.ndarray) -> None:
    """Print balanced accuracy, accuracy and per-class recall of top-1 predictions."""
    recalls = recall_score(labels, predicted, average=None, labels=range(len(CODES)))
    print(f"{name:>24}: BA {balanced_accuracy(labels, predicted):.4f}, "
          f"accuracy {accuracy_score(labels, predicted):.4f}, recall "
          + " ".join(f"{code} {r:.3f}" for code, r in zip(CODES, recalls)), flush=True)


def paired_bootstrap(labels: np.ndarray, new: np.ndarray, old: np.ndarray, lesions: np.ndarray, rounds: int,
                     what: str) -> None:
    """Print the median and 95% interval of the change (new - old) in BA and accuracy over resampled lesions (all
    photos of a drawn lesion together; the results recorded before stop 32 resampled photos)."""
    for name, metric in (("BA", balanced_accuracy), ("accuracy", accuracy_score)):
        column = paired_changes(labels, lesions, new, old, metric, rounds)
        low, mid, high = np.percentile(column, [2.5, 50, 97.5])
        print(f"{what}, change in {name}, paired bootstrap ({rounds} rounds): median {mid:+.4f}, "
              f"95% interval [{low:+.4f}, {high:+.4f}]")
