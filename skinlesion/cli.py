"""The command line: build the site (optionally retraining first), serve it, predict image files, evaluate a folder.

    python build.py [--retrain --data DIR] [--serve]     build dist/ from model/ (retrain first if asked)
    python build.py predict PATH [PATH ...] [--out FILE]  CSV of class probabilities
    python build.py evaluate --data DIR                  metrics of the shipped model on a HAM10000 or ISIC folder
    python build.py export                               convert model/ to TF.js again (after the export changed)
"""

from __future__ import annotations

import argparse
import csv
import datetime
import logging
import sys
import warnings
from collections import Counter
from pathlib import Path

from . import SkinLesionError, log

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "model"
DEFAULT_DIST = ROOT / "dist"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="build.py", description="Build, retrain, serve and use the in-browser "
                                     "skin-lesion classifier. Without a command: build the site into --dist.")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                        help="model folder: read to build the site, written by --retrain (default: model/)")
    parser.add_argument("--dist", type=Path, default=DEFAULT_DIST, help="where the site is built (default: dist/)")
    parser.add_argument("--retrain", action="store_true",
                        help="train a new model from --data first (replaces --model only if everything succeeds)")
    parser.add_argument("--data", type=Path, help="HAM10000 folder (metadata CSV + images) for --retrain")
    parser.add_argument("--extra-data", type=Path, metavar="DIR",
                        help="more labelled images for --retrain to train on, e.g. ISIC 2019's training images (a "
                        "metadata CSV or an ISIC ground truth, and the images); added to the training split only: "
                        "photos already in --data and photos of its validation or test lesions are left out")
    parser.add_argument("--config", type=Path, help="training config JSON (keys of TrainConfig; e.g. a model's "
                        "train_config.json to repeat its retrain)")
    parser.add_argument("--weights", default="imagenet",
                        help="ImageNet MobileNet weights: 'imagenet' (through KERAS_HOME or a download) or a "
                        "mobilenet_*_no_top.h5 file")
    parser.add_argument("--quantization", default="float16", choices=("float32", "float16", "uint8"),
                        help="weight quantization of the exported TF.js model (default: float16)")
    parser.add_argument("--run-dir", type=Path,
                        help="where a retrain keeps its feature cache, logs and checkpoints (default: runs/<time>/)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted retrain from its run folder (--run-dir, default: the newest "
                        "in runs/) with the config it started with")
    parser.add_argument("--strategy", default="default", choices=("default", "mirrored", "multi-worker"),
                        help="tf.distribute strategy for --retrain: one device, all local GPUs, or the hosts in "
                        "TF_CONFIG (default: default)")
    parser.add_argument("--cpu-devices", type=int, default=0,
                        help="split the CPU into N logical devices (to try --strategy mirrored without GPUs)")
    parser.add_argument("--serve", action="store_true", help="serve the built site after building")
    parser.add_argument("--port", type=int, default=8000, help="port for --serve (default: 8000)")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    predict = commands.add_parser("predict", help="classify image files or folders (recursively); CSV out")
    predict.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image files or folders")
    predict.add_argument("--out", type=Path, help="CSV file to write (default: standard output)")
    predict.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model folder (default: model/)")
    predict.add_argument("--isic", action="store_true", help="columns as an ISIC 2018 Task 3 submission: image, MEL, "
                         "NV, BCC, AKIEC, BKL, DF, VASC")

    evaluate = commands.add_parser("evaluate", help="metrics of the model on a HAM10000-layout folder or an ISIC "
                                   "challenge's ground truth")
    evaluate.add_argument("--data", type=Path, required=True,
                          help="folder with a metadata CSV (image_id, dx) or an ISIC ground truth (image, MEL, NV, "
                               "...) and the images anywhere below it")
    evaluate.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model folder (default: model/)")
    evaluate.add_argument("--test-split", action="store_true",
                          help="only the images of the model's own test split (by image_id)")

    export = commands.add_parser("export", help="convert the model folder's network to TF.js again, keeping its "
                                 "quantization and thresholds (for a change in the export, not in the model)")
    export.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model folder (default: model/)")
    return parser


def _newest_run() -> Path:
    runs = sorted(p for p in (ROOT / "runs").glob("*") if p.is_dir()) if (ROOT / "runs").is_dir() else []
    if not runs:
        raise SkinLesionError("--resume: no run folder in runs/; pass --run-dir DIR")
    return runs[-1]


