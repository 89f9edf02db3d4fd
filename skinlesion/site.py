"""Render the static site: web_templates/ + static/ + the exported TF.js model + its report -> out_dir.

Reads `model_dir/tfjs/` (model.json, weight shards, metadata.json) and `model_dir/report.json` (plus the plot
files it names, next to it). Writes `out_dir/index.html`, `out_dir/model-card.html`, `out_dir/static/` and
`out_dir/model/`, then (webapp.py) the icons, the web app manifest and the service worker `out_dir/sw.js`. Every URL
in the output is relative, so the folder works under any path (GitHub Pages).
"""

from __future__ import annotations

import functools
import http.server
import json
import logging
import re
import shutil
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2

from skinlesion import SkinLesionError
from skinlesion.webapp import ISOLATION_HEADERS, MANIFEST, THEME_COLOR, add_offline_support

log = logging.getLogger("skinlesion")

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = ROOT / "web_templates"
STATIC_DIR = ROOT / "static"

# Only the page's own origin. 'wasm-unsafe-eval' lets WebAssembly compile (the TF.js wasm backend). TF.js's threaded
# wasm build starts its workers from blob: URLs and they load the backend's code from another blob: URL, so blob:
# is allowed for workers and scripts; a blob: URL is made by the page's own scripts and is no network access.
# form-action 'self': the settings form reloads the page with its choices in the query.
CSP = (
    "default-src 'self'; script-src 'self' blob: 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'"
)

# template -> output file
PAGES = {"index.html": "index.html", "model_card.html": "model-card.html"}

RETRAIN_HINT = "run `python build.py --retrain --data DIR` to train and export a model"


def build_site(model_dir: Path, out_dir: Path) -> Path:
    """Render the site for the model in `model_dir` into `out_dir`; return `out_dir`."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    tfjs_dir = model_dir / "tfjs"
    metadata = _read_json(tfjs_dir / "metadata.json", "the TF.js model metadata")
    report = _read_json(model_dir / "report.json", "the evaluation report")
    model_json = tfjs_dir / str(metadata.get("model_url", "model.json"))
    if not model_json.is_file():
        raise SkinLesionError(f"{model_json} is missing: {tfjs_dir} has metadata.json but no model; {RETRAIN_HINT}.")
    plots = _plot_files(model_dir, report)

    _clear_previous_build(out_dir)
    out_dir.mkdir(parents=True)
    shutil.copytree(STATIC_DIR, out_dir / "static")
    shutil.copytree(tfjs_dir, out_dir / "model")
    for name, path in plots.items():
        target = out_dir / "model" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a typo in a template fails the build, not the page
        keep_trailing_newline=True,
    )
    common = {
        "csp": CSP,
        "model_name": metadata.get("name", "skin-lesion model"),
        "model_version": metadata.get("version", ""),
        "tfjs_version": _tfjs_version(),
        "classes": metadata.get("classes", []),
        "manifest_url": MANIFEST,
        "theme_color": THEME_COLOR,
        # a retrain with --extra-data: how many more images training saw, and from which folder (footer, card)
        "extra_training": _extra_training(report),
    }
    # The classifier page asks the browser to fetch the model at once, in parallel with the runtime scripts
    # (TF.js itself starts fetching it only after its backend has started).
    preload = [f"model/{name}" for name in ("metadata.json", *_model_files(model_json))]
    card = _model_card(report, metadata)
    pages = {"index.html": {"page": "index", "preload": preload, "lesion_share": _lesion_share(report),
                            # the intro links these sections of the card only when the report has them
                            "card_has": {key: bool(card[key]) for key in ("robustness", "framing")},
                            # how the model did on the lesions that needed a biopsy, said under every result
                            "biopsied": (card["subgroups"] or {}).get("histopathology")},
             "model_card.html": {"page": "model_card", "card": card}}
    for template, output in PAGES.items():
        html = env.get_template(template).render(**common, **pages[template])
        (out_dir / output).write_text(html, encoding="utf-8")
    version = add_offline_support(out_dir, env, metadata)
    log.info("service worker cache version %s", version)
    log.info("site written to %s (%d files)", out_dir, sum(1 for p in out_dir.rglob("*") if p.is_file()))
    return out_dir


def _extra_training(report: dict) -> dict | None:
    stage = ((report.get("training") or {}).get("stages") or {}).get("extra_training_images")
    if not isinstance(stage, dict) or not isinstance(stage.get("added"), int):
        return None
    return {"images": _value(stage["added"]), "folder": str(stage.get("folder", ""))}


def _lesion_share(report: dict) -> float | None:
    """The median share of the frame the training photos' lesions fill (skinlesion/robustness.py `lesion_size`), for
    the crop step's guide circle; None when the report does not have it."""
    framing = report.get("framing")
    size = framing.get("training_lesion_size") if isinstance(framing, dict) else None
    median = size.get("median") if isinstance(size, dict) else None
    return float(median) if _number(median) and 0 < median <= 1 else None


