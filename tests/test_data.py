from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import make_subset
from skinlesion import SkinLesionError
from skinlesion.classes import CODES
from skinlesion.data import (
    BOX_COLUMNS,
    add_training_images,
    class_weights,
    load_lesion_boxes,
    load_metadata,
    split_by_lesion,
    with_lesion_boxes,
)


@pytest.fixture(scope="module")
def ham_split(ham_dir):
    return split_by_lesion(load_metadata(ham_dir), seed=42)


def test_no_lesion_in_two_splits(ham_split):
    groups = {name: set(part["group"]) for name, part in ham_split.parts().items()}
    lesions = {name: set(part["lesion_id"]) for name, part in ham_split.parts().items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not groups[a] & groups[b], f"groups in {a} and {b}: {sorted(groups[a] & groups[b])[:5]}"
        assert not lesions[a] & lesions[b], f"lesions in {a} and {b}: {sorted(lesions[a] & lesions[b])[:5]}"
    assert sum(len(p) for p in ham_split.parts().values()) == 10015


def test_duplicate_pairs_land_in_one_split(ham_split, ham_dir):
    where = pd.concat([p.assign(split=n) for n, p in ham_split.parts().items()]).set_index("image_id")["split"]
    pairs = pd.read_csv(ham_dir / "newly_discovered_duplicates.csv")
    for a, b in zip(pairs["from_img"], pairs["to_img"]):
        assert where[Path(a).stem] == where[Path(b).stem], (a, b)


def test_split_is_stratified_and_seeded(ham_split, ham_dir):
    for name, part in ham_split.parts().items():
        share = part["dx"].value_counts(normalize=True)
        assert set(share.index) == set(CODES), name
        assert abs(share["mel"] - 1113 / 10015) < 0.02, (name, share["mel"])
        assert abs(share["nv"] - 6705 / 10015) < 0.02, (name, share["nv"])
    again = split_by_lesion(load_metadata(ham_dir), seed=42)
    assert list(again.test["image_id"]) == list(ham_split.test["image_id"])
    other = split_by_lesion(load_metadata(ham_dir), seed=7)
    assert list(other.test["image_id"]) != list(ham_split.test["image_id"])


def test_kaggle_layout_is_read(ham_dir, tmp_path):
    folder = make_subset(ham_dir, tmp_path / "kaggle", per_class=3, layout="kaggle")
    frame = load_metadata(folder)
    assert len(frame) == len(pd.read_csv(folder / "HAM10000_metadata.csv"))
    assert {p.parent.name for p in frame["path"]} == {"HAM10000_images_part_1", "HAM10000_images_part_2"}


def test_wrong_folder(tmp_path):
    with pytest.raises(SkinLesionError, match="does not exist"):
        load_metadata(tmp_path / "nowhere")
    with pytest.raises(SkinLesionError, match="no metadata in .*HAM10000_metadata.csv"):
        load_metadata(tmp_path)


def test_missing_column(ham_dir, tmp_path):
    folder = make_subset(ham_dir, tmp_path / "d", per_class=1)
    csv = folder / "HAM10000_metadata.csv"
    pd.read_csv(csv).drop(columns=["dx"]).to_csv(csv, index=False)
    # the only CSV lacks dx: it is not taken for metadata at all
    with pytest.raises(SkinLesionError, match="lacks the column.*dx"):
        load_metadata(folder)


def test_unknown_dx(ham_dir, tmp_path):
    folder = make_subset(ham_dir, tmp_path / "d", per_class=1)
    csv = folder / "HAM10000_metadata.csv"
    frame = pd.read_csv(csv)
    frame.loc[0, "dx"] = "scc"
    frame.to_csv(csv, index=False)
    with pytest.raises(SkinLesionError, match="unknown dx value.*scc.*valid: akiec"):
        load_metadata(folder)


def test_missing_image_is_named(ham_dir, tmp_path):
    folder = make_subset(ham_dir, tmp_path / "d", per_class=1)
    gone = pd.read_csv(folder / "HAM10000_metadata.csv")["image_id"].iloc[0]
    (folder / "images" / f"{gone}.jpg").unlink()
    with pytest.raises(SkinLesionError, match=f"1 image.*{gone}"):
        load_metadata(folder)


def _isic_ground_truth(ham_dir: Path, folder: Path, columns: list[str], akiec: str) -> pd.DataFrame:
    """A folder of HAM10000 photos whose labels are an ISIC challenge ground truth: `image` and a 0/1 column each
    (akiec's column named `akiec`, the others as their codes in capitals)."""
    metadata = pd.read_csv(make_subset(ham_dir, folder, per_class=2) / "HAM10000_metadata.csv")
    (folder / "HAM10000_metadata.csv").unlink()
    isic = {"akiec": akiec} | {code: code.upper() for code in ("mel", "nv", "bcc", "bkl", "df", "vasc")}
    truth = pd.DataFrame({"image": metadata["image_id"]})
    for column in columns:
        truth[column] = [float(isic[dx] == column) for dx in metadata["dx"]]
    return truth


def test_isic_2018_ground_truth_is_read(ham_dir, tmp_path):
    truth = _isic_ground_truth(ham_dir, tmp_path / "d", ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"],
                               "AKIEC")
    truth.to_csv(tmp_path / "d" / "ISIC2018_Task3_Test_GroundTruth.csv", index=False)
    loaded = load_metadata(tmp_path / "d")
    metadata = pd.read_csv(ham_dir / "HAM10000_metadata.csv").set_index("image_id")
    assert list(loaded["dx"]) == list(metadata.loc[truth["image"], "dx"]) and set(loaded["dx"]) == set(CODES)
    assert (loaded["group"] == loaded["image_id"]).all()  # no lesion ids: each image its own lesion


def test_isic_2019_ground_truth_leaves_out_classes_the_model_lacks(ham_dir, tmp_path, caplog):
    folder = tmp_path / "d"
    truth = _isic_ground_truth(ham_dir, folder, ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"], "AK")
    truth.loc[0, ["AK", "BCC", "MEL", "NV", "BKL", "DF", "VASC"]] = 0.0
    truth.loc[0, "SCC"] = 1.0
    truth.to_csv(folder / "ISIC_2019_Training_GroundTruth.csv", index=False)
    lesions = pd.DataFrame({"image": truth["image"], "lesion_id": [f"L{i // 2}" for i in range(len(truth))],
                            "age_approx": 50})
    lesions.to_csv(folder / "ISIC_2019_Training_Metadata.csv", index=False)
    loaded = load_metadata(folder)
    assert list(loaded["image_id"]) == list(truth["image"][1:]) and "akiec" in set(loaded["dx"])
    assert "left out 1 image(s) of SCC" in caplog.text
    assert list(loaded["group"]) == list(lesions["lesion_id"][1:])  # the lesion ids of the metadata CSV

    truth.loc[1, "NV"] = 1.0  # a second diagnosis for an image
    truth.to_csv(folder / "ISIC_2019_Training_GroundTruth.csv", index=False)
    with pytest.raises(SkinLesionError, match="1 row.*without exactly one diagnosis column at 1"):
        load_metadata(folder)


def test_metadata_without_lesion_id_uses_images(ham_dir, tmp_path):
    folder = make_subset(ham_dir, tmp_path / "d", per_class=2)
    csv = folder / "HAM10000_metadata.csv"
    frame = pd.read_csv(csv)[["image_id", "dx"]]
    csv.unlink()
    frame.to_csv(folder / "labels.csv", index=False)
    loaded = load_metadata(folder)
    assert list(loaded["group"]) == list(loaded["image_id"])


def test_class_weights_balance_the_loss():
    labels = np.array([0] * 10 + [1] * 90)
    balanced = class_weights(labels, power=1.0)
    assert balanced[0] * 10 == pytest.approx(balanced[1] * 90)
    assert np.mean([balanced[int(y)] for y in labels]) == pytest.approx(1.0)
    assert class_weights(labels, power=0.0)[0] == pytest.approx(1.0)


def test_a_class_weight_boost_multiplies_that_class_before_normalizing():
    labels = np.array([0] * 10 + [4] * 10 + [5] * 80)  # akiec, mel, nv
    plain, boosted = class_weights(labels, 0.5), class_weights(labels, 0.5, {"mel": 2.0})
    assert boosted[4] / boosted[0] == pytest.approx(2 * plain[4] / plain[0])
    assert boosted[5] / boosted[0] == pytest.approx(plain[5] / plain[0])
    assert np.mean([boosted[int(y)] for y in labels]) == pytest.approx(1.0)


def test_lesion_boxes_come_from_the_csv_that_has_them(ham_dir, tmp_path):
    boxes = load_lesion_boxes(ham_dir)  # HAM10000_metadata_ext.csv, beside the metadata without boxes
    assert list(boxes.columns) == list(BOX_COLUMNS) and len(boxes) == 10015
    assert (boxes["bottom"] > boxes["top"]).all() and (boxes["right"] > boxes["left"]).all()
    folder = make_subset(ham_dir, tmp_path / "d", per_class=1)
    with pytest.raises(SkinLesionError, match="no lesion boxes in .*lesion_crop"):
        load_lesion_boxes(folder)
    metadata = pd.read_csv(folder / "HAM10000_metadata.csv")
    metadata.assign(top=10, bottom=5, left=0, right=20).to_csv(folder / "HAM10000_metadata.csv", index=False)
    with pytest.raises(SkinLesionError, match="bottom <= top"):
        load_lesion_boxes(folder)
    metadata.assign(top="ten", bottom=50, left=0, right=20).to_csv(folder / "HAM10000_metadata.csv", index=False)
    with pytest.raises(SkinLesionError, match="not numbers"):
        load_lesion_boxes(folder)
    metadata.assign(top=10, bottom=50, left=0, right=20).to_csv(folder / "HAM10000_metadata.csv", index=False)
    joined = with_lesion_boxes(load_metadata(folder), folder)  # the metadata's own box columns, as numbers
    assert (joined["bottom"] == 50).all() and joined["top"].dtype.kind in "if"


def test_joining_the_boxes_leaves_the_split_as_it_was(ham_dir, ham_split):
    frame = with_lesion_boxes(load_metadata(ham_dir), ham_dir)
    assert frame[list(BOX_COLUMNS)].notna().all().all()
    with_boxes = split_by_lesion(frame, seed=42)
    for name, part in ham_split.parts().items():
        assert list(with_boxes.parts()[name]["image_id"]) == list(part["image_id"])


def test_extra_training_images_join_the_training_split_only(ham_split):
    known = ham_split.train.head(3)  # photos the split already holds (ISIC's archives include HAM10000's)
    of_test_lesion = ham_split.test.head(2).assign(image_id=["X_1", "X_2"])  # new photos, a test lesion's group
    # a new photo of a validation lesion whose folder does not merge it into that lesion's group: its lesion_id tells
    of_val_lesion = ham_split.val.head(1).assign(image_id=["X_3"], group=["G_3"])
    new = ham_split.train.tail(4).assign(image_id=[f"N_{i}" for i in range(4)], lesion_id=[f"NL_{i}" for i in range(4)],
                                         group=[f"NL_{i}" for i in range(4)])
    extra = pd.concat([known, of_test_lesion, of_val_lesion, new], ignore_index=True)
    split, facts = add_training_images(ham_split, extra)
    assert list(split.train["image_id"]) == list(ham_split.train["image_id"]) + list(new["image_id"])
    for column in ("group", "lesion_id"):  # still no lesion in training and in validation or test
        assert not set(split.train[column]) & (set(split.val[column]) | set(split.test[column]))
    assert (facts["images"], facts["added"], facts["dropped_already_in_split"],
            facts["dropped_validation_or_test_lesion"]) == (10, 4, 3, 3)
    assert sum(facts["added_by_class"].values()) == 4

    with pytest.raises(SkinLesionError, match="none of the 6 extra training images is new: 3 are already"):
        add_training_images(ham_split, pd.concat([known, of_test_lesion, of_val_lesion], ignore_index=True))