def _build(args: argparse.Namespace) -> None:
    from .site import build_site, serve

    if args.extra_data is not None and not args.retrain:
        raise SkinLesionError("--extra-data adds training images to a retrain: use it with --retrain --data DIR")
    if args.retrain:
        from .pipeline import retrain
        from .recipe import TRAIN_CONFIG_NAME, TrainConfig
        from .train import distribution_strategy

        if args.data is None:
            raise SkinLesionError("--retrain needs --data DIR, the HAM10000 folder (e.g. ../shared/data/ham10000)")
        run_dir = args.run_dir or ROOT / "runs" / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        if args.resume:
            run_dir = args.run_dir or _newest_run()
            args.config = run_dir / TRAIN_CONFIG_NAME
            print(f"resuming the retrain in {run_dir}")
        train_config = TrainConfig.load(args.config) if args.config else TrainConfig()
        strategy = distribution_strategy(args.strategy, args.cpu_devices)
        report = retrain(args.data, args.model, run_dir, train_config, args.weights,
                         args.quantization, strategy, args.extra_data)
        test = report["test"]
        melanoma = test["melanoma"]["sensitivity"]
        print(f"retrained in {report['training']['wall_time_s']:.0f} s; test split: accuracy "
              f"{test['accuracy']:.4f}, balanced accuracy {test['balanced_accuracy']:.4f}, melanoma sensitivity "
              f"{'n/a (no melanomas)' if melanoma is None else f'{melanoma:.4f}'}")
    out = build_site(args.model, args.dist)
    print(f"site built in {out}")
    if args.serve:
        serve(out, port=args.port)


def _predict(args: argparse.Namespace) -> int:
    from .classes import CODES
    from .data import IMAGE_SUFFIXES, ISIC_2018_COLUMNS, ONE_HOT_CLASSES
    from .model import load_network, predict, preprocess, read_image

    files: list[Path] = []
    failures = 0
    for path in args.paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                print(f"warning: no .jpg/.jpeg/.png images under {path}", file=sys.stderr)
            files += found
        elif path.is_file():
            files.append(path)
        else:
            print(f"error: {path}: no such file or folder", file=sys.stderr)
            failures += 1
    stems = Counter(path.stem for path in files)
    for stem in sorted(stem for stem, n in stems.items() if n > 1):
        print(f"warning: {stems[stem]} files are named {stem} ("
              f"{', '.join(str(p) for p in files if p.stem == stem)}); their rows share that image name",
              file=sys.stderr)
    network = load_network(args.model)
    out = open(args.out, "w", newline="") if args.out else sys.stdout
    try:
        writer = csv.writer(out)
        columns = ISIC_2018_COLUMNS if args.isic else CODES
        order = [CODES.index(ONE_HOT_CLASSES[column] if args.isic else column) for column in columns]
        writer.writerow(["image", *columns])
        for path in files:
            try:
                inputs = preprocess(read_image(path), network.config)[None]
            except SkinLesionError as err:
                print(f"error: {err}; skipped", file=sys.stderr)
                failures += 1
                continue
            probabilities = predict(network, inputs)[0]
            writer.writerow([path.stem, *(f"{probabilities[i]:.6f}" for i in order)])
    finally:
        if args.out:
            out.close()
    if args.out:
        print(f"{len(files) - failures} image(s) classified into {args.out}", file=sys.stderr)
    return 1 if failures else 0


def _evaluate(args: argparse.Namespace) -> None:
    from .evaluate import format_summary
    from .pipeline import evaluate_folder

    result, seen = evaluate_folder(args.model, args.data, only_split="test" if args.test_split else None)
    if seen:
        print(f"warning: {seen} of these {result['images']} images were used to train or tune this model; "
              f"metrics on them are not a fair test (use --test-split, or a folder of unseen images)",
              file=sys.stderr)
    print(format_summary(result))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    warnings.filterwarnings("ignore", message=".*input_shape.*")  # Keras: MobileNet at a non-square size
    try:
        if args.command == "predict":
            return _predict(args)
        if args.command == "evaluate":
            _evaluate(args)
        elif args.command == "export":
            from .pipeline import reexport

            print(f"TF.js model written to {reexport(args.model)}; rebuild the site with `python build.py`")
        else:
            _build(args)
    except SkinLesionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
