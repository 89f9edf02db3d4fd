"""Quality of a trained model on its own lesion-grouped test split, measured now (not read from the report).

    python bench/quality.py [--model model] [--data ../shared/data/ham10000] [--save]

Prints the test-split metrics (Python / Keras with the shipped float16 weights) with 95% bootstrap intervals that
resample the test lesions (seeded as the retrain seeds them), the calibration, the TF.js model size and the retrain
wall time recorded by the retrain that produced the model. `--save` writes the intervals into the report of a model
trained before the intervals resampled lesions (they resampled images, a little too narrow).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from skinlesion import SkinLesionError  # noqa: E402
from skinlesion.evaluate import format_summary, load_report, write_report  # noqa: E402
from skinlesion.export import TFJS_DIR, model_bytes  # noqa: E402
from skinlesion.pipeline import evaluate_folder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "model")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ham10000")
    parser.add_argument("--save", action="store_true", help="write the intervals into the model's report.json")
    args = parser.parse_args()

    report = load_report(args.model)
    result, _ = evaluate_folder(args.model, args.data, only_split="test")
    print("test split of the model's own lesion-grouped split (never used for any choice)")
    print(format_summary(result))
    at = result.get("melanoma_at_threshold")
    if at:
        low, high = result["bootstrap_95"]["melanoma_at_threshold_sensitivity"]
        print(f"melanoma at the validation-chosen threshold {at['threshold']:.3f}: sensitivity "
              f"{at['sensitivity']:.4f} (95% CI {low:.4f}-{high:.4f}), specificity {at['specificity']:.4f}")
    if args.save:
        # intervals around the report's figures only: other figures would mean another model or other images
        if any(abs(result[k] - report["test"][k]) > 1e-9 for k in ("accuracy", "balanced_accuracy")):
            raise SkinLesionError(f"the test figures measured now differ from those in {args.model / 'report.json'}"
                                  f" (accuracy {result['accuracy']:.4f} against {report['test']['accuracy']:.4f}):"
                                  f" not saved")
        report["test"].update({key: result[key] for key in ("bootstrap_95", "bootstrap_resampled")})
        write_report(report, args.model)
        print(f"intervals written into {args.model / 'report.json'}")
    calibration = report.get("calibration", {})
    if calibration:
        print(f"temperature {calibration['temperature']:.3f} (fit on validation); test ECE before "
              f"{calibration['test_ece_before']:.4f}, after {calibration['test_ece_after']:.4f}")
    print(f"TF.js model bytes ({report['model']['quantization']}): {model_bytes(args.model / TFJS_DIR)}")
    stages = report["training"]["stages"]
    print(f"retrain wall time (recorded by the retrain): {report['training']['wall_time_s']:.0f} s; per stage: "
          + ", ".join(f"{k} {v['wall_time_s']:.0f} s" for k, v in stages.items()))


if __name__ == "__main__":
    try:
        main()
    except SkinLesionError as err:
        sys.exit(f"error: {err}")
