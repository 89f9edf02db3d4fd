"""End to end on a tiny subset: retrain -> model folder -> predict / evaluate / export contract."""

import csv
import importlib.metadata
import json
import logging
import shutil
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest

from skinlesion import SkinLesionError, cli
from skinlesion.classes import CODES, as_dicts
from skinlesion.data import load_metadata, split_by_lesion
from skinlesion.export import _version, model_bytes, read_metadata
from skinlesion.model import ModelConfig, build_network, load_network
from skinlesion.recipe import TRAIN_CONFIG_NAME, TrainConfig
from skinlesion.robustness import FRAMINGS, PHOTO_CHANGES
from skinlesion.train import train
from conftest import tiny_retrain

pytestmark = pytest.mark.slow


def test_retrain_writes_a_complete_model(tiny_model):
    for name in ("config.json", "train_config.json", "weights.npz", "report.json", "split.csv",
                 "confusion_matrix.png", "reliability.png", "tfjs/model.json", "tfjs/metadata.json"):
        assert (tiny_model / name).is_file(), name
    report = json.loads((tiny_model / "report.json").read_text())
    assert set(report["test"]["per_class"]) == set(CODES)
    assert report["test"]["images"] == report["split"]["test"]["images"]
    assert report["training"]["wall_time_s"] > 0
    software = report["training"]["software"]  # what the figures were made with, as installed
    assert software["tensorflow"] == importlib.metadata.version("tensorflow") and software["python"].startswith("3.")
    assert report["calibration"]["fit_on"] == "validation"
    # the photo changes: the photos as taken first, which must repeat the test figures
    rows = report["robustness"]["rows"]
    assert [r["change"] for r in rows] == ["as taken", *PHOTO_CHANGES]
    assert rows[0]["balanced_accuracy"] == pytest.approx(report["test"]["balanced_accuracy"])
    assert rows[0]["top_answer_changed"] == 0 and rows[0]["balanced_accuracy_change"] == 0
    for r in rows[1:]:
        assert r["balanced_accuracy_change"] == pytest.approx(r["balanced_accuracy"] - rows[0]["balanced_accuracy"])
        low, high = r["balanced_accuracy_change_95"]
        assert 0 <= r["top_answer_changed"] <= 1 and low <= high
    assert report["robustness"]["images"] == report["test"]["images"]
    # the framings: the same photos as taken first, then zoomed in
    framings = report["framing"]["rows"]
    assert [r["change"] for r in framings] == ["as taken", *FRAMINGS]
    assert framings[0] == rows[0]
    assert report["framing"]["images"] == report["test"]["images"]
    size = report["framing"]["training_lesion_size"]  # from the lesion boxes of the training split
    assert size["images"] == report["split"]["train"]["images"]
    assert 0 < size["quartiles"][0] <= size["median"] <= size["quartiles"][1] <= 1
    # the test figures by group: every test photo in exactly one row of each table, the rows adding up to the whole
    assert list(report["subgroups"]) == ["sex", "age", "body_site", "diagnosis_confirmed_by"]
    assert report["training"]["stages"]["subgroups"]["wall_time_s"] >= 0
    for table in report["subgroups"].values():
        assert sum(r["images"] for r in table["rows"]) == report["test"]["images"]
        correct = sum(r["accuracy"] * r["images"] for r in table["rows"])
        assert correct == pytest.approx(report["test"]["accuracy"] * report["test"]["images"])


def test_metadata_contract_matches_python(tiny_model):
    metadata = read_metadata(tiny_model / "tfjs")
    network = load_network(tiny_model)
    assert metadata["classes"] == as_dicts()
    assert [metadata["input"]["height"], metadata["input"]["width"], 3] == list(network.full.input_shape[1:])
    assert metadata["temperature"] == pytest.approx(network.config.temperature)
    assert 0 <= metadata["thresholds"]["mel"] <= 1


