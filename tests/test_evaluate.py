import re
import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from skinlesion.classes import CODES, index_of
from skinlesion.evaluate import (
    apply_temperature,
    balanced_accuracy,
    bootstrap_intervals,
    bootstrap_rows,
    expected_calibration_error,
    fit_temperature,
    format_summary,
    sensitivity_threshold,
    metrics,
    paired_changes,
    plot_confusion_matrices,
)

MEL, NV, VASC = index_of("mel"), index_of("nv"), index_of("vasc")


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


def test_figures_with_nothing_to_count_are_undefined_not_zero():
    # Only nevi and vascular lesions, one nevus called vasc: no melanoma, nothing ever called akiec
    labels = np.array([NV] * 5 + [VASC] * 2)
    predicted = np.array([NV] * 4 + [VASC] * 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sklearn's warning about the missing classes is not the user's business
        result = metrics(one_hot(predicted), labels)
    assert result["melanoma"]["sensitivity"] is None and result["melanoma"]["specificity"] == 1.0
    assert result["per_class"]["akiec"] == {"precision": None, "recall": None, "f1": None, "support": 0,
                                            "roc_auc": None}
    assert result["per_class"]["vasc"]["precision"] == pytest.approx(2 / 3)
    assert result["balanced_accuracy"] == pytest.approx((4 / 5 + 1) / 2) and result["balanced_accuracy_classes"] == 2
    summary = format_summary(result)
    assert "melanoma sensitivity n/a (no melanomas)" in summary
    assert "mean recall of the 2 of 7 classes these images have" in summary
    assert re.search(r"akiec +- +- +- +- +0", summary)


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


def test_balanced_accuracy_is_sklearns_to_the_last_bit():
    rng = np.random.default_rng(4)
    for size in (1, 2, 5, 11, 60, 1431):
        for classes in (1, 3, len(CODES)):  # with 1 or 3, answers fall on classes the labels lack
            labels = rng.integers(0, classes, size)
            predicted = np.where(rng.uniform(size=size) < 0.6, labels, rng.integers(0, len(CODES), size))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                expected = balanced_accuracy_score(labels, predicted)
            assert balanced_accuracy(labels, predicted) == expected, (size, classes)


def test_bootstrap_interval_contains_the_estimate():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, len(CODES), 500)
    predicted = np.where(rng.uniform(size=500) < 0.7, labels, rng.integers(0, len(CODES), 500))
    result = metrics(one_hot(predicted), labels)
    intervals = bootstrap_intervals(one_hot(predicted), labels, np.arange(500), rounds=200)
    low, high = intervals["accuracy"]
    assert low < result["accuracy"] < high and high - low < 0.1
    assert set(intervals) == {"accuracy", "balanced_accuracy", "melanoma_sensitivity"}  # never the calibration error


def test_bootstrap_draws_whole_lesions():
    groups = np.array(["a", "b", "a", "c", "b", "a"])  # lesion a has three photos (rows 0, 2, 5), b two, c one
    for rows in bootstrap_rows(groups, rounds=50, seed=3):
        times = np.bincount(rows, minlength=len(groups))
        # every photo of a lesion is drawn as often as the lesion: all of it, or none of it
        for lesion in "abc":
            assert len(set(times[groups == lesion])) == 1
        assert times[groups == "a"][0] + times[groups == "b"][0] + times[groups == "c"][0] == 3  # 3 lesions drawn


def test_bootstrap_over_lesions_is_not_fooled_by_copies_of_a_photo():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, len(CODES), 300)
    predicted = np.where(rng.uniform(size=300) < 0.7, labels, rng.integers(0, len(CODES), 300))
    copies = 4  # each lesion photographed four times, the photos all alike
    labels4, predicted4 = np.repeat(labels, copies), np.repeat(predicted, copies)
    lesions4 = np.repeat(np.arange(300), copies)

    def width(intervals: dict) -> float:
        low, high = intervals["accuracy"]
        return high - low

    once = width(bootstrap_intervals(one_hot(predicted), labels, np.arange(300), rounds=400))
    over_lesions = width(bootstrap_intervals(one_hot(predicted4), labels4, lesions4, rounds=400))
    over_photos = width(bootstrap_intervals(one_hot(predicted4), labels4, np.arange(1200), rounds=400))
    # the copies add no evidence: resampling lesions gives the interval of the lesions photographed once; resampling
    # photos would count each lesion four times and halve it
    assert over_lesions == pytest.approx(once, rel=0.25)
    assert over_photos < 0.65 * over_lesions


def test_bootstrap_gives_the_alert_sensitivity_an_interval_only_with_a_threshold():
    rng = np.random.default_rng(5)
    labels = np.where(rng.uniform(size=400) < 0.3, MEL, 0)
    probabilities = one_hot(np.zeros(400, dtype=int))
    probabilities[:, MEL] = np.where(labels == MEL, rng.uniform(0.2, 0.6, 400), rng.uniform(0.0, 0.3, 400))
    alert = (probabilities[labels == MEL, MEL] >= 0.3).mean()
    low, high = bootstrap_intervals(probabilities, labels, np.arange(400), rounds=200, mel_threshold=0.3)[
        "melanoma_at_threshold_sensitivity"]
    assert low < alert < high and high - low < 0.2
    assert "melanoma_at_threshold_sensitivity" not in bootstrap_intervals(probabilities, labels, np.arange(400),
                                                                          rounds=20)


def test_paired_changes_draw_both_answers_from_the_same_lesions():
    rng = np.random.default_rng(6)
    labels = rng.integers(0, len(CODES), 300)
    old = np.where(rng.uniform(size=300) < 0.6, labels, rng.integers(0, len(CODES), 300))
    new = np.where(rng.uniform(size=300) < 0.3, labels, old)  # right more often than old
    changes = paired_changes(labels, np.arange(300), new, old, accuracy_score, rounds=300)
    assert np.all(changes >= 0)  # new is right wherever old is, in every resample: one draw for both
    copies = np.repeat(np.arange(300), 4)  # each lesion photographed four times alike
    over_lesions = paired_changes(labels[copies], copies, new[copies], old[copies], accuracy_score, rounds=300)
    over_photos = paired_changes(labels[copies], np.arange(1200), new[copies], old[copies], accuracy_score, rounds=300)
    assert np.std(over_lesions) == pytest.approx(np.std(changes), rel=0.25)
    assert np.std(over_photos) < 0.65 * np.std(over_lesions)


def test_confusion_plots_are_written(tmp_path):
    plots = plot_confusion_matrices(np.eye(len(CODES), dtype=int).tolist(), tmp_path)
    for name in plots.values():
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
