r"""The cost of the training stack: one epoch of ``gdl-pyg fit`` next to a
plain PyTorch loop on the same model and data, and the time to start the CLI.

    python scripts/bench_stack.py                          # gnn_graphs, 300 steps, CPU, 1 thread
    python scripts/bench_stack.py --config gcnn_digits --batch-size 4
    python scripts/bench_stack.py --progress-bar           # with the progress bar on
    python scripts/bench_stack.py --device cuda --threads 4

(a) epoch time. Each round builds the run exactly as ``gdl-pyg fit --config
NAME`` does (:class:`gdl_pyg.lightning.cli.GdlCLI`: the config's task, data
module, callbacks, the CSV / TensorBoard loggers, ``last.ckpt``, the safe
checkpoint plugin) with ``--trainer.max_epochs 1``, ``--trainer.
limit_train_batches STEPS``, no validation (``limit_val_batches 0``), the
progress bar and model summary off unless asked for, and the batch size of
``--batch-size``; it times the training epoch from ``on_train_epoch_start``
to ``on_train_end`` (so the epoch-end metric computation, logging and
checkpoint writes are in). Then a plain loop takes a copy of the same task as
it was before training (same initial weights, same optimizer from
``configure_optimizers``) and the same data module's ``train_dataloader()``
and runs ``STEPS`` steps of ``zero_grad / model(batch) / criterion / backward
/ step``, with no logging and no metrics; and a bare Lightning run takes
another copy: a ``LightningModule`` whose ``training_step`` returns that loss,
under a ``Trainer`` with no logger, checkpoint, callback, metric, progress bar
or validation (the floor of any Lightning run, timed the same way). The three
alternate ``--rounds`` times in the same process, after one untimed warm-up
round; the ratios are medians over rounds of paired ratios, ``lightning /
plain`` (the goal of issue 11 is at most 1.1), ``bare / plain`` and
``lightning / bare``. The table says which of Lightning's loops ran the
steps: the tasks of :mod:`gdl_pyg.lightning.task` take the optimizer step in
``training_step`` (manual optimization) unless the run needs the automatic
loop (gradient clipping or accumulation, ...), and whether the epoch ran
:mod:`gdl_pyg.lightning.loop`'s lean step (hooks dispatched only to the
callbacks that implement them) and the direct optimizer step. The wall time
of the whole in-process ``fit`` (parsing, instantiation, setup, the epoch,
teardown) is reported too.

(b) start-up: the wall time of fresh processes ``python -c "import gdl_pyg"``,
``python -m gdl_pyg --help`` and ``python -m gdl_pyg fit --config NAME
--trainer.fast_dev_run 1`` (in a temporary folder, so its ``runs/`` is thrown
away), with ``python -c pass`` as the interpreter's own cost and ``python -c
"import torch_geometric, lightning"`` as the floor of any command that
trains (``--help`` is measured against it); medians of ``--cli-repeats``
runs.

The results are printed as markdown tables and written as JSON to ``--out``.
"""
import argparse
import copy
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Uninstalled.

from lightning.pytorch import Callback  # noqa: E402

from gdl_pyg.lightning.cli import GdlCLI, config_path  # noqa: E402


class EpochTimer(Callback):
    r"""Records the wall time of the training epoch (``on_train_epoch_start``
    to ``on_train_end``) and the number of training steps run."""

    def __init__(self, sync=lambda: None):
        self.sync = sync
        self.start = self.end = self.last_step = self.automatic = None
        self.lean = self.direct = None
        self.steps = 0

    def on_train_epoch_start(self, trainer, pl_module):
        from gdl_pyg.lightning.loop import _LeanTrainingEpochLoop
        self.automatic = bool(pl_module.automatic_optimization)
        self.lean = isinstance(trainer.fit_loop.epoch_loop, _LeanTrainingEpochLoop)
        self.direct = bool(getattr(pl_module, "_direct_step", False))
        self.sync()
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps += 1
        self.sync()
        self.last_step = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        self.sync()
        self.end = time.perf_counter()

    @property
    def seconds(self) -> float:
        if self.start is None or self.end is None:
            raise RuntimeError("EpochTimer: no training epoch ran")
        return self.end - self.start

    @property
    def epoch_end_seconds(self) -> float:
        r"""The part after the last step: epoch-end metrics, logging,
        checkpoints."""
        return self.end - self.last_step


