"""Measure a classifier's probabilities against true labels and draw the report's plots.

Everything is computed from (probabilities, labels), with scikit-learn except balanced accuracy (see
`balanced_accuracy`); this module never sees a model, so the same numbers come out whether the probabilities were
predicted in Python or read back from the browser.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on build machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.optimize import minimize_scalar  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    ConfusionMatrixDisplay,
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    top_k_accuracy_score,
)

from .classes import CLASSES, CODES, index_of  # noqa: E402

REPORT_NAME = "report.json"
MEL = index_of("mel")
# The classes for which the page says "consider seeing a dermatologist soon" when their probability is high.
ALERT_CLASSES = tuple(c.code for c in CLASSES if c.malignant)
ALL_LABELS = list(range(len(CODES)))
# What the page's thresholds are chosen for on validation: each alert finds this share of its class, and the
# answers at or above the "unsure" threshold are at least this accurate.
ALERT_SENSITIVITY = 0.85
CONFIDENT_ACCURACY = 0.9
# What the report's bootstrap intervals resample (`bootstrap_rows`), written next to each set of them for the card
BOOTSTRAP_RESAMPLED = "lesions"


def _share(part: int, whole: int) -> float | None:
    """part / whole; None (undefined, not 0) when there is nothing to count, e.g. a folder without melanomas."""
    return part / whole if whole else None


def _rates(positive: np.ndarray, flagged: np.ndarray) -> dict:
    """Sensitivity and specificity of flagging, with the counts behind them (None where there are no positives or
    no negatives)."""
    tp, fn = int((flagged & positive).sum()), int((~flagged & positive).sum())
    tn, fp = int((~flagged & ~positive).sum()), int((flagged & ~positive).sum())
    return {"sensitivity": _share(tp, tp + fn), "specificity": _share(tn, tn + fp),
            "true_positives": tp, "false_negatives": fn, "true_negatives": tn, "false_positives": fp}


def _confidence_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int) -> list[tuple[float, float, float]]:
    """(share of images, mean top-1 confidence, share correct) for each non-empty equal-width confidence bin."""
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == labels
    which = np.clip(np.digitize(confidence, np.linspace(0, 1, bins + 1)[1:-1]), 0, bins - 1)
    return [((which == b).mean(), confidence[which == b].mean(), correct[which == b].mean())
            for b in range(bins) if (which == b).any()]


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE of the top-1 confidence over equal-width bins (Guo et al. 2017)."""
    return float(sum(share * abs(accuracy - confidence)
                     for share, confidence, accuracy in _confidence_bins(probabilities, labels, bins)))


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T) computed from softmax(logits): log p equals the logits up to a constant per row."""
    logits = np.log(np.clip(probabilities, 1e-12, 1.0)) / temperature
    logits -= logits.max(1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(1, keepdims=True)


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimizes the negative log-likelihood (fit it on validation data only)."""
    def nll(temperature: float) -> float:
        p = apply_temperature(probabilities, temperature)
        return float(-np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, 1.0)).mean())
    return float(minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded").x)


def sensitivity_threshold(probabilities: np.ndarray, labels: np.ndarray, label: int = MEL,
                          sensitivity: float = ALERT_SENSITIVITY) -> float:
    """The highest probability threshold for class `label` that still reaches `sensitivity` (fit on validation)."""
    scores = np.sort(probabilities[labels == label, label])[::-1]
    if len(scores) == 0:
        return 0.5
    needed = int(np.ceil(sensitivity * len(scores)))
    return float(scores[max(needed, 1) - 1])


def alert_rates(probabilities: np.ndarray, labels: np.ndarray, label: int, threshold: float) -> dict:
    """Sensitivity and specificity of flagging class `label` when its probability reaches `threshold`."""
    return {"threshold": threshold, **_rates(labels == label, probabilities[:, label] >= threshold)}


def confidence_threshold(probabilities: np.ndarray, labels: np.ndarray,
                         target_accuracy: float = CONFIDENT_ACCURACY) -> float:
    """The lowest top-1 probability from which on the predictions reach `target_accuracy` (fit on validation).

    Below it the page says the model is unsure. 1.0 if no threshold reaches the target.
    """
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == labels
    order = np.argsort(-confidence)
    accuracy_of_top = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    reaching = np.nonzero(accuracy_of_top >= target_accuracy)[0]
    return float(confidence[order][reaching.max()]) if len(reaching) else 1.0


def balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Mean recall over the classes `labels` has (class indices): sklearn's `balanced_accuracy_score` to the last
    bit (tested), without its warning about answered classes that `labels` lacks. Counted with numpy because a
    retrain's report takes it in tens of thousands of bootstrap resamples, where scikit-learn 1.9's input checks cost
    about 1.5 ms a call."""
    support = np.bincount(labels, minlength=len(CODES))
    hits = np.bincount(labels[labels == predicted], minlength=len(CODES))
    present = support > 0
    return float(np.mean(hits[present] / support[present]))


def metrics(probabilities: np.ndarray, labels: np.ndarray, mel_threshold: float | None = None) -> dict:
    """Accuracy, balanced accuracy, top-k, per-class precision/recall/F1/AUC, melanoma rates, confusion matrix, ECE.

    Balanced accuracy is the mean recall over the classes `labels` has (`balanced_accuracy_classes` of them). A
    figure with nothing to count (the recall of a class with no images, the precision of one never predicted) is None.
    """
    predicted = probabilities.argmax(1)
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=ALL_LABELS,
                                                                     zero_division=0)
    per_class = {}
    for i, code in enumerate(CODES):
        present = (labels == i).any() and not (labels == i).all()
        has_images, ever_predicted = support[i] > 0, (predicted == i).any()
        per_class[code] = {"precision": float(precision[i]) if ever_predicted else None,
                           "recall": float(recall[i]) if has_images else None,
                           "f1": float(f1[i]) if has_images and ever_predicted else None, "support": int(support[i]),
                           "roc_auc": float(roc_auc_score(labels == i, probabilities[:, i])) if present else None}
    aucs = [c["roc_auc"] for c in per_class.values() if c["roc_auc"] is not None]
    is_mel = labels == MEL
    result = {
        "images": int(len(labels)),
        "accuracy": float(accuracy_score(labels, predicted)),
        "balanced_accuracy": balanced_accuracy(labels, predicted),
        "balanced_accuracy_classes": int(len(np.unique(labels))),
        "top2_accuracy": float(top_k_accuracy_score(labels, probabilities, k=2, labels=ALL_LABELS)),
        "top3_accuracy": float(top_k_accuracy_score(labels, probabilities, k=3, labels=ALL_LABELS)),
        "macro_roc_auc": float(np.mean(aucs)) if aucs else None,
        "expected_calibration_error": expected_calibration_error(probabilities, labels),
        "melanoma": _rates(is_mel, predicted == MEL),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(labels, predicted, labels=ALL_LABELS).tolist(),
    }
    if mel_threshold is not None:
        result["melanoma_at_threshold"] = alert_rates(probabilities, labels, MEL, mel_threshold)
    return result


def bootstrap_rows(lesions: np.ndarray, rounds: int = 1000, seed: int = 0) -> Iterator[np.ndarray]:
    """Row indices of `rounds` bootstrap resamples that draw whole lesions: as many lesions as `lesions` (one lesion
    id per row) holds, with replacement, each with all its rows. A split's photos of one lesion are near copies,
    so drawing photos one by one would count a lesion's luck as several independent chances and give intervals too
    narrow. With one row per lesion this is the plain bootstrap over rows."""
    _, lesion_of_row = np.unique(np.asarray(lesions), return_inverse=True)
    order = np.argsort(lesion_of_row, kind="stable")  # rows lesion by lesion
    sizes = np.bincount(lesion_of_row)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        drawn = rng.integers(0, len(sizes), len(sizes))
        counts = sizes[drawn]
        # position k of the resample is row number (k - where its lesion begins in the resample) of that lesion
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        yield order[np.repeat(starts[drawn], counts) + within]


def paired_changes(labels: np.ndarray, lesions: np.ndarray, new: np.ndarray, old: np.ndarray,
                   metric: Callable[[np.ndarray, np.ndarray], float], rounds: int = 1000, seed: int = 0) -> np.ndarray:
    """metric(labels, new) - metric(labels, old) for two sets of predicted classes, on each of `rounds` resamples of
    the lesions (`bootstrap_rows`), the same draw for both: the spread of a change between two ways of answering."""
    return np.array([metric(labels[rows], new[rows]) - metric(labels[rows], old[rows])
                     for rows in bootstrap_rows(lesions, rounds, seed)])


def bootstrap_intervals(probabilities: np.ndarray, labels: np.ndarray, lesions: np.ndarray, rounds: int = 1000,
                        seed: int = 0, mel_threshold: float | None = None) -> dict:
    """95% percentile-bootstrap intervals for accuracy, balanced accuracy and melanoma sensitivity (and, given
    `mel_threshold`, the melanoma alert's sensitivity), resampling `lesions` (one lesion id per row; see
    `bootstrap_rows`). None for the calibration error: its plug-in estimate is biased upwards and resampling adds to
    the bias, so a percentile interval of it is lopsided (the shipped e18's was 0.027 to 0.060 around 0.035; the
    basic interval from the same draws 0.010 to 0.044)."""
    predicted = probabilities.argmax(1)
    alerted = probabilities[:, MEL] >= mel_threshold if mel_threshold is not None else None
    samples: dict[str, list[float]] = {"accuracy": [], "balanced_accuracy": [], "melanoma_sensitivity": [],
                                       "melanoma_at_threshold_sensitivity": []}
    for rows in bootstrap_rows(lesions, rounds, seed):
        y, p = labels[rows], predicted[rows]
        samples["accuracy"].append(float(np.mean(y == p)))
        samples["balanced_accuracy"].append(balanced_accuracy(y, p))  # a resample may miss a rare class
        mel = y == MEL
        if mel.any():
            samples["melanoma_sensitivity"].append(float((p[mel] == MEL).mean()))
            if alerted is not None:
                samples["melanoma_at_threshold_sensitivity"].append(float(alerted[rows][mel].mean()))
    return {name: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for name, v in samples.items() if v}


def report_intervals(probabilities: np.ndarray, labels: np.ndarray, lesions: np.ndarray, seed: int,
                     mel_threshold: float | None) -> dict:
    """The keys a report's test figures carry for their intervals: `bootstrap_95` and what it resampled."""
    intervals = bootstrap_intervals(probabilities, labels, lesions, seed=seed, mel_threshold=mel_threshold)
    return {"bootstrap_95": intervals, "bootstrap_resampled": BOOTSTRAP_RESAMPLED}


def plot_confusion_matrices(matrix: list[list[int]], folder: Path) -> dict[str, str]:
    """Counts and row-normalized confusion matrices as PNGs in `folder`; returns {plot name: file name}."""
    counts = np.array(matrix)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalized = np.nan_to_num(counts / counts.sum(1, keepdims=True))
    plots = {}
    for name, values, fmt, title in (("confusion_matrix", counts, "d", "Test split: counts"),
                                     ("confusion_matrix_normalized", normalized, ".2f",
                                      "Test split: share of each true class")):
        fig, ax = plt.subplots(figsize=(6.4, 5.6))
        ConfusionMatrixDisplay(values, display_labels=list(CODES)).plot(ax=ax, values_format=fmt, cmap="Blues",
                                                                       colorbar=False)
        ax.set_title(title)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        fig.tight_layout()
        fig.savefig(folder / f"{name}.png", dpi=110)
        plt.close(fig)
        plots[name] = f"{name}.png"
    return plots


def plot_reliability(before: np.ndarray, after: np.ndarray, labels: np.ndarray, folder: Path,
                     bins: int = 15) -> dict[str, str]:
    """Reliability diagram (top-1 confidence vs accuracy) before and after temperature scaling."""
    fig, ax = plt.subplots(figsize=(5.6, 5.2))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    for probs, label in ((before, "before"), (after, "after temperature scaling")):
        _, xs, ys = zip(*_confidence_bins(probs, labels, bins))
        ece = expected_calibration_error(probs, labels, bins)
        ax.plot(xs, ys, marker="o", label=f"{label} (ECE {ece:.3f})")
    ax.set_xlabel("confidence of the top class")
    ax.set_ylabel("share correct")
    ax.set_title("Test split: reliability")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(folder / "reliability.png", dpi=110)
    plt.close(fig)
    return {"reliability": "reliability.png"}


def write_report(report: dict, folder: Path) -> Path:
    path = folder / REPORT_NAME
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def load_report(folder: Path) -> dict:
    return json.loads((folder / REPORT_NAME).read_text())


def format_summary(result: dict) -> str:
    """A few lines for the terminal: the headline metrics with counts (and bootstrap intervals where it has them)."""
    mel = result["melanoma"]
    intervals = result.get("bootstrap_95") or {}

    def interval(key: str) -> str:
        low_high = intervals.get(key)
        return f" (95% CI {low_high[0]:.4f}-{low_high[1]:.4f})" if low_high else ""

    def value(x: float | None, digits: int = 4, none: str = "n/a") -> str:
        return none if x is None else f"{x:.{digits}f}"

    classes = result.get("balanced_accuracy_classes", len(CODES))

    lines = [
        f"images               {result['images']}",
        f"accuracy             {result['accuracy']:.4f}{interval('accuracy')}",
        f"balanced accuracy    {result['balanced_accuracy']:.4f}{interval('balanced_accuracy')}"
        + (f" (mean recall of the {classes} of {len(CODES)} classes these images have)" if classes < len(CODES) else ""),
        f"top-2 / top-3        {result['top2_accuracy']:.4f} / {result['top3_accuracy']:.4f}",
        f"macro ROC AUC        {result['macro_roc_auc']:.4f}" if result["macro_roc_auc"] is not None else "",
        f"melanoma sensitivity {mel['sensitivity']:.4f} ({mel['true_positives']}/"
        f"{mel['true_positives'] + mel['false_negatives']}){interval('melanoma_sensitivity')}"
        if mel["sensitivity"] is not None else "melanoma sensitivity n/a (no melanomas)",
        f"melanoma specificity {value(mel['specificity'], none='n/a (only melanomas)')}",
        f"ECE (15 bins)        {result['expected_calibration_error']:.4f}",
        f"95% CIs: percentile bootstrap resampling the {result.get('bootstrap_resampled', 'images')}" if intervals
        else "",
        "per class            precision recall f1     auc    support",
    ]
    for code, c in result["per_class"].items():
        lines.append(f"  {code:<18} {value(c['precision'], 3, '  -  ')}     {value(c['recall'], 3, '  -  ')}  "
                     f"{value(c['f1'], 3, '  -  ')}  {value(c['roc_auc'], 3, '  -  ')}  {c['support']}")
    return "\n".join(line for line in lines if line)
