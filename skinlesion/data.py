"""Read a HAM10000-layout folder (metadata CSV + images) and split it by lesion into train / validation / test.

Reads: `HAM10000_metadata.csv` (or the one CSV with `image_id` and `dx` columns, or else the one ground-truth CSV of
an ISIC challenge: `image` and a 0/1 column per diagnosis) and the images it names, found by image_id anywhere under
the folder as .jpg/.jpeg/.png (so `images/`, Kaggle's `HAM10000_images_part_1/` + `_part_2/` and a flat folder all
work). Optional: `newly_discovered_duplicates.csv`, pairs of images of one lesion filed under two lesion_ids, merged
into one group so that no lesion straddles two splits. Lesion bounding boxes (`top`, `bottom`, `left`, `right` in
pixels of the image files, as in `HAM10000_metadata_ext.csv`) are read only for a recipe that crops around the
lesion (`load_lesion_boxes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from . import SkinLesionError, log
from .classes import CODES

METADATA_NAME = "HAM10000_metadata.csv"
DUPLICATES_NAME = "newly_discovered_duplicates.csv"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
REQUIRED_COLUMNS = ("image_id", "dx")
BOX_COLUMNS = ("top", "bottom", "left", "right")
SPLITS = ("train", "val", "test")
# The ISIC challenges' ground truth: `image` and one 0/1 column per diagnosis. ISIC 2018 Task 3 has these 7 (AKIEC);
# ISIC 2019 names akiec AK and adds SCC (squamous cell carcinoma) and UNK, no classes of this model.
ONE_HOT_IMAGE = "image"
ISIC_2018_COLUMNS = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")  # also a Task 3 submission's order
ONE_HOT_CLASSES = {column: column.lower() for column in ISIC_2018_COLUMNS} | {"AK": "akiec"}  # column -> class code
ONE_HOT_OTHERS = ("SCC", "UNK")
ONE_HOT_SIGNATURE = (ONE_HOT_IMAGE, *(c for c in ISIC_2018_COLUMNS if c != "AKIEC"))  # what both years' files have


@dataclass
class Split:
    """The three lesion-disjoint parts of a dataset; each frame has image_id, dx, label, group and path."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame

    def parts(self) -> dict[str, pd.DataFrame]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def summary(self) -> dict:
        """Images, lesions and images per class of each part (for the report)."""
        return {
            name: {
                "images": int(len(df)),
                "lesions": int(df["group"].nunique()),
                "per_class": {code: int((df["dx"] == code).sum()) for code in CODES},
            }
            for name, df in self.parts().items()
        }


def find_images(folder: Path) -> dict[str, Path]:
    """Map image id (file name without extension) to path, for every jpg/jpeg/png under `folder`."""
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            found.setdefault(path.stem, path)
    return found


def _csvs_with_columns(folder: Path, columns: tuple[str, ...]) -> list[Path]:
    """The readable CSVs directly in `folder` whose header has all of `columns`, sorted by name."""
    found = []
    for csv in sorted(folder.glob("*.csv")):
        try:
            header = pd.read_csv(csv, nrows=0).columns
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError):
            continue
        if all(c in header for c in columns):
            found.append(csv)
    return found


def _find_metadata_csv(folder: Path) -> Path:
    if not folder.is_dir():
        raise SkinLesionError(f"data folder {folder} does not exist or is not a folder; pass --data DIR, the folder "
                              f"holding {METADATA_NAME} and the images")
    preferred = folder / METADATA_NAME
    if preferred.is_file():
        return preferred
    candidates = _csvs_with_columns(folder, REQUIRED_COLUMNS) or _csvs_with_columns(folder, ONE_HOT_SIGNATURE)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise SkinLesionError(f"no metadata in {folder}: expected {METADATA_NAME} (or one CSV with the columns "
                              f"{', '.join(REQUIRED_COLUMNS)}, or an ISIC ground truth with {ONE_HOT_IMAGE} and a "
                              f"0/1 column per diagnosis); is this the HAM10000 folder?")
    raise SkinLesionError(f"several metadata CSVs in {folder} ({', '.join(c.name for c in candidates)}); "
                          f"name the one to use {METADATA_NAME}")