class BenchCLI(GdlCLI):
    r"""``gdl-pyg fit`` as the command runs it, plus an :class:`EpochTimer`;
    keeps a copy of the task and the data module as they were before
    training, for the plain loop."""

    sync = staticmethod(lambda: None)

    def _instantiate_trainer(self, config, callbacks):
        trainer = super()._instantiate_trainer(config, callbacks)
        self.timer = EpochTimer(self.sync)
        trainer.callbacks.append(self.timer)
        return trainer

    def before_fit(self):
        self.initial_task = copy.deepcopy(self.model)


def lightning_args(args, root):
    r"""The arguments of ``gdl-pyg fit`` for one timed epoch."""
    out = ["fit", "--config", config_path(args.config),
           "--trainer.default_root_dir", root,
           "--trainer.accelerator", args.device,
           "--trainer.max_epochs", "1",
           "--trainer.limit_train_batches", str(args.steps),
           "--trainer.limit_val_batches", "0",
           "--trainer.num_sanity_val_steps", "0",
           "--trainer.enable_progress_bar", str(args.progress_bar).lower(),
           "--trainer.enable_model_summary", "false"]
    if args.batch_size is not None:
        out += ["--data.init_args.batch_size", str(args.batch_size)]
    return out


def run_lightning(args, root, sync):
    r"""One ``gdl-pyg fit`` epoch in this process: ``(epoch seconds, fit
    seconds, steps, cli)``."""
    BenchCLI.sync = staticmethod(sync)
    saved, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns when given both
    try:
        t = time.perf_counter()
        cli = BenchCLI(subclass_mode_model=True, subclass_mode_data=True,
                       save_config_kwargs={"overwrite": True},
                       args=lightning_args(args, root), run=True)
        fit_seconds = time.perf_counter() - t
    finally:
        sys.argv = saved
    return cli.timer.seconds, fit_seconds, cli.timer.steps, cli


def run_plain(task, datamodule, steps, device, sync):
    r"""``steps`` steps of a plain PyTorch loop on ``task``'s model, loss and
    optimizer over ``datamodule.train_dataloader()``: ``(seconds, steps)``."""
    task = task.to(device).train()
    opt = task.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    model, criterion = task.model, task.criterion
    loader = datamodule.train_dataloader()
    done = 0
    sync()
    t = time.perf_counter()
    for batch in loader:
        if done >= steps:
            break
        batch = batch.to(device)
        opt.zero_grad(set_to_none=True)
        out = model(batch)
        loss = criterion(out, task._targets(batch, out))
        loss.backward()
        opt.step()
        done += 1
    sync()
    return time.perf_counter() - t, done


