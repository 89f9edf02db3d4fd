"""How the model does for groups of its test photos: by sex, age, body site and how the diagnosis was confirmed.

    python bench/subgroups.py [--model model] [--data ../shared/data/ham10000] [--split test] [--save]

The model's own lesion-grouped test split (`--split val` for what experiments may read) through the model in Python,
then one table per grouping of skinlesion/subgroups.py: images, melanomas, accuracy, the mean top probability (how
sure the model was: above the accuracy, overconfident in that group), the expected calibration error (15 bins;
biased upwards in small groups), balanced accuracy (over the classes the group has) and melanoma sensitivity at the
top answer, with 95% bootstrap intervals that resample the group's lesions. A retrain writes the test split's tables
into its report for the model card; `--save` writes them into the report of a model trained before they existed, or
before their intervals resampled lesions.
"""

from __future__ import annotations

import sys

from common import split_table_arguments  # puts the repository on sys.path

from skinlesion import SkinLesionError
from skinlesion.evaluate import load_report, write_report
from skinlesion.model import load_network
from skinlesion.pipeline import folder_frame, predict_frame
from skinlesion.subgroups import GROUPINGS, subgroup_tables


def main() -> None:
    parser = split_table_arguments(__doc__.splitlines()[0])
    args = parser.parse_args()
    if args.save and args.split != "test":
        raise SkinLesionError("--save writes the test split's tables: drop --split val")

    frame, _ = folder_frame(args.model, args.data, only_split=args.split)
    report = load_report(args.model)
    probabilities = predict_frame(load_network(args.model), frame)["probabilities"]
    tables = subgroup_tables(frame, probabilities, rounds=args.rounds, seed=report.get("training", {}).get("seed", 0))
    if not tables:
        raise SkinLesionError(f"the metadata in {args.data} has none of the columns "
                              f"{', '.join(column for column, *_ in GROUPINGS.values())}")
    print(f"{args.model}, {args.split} split of its own lesion-grouped split: {len(frame)} images")
    for table in tables.values():
        print(f"\n{table['title']} ({table['column']})")
        print("group | images | melanomas | accuracy [95%] | mean top probability | ECE | BA [95%] (classes) | "
              "mel sensitivity [95%]")
        for row in table["rows"]:
            ci = row["bootstrap_95"]
            mel = (f"{row['melanoma_sensitivity']:.3f} [{ci['melanoma_sensitivity'][0]:.3f}, "
                   f"{ci['melanoma_sensitivity'][1]:.3f}]" if row["melanoma_sensitivity"] is not None else "-")
            print(f"{row['group']} | {row['images']} | {row['melanomas']} | {row['accuracy']:.3f} "
                  f"[{ci['accuracy'][0]:.3f}, {ci['accuracy'][1]:.3f}] | {row['mean_top_probability']:.3f} | "
                  f"{row['expected_calibration_error']:.3f} | "
                  f"{row['balanced_accuracy']:.3f} "
                  f"[{ci['balanced_accuracy'][0]:.3f}, {ci['balanced_accuracy'][1]:.3f}] ({row['classes']}) | {mel}")
    if args.save:
        report["subgroups"] = tables
        write_report(report, args.model)
        print(f"\nwritten into {args.model / 'report.json'}")


if __name__ == "__main__":
    try:
        main()
    except SkinLesionError as err:
        sys.exit(f"error: {err}")
