import re
from pathlib import Path

from skinlesion import cli

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_option_is_in_the_readme():
    readme = README.read_text()
    parser = cli._parser()
    options = {o for action in parser._actions for o in action.option_strings if o.startswith("--")}
    for sub in parser._subparsers._group_actions[0].choices.values():
        options |= {o for action in sub._actions for o in action.option_strings if o.startswith("--")}
    options -= {"--help"}
    missing = sorted(o for o in options if not re.search(re.escape(o) + r"\b", readme))
    assert not missing, f"options not documented in README.md: {missing}"


def test_retrain_without_data_is_refused(capsys, tmp_path):
    assert cli.main(["--retrain", "--model", str(tmp_path / "m"), "--dist", str(tmp_path / "d")]) == 1
    assert "error: --retrain needs --data DIR" in capsys.readouterr().err


def test_extra_data_without_retrain_is_refused(capsys, tmp_path):
    assert cli.main(["--extra-data", str(tmp_path), "--model", str(tmp_path / "m"), "--dist", str(tmp_path / "d")]) == 1
    assert "error: --extra-data adds training images to a retrain" in capsys.readouterr().err


def test_a_missing_extra_data_folder_is_named_before_training(capsys, tiny_ham, tmp_path):
    assert cli.main(["--retrain", "--data", str(tiny_ham), "--extra-data", str(tmp_path / "nope"), "--run-dir",
                     str(tmp_path / "run"), "--model", str(tmp_path / "m"), "--dist", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert f"error: --extra-data {tmp_path / 'nope'}: " in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_missing_model_is_explained(capsys, tmp_path):
    assert cli.main(["predict", str(tmp_path), "--model", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert "error: no trained model in" in err and "Traceback" not in err


def test_evaluate_wrong_folder(capsys, tmp_path):
    assert cli.main(["evaluate", "--data", str(tmp_path / "nope"), "--model", str(tmp_path)]) == 1
    assert "does not exist or is not a folder" in capsys.readouterr().err


def test_predict_missing_path(capsys, tmp_path):
    from conftest import SHIPPED_MODEL
    assert cli.main(["predict", str(tmp_path / "ghost.jpg"), "--model", str(SHIPPED_MODEL)]) == 1
    assert "ghost.jpg: no such file or folder" in capsys.readouterr().err


def test_predict_warns_when_two_files_share_the_image_name(capsys, tmp_path, ham_dir):
    import shutil

    from conftest import SHIPPED_MODEL
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(ham_dir / "images" / "ISIC_0024306.jpg", tmp_path / folder / "spot.jpg")
    assert cli.main(["predict", str(tmp_path), "--model", str(SHIPPED_MODEL)]) == 0
    captured = capsys.readouterr()
    assert "warning: 2 files are named spot" in captured.err
    assert [line.split(",")[0] for line in captured.out.splitlines()] == ["image", "spot", "spot"]
