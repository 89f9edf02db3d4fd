"""Quality of a trained model on its own lesion-grouped test split, measured now (not read from the report).

    python bench/quality.py [--model model] [--data ../shared/data/ham10000]

Prints the test-split metrics (Python / Keras with the shipped float16 weights), the calibration, the TF.js model
size and the retrain wall time recorded by the retrain that produced the model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from skinlesion.evaluate import format_summary  # noqa: E402
from skinlesion.export import TFJS_DIR, model_bytes  # noqa: E402
from skinlesion.pipeline import evaluate_folder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "model")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ham10000")
    args = parser.parse_args()

    result, _ = evaluate_folder(args.model, args.data, only_split="test")
    report = json.loads((args.model / "report.json").read_text())
    print("test split of the model's own lesion-grouped split (never used for any choice)")
    print(format_summary(result))
    at = result.get("melanoma_at_threshold")
    if at:
        print(f"melanoma at the validation-chosen threshold {at['threshold']:.3f}: sensitivity "
              f"{at['sensitivity']:.4f}, specificity {at['specificity']:.4f}")
    intervals = report["test"].get("bootstrap_95", {})
    for name, (low, high) in intervals.items():
        print(f"95% bootstrap interval (from the report) {name}: {low:.4f} - {high:.4f}")
    calibration = report.get("calibration", {})
    if calibration:
        print(f"temperature {calibration['temperature']:.3f} (fit on validation); test ECE before "
              f"{calibration['test_ece_before']:.4f}, after {calibration['test_ece_after']:.4f}")
    print(f"TF.js model bytes ({report['model']['quantization']}): {model_bytes(args.model / TFJS_DIR)}")
    stages = report["training"]["stages"]
    print(f"retrain wall time (recorded by the retrain): {report['training']['wall_time_s']:.0f} s; per stage: "
          + ", ".join(f"{k} {v['wall_time_s']:.0f} s" for k, v in stages.items()))


if __name__ == "__main__":
    main()
