"""The README's figures are the shipped model's: each is rebuilt here from model/report.json, so a retrain that ships
without its README being brought up to date fails this test (every number we show must be true)."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _text() -> str:
    """The README with its lines joined, so that a figure wrapped over two lines still reads as one sentence."""
    return re.sub(r"\s+", " ", (ROOT / "README.md").read_text())


def _report() -> dict:
    return json.loads((ROOT / "model" / "report.json").read_text())


def _interval(bounds: list[float], digits: int) -> str:
    return f"{bounds[0]:.{digits}f}-{bounds[1]:.{digits}f}"


def _row(report: dict, table: str, key: str) -> dict:
    return next(row for row in report["subgroups"][table]["rows"] if row["key"] == key)


def test_headline_table_is_the_shipped_models():
    report = _report()
    test = report["test"]
    ci, alert = test["bootstrap_95"], test["melanoma_at_threshold"]
    expected = [
        f"| accuracy | {test['accuracy']:.3f} ({_interval(ci['accuracy'], 3)}) |",
        f"| balanced accuracy (mean recall over the 7 classes) | {test['balanced_accuracy']:.3f} "
        f"({_interval(ci['balanced_accuracy'], 3)}) |",
        f"| melanoma sensitivity at the top answer | {test['melanoma']['sensitivity']:.2f} "
        f"({_interval(ci['melanoma_sensitivity'], 2)}) |",
        f"alert | {alert['sensitivity']:.2f} ({_interval(ci['melanoma_at_threshold_sensitivity'], 2)}), "
        f"specificity {alert['specificity']:.2f} |",
        f"| expected calibration error after the temperature | {test['expected_calibration_error']:.3f} "
        f"({report['calibration']['test_ece_before']:.3f} before) |",
        f"On its lesion-grouped test split ({test['images']:,} images",
    ]
    text = _text()
    assert [line for line in expected if line not in text] == []


def test_where_it_fails_figures_are_the_shipped_models():
    report = _report()
    biopsied, followed = _row(report, "diagnosis_confirmed_by", "histo"), _row(report, "diagnosis_confirmed_by",
                                                                               "follow_up")
    oldest, face = _row(report, "age", "75 and over"), _row(report, "body_site", "face")
    middle = _row(report, "age", "30-44")
    zoomed = [row for row in report["framing"]["rows"] if row["change"].startswith("zoomed in")]
    expected = [
        f"On the {biopsied['images']} test photos of lesions whose diagnosis needed a biopsy",
        f"accuracy was {biopsied['accuracy']:.3f} ({_interval(biopsied['bootstrap_95']['accuracy'], 3)}) and "
        f"balanced accuracy {biopsied['balanced_accuracy']:.3f}; on the {followed['images']} moles confirmed by "
        f"follow-up (unchanged over time), accuracy was {followed['accuracy']:.3f}",
        f"its top probability averaged {biopsied['mean_top_probability']:.3f}; expected calibration error "
        f"{biopsied['expected_calibration_error']:.3f} there against {report['test']['expected_calibration_error']:.3f}"
        " overall",
        f"aged 75 and over (accuracy {oldest['accuracy']:.3f}, mean top probability "
        f"{oldest['mean_top_probability']:.3f}) and for the face ({face['accuracy']:.3f}, "
        f"{face['mean_top_probability']:.3f})",
        f"Among patients aged 30-44, {round(middle['melanoma_sensitivity'] * middle['melanomas'])} of "
        f"{middle['melanomas']} test melanomas were the top answer",
        "lost " + ", ".join(f"{-row['balanced_accuracy_change'] * 100:.1f}" for row in zoomed[:-1])
        + f" and {-zoomed[-1]['balanced_accuracy_change'] * 100:.1f} points of balanced accuracy",
        "changed for " + ", ".join(f"{row['top_answer_changed']:.1%}" for row in zoomed[:-1])
        + f" and {zoomed[-1]['top_answer_changed']:.1%} of them",
    ]
    text = _text()
    assert [line for line in expected if line not in text] == []
