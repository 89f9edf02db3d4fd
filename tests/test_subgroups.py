"""skinlesion.subgroups: the test figures by sex, age, body site and how the diagnosis was confirmed."""

import numpy as np
import pandas as pd
import pytest

from skinlesion.classes import CODES, index_of
from skinlesion.subgroups import MIN_GROUP_IMAGES, MIN_MELANOMAS, subgroup_tables

MEL, NV, BCC = index_of("mel"), index_of("nv"), index_of("bcc")


def _answering(predicted: list[int]) -> np.ndarray:
    """Probabilities whose top class is `predicted`, at 1 / 1.06 (the others 0.01 / 1.06 each)."""
    probabilities = np.full((len(predicted), len(CODES)), 0.01)
    probabilities[np.arange(len(predicted)), predicted] = 1.0
    return probabilities / probabilities.sum(1, keepdims=True)


@pytest.fixture
def frame_and_probabilities() -> tuple[pd.DataFrame, np.ndarray]:
    """60 photos of women aged 50, histopathology, back: 20 melanomas (15 found), 40 moles (all found); 40 photos of
    men aged 20, follow-up, face: moles, 30 found; 5 photos of unknown sex, age and site, confirmed by confocal
    microscopy: basal cell carcinomas, none found. Photos 2k and 2k + 1 are of one lesion."""
    rows = ([("female", "50.0", "back", "histo", MEL, MEL if i < 15 else NV) for i in range(20)]
            + [("female", "50.0", "back", "histo", NV, NV) for _ in range(40)]
            + [("male", "20.0", "face", "follow_up", NV, NV if i < 30 else MEL) for i in range(40)]
            + [(None, None, "unknown", "confocal", BCC, NV) for _ in range(5)])
    frame = pd.DataFrame(rows, columns=["sex", "age", "localization", "dx_type", "label", "predicted"])
    frame["group"] = [f"lesion {i // 2}" for i in range(len(frame))]  # two photos a lesion, as HAM10000 often has
    return frame.drop(columns="predicted"), _answering(list(frame["predicted"]))


def _rows(table: dict) -> dict[str, dict]:
    return {row["key"]: row for row in table["rows"]}


def test_each_group_gets_its_own_figures(frame_and_probabilities):
    tables = subgroup_tables(*frame_and_probabilities, rounds=50)
    assert list(tables) == ["sex", "age", "body_site", "diagnosis_confirmed_by"]
    assert all(table["min_melanomas"] == MIN_MELANOMAS for table in tables.values())
    female, male = _rows(tables["sex"])["female"], _rows(tables["sex"])["male"]
    assert (female["images"], female["melanomas"], female["classes"]) == (60, 20, 2)
    assert female["accuracy"] == pytest.approx(55 / 60)
    assert female["mean_top_probability"] == pytest.approx(1 / 1.06)
    assert female["balanced_accuracy"] == pytest.approx((15 / 20 + 1) / 2)
    assert female["melanoma_sensitivity"] == pytest.approx(0.75)
    low, high = female["bootstrap_95"]["accuracy"]
    assert low <= 55 / 60 <= high and low < high
    # the men's group has moles only: balanced accuracy is their recall, and too few melanomas for a sensitivity
    assert male["accuracy"] == male["balanced_accuracy"] == pytest.approx(0.75)
    assert male["melanoma_sensitivity"] is None and "melanoma_sensitivity" not in male["bootstrap_95"]


def test_small_groups_are_pooled_and_ages_fall_into_bands_in_order(frame_and_probabilities):
    tables = subgroup_tables(*frame_and_probabilities, rounds=20)
    assert [row["key"] for row in tables["age"]["rows"]] == ["under 30", "45-59", "others"]
    pooled = tables["sex"]["rows"][-1]
    assert pooled["key"] == "others" and pooled["images"] == 5 < MIN_GROUP_IMAGES
    assert pooled["group"] == f"others, each under {MIN_GROUP_IMAGES} images: unknown"
    assert pooled["accuracy"] == 0
    confirmed = tables["diagnosis_confirmed_by"]["rows"]
    assert [row["key"] for row in confirmed] == ["histo", "follow_up", "others"]
    assert confirmed[0]["group"].startswith("histopathology")
    assert confirmed[2]["group"].endswith("confocal microscopy")


def test_only_the_groupings_whose_column_the_metadata_has(frame_and_probabilities):
    frame, probabilities = frame_and_probabilities
    assert list(subgroup_tables(frame.drop(columns=["sex", "age"]), probabilities, rounds=10)) == [
        "body_site", "diagnosis_confirmed_by"]
    assert subgroup_tables(frame[["label", "group"]], probabilities, rounds=10) == {}


def test_intervals_resample_lesions_not_photos(frame_and_probabilities):
    frame, probabilities = frame_and_probabilities
    four_photos = frame.loc[frame.index.repeat(4)].reset_index(drop=True)  # each photo four times, one lesion
    four_photos["group"] = np.repeat(np.arange(len(frame)), 4)
    once = _rows(subgroup_tables(frame.assign(group=np.arange(len(frame))), probabilities, rounds=200)["sex"])
    four = _rows(subgroup_tables(four_photos, np.repeat(probabilities, 4, axis=0), rounds=200)["sex"])
    width = {name: np.diff(rows["female"]["bootstrap_95"]["accuracy"])[0] for name, rows in (("once", once),
                                                                                            ("four", four))}
    # copies of a lesion's photo are no new evidence: the interval stays as wide
    assert width["four"] == pytest.approx(width["once"], rel=0.3) and width["once"] > 0.05