def run_bare(task, datamodule, steps, device, sync):
    r"""``steps`` steps of the smallest Lightning run of ``task``'s model,
    loss and optimizer: a :class:`~lightning.pytorch.LightningModule` whose
    ``training_step`` returns the loss (automatic optimization), a
    :class:`~lightning.pytorch.Trainer` with no logger, checkpoints,
    callbacks, metrics, progress bar or validation. Lightning's own loop, the
    floor of any Lightning run: ``(seconds, steps)``, timed as the
    ``gdl-pyg fit`` epoch is."""
    import lightning.pytorch as pl

    class Bare(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model, self.criterion = task.model, task.criterion

        def training_step(self, batch, batch_idx):
            out = self.model(batch)
            return self.criterion(out, task._targets(batch, out))

        def configure_optimizers(self):
            opt = task.configure_optimizers()
            return opt["optimizer"] if isinstance(opt, dict) else opt

    timer = EpochTimer(sync)
    trainer = pl.Trainer(accelerator=device.type, devices=1, max_epochs=1,
                         limit_train_batches=steps, limit_val_batches=0,
                         num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[timer])
    trainer.fit(Bare(), train_dataloaders=datamodule.train_dataloader())
    return timer.seconds, timer.steps


def bench_epoch(args):
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_stack_") as root:
        for r in range(args.warmup + args.rounds):
            epoch, fit, steps, cli = run_lightning(args, os.path.join(root, f"r{r}"), sync)
            plain, plain_steps = run_plain(copy.deepcopy(cli.initial_task), cli.datamodule,
                                           steps, device, sync)
            bare, bare_steps = run_bare(copy.deepcopy(cli.initial_task), cli.datamodule, steps,
                                        device, sync)
            if plain_steps != steps or bare_steps != steps:
                raise RuntimeError(f"the plain loop ran {plain_steps} steps, the bare Lightning "
                                   f"run {bare_steps}, gdl-pyg fit {steps}")
            if r >= args.warmup:
                end = cli.timer.epoch_end_seconds
                loop = "automatic" if cli.timer.automatic else "manual"
                rows.append({"lightning_loop": loop, "lean_step": cli.timer.lean,
                             "direct_step": cli.timer.direct, "lightning_epoch_s": epoch,
                             "lightning_steps_s": epoch - end,
                             "lightning_epoch_end_s": end, "lightning_fit_s": fit,
                             "plain_epoch_s": plain, "bare_epoch_s": bare,
                             "bare_ratio": bare / plain, "ratio_to_bare": epoch / bare,
                             "steps": steps, "ratio": epoch / plain,
                             "ratio_steps_only": (epoch - end) / plain})
            del cli
    med = lambda key: statistics.median(row[key] for row in rows)  # noqa: E731
    steps = rows[0]["steps"]
    summary = {
        "steps": steps,
        "lightning_loop": rows[0]["lightning_loop"],
        "lean_step": rows[0]["lean_step"],
        "direct_step": rows[0]["direct_step"],
        "batch_size": args.batch_size,
        "lightning_epoch_s": med("lightning_epoch_s"),
        "lightning_steps_s": med("lightning_steps_s"),
        "lightning_epoch_end_s": med("lightning_epoch_end_s"),
        "lightning_fit_s": med("lightning_fit_s"),
        "plain_epoch_s": med("plain_epoch_s"),
        "bare_epoch_s": med("bare_epoch_s"),
        "ratio": med("ratio"),
        "bare_ratio": med("bare_ratio"),
        "ratio_to_bare": med("ratio_to_bare"),
        "ratio_steps_only": med("ratio_steps_only"),
        "ratio_min": min(row["ratio"] for row in rows),
        "ratio_max": max(row["ratio"] for row in rows),
    }
    summary["overhead_ms_per_step"] = (summary["lightning_steps_s"] -
                                       summary["plain_epoch_s"]) / steps * 1e3
    summary["plain_ms_per_step"] = summary["plain_epoch_s"] / steps * 1e3
    return summary, rows


def startup_commands(config):
    r"""``(name, argv)`` of the start-up measurements; ``python -c pass`` first."""
    py = sys.executable
    return [
        ("python -c pass", [py, "-c", "pass"]),
        ("import torch_geometric, lightning", [py, "-c", "import torch_geometric, lightning"]),
        ("import gdl_pyg", [py, "-c", "import gdl_pyg"]),
        ("gdl-pyg --help", [py, "-m", "gdl_pyg", "--help"]),
        (f"gdl-pyg fit --config {config} --trainer.fast_dev_run 1",
         [py, "-m", "gdl_pyg", "fit", "--config", config, "--trainer.fast_dev_run", "1"]),
    ]


def bench_startup(commands, repeats, threads):
    r"""Median wall seconds of each command in a fresh process (in a
    temporary working folder); a failing command raises with its stderr."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    repo = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    times = {name: [] for name, _ in commands}
    with tempfile.TemporaryDirectory(prefix="bench_stack_cli_") as cwd:
        for _ in range(repeats):  # interleaved
            for name, argv in commands:
                t = time.perf_counter()
                proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
                elapsed = time.perf_counter() - t
                if proc.returncode != 0:
                    raise RuntimeError(f"{name!r} exited with {proc.returncode}:\n"
                                       f"{proc.stderr[-2000:]}")
                times[name].append(elapsed)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="gnn_graphs",
                        help="a shipped config (default: gnn_graphs)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4,
                        help="overrides the config's batch size (default: 4; gnn_graphs then "
                             "has 350 training batches)")
    parser.add_argument("--steps", type=int, default=300, help="training steps per epoch")
    parser.add_argument("--rounds", type=int, default=11,
                        help="timed Lightning / plain pairs; single rounds range over "
                             "+-15%% on a shared machine (default: 11)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--progress-bar", action="store_true",
                        help="turn the progress bar on in the Lightning epoch")
    parser.add_argument("--cli-repeats", type=int, default=3,
                        help="runs of each start-up command; 0 skips (b) (default: 3)")
    parser.add_argument("--skip-epoch", action="store_true", help="skip (a)")
    parser.add_argument("--out", default="runs/bench_stack.json",
                        help="the JSON file written (default: runs/bench_stack.json)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.rounds < 1 or args.warmup < 0 or args.cli_repeats < 0:
        parser.error("expected --steps >= 1, --rounds >= 1, --warmup >= 0, --cli-repeats >= 0")
    torch.set_num_threads(args.threads)

    result = {"config": args.config, "device": args.device, "threads": args.threads,
              "progress_bar": args.progress_bar, "torch": torch.__version__}
    try:
        import lightning
        import torch_geometric
        result.update(lightning=lightning.__version__, torch_geometric=torch_geometric.__version__)
    except ImportError:  # pragma: no cover
        pass

    if not args.skip_epoch:
        summary, rows = bench_epoch(args)
        result["epoch"] = summary
        result["epoch_rounds"] = rows
        print(f"## one epoch: gdl-pyg fit vs a plain loop ({args.config}, {args.device}, "
              f"{args.threads} thread(s), {summary['steps']} steps of batch "
              f"{args.batch_size}, progress bar {'on' if args.progress_bar else 'off'})\n")
        print("| loop | epoch s | ms/step | ratio (median of paired) | min | max |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        s = summary
        print(f"| plain PyTorch | {s['plain_epoch_s']:.3f} | {s['plain_ms_per_step']:.2f} "
              f"| 1.00 | - | - |")
        print(f"| bare Lightning (automatic optimization, no callbacks or logging) | "
              f"{s['bare_epoch_s']:.3f} | {s['bare_epoch_s'] / s['steps'] * 1e3:.2f} "
              f"| {s['bare_ratio']:.2f} | - | - |")
        how = [f"{s['lightning_loop']} optimization"]
        how += ["lean step"] if s["lean_step"] else []
        how += ["direct optimizer step"] if s["direct_step"] else []
        print(f"| gdl-pyg fit ({', '.join(how)}) | "
              f"{s['lightning_epoch_s']:.3f} | "
              f"{s['lightning_epoch_s'] / s['steps'] * 1e3:.2f} | {s['ratio']:.2f} | "
              f"{s['ratio_min']:.2f} | {s['ratio_max']:.2f} |")
        print(f"| gdl-pyg fit, steps only | {s['lightning_steps_s']:.3f} | "
              f"{s['lightning_steps_s'] / s['steps'] * 1e3:.2f} | {s['ratio_steps_only']:.2f} "
              f"| - | - |")
        print(f"\nLightning overhead in the steps: {s['overhead_ms_per_step']:.2f} ms/step; "
              f"after the last step (epoch-end metrics, logs, checkpoints): "
              f"{s['lightning_epoch_end_s'] * 1e3:.0f} ms; whole in-process fit (parse, build, "
              f"setup, epoch, teardown): {s['lightning_fit_s']:.2f} s; gdl-pyg fit / bare "
              f"Lightning: {s['ratio_to_bare']:.2f}; goal ratio <= 1.1: "
              f"{'met' if s['ratio'] <= 1.1 else 'NOT met'}\n", flush=True)

    if args.cli_repeats:
        startup = bench_startup(startup_commands(args.config), args.cli_repeats, args.threads)
        base = startup["python -c pass"]
        result["startup_s"] = startup
        result["startup_repeats"] = args.cli_repeats
        print(f"## start-up (fresh processes, median of {args.cli_repeats})\n")
        print("| command | wall s | minus interpreter s |")
        print("| --- | ---: | ---: |")
        for name, seconds in startup.items():
            print(f"| {name} | {seconds:.2f} | {seconds - base:.2f} |")
        print(flush=True)

    bad = [k for k, v in _numbers(result) if not (math.isfinite(v) and v > 0)]
    if bad:
        raise RuntimeError(f"non-positive or non-finite timings: {bad}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"Results written to {out}")
    return result


def _numbers(tree, prefix=""):
    if isinstance(tree, dict):
        for k, v in tree.items():
            if k in ("threads", "batch_size", "startup_repeats", "overhead_ms_per_step",
                     "lightning_epoch_end_s"):
                continue
            yield from _numbers(v, f"{prefix}{k}.")
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _numbers(v, f"{prefix}{i}.")
    elif isinstance(tree, float):
        yield prefix.rstrip("."), tree


if __name__ == "__main__":
    main()