def _merge_duplicate_lesions(df: pd.DataFrame, duplicates_csv: Path) -> pd.Series:
    """Group ids: lesion_id, with the lesions of each listed duplicate pair merged into one group (union-find)."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    lesion_of = dict(zip(df["image_id"], df["lesion_id"]))
    pairs = pd.read_csv(duplicates_csv)
    merged = 0
    for a, b in zip(pairs["from_img"], pairs["to_img"]):
        la, lb = lesion_of.get(Path(a).stem), lesion_of.get(Path(b).stem)
        if la is None or lb is None:
            continue
        ra, rb = root(la), root(lb)
        if ra != rb:
            parent[rb] = ra
            merged += 1
    log.info("merged %d lesion pairs listed in %s", merged, duplicates_csv.name)
    return df["lesion_id"].map(root)


def _from_one_hot(df: pd.DataFrame, csv: Path) -> pd.DataFrame:
    """image_id and dx from an ISIC ground truth (`image` and a 0/1 column per diagnosis). Rows of a diagnosis that
    is no class of this model (SCC, UNK) are left out, with a warning that says how many. Lesion ids come from a CSV
    beside it with the columns image and lesion_id, where there is one (ISIC 2019's metadata)."""
    columns = [c for c in df.columns if c in ONE_HOT_CLASSES or c in ONE_HOT_OTHERS]
    values = df[columns].apply(pd.to_numeric, errors="coerce")  # text (and empty cells) -> NaN, not 0 or 1
    bad = ~values.isin([0, 1]).all(axis=1) | (values.eq(1).sum(axis=1) != 1)
    if bad.any():
        raise SkinLesionError(f"{csv.name}: {int(bad.sum())} row(s) without exactly one diagnosis column at 1 and the "
                              f"others at 0, e.g. {df[ONE_HOT_IMAGE][bad].iloc[0]}")
    diagnosis = values.eq(1).idxmax(axis=1)
    other = ~diagnosis.isin(list(ONE_HOT_CLASSES))
    if other.any():
        log.warning("%s: left out %d image(s) of %s, no class of this model", csv.name, int(other.sum()),
                    ", ".join(sorted(set(diagnosis[other]))))
    frame = pd.DataFrame({ONE_HOT_IMAGE: df[ONE_HOT_IMAGE][~other], "dx": diagnosis[~other].map(ONE_HOT_CLASSES)})
    # ISIC 2019 gives the lesion ids in a metadata CSV of their own (image, lesion_id, age_approx, ...)
    lesion_csvs = _csvs_with_columns(csv.parent, (ONE_HOT_IMAGE, "lesion_id"))
    if lesion_csvs:
        lesions = pd.read_csv(lesion_csvs[0], usecols=[ONE_HOT_IMAGE, "lesion_id"], dtype=str)
        log.info("lesion ids from %s", lesion_csvs[0].name)
        frame = frame.merge(lesions.drop_duplicates(ONE_HOT_IMAGE), on=ONE_HOT_IMAGE, how="left")
    return frame.rename(columns={ONE_HOT_IMAGE: "image_id"})


def load_metadata(folder: Path) -> pd.DataFrame:
    """The dataset's images: image_id, dx, label (index in CODES), group (lesion, duplicates merged), path.

    Raises SkinLesionError for a wrong folder, a missing column, an unknown dx, or an image that is not there.
    An ISIC ground truth (no lesion_id) makes each image its own lesion.
    """
    folder = Path(folder)
    csv = _find_metadata_csv(folder)
    try:
        df = pd.read_csv(csv, dtype=str)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise SkinLesionError(f"{csv} is not a readable CSV: {err}") from None
    if "dx" not in df.columns and ONE_HOT_IMAGE in df.columns:
        df = _from_one_hot(df, csv)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise SkinLesionError(f"{csv} lacks the column(s) {', '.join(missing)}; it has {', '.join(df.columns)}")
    if df.empty:
        raise SkinLesionError(f"{csv} lists no images")
    df = df.dropna(subset=["image_id"]).copy()
    df["image_id"] = df["image_id"].str.strip()
    df["dx"] = df["dx"].str.strip().str.lower()
    unknown = sorted(set(df["dx"].fillna("<empty>")) - set(CODES))
    if unknown:
        raise SkinLesionError(f"{csv} has unknown dx value(s) {', '.join(unknown)}; valid: {', '.join(CODES)}")
    if "lesion_id" not in df.columns:
        log.warning("%s has no lesion_id column: each image counts as its own lesion", csv.name)
        df["lesion_id"] = df["image_id"]
    df["lesion_id"] = df["lesion_id"].fillna(df["image_id"])

    images = find_images(folder)
    df["path"] = df["image_id"].map(images)
    absent = df.loc[df["path"].isna(), "image_id"].tolist()
    if absent:
        shown = ", ".join(absent[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
        raise SkinLesionError(f"{len(absent)} image(s) listed in {csv.name} are not under {folder} as "
                              f"{'/'.join(IMAGE_SUFFIXES)}: {shown}")
    duplicates = folder / DUPLICATES_NAME
    df["group"] = _merge_duplicate_lesions(df, duplicates) if duplicates.is_file() else df["lesion_id"]
    df["label"] = df["dx"].map(CODES.index).astype(int)
    log.info("%s: %d images, %d lesions", folder, len(df), df["group"].nunique())
    return df.reset_index(drop=True)


def load_lesion_boxes(folder: Path) -> pd.DataFrame:
    """Lesion bounding boxes by image_id (columns top, bottom, left, right, pixels of the image file), from the first
    CSV in `folder` that has image_id and those columns (HAM10000: `HAM10000_metadata_ext.csv`). Rows without a box
    are left out."""
    folder = Path(folder)
    found = _csvs_with_columns(folder, ("image_id", *BOX_COLUMNS))
    if not found:
        raise SkinLesionError(f"no lesion boxes in {folder}: the recipe crops around the lesion (lesion_crop > 0), "
                              f"which needs a CSV with the columns image_id, {', '.join(BOX_COLUMNS)} "
                              f"(HAM10000: HAM10000_metadata_ext.csv); or set lesion_crop to 0")
    csv = found[0]
    boxes = pd.read_csv(csv, usecols=["image_id", *BOX_COLUMNS], dtype=str).dropna()
    boxes["image_id"] = boxes["image_id"].str.strip()
    numbers = boxes[list(BOX_COLUMNS)].apply(pd.to_numeric, errors="coerce")
    bad = numbers.isna().any(axis=1) | (numbers["bottom"] <= numbers["top"]) | (numbers["right"] <= numbers["left"])
    if bad.any():
        raise SkinLesionError(f"{csv.name}: {int(bad.sum())} lesion box(es) that are not numbers or have bottom <= top "
                              f"or right <= left, e.g. {boxes['image_id'][bad].iloc[0]}")
    log.info("lesion boxes for %d images from %s", len(boxes), csv.name)
    return boxes[["image_id"]].join(numbers).drop_duplicates("image_id").set_index("image_id")


def has_lesion_boxes(folder: Path) -> bool:
    """Whether `folder` has a CSV of lesion boxes that `load_lesion_boxes` reads."""
    return bool(_csvs_with_columns(Path(folder), ("image_id", *BOX_COLUMNS)))


def with_lesion_boxes(frame: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """`frame` (from `load_metadata`) with numeric columns top, bottom, left, right from `load_lesion_boxes(folder)`;
    NaN for images without a box. Replaces box columns the metadata CSV itself has (load_metadata reads them as
    text)."""
    return frame.drop(columns=list(BOX_COLUMNS), errors="ignore").join(load_lesion_boxes(folder), on="image_id")


def _one_fold(df: pd.DataFrame, n_splits: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rest, held-out) where held-out is one stratified, group-disjoint fold of size ~1/n_splits."""
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    rest_idx, held_idx = next(folds.split(df, df["label"], groups=df["group"]))
    return df.iloc[rest_idx], df.iloc[held_idx]


def split_by_lesion(df: pd.DataFrame, seed: int = 42, held_out_fraction: float = 0.15) -> Split:
    """Stratified, seeded train / val / test split in which every lesion (group) lies in exactly one part.

    Test and validation each get about `held_out_fraction` of the images.
    """
    if df["group"].nunique() < 3:
        raise SkinLesionError(f"only {df['group'].nunique()} lesion(s): a train/val/test split needs at least 3")
    n_splits = max(2, round(1 / held_out_fraction))
    rest, test = _one_fold(df, n_splits, seed)
    train, val = _one_fold(rest, max(2, n_splits - 1), seed + 1)
    split = Split(train.reset_index(drop=True), val.reset_index(drop=True), test.reset_index(drop=True))
    for name, part in split.parts().items():
        log.info("%-5s %5d images, %5d lesions", name, len(part), part["group"].nunique())
    return split


def add_training_images(split: Split, extra: pd.DataFrame) -> tuple[Split, dict]:
    """`split` with the images of `extra` (as `load_metadata` reads them) added to its training part only; its
    validation and test parts are kept as they are.

    Dropped from `extra`: images the split already holds (by image_id: ISIC's archives include HAM10000's own photos,
    test photos among them) and images of a validation or test lesion (by lesion_id or merged group). Returns the new
    split and what was added and dropped, for the report. Raises SkinLesionError if nothing new is left.
    """
    held_out = {name for part in (split.val, split.test) for column in ("group", "lesion_id") for name in part[column]}
    known = pd.concat([part["image_id"] for part in split.parts().values()])
    same_image = extra["image_id"].isin(known)
    held_out_lesion = ~same_image & (extra["group"].isin(held_out) | extra["lesion_id"].isin(held_out))
    added = extra[~same_image & ~held_out_lesion]
    facts = {"images": len(extra), "added": len(added), "dropped_already_in_split": int(same_image.sum()),
             "dropped_validation_or_test_lesion": int(held_out_lesion.sum()),
             "added_by_class": {code: int((added["dx"] == code).sum()) for code in CODES}}
    if added.empty:
        raise SkinLesionError(f"none of the {len(extra)} extra training images is new: "
                              f"{facts['dropped_already_in_split']} are already in the data set, "
                              f"{facts['dropped_validation_or_test_lesion']} show its validation or test lesions")
    log.info("extra training images: %d added, %d already in the data set, %d of validation or test lesions",
             len(added), facts["dropped_already_in_split"], facts["dropped_validation_or_test_lesion"])
    train = pd.concat([split.train, added], ignore_index=True)
    return Split(train, split.val, split.test), facts


def class_weights(labels: np.ndarray, power: float, boost: dict[str, float] | None = None) -> dict[int, float]:
    """Loss weight per class, (n_largest / n_class) ** power times `boost` (class code -> factor, default 1),
    normalized to a mean sample weight of 1.

    power 1 balances the classes fully; 0 ignores the imbalance; in between trades accuracy for balanced accuracy.
    A boost above 1 makes a class's misses cost more (e.g. melanoma, the class whose misses hurt most).
    """
    counts = np.bincount(labels, minlength=len(CODES)).astype(float)
    raw = np.where(counts > 0, (counts.max() / np.maximum(counts, 1)) ** power, 0.0)
    raw *= [(boost or {}).get(code, 1.0) for code in CODES]
    raw /= (raw[labels]).mean()
    return {i: float(w) for i, w in enumerate(raw)}