def _read_json(path: Path, what: str) -> dict:
    """Load a JSON object, or raise a SkinLesionError that says which file and how to fix it."""
    if not path.is_file():
        raise SkinLesionError(f"{path} not found: the site needs {what}; {RETRAIN_HINT}.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise SkinLesionError(f"{path} is not readable JSON ({err}); {RETRAIN_HINT}.") from err
    if not isinstance(data, dict):
        raise SkinLesionError(f"{path} should hold a JSON object, not {type(data).__name__}; {RETRAIN_HINT}.")
    return data


def _model_files(model_json: Path) -> list[str]:
    """model.json's name and its weight files, relative to its folder, in the order TF.js fetches them."""
    model = _read_json(model_json, "the TF.js model")
    shards = [path for group in model.get("weightsManifest", []) for path in group.get("paths", [])]
    return [model_json.name, *shards]


def _plot_files(model_dir: Path, report: dict) -> dict[str, Path]:
    """The report's plots as {relative name: source path}; every one must exist beside report.json."""
    plots = {}
    for key, name in (report.get("plots") or {}).items():
        rel = PurePosixPath(str(name))
        if rel.is_absolute() or ".." in rel.parts:
            raise SkinLesionError(f"report.json plot {key!r} is {name!r}: plot paths must be relative to {model_dir}.")
        path = model_dir / rel
        if not path.is_file():
            raise SkinLesionError(f"{path} (plot {key!r} in report.json) not found; {RETRAIN_HINT}.")
        plots[str(rel)] = path
    return plots


def _clear_previous_build(out_dir: Path) -> None:
    """Delete out_dir if it is a previous build (has index.html) or empty; refuse anything else."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise SkinLesionError(f"{out_dir} exists and is not a folder; choose another output folder.")
    if (out_dir / "index.html").is_file() or not any(out_dir.iterdir()):
        log.info("removing previous build %s", out_dir)
        shutil.rmtree(out_dir)
        return
    raise SkinLesionError(
        f"{out_dir} exists and does not look like a previous site build (no index.html); refusing to delete it. "
        "Choose another output folder or remove it yourself."
    )


def _tfjs_version() -> str:
    """The vendored TF.js version, from static/vendor/tfjs/README.md ('' if unknown)."""
    readme = STATIC_DIR / "vendor" / "tfjs" / "README.md"
    match = re.search(r"TensorFlow\.js (\S+)", readme.read_text(encoding="utf-8")) if readme.is_file() else None
    return match.group(1) if match else ""


# ---------------------------------------------------------------- model card view


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _out_of(part: Any, rest: Any) -> str:
    """'250 of 1,272' from a count and the rest of its whole (false positives, true negatives); '' unless counts."""
    return f"{part:,} of {part + rest:,}" if isinstance(part, int) and isinstance(rest, int) else ""


def _pct(x: Any) -> str:
    return f"{100 * x:.1f}%" if _number(x) else "n/a"


def _pct_or_none(x: Any) -> str | None:
    """A percentage, or None where the report has no number (the template then leaves the sentence out)."""
    return _pct(x) if _number(x) else None


def _dec(x: Any) -> str:
    return f"{x:.3f}" if _number(x) else "n/a"


def _value(x: Any) -> str:
    """Any scalar or short list from the report, formatted for a table cell."""
    if isinstance(x, bool) or x is None:
        return str(x).lower() if x is not None else "n/a"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in x) + "]"
    return str(x)


_ACRONYMS = {"auc": "AUC", "roc": "ROC", "ece": "ECE", "ci": "CI", "ci95": "95% CI", "mb": "MB", "tfjs": "TF.js"}


def _humanize(key: str) -> str:
    """'macro_roc_auc' -> 'Macro ROC AUC', 'wall_time_s' -> 'Wall time (s)'; dots in flattened keys become ' · '."""
    key = re.sub(r"_s\b", " (s)", key)
    words = key.replace(".", " · ").replace("_", " ").split()
    words = [_ACRONYMS.get(w.lower(), w) for w in words]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _flatten(data: Any, prefix: str = "", depth: int = 0) -> list[dict]:
    """Rows {label, value} for the scalars and short flat lists in a nested dict (unknown report keys)."""
    rows: list[dict] = []
    if not isinstance(data, dict):
        return [{"label": _humanize(prefix) or "value", "value": _value(data)}] if _is_simple(data) else []
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and depth < 2:
            rows.extend(_flatten(value, name, depth + 1))
        elif _is_simple(value):
            rows.append({"label": _humanize(name), "value": _value(value)})
    return rows


def _is_simple(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return len(value) <= 4 and all(isinstance(v, (int, float, str)) for v in value)
    return isinstance(value, (int, float, str, bool)) or value is None


# (key in report["test"], label, formatter, help); melanoma figures are handled separately.
_METRICS = (
    ("accuracy", "Accuracy", _pct, "Share of test images whose most likely class is right."),
    ("balanced_accuracy", "Balanced accuracy", _pct,
     "Mean recall over the classes: rare classes count as much as moles."),
    ("top2_accuracy", "Top-2 accuracy", _pct, "The right class is among the two most likely."),
    ("top3_accuracy", "Top-3 accuracy", _pct, "The right class is among the three most likely."),
    ("macro_roc_auc", "Macro ROC AUC", _dec,
     "Mean one-vs-rest ROC AUC over the classes (1 is perfect, 0.5 is chance)."),
    ("expected_calibration_error", "Expected calibration error", _dec,
     "Mean gap between how sure the model is and how often it is right (0 is perfectly calibrated)."),
)
_KNOWN_TEST_KEYS = {k for k, *_ in _METRICS} | {"images", "melanoma", "melanoma_at_threshold", "per_class",
                                                "confusion_matrix", "bootstrap_95", "bootstrap_resampled",
                                                "balanced_accuracy_classes"}
_MELANOMA_COUNT_KEYS = {"true_positives", "false_negatives", "true_negatives", "false_positives"}
_KNOWN_TOP_KEYS = {"model", "split", "test", "plots", "training", "data", "calibration", "warnings",
                   "test_split_caveat", "robustness", "framing", "subgroups"}


def _melanoma_rows(rates: dict, key: str, label: str, how: str, fallback: dict[str, str]) -> list[dict]:
    """Sensitivity and specificity rows for one way of flagging melanoma, with counts where the report has them."""
    rows = []
    tp, fn, tn, fp = (rates.get(k) for k in ("true_positives", "false_negatives", "true_negatives", "false_positives"))
    counts = {"sensitivity": _out_of(tp, fn), "specificity": _out_of(tn, fp)}
    helps = {"sensitivity": f"Share of melanomas flagged ({how}).",
             "specificity": f"Share of other lesions not flagged as melanoma ({how})."}
    for name in ("sensitivity", "specificity"):
        if name in rates:
            rows.append({"key": f"{key}_{name}", "label": f"{label} {name}", "value": _pct(rates[name]),
                         "help": helps[name], "count": counts[name] or fallback.get(f"{key}_{name}", "")})
    return rows


def _cautions(report: dict, names: dict[str, str]) -> dict:
    """Calibration and the page's three cautions (alert, unsure, unlike the training photos): how each threshold
    was chosen on validation and how it did on the test split. Keys the card does not know go to `more`."""
    calibration, warnings = report.get("calibration") or {}, report.get("warnings") or {}
    known_calibration = {"temperature", "fit_on", "test_ece_before", "test_ece_after"}
    out: dict[str, Any] = {
        "temperature": f"{calibration['temperature']:.3f}" if _number(calibration.get("temperature")) else None,
        "fit_on": str(calibration.get("fit_on") or "validation"),
        "ece": [_dec(calibration[k]) for k in ("test_ece_before", "test_ece_after")]
        if all(_number(calibration.get(k)) for k in ("test_ece_before", "test_ece_after")) else None,
    }
    rates = warnings.get("alerts_on_test") or {}
    out["alerts"] = []
    for code, threshold in (warnings.get("alert_thresholds") or {}).items():
        r = rates.get(code) if isinstance(rates.get(code), dict) else {}
        tp, fn, tn, fp = (r.get(k) for k in ("true_positives", "false_negatives", "true_negatives", "false_positives"))
        out["alerts"].append({
            "code": code, "name": names.get(code, code), "threshold": _pct(threshold),
            "found": _pct(r.get("sensitivity")), "found_count": _out_of(tp, fn),
            "false_alarms": _pct(1 - r["specificity"]) if _number(r.get("specificity")) else "n/a",
            "false_alarm_count": _out_of(fp, tn),
        })
    out["alert_target"] = _pct_or_none(warnings.get("alert_sensitivity_target"))
    unsure = {k: warnings.get(k) for k in ("uncertain_accuracy_target", "uncertain_below", "test_share_uncertain",
                                           "test_accuracy_when_uncertain", "test_accuracy_when_confident")}
    out["unsure"] = {k: _pct_or_none(v) for k, v in unsure.items()} if _number(unsure["uncertain_below"]) else None
    unlike = {k: warnings.get(k) for k in ("ood_flagged_share_target", "ood_threshold",
                                           "test_share_out_of_distribution")}
    out["unlike"] = {"threshold": f"{unlike['ood_threshold']:.1f}",
                     **{k: _pct_or_none(v) for k, v in unlike.items() if k != "ood_threshold"}} \
        if _number(unlike["ood_threshold"]) else None
    shown = {"alert_thresholds", "alerts_on_test", "alert_sensitivity_target", *unsure, *unlike}
    out["more"] = _flatten({f"calibration.{k}": v for k, v in calibration.items() if k not in known_calibration}) \
        + _flatten({f"warnings.{k}": v for k, v in warnings.items() if k not in shown})
    return out


def _model_card(report: dict, metadata: dict) -> dict:
    """Everything model_card.html shows, from report.json and metadata.json, tolerant of missing or extra keys."""
    test = report.get("test") or {}
    classes = metadata.get("classes") or []
    names = {c.get("code"): c.get("name", c.get("code")) for c in classes}
    codes = [c.get("code") for c in classes]
    cm = _confusion(test.get("confusion_matrix"), codes)
    counts = _counts(cm, codes)

    metrics = []
    for key, label, fmt, help_text in _METRICS:
        if key in test:
            present = test.get("balanced_accuracy_classes")
            if key == "balanced_accuracy" and isinstance(present, int) and present < len(codes):
                help_text += f" Only {present} of the {len(codes)} classes have test images: the mean is over those."
            metrics.append({"key": key, "label": label, "value": fmt(test[key]), "help": help_text,
                            "count": counts.get(key, "")})
    melanoma = test.get("melanoma") or {}
    metrics += _melanoma_rows(melanoma, "melanoma", "Melanoma", "melanoma is the top class", counts)
    at_threshold = test.get("melanoma_at_threshold") or {}
    if isinstance(at_threshold.get("threshold"), (int, float)):
        how = f"melanoma probability at least {_pct(at_threshold['threshold'])}, a threshold chosen on validation"
        metrics += _melanoma_rows(at_threshold, "melanoma_at_threshold", "Melanoma alert", how, {})
    intervals = test.get("bootstrap_95") or {}
    for m in metrics:
        m["ci"] = ""
        ci = intervals.get(m["key"])
        if isinstance(ci, (list, tuple)) and len(ci) == 2:
            fmt = _dec if m["key"] in ("macro_roc_auc", "expected_calibration_error") else _pct
            m["ci"] = f"95% CI {fmt(ci[0])} to {fmt(ci[1])}"
    extra_test = [r for k, v in test.items() if k not in _KNOWN_TEST_KEYS for r in _flatten({k: v})]
    shown = {m["key"] for m in metrics}
    extra_test += [r for k, v in intervals.items() if k not in shown for r in _flatten({f"bootstrap 95.{k}": v})]
    for prefix, rates in (("melanoma", melanoma), ("melanoma at threshold", at_threshold)):
        extra_test += [r for k, v in rates.items() if k not in {"sensitivity", "specificity", "threshold"}
                       | _MELANOMA_COUNT_KEYS for r in _flatten({f"{prefix}.{k}": v})]

    per_class_raw = test.get("per_class") or {}
    order = codes + [c for c in per_class_raw if c not in codes]
    per_class = [
        {"code": code, "name": names.get(code, ""), "precision": _dec(m.get("precision")),
         "recall": _dec(m.get("recall")), "f1": _dec(m.get("f1")), "roc_auc": _dec(m.get("roc_auc")),
         "support": _value(m.get("support"))}
        for code in order if isinstance(m := per_class_raw.get(code), dict)
    ]

    plots = [{"key": _html_id(key), "title": _humanize(str(key)),
              "src": f"model/{PurePosixPath(str(name))}"}
             for key, name in (report.get("plots") or {}).items()]

    extra_sections = [{"title": _humanize(k), "rows": rows} for k, v in report.items()
                      if k not in _KNOWN_TOP_KEYS and (rows := _flatten(v))]
    data = report.get("data") or {}
    return {
        "classes": classes,
        "test_images": _value(test["images"]) if isinstance(test.get("images"), int) else "",
        "intervals_over": _resampled(test.get("bootstrap_resampled")) if test.get("bootstrap_95") else "",
        # written by hand into a report when a person's choice made its test figures less than test-blind
        "test_caveat": str(report.get("test_split_caveat") or ""),
        "metrics": metrics,
        "extra_test": extra_test,
        "per_class": per_class,
        "confusion": cm,
        "plots": plots,
        "split": _split_table(report.get("split") or {}, codes),
        # the data folder's path is the build machine's, not something a reader of the site can use
        "data_images": _value(data["images"]) if isinstance(data.get("images"), int) else None,
        "facts": _facts(report, metadata),
        "cautions": _cautions(report, names),
        "robustness": _change_table(report.get("robustness")),
        "framing": _change_table(report.get("framing")),
        "subgroups": _subgroup_tables(report.get("subgroups")),
        "extra_sections": extra_sections,
        "temperature": metadata.get("temperature"),
    }


def _resampled(unit: Any) -> str:
    """What a report section's bootstrap intervals resampled (its bootstrap_resampled, evaluate.BOOTSTRAP_RESAMPLED),
    in the card's words; a report written before lesions were resampled has none, and resampled the images."""
    return "the lesions (all photos of a drawn lesion together)" if unit == "lesions" else "the images"


def _change_table(changes: Any) -> dict | None:
    """A table of the test photos changed one way per row (skinlesion/robustness.py: the photo changes, or the
    framings; the photos as taken first), and the change that cost the most."""
    rows = changes.get("rows") if isinstance(changes, dict) else None
    if not isinstance(rows, list) or len(rows) < 2 or not all(isinstance(r, dict) for r in rows):
        return None

    def cells(row: dict, as_taken: bool) -> dict:
        points, ci = row.get("balanced_accuracy_change"), row.get("balanced_accuracy_change_95")
        compared = not as_taken and _number(points)
        has_ci = compared and isinstance(ci, list) and len(ci) == 2 and all(map(_number, ci))
        return {"change": str(row.get("change", "")), "balanced_accuracy": _pct(row.get("balanced_accuracy")),
                "change_points": f"{100 * points:+.1f}" if compared else "",
                "ci": f"{100 * ci[0]:+.1f} to {100 * ci[1]:+.1f}" if has_ci else "",
                "melanoma": _pct(row.get("melanoma_sensitivity")),
                "top_changed": "" if as_taken else _pct(row.get("top_answer_changed"))}

    changed = [r for r in rows[1:]
               if _number(r.get("balanced_accuracy_change")) and _number(r.get("top_answer_changed"))]
    worst = min(changed, key=lambda r: r["balanced_accuracy_change"], default=None)
    flips = [r["top_answer_changed"] for r in changed]
    return {"images": _value(changes.get("images")), "intervals_over": _resampled(changes.get("bootstrap_resampled")),
            "rows": [cells(row, as_taken=i == 0) for i, row in enumerate(rows)],
            "worst": {"change": str(worst.get("change", "")),
                      "points": f"{-100 * worst['balanced_accuracy_change']:.1f}",
                      "flips_low": _pct(min(flips)), "flips_high": _pct(max(flips))} if worst else None}


def _subgroup_tables(tables: Any) -> dict | None:
    """The test figures by group of photos (skinlesion/subgroups.py: sex, age, body site, how the diagnosis was
    confirmed), one table per grouping, and the histopathology and follow-up rows of the last for the limitations."""
    if not isinstance(tables, dict):
        return None
    valid = {key: table for key, table in tables.items()
             if isinstance(table, dict) and isinstance(table.get("rows"), list) and table["rows"]
             and all(isinstance(r, dict) for r in table["rows"])}
    if not valid:
        return None
    by_key = {r.get("key"): r for r in valid.get("diagnosis_confirmed_by", {}).get("rows", [])
              if _number(r.get("accuracy"))}
    histo = by_key.get("histo")
    units = {table.get("bootstrap_resampled") for table in valid.values()}
    histopathology = {"accuracy": _pct(histo["accuracy"]), "images": _value(histo.get("images")),
                      "confidence": _pct_or_none(histo.get("mean_top_probability")),
                      "follow_up": _pct_or_none(by_key.get("follow_up", {}).get("accuracy"))} if histo else None
    return {"tables": [{"key": _html_id(key), "title": str(table.get("title") or key),
                        "rows": [_subgroup_row(r) for r in table["rows"]]} for key, table in valid.items()],
            "min_melanomas": next((_value(t["min_melanomas"]) for t in valid.values()
                                   if _number(t.get("min_melanomas"))), None),
            # tables saved at different times could differ: lesions only when every one says so
            "intervals_over": _resampled(units.pop() if len(units) == 1 else None),
            "histopathology": histopathology}


def _subgroup_row(row: dict) -> dict:
    def interval(key: str) -> str:
        ci = (row.get("bootstrap_95") or {}).get(key)
        return f"{_pct(ci[0])} to {_pct(ci[1])}" if isinstance(ci, list) and len(ci) == 2 and all(map(_number, ci)) \
            else ""

    return {"key": str(row.get("key", "")), "group": str(row.get("group", "")), "images": _value(row.get("images")),
            "melanomas": _value(row.get("melanomas")), "classes": _value(row.get("classes")),
            "accuracy": _pct(row.get("accuracy")), "accuracy_ci": interval("accuracy"),
            "confidence": _pct_or_none(row.get("mean_top_probability")) or "",
            "balanced_accuracy": _pct(row.get("balanced_accuracy")),
            "balanced_accuracy_ci": interval("balanced_accuracy"),
            "melanoma": _pct_or_none(row.get("melanoma_sensitivity")) or "",
            "melanoma_ci": interval("melanoma_sensitivity")}


def _html_id(key: Any) -> str:
    """A report key as a fragment of an HTML id."""
    return re.sub(r"[^a-z0-9_-]", "-", str(key).lower())


def _confusion(matrix: Any, codes: list[str]) -> dict | None:
    """The confusion matrix as table rows, or None when it is absent or does not match the class list."""
    if not (isinstance(matrix, list) and len(matrix) == len(codes) and codes
            and all(isinstance(r, list) and len(r) == len(codes) for r in matrix)):
        return None
    rows = [{"code": code, "total": _value(sum(row)),
             "cells": [{"count": _value(n), "diagonal": i == j} for j, n in enumerate(row)]}
            for i, (code, row) in enumerate(zip(codes, matrix))]
    return {"codes": codes, "rows": rows, "matrix": matrix}


def _counts(cm: dict | None, codes: list[str]) -> dict[str, str]:
    """'k of n' counts behind the rates, from the confusion matrix (rates alone hide how few images back them)."""
    if cm is None:
        return {}
    m = cm["matrix"]
    total = sum(map(sum, m))
    out = {"accuracy": f"{sum(m[i][i] for i in range(len(m))):,} of {total:,}"}
    if "mel" in codes:
        k = codes.index("mel")
        mel_total = sum(m[k])
        others = [i for i in range(len(m)) if i != k]
        out["melanoma_sensitivity"] = f"{m[k][k]:,} of {mel_total:,}"
        negatives = sum(sum(m[i]) for i in others)
        out["melanoma_specificity"] = f"{sum(sum(m[i]) - m[i][k] for i in others):,} of {negatives:,}"
    return out


def _split_table(split: dict, codes: list[str]) -> dict | None:
    if not split:
        return None
    all_codes = codes + sorted({c for s in split.values() if isinstance(s, dict)
                                for c in (s.get("per_class") or {}) if c not in codes})
    rows = [{"name": name, "images": _value(s.get("images")), "lesions": _value(s.get("lesions")),
             "per_class": [_value((s.get("per_class") or {}).get(c)) for c in all_codes]}
            for name, s in split.items() if isinstance(s, dict)]
    return {"codes": all_codes, "rows": rows}


def _facts(report: dict, metadata: dict) -> list[dict]:
    model = report.get("model") or {}
    training = report.get("training") or {}
    facts = []
    if "backbone" in model:
        facts.append({"label": "Backbone", "value": str(model["backbone"])})
    inp = model.get("input")
    if isinstance(inp, (list, tuple)) and len(inp) == 2:
        facts.append({"label": "Input", "value": f"{inp[1]} x {inp[0]} px (width x height), RGB, centre-cropped"})
    if isinstance(model.get("tfjs_bytes"), (int, float)):
        facts.append({"label": "Download size", "value": f"{model['tfjs_bytes'] / 1e6:.1f} MB"})
    if "quantization" in model:
        facts.append({"label": "Weights", "value": str(model["quantization"])})
    if isinstance(training.get("wall_time_s"), (int, float)):
        reused = (training.get("stages") or {}).get("cache_features", {}).get("reused") is True
        facts.append({"label": "Training time", "value": f"{training['wall_time_s'] / 60:.0f} min"
                      + (", reusing the frozen-feature cache of an earlier run" if reused else "")})
    for key, label in (("seed", "Random seed"), ("date", "Trained on")):
        if key in training:
            facts.append({"label": label, "value": _value(training[key])})
    if metadata.get("version"):
        facts.append({"label": "Model version", "value": str(metadata["version"])})
    known = {"backbone", "input", "tfjs_bytes", "quantization"}
    facts += _flatten({k: v for k, v in model.items() if k not in known})
    facts += _flatten({k: v for k, v in training.items() if k not in {"wall_time_s", "seed", "date"}})
    return facts


# ---------------------------------------------------------------- serving


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files with the MIME types the page needs (ES modules, WebAssembly), no caching, cross-origin isolated."""

    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",  # WebAssembly.instantiateStreaming refuses anything else
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".json": "application/json",
        ".webmanifest": "application/manifest+json",
    }

    isolate = True  # send ISOLATION_HEADERS

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        if self.isolate:
            for name, value in ISOLATION_HEADERS.items():
                self.send_header(name, value)
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


class _PlainHandler(_Handler):
    """As a host that sends no headers of its own (GitHub Pages): only the service worker can isolate the page."""

    isolate = False


class _QuietServer(http.server.ThreadingHTTPServer):
    """The standard threaded server, quiet when a browser drops a connection mid-download.

    A reload or a closed tab while the model's shards load resets the connection; the standard server prints a
    traceback for that, which reads like a crash in the terminal that runs `--serve`. Anything else still does.
    """

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            log.debug("%s closed the connection before the answer was sent", client_address[0])
            return
        super().handle_error(request, client_address)


def make_server(out_dir: Path, host: str = "127.0.0.1", port: int = 8000,
                isolate: bool = True) -> http.server.ThreadingHTTPServer:
    """An HTTP server for the built site in `out_dir` (port 0 picks a free port); call serve_forever() on it.

    `isolate`: send the cross-origin isolation headers (False behaves like GitHub Pages, for tests).
    """
    out_dir = Path(out_dir)
    if not (out_dir / "index.html").is_file():
        raise SkinLesionError(f"{out_dir / 'index.html'} not found: build the site first with `python build.py`.")
    handler = functools.partial(_Handler if isolate else _PlainHandler, directory=str(out_dir))
    return _QuietServer((host, port), handler)


def serve(out_dir: Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the built site until interrupted, printing its URL."""
    try:
        server = make_server(out_dir, host, port)
    except OSError as err:
        raise SkinLesionError(f"cannot listen on {host}:{port} ({err}); try another --port.") from err
    url = f"http://{host}:{server.server_address[1]}/"
    print(f"Serving {out_dir} at {url} (Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
