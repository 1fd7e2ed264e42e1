#!/usr/bin/env python
r"""Quickstart: train and test the default model (a p4 group CNN on rotated
digits) through the ``gdl-pyg`` command, then print the test accuracies.

    python scripts/quickstart.py                 # gcnn_digits: fit, then test
    python scripts/quickstart.py --compare       # gcnn_digits and cnn_digits
    python scripts/quickstart.py --max-epochs 5  # a shorter run

Both models are trained on upright digits and tested on the same test images
upright and rotated by random multiples of 90 degrees. Each run writes its
folder under ``--out`` (default ``runs/``): ``runs/<config>/version_<n>/`` with
the checkpoint, ``metrics.csv``, ``config.yaml`` and ``learning_curves.png``
(fit), and a second version folder with ``test_results.json`` (test).
Equivalent to::

    gdl-pyg fit  --config gdl_pyg/configs/gcnn_digits.yaml
    gdl-pyg test --config gdl_pyg/configs/gcnn_digits.yaml --ckpt_path <best checkpoint>
"""
import argparse
import glob
import json
import os
import re
import time
from typing import Dict, List, Optional, Set

from gdl_pyg.lightning.cli import main, resolve_checkpoint

DEFAULT = "gcnn_digits"
COMPARE = ["gcnn_digits", "cnn_digits"]


def _versions(root: str) -> Set[str]:
    return {p for p in glob.glob(os.path.join(root, "version_*")) if os.path.isdir(p)}


def _newest(paths: Set[str]) -> str:
    def index(p: str) -> int:
        m = re.search(r"version_(\d+)$", p)
        return int(m.group(1)) if m else -1
    return max(paths, key=index)


def _model_name(run: str, fallback: str) -> str:
    try:
        import yaml
        with open(os.path.join(run, "config.yaml")) as f:
            cfg = yaml.safe_load(f)
        return cfg["model"]["init_args"]["model"]["class_path"].rsplit(".", 1)[-1]
    except (OSError, KeyError, TypeError, ImportError):
        return fallback


def run_config(name: str, out: str, extra: List[str]) -> Dict[str, object]:
    r"""``fit`` then ``test`` (with ``--ckpt_path best``) of the shipped
    config ``name``; returns the accuracies, wall times and paths."""
    root = os.path.join(out, name)
    common = ["--config", name, "--trainer.default_root_dir", root] + extra

    before = _versions(root)
    start = time.perf_counter()
    main(["fit"] + common)
    fit_time = time.perf_counter() - start
    new = _versions(root) - before
    if not new:
        raise RuntimeError(f"'fit' of {name} created no run folder under {root}")
    run = _newest(new)
    if not glob.glob(os.path.join(run, "checkpoints", "*.ckpt")):
        raise RuntimeError(f"'fit' of {name} saved no checkpoint in {run}")

    start = time.perf_counter()
    main(["test"] + common + ["--ckpt_path", "best"])  # writes into the same run folder
    test_time = time.perf_counter() - start
    with open(os.path.join(run, "test_results.json")) as f:
        results = json.load(f)
    best = resolve_checkpoint(root, "best")
    png = os.path.join(run, "learning_curves.png")
    return {
        "config": name,
        "model": _model_name(run, name),
        "upright": results.get("test/acc_upright"),
        "rotated": results.get("test/acc_rotated"),
        "fit_s": fit_time,
        "test_s": test_time,
        "run": run,
        "checkpoint": best,
        "png": png if os.path.isfile(png) else None,
    }


def format_table(rows: List[Dict[str, object]]) -> str:
    r"""The results as a text table."""
    def pct(v: Optional[float]) -> str:
        return "-" if v is None else f"{100 * float(v):.1f}%"

    header = ["model", "config", "upright acc", "rotated acc", "fit time", "run folder",
              "learning curves"]
    lines = [header] + [[str(r["model"]), str(r["config"]), pct(r["upright"]),
                         pct(r["rotated"]), f"{r['fit_s']:.0f} s", str(r["run"]),
                         str(r["png"] or "-")] for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*lines[0]), "  ".join("-" * w for w in widths)]
                     + [fmt.format(*line) for line in lines[1:]])


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", action="store_true",
                        help=f"run {' and '.join(COMPARE)} (default: only {DEFAULT})")
    parser.add_argument("--config", default=DEFAULT,
                        help=f"the shipped config to run without --compare (default: {DEFAULT})")
    parser.add_argument("--out", default="runs", help="root of the run folders (default: runs)")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="override the configs' trainer.max_epochs")
    parser.add_argument("--accelerator", default=None,
                        help="override trainer.accelerator (cpu, gpu, auto)")
    parser.add_argument("--no-progress-bar", action="store_true",
                        help="disable Lightning's progress bar")
    return parser.parse_args(argv)


def quickstart(argv: Optional[List[str]] = None) -> List[Dict[str, object]]:
    args = parse_args(argv)
    extra: List[str] = []
    if args.max_epochs is not None:
        extra += ["--trainer.max_epochs", str(args.max_epochs)]
    if args.accelerator is not None:
        extra += ["--trainer.accelerator", args.accelerator]
    if args.no_progress_bar:
        extra += ["--trainer.enable_progress_bar", "false"]
    names = COMPARE if args.compare else [args.config]
    rows = [run_config(name, args.out, extra) for name in names]
    print("\nRotated digits: trained upright, tested upright and rotated by k * 90 degrees\n")
    print(format_table(rows))
    return rows


if __name__ == "__main__":
    quickstart()
