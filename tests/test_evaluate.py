import numpy as np
import pytest

from skinlesion.classes import CODES, index_of
from skinlesion.evaluate import (
    apply_temperature,
    bootstrap_intervals,
    expected_calibration_error,
    fit_temperature,
    sensitivity_threshold,
    metrics,
    plot_confusion_matrices,
)

MEL, NV = index_of("mel"), index_of("nv")


def one_hot(labels, confidence=0.9):
    p = np.full((len(labels), len(CODES)), (1 - confidence) / (len(CODES) - 1))
    p[np.arange(len(labels)), labels] = confidence
    return p


def test_perfect_predictions():
    labels = np.repeat(np.arange(len(CODES)), 3)
    result = metrics(one_hot(labels), labels)
    assert result["accuracy"] == result["balanced_accuracy"] == result["top2_accuracy"] == 1.0
    assert result["melanoma"]["sensitivity"] == result["melanoma"]["specificity"] == 1.0
    assert result["macro_roc_auc"] == 1.0
    assert np.trace(result["confusion_matrix"]) == len(labels)


def test_known_mistakes():
    # 4 melanomas, one called nv; 6 nevi, two called mel
    labels = np.array([MEL] * 4 + [NV] * 6)
    predicted = np.array([MEL, MEL, MEL, NV] + [NV] * 4 + [MEL] * 2)
    result = metrics(one_hot(predicted), labels)
    assert result["accuracy"] == pytest.approx(7 / 10)
    assert result["balanced_accuracy"] == pytest.approx((3 / 4 + 4 / 6) / 2)
    assert result["melanoma"]["sensitivity"] == pytest.approx(3 / 4)
    assert result["melanoma"]["specificity"] == pytest.approx(4 / 6)
    assert result["per_class"]["mel"]["precision"] == pytest.approx(3 / 5)
    assert result["per_class"]["akiec"]["support"] == 0 and result["per_class"]["akiec"]["roc_auc"] is None
    assert result["confusion_matrix"][MEL][NV] == 1 and result["confusion_matrix"][NV][MEL] == 2


def test_ece_is_zero_when_confidence_matches_accuracy():
    labels = np.zeros(10, int)
    probabilities = one_hot(labels, confidence=0.8)
    probabilities[:2] = one_hot(np.array([1, 1]), confidence=0.8)  # 8 of 10 right at confidence 0.8
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.0, abs=1e-9)
    assert expected_calibration_error(one_hot(np.ones(10, int), 0.9), labels) == pytest.approx(0.9)


def test_temperature_fit_recovers_overconfidence():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, len(CODES)))
    true_probabilities = apply_temperature(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 1.0)
    labels = np.array([rng.choice(len(CODES), p=p) for p in true_probabilities])
    overconfident = apply_temperature(true_probabilities, 0.5)  # as if logits were doubled
    temperature = fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(2.0, rel=0.1)
    assert expected_calibration_error(apply_temperature(overconfident, temperature), labels) < \
        expected_calibration_error(overconfident, labels)


def test_melanoma_threshold_reaches_the_sensitivity():
    rng = np.random.default_rng(1)
    labels = np.array([MEL] * 100 + [NV] * 300)
    probabilities = one_hot(labels, 0.5)
    probabilities[:, MEL] = np.where(labels == MEL, rng.uniform(0.2, 1, 400), rng.uniform(0, 0.6, 400))
    threshold = sensitivity_threshold(probabilities, labels, MEL, sensitivity=0.85)
    flagged = probabilities[:, MEL] >= threshold
    assert flagged[labels == MEL].mean() >= 0.85
    assert flagged[labels == MEL].mean() < 0.87, "the highest threshold that reaches it, not a lower one"


def test_bootstrap_interval_contains_the_estimate():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, len(CODES), 500)
    predicted = np.where(rng.uniform(size=500) < 0.7, labels, rng.integers(0, len(CODES), 500))
    result = metrics(one_hot(predicted), labels)
    intervals = bootstrap_intervals(one_hot(predicted), labels, rounds=200)
    low, high = intervals["accuracy"]
    assert low < result["accuracy"] < high and high - low < 0.1


def test_confusion_plots_are_written(tmp_path):
    plots = plot_confusion_matrices(np.eye(len(CODES), dtype=int).tolist(), tmp_path)
    for name in plots.values():
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
