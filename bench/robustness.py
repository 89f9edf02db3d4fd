"""How the model's answers move when the photos look as if another camera had taken them, or are framed closer.

    python bench/robustness.py [--model model] [--data ../shared/data/ham10000] [--split test] [--save]

Every photo of the model's own lesion-grouped test split (`--split val` for what experiments may read) changed one
way at a time, by the changes in skinlesion/robustness.py (saturation, white balance, hue, brightness, blur, JPEG),
through the model in Python: its figures on the changed photos, the change of balanced accuracy against the photos
as taken with a paired-bootstrap 95% interval (resampling lesions), and the share of photos whose top answer
changed; then a second table of framings, the photos zoomed in on their centre as the page's crop step does. A
retrain writes both tables (test split) into its report for the model card; `--save` writes them into the report of
a model trained before they existed, or before their intervals resampled lesions.
"""

from __future__ import annotations

import sys

import numpy as np

from common import split_table_arguments  # puts the repository on sys.path

from skinlesion import SkinLesionError
from skinlesion.data import has_lesion_boxes, with_lesion_boxes
from skinlesion.evaluate import load_report, write_report
from skinlesion.export import TFJS_DIR, read_metadata
from skinlesion.model import load_network
from skinlesion.pipeline import folder_frame
from skinlesion.robustness import change_tables, lesion_size, report_sections


def main() -> None:
    parser = split_table_arguments(__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="only N images of the split, drawn at random (a quick look)")
    args = parser.parse_args()
    if args.save and (args.split != "test" or args.limit):
        raise SkinLesionError("--save writes the whole test split's table: drop --split val and --limit")

    frame, _ = folder_frame(args.model, args.data, only_split=args.split)
    frame = frame.sample(n=min(args.limit, len(frame)), random_state=0) if args.limit else frame
    mel_threshold = read_metadata(args.model / TFJS_DIR).get("thresholds", {}).get("mel")
    report = load_report(args.model)
    network, seed = load_network(args.model), report.get("training", {}).get("seed", 0)
    tables = change_tables(network, frame, mel_threshold, rounds=args.rounds, seed=seed)
    print(f"{args.model}, {args.split} split of its own lesion-grouped split: {len(frame)} images; each row changes "
          f"every photo one way before the page's preprocessing")
    print_table(tables["robustness"])
    changed = tables["robustness"][1:]
    print(f"mean over the {len(changed)} changes: BA {np.mean([r['balanced_accuracy'] for r in changed]):.3f}, "
          f"top answer changed {np.mean([r['top_answer_changed'] for r in changed]):.1%}")
    print("\nframing: the photos zoomed in on their centre, as the page's crop step does")
    print_table(tables["framing"])
    if args.save:
        training, _ = folder_frame(args.model, args.data, only_split="train")
        size = lesion_size(with_lesion_boxes(training, args.data), network.config) if has_lesion_boxes(args.data) \
            else None
        report.update(report_sections(tables, len(frame), size))
        write_report(report, args.model)
        print(f"written into {args.model / 'report.json'}")


def print_table(rows: list[dict]) -> None:
    """One table of `change_tables`, the photos as taken first."""
    print("change | accuracy | BA | BA change [95% interval] | mel sensitivity top-1 / at the alert | "
          "top answer changed")
    for row in rows:
        low, high = row["balanced_accuracy_change_95"]
        change = f"{row['balanced_accuracy_change']:+.3f} [{low:+.3f}, {high:+.3f}]" if row is not rows[0] else "-"
        print(f"{row['change']} | {row['accuracy']:.3f} | {row['balanced_accuracy']:.3f} | {change} | "
              f"{row['melanoma_sensitivity']:.3f} / {row.get('melanoma_alert_sensitivity', float('nan')):.3f} | "
              f"{row['top_answer_changed']:.1%}")


if __name__ == "__main__":
    try:
        main()
    except SkinLesionError as err:
        sys.exit(f"error: {err}")