def test_predict_writes_csv_and_reports_bad_files(tiny_model, tiny_ham, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "notes.jpg").write_text("not an image")
    out = tmp_path / "predictions.csv"
    code = cli.main(["predict", str(tiny_ham / "images"), str(bad), "--out", str(out), "--model", str(tiny_model)])
    assert code == 1, "a skipped file makes the exit code non-zero"
    assert "notes.jpg: not a readable image" in capsys.readouterr().err
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["image", "akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    images = sorted(p.stem for p in (tiny_ham / "images").iterdir())
    assert sorted(r[0] for r in rows[1:]) == images
    sums = np.array([[float(v) for v in r[1:]] for r in rows[1:]]).sum(1)
    assert np.allclose(sums, 1, atol=1e-5)


def test_predict_all_good_exits_zero(tiny_model, tiny_ham, capsys):
    image = next((tiny_ham / "images").iterdir())
    assert cli.main(["predict", str(image), "--model", str(tiny_model)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("image,akiec") and lines[1].startswith(image.stem + ",")
    # --isic: the same probabilities, in the columns of an ISIC 2018 Task 3 submission
    assert cli.main(["predict", str(image), "--model", str(tiny_model), "--isic"]) == 0
    isic = capsys.readouterr().out.splitlines()
    assert isic[0] == "image,MEL,NV,BCC,AKIEC,BKL,DF,VASC"
    ours, theirs = dict(zip(lines[0].split(","), lines[1].split(","))), dict(zip(isic[0].split(","), isic[1].split(",")))
    assert {column.lower(): value for column, value in theirs.items() if column != "image"} == \
        {code: value for code, value in ours.items() if code != "image"}


def test_evaluate_prints_metrics_and_warns_about_seen_images(tiny_model, tiny_ham, capsys):
    assert cli.main(["evaluate", "--data", str(tiny_ham), "--model", str(tiny_model)]) == 0
    captured = capsys.readouterr()
    assert "balanced accuracy" in captured.out and "melanoma sensitivity" in captured.out
    assert "were used to train or tune this model" in captured.err
    assert cli.main(["evaluate", "--data", str(tiny_ham), "--model", str(tiny_model), "--test-split"]) == 0
    captured = capsys.readouterr()
    test_images = sum(1 for line in (tiny_model / "split.csv").read_text().splitlines() if line.endswith(",test"))
    assert f"images               {test_images}" in captured.out
    assert "were used to train" not in captured.err


def test_evaluate_folder_keeps_one_split_of_the_models_own(tiny_model, tiny_ham):
    from skinlesion.pipeline import evaluate_folder

    val_images = sum(1 for line in (tiny_model / "split.csv").read_text().splitlines() if line.endswith(",val"))
    result, seen = evaluate_folder(tiny_model, tiny_ham, only_split="val")
    assert result["images"] == val_images > 0 and seen == val_images  # the model was tuned on every one of them


def test_a_retrain_with_the_same_seed_and_config_repeats_exactly(tiny_model, tiny_ham, tmp_path):
    saved = TrainConfig.load(tiny_model / TRAIN_CONFIG_NAME)
    # every network setting is written out, so that a change of the defaults cannot change what the file repeats
    assert set(saved.network) == set(asdict(ModelConfig())) - {"temperature"}
    assert (saved.network["alpha"], saved.network["height"], saved.network["width"]) == (0.25, 96, 128)
    again = tiny_retrain(tiny_ham, tmp_path, **asdict(saved))
    with np.load(tiny_model / "weights.npz") as first, np.load(again / "weights.npz") as second:
        assert sorted(first.files) == sorted(second.files)
        for name in first.files:
            np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    assert json.loads((again / "report.json").read_text())["test"] == \
        json.loads((tiny_model / "report.json").read_text())["test"]


def test_another_start_seed_keeps_the_split_and_cache_and_changes_the_start(tiny_model, tiny_ham, tmp_path):
    other = tiny_retrain(tiny_ham, tmp_path, start_seed=7)
    first_run, other_run = tiny_model.parent / "run", other.parent / "run"
    for cached in ("cache_train.npy", "cache_val.npy"):  # same split, same augmented views
        np.testing.assert_array_equal(np.load(first_run / cached), np.load(other_run / cached), err_msg=cached)
    assert (tiny_model / "split.csv").read_text() == (other / "split.csv").read_text()
    with np.load(tiny_model / "weights.npz") as first, np.load(other / "weights.npz") as second:
        assert not np.array_equal(first["logits/kernel"], second["logits/kernel"])  # another start


def test_training_again_in_the_same_run_folder_reuses_every_stage(tiny_model, tiny_ham, caplog):
    """What --resume relies on: the feature caches, the pooled features and finished phases are read back."""
    run = tiny_model.parent / "run"
    config = TrainConfig.load(run / TRAIN_CONFIG_NAME)
    network = build_network(ModelConfig.load(tiny_model), weights=None)  # the cache carries the frozen blocks
    split = split_by_lesion(load_metadata(tiny_ham), seed=config.seed)
    with caplog.at_level(logging.INFO, logger="skinlesion"):
        stages = train(network, split, config, run)
    for name in ("cache_train.npy", "cache_val.npy", "pooled_train.npy", "pooled_val.npy"):
        assert f"reusing {name}" in caplog.text, name
    for phase in ("train_head", "fine_tune"):
        assert f"{phase}: already done in this run folder, skipped" in caplog.text
        assert stages[phase] == json.loads((run / f"{phase}.done.json").read_text())
    # the report then says its wall time left out the cache, which the first run computed
    assert stages["cache_features"]["reused"] is True
    assert json.loads((tiny_model / "report.json").read_text())["training"]["stages"]["cache_features"]["reused"] is False


def test_export_fuses_every_convolution(tiny_model):
    """BatchNorm folded, zero padding merged: each convolution is one fused TF.js kernel, and no pooling is a Mean,
    no class map a matrix product (export.inference_model; odd sides: test_export.py)."""
    graph = json.loads((tiny_model / "tfjs" / "model.json").read_text())["modelTopology"]["node"]
    ops = {node["op"] for node in graph}
    assert {"_FusedConv2D", "FusedDepthwiseConv2dNative"} <= ops
    assert not ops & {"DepthwiseConv2dNative", "Conv2D", "Pad", "Relu6", "FusedBatchNormV3", "Mean",
                      "BatchMatMulV2"}, ops


def test_export_command_converts_again_keeping_the_thresholds(tiny_model, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    (model / "tfjs" / "model.json").unlink()
    before = read_metadata(tiny_model / "tfjs")
    # an entry a later pipeline might add survives; a stale fact the export computes itself does not
    (model / "tfjs" / "metadata.json").write_text(json.dumps({**before, "added_later": [1, 2], "version": "stale"}))
    assert cli.main(["export", "--model", str(model)]) == 0
    assert "TF.js model written" in capsys.readouterr().out
    after = read_metadata(model / "tfjs")
    for key in ("thresholds", "uncertain_below", "ood_threshold", "quantization", "temperature", "classes"):
        assert after[key] == before[key], key
    assert after["added_later"] == [1, 2]
    assert after["version"] == _version(model / "tfjs")  # the hash of the files just written, not "stale"
    report = json.loads((model / "report.json").read_text())
    assert report["model"]["tfjs_bytes"] == model_bytes(model / "tfjs")


def test_export_command_refuses_a_folder_without_a_model(tmp_path, capsys):
    assert cli.main(["export", "--model", str(tmp_path)]) == 1
    assert "metadata.json is missing" in capsys.readouterr().err


def test_extra_training_images_train_and_are_reported_and_the_split_stays(tiny_model, tiny_ham, ham_dir, tmp_path):
    """--extra-data: an ISIC-style folder whose new photos join training only, whose HAM10000 photos are left out."""
    from skinlesion.site import build_site

    ham = pd.read_csv(ham_dir / "HAM10000_metadata.csv")
    tiny_ids = set(pd.read_csv(tiny_ham / "HAM10000_metadata.csv")["image_id"])
    new = ham[~ham["image_id"].isin(tiny_ids)].groupby("dx").head(2)
    already = ham[ham["image_id"].isin(tiny_ids)].head(3)  # as ISIC 2019 holds HAM10000's own photos
    extra = tmp_path / "isic_extra"
    (extra / "images").mkdir(parents=True)
    rows = pd.concat([new, already])
    for image_id in rows["image_id"]:
        shutil.copy(ham_dir / "images" / f"{image_id}.jpg", extra / "images" / f"{image_id}.jpg")
    truth = pd.DataFrame({"image": rows["image_id"]})
    for column in ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"):
        truth[column] = (rows["dx"].str.upper() == column).astype(float).to_numpy()
    truth.to_csv(extra / "ISIC2018_Task3_Training_GroundTruth.csv", index=False)

    model = tiny_retrain(tiny_ham, tmp_path, extra_data=extra)
    report = json.loads((model / "report.json").read_text())
    stage = report["training"]["stages"]["extra_training_images"]
    assert (stage["folder"], stage["images"], stage["added"], stage["dropped_already_in_split"]) == \
        ("isic_extra", 17, 14, 3)
    split = pd.read_csv(model / "split.csv")
    assert set(split.loc[split["split"] == "train", "image_id"]) >= set(new["image_id"])
    before = pd.read_csv(tiny_model / "split.csv")
    for part in ("val", "test"):  # the held-out parts are the data folder's own, as without extra images
        assert list(split.loc[split["split"] == part, "image_id"]) == \
            list(before.loc[before["split"] == part, "image_id"])
    assert report["data"]["images"] == len(tiny_ids)
    site = build_site(model, tmp_path / "dist")
    assert "and 14 more images (isic_extra)" in (site / "index.html").read_text()
    assert "Training also used <strong>14</strong> more labelled images" in (site / "model-card.html").read_text()

    # the run folder's cache holds the extra photos: a retrain there without them is refused, not trained wrong
    trained = int((before["split"] == "train").sum())
    refused = f"cache_train.npy holds {trained + 14} images, the train split {trained}:"
    with pytest.raises(SkinLesionError, match=refused):
        tiny_retrain(tiny_ham, tmp_path)
