r"""The ``gdl-pyg`` command (also ``python -m gdl_pyg``): Lightning's
:class:`~lightning.pytorch.cli.LightningCLI` with any task and any data module
chosen by ``class_path`` in a YAML config.

.. code-block:: bash

    gdl-pyg configs                                   # the shipped configs
    gdl-pyg fit --config gcnn_digits                  # a shipped config by name
    gdl-pyg test --config gcnn_digits --ckpt_path best
    gdl-pyg predict --config gcnn_digits --ckpt_path best
    gdl-pyg fit --config gcnn_digits --ckpt_path last # resume the newest run
    gdl-pyg fit --config my.yaml --trainer.default_root_dir /tmp/run

**Run folders.** A run lives in ``<default_root_dir>/version_<n>/`` (the
shipped configs set ``default_root_dir: runs/<config>``; ``--trainer.
default_root_dir`` moves everything): ``checkpoints/`` (the best checkpoint
and ``last.ckpt``), ``metrics.csv``, TensorBoard events (when tensorboard is
installed), ``config.yaml``, ``learning_curves.png`` and ``equivariance.json`` (the
trained model's error under its declared group, in float64). ``test``,
``validate`` and ``predict`` given a checkpoint write into *that checkpoint's*
run folder (``test_results.json``, ``predictions/``) instead of opening a new
one, and ``--ckpt_path best`` / ``last`` name the best / last checkpoint of
the newest run under ``default_root_dir``. ``fit --ckpt_path ...`` resumes
(weights, optimizer, scheduler, epoch, random state) into the checkpoint's own
run folder; a checkpoint that does not exist is an error, never a fresh start.

**Safe loading.** Checkpoints are read with ``torch.load(...,
weights_only=True)`` (see :func:`~gdl_pyg.lightning.checkpoint.load_checkpoint`):
a file that would run code when unpickled, or a truncated one, is refused with
a message saying why. ``--weights_only false`` opts out, for files you trust.
"""
import os
import re
import sys
from contextlib import contextmanager
from typing import Any, Dict, List, Optional, Tuple

# Lightning (and gdl_pyg.lightning.checkpoint, which imports it) is imported on
# first use, not here: 'gdl-pyg --version' and 'gdl-pyg configs' need neither.
# GdlCLI, CheckpointError, SafeCheckpointIO and load_checkpoint stay attributes
# of this module (see __getattr__ at the end).

__all__ = ["main", "config_path", "list_configs", "describe_config", "GdlCLI",  # noqa: F822
           "resolve_checkpoint", "run_folder"]

_CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "configs")
_DESCRIPTION = (
    "gdl-pyg: train, validate, test and predict with the Geometric Deep Learning "
    "models of gdl_pyg (grids, groups, graphs, geodesics, gauges) from a YAML config. "
    "'gdl-pyg configs' lists the shipped configs; '--config NAME' runs one by name.")
_VERSION_RE = re.compile(r"^version_(\d+)$")


def list_configs() -> List[str]:
    r"""The names of the configs shipped in ``gdl_pyg/configs`` (without
    ``.yaml``), sorted."""
    if not os.path.isdir(_CONFIG_DIR):
        return []
    return sorted(f[:-5] for f in os.listdir(_CONFIG_DIR) if f.endswith(".yaml"))


def config_path(name: str) -> str:
    r"""The path of a shipped config, by name (``"gcnn_digits"``) or file
    name (``"gcnn_digits.yaml"``)."""
    stem = name[:-5] if name.endswith(".yaml") else name
    path = os.path.join(_CONFIG_DIR, stem + ".yaml")
    if not os.path.isfile(path):
        raise ValueError(f"No shipped config named {name!r}; expected one of {list_configs()} "
                         f"(or the path of a YAML file)")
    return path


def describe_config(name: str, width: int = 100) -> str:
    r"""The one-line description of a shipped config: the first sentence of
    its leading comment, cut to at most :obj:`width` characters."""
    lines = []
    with open(config_path(name)) as f:
        for line in f:
            if not line.startswith("#"):
                break
            text = line.lstrip("#").strip()
            if not text and lines:
                break
            if text:
                lines.append(text)
    text = " ".join(lines)
    text = re.sub(r"^The default experiment:\s*", "(default) ", text)
    end = re.search(r"(?<=[a-z0-9)])\.(\s|$)", text)
    text = text[:end.start() + 1] if end else text
    if len(text) > width:
        text = text[:width - 3].rsplit(" ", 1)[0].rstrip(",;:(") + "..."
    return text


def _versions(root: str) -> List[Tuple[int, str]]:
    if not os.path.isdir(root):
        return []
    out = []
    for name in os.listdir(root):
        m = _VERSION_RE.match(name)
        if m and os.path.isdir(os.path.join(root, name)):
            out.append((int(m.group(1)), os.path.join(root, name)))
    return sorted(out)


def _next_version(root: str) -> str:
    versions = _versions(root)
    return os.path.join(root, f"version_{versions[-1][0] + 1 if versions else 0}")


def run_folder(ckpt_path: str) -> str:
    r"""The run folder a checkpoint belongs to: the parent of its
    ``checkpoints/`` folder, else the folder that holds it."""
    folder = os.path.dirname(os.path.abspath(ckpt_path))
    if os.path.basename(folder) == "checkpoints":
        return os.path.dirname(folder)
    return folder


def _best_of(folder: str) -> Optional[str]:
    from gdl_pyg.lightning.checkpoint import CheckpointError, load_checkpoint

    ckpts = [f for f in os.listdir(folder) if f.endswith(".ckpt")]
    others = [f for f in ckpts if not f.startswith("last")]
    last = os.path.join(folder, "last.ckpt")
    if len(others) > 1 and os.path.isfile(last):  # ask ModelCheckpoint's own record
        try:
            state = load_checkpoint(last).get("callbacks", {})
            for key, value in state.items():
                if key.startswith("ModelCheckpoint") and value.get("best_model_path"):
                    name = os.path.basename(value["best_model_path"])
                    if name in others:
                        return os.path.join(folder, name)
        except (CheckpointError, AttributeError):
            pass
    if not others:
        return None
    return max((os.path.join(folder, f) for f in others), key=os.path.getmtime)


def resolve_checkpoint(root: str, which: str) -> str:
    r"""The ``"best"`` or ``"last"`` checkpoint of the newest run under
    ``root`` (``root/version_<n>/checkpoints/``) that has one.

    Raises:
        CheckpointError: when no run under ``root`` has such a checkpoint.
    """
    from gdl_pyg.lightning.checkpoint import CheckpointError

    if which not in ("best", "last"):
        raise ValueError(f"expected 'best' or 'last' (got {which!r})")
    for _, run in reversed(_versions(root)):
        folder = os.path.join(run, "checkpoints")
        if not os.path.isdir(folder):
            continue
        if which == "last":
            path = os.path.join(folder, "last.ckpt")
            if os.path.isfile(path):
                return path
        else:
            best = _best_of(folder)
            if best is not None:
                return best
    raise CheckpointError(
        f"--ckpt_path {which}: no run under {os.path.abspath(root)!r} has a "
        f"{'last.ckpt' if which == 'last' else 'checkpoint'} (looked in "
        f"version_*/checkpoints/). Train first with 'gdl-pyg fit', or pass the "
        f"checkpoint's path, or the --trainer.default_root_dir the run used.")


def _make_gdl_cli():
    # The class is built on first use (see __getattr__): LightningCLI imports
    # all of Lightning.
    from lightning.pytorch.cli import LightningCLI

    from gdl_pyg.lightning.checkpoint import CheckpointError, SafeCheckpointIO, load_checkpoint

    class GdlCLI(LightningCLI):
        r"""The :class:`~lightning.pytorch.cli.LightningCLI` behind ``gdl-pyg``:
        run folders, ``best`` / ``last`` checkpoint names, ``last.ckpt``, exact
        resume and safe checkpoint loading (see the module docstring)."""

        def _parse_ckpt_path(self) -> None:
            # Resolve 'best' / 'last', refuse missing, truncated or unsafe files,
            # then let LightningCLI read the model's hyperparameters from the
            # checkpoint (so a model trained with overridden arguments rebuilds).
            sub = self.config.get("subcommand")
            if not sub:
                return
            cfg = self.config[sub]
            root = os.path.abspath(cfg.trainer.default_root_dir or os.getcwd())
            ckpt = cfg.get("ckpt_path")
            if ckpt in ("best", "last") and not os.path.isfile(ckpt):
                ckpt = resolve_checkpoint(root, ckpt)
            elif ckpt is not None and not os.path.isfile(ckpt):
                raise CheckpointError(
                    f"--ckpt_path {ckpt!r}: no such checkpoint file" +
                    ("; 'fit' would otherwise train from scratch, so it stops here"
                     if sub == "fit" else "") +
                    ". Use 'best' or 'last' for the newest run under --trainer."
                    "default_root_dir, or a path to a .ckpt file.")
            if ckpt is None:
                return
            cfg.ckpt_path = os.path.abspath(ckpt)
            if cfg.get("weights_only") is False:  # the user vouches for the file
                return
            load_checkpoint(cfg.ckpt_path)  # raises CheckpointError with the reason
            super()._parse_ckpt_path()

        def before_instantiate_classes(self) -> None:
            sub = self.subcommand
            if sub is None:
                return
            cfg = self.config[sub]
            trainer = cfg.trainer
            root = os.path.abspath(trainer.default_root_dir or os.getcwd())
            ckpt = cfg.get("ckpt_path")
            if "weights_only" in cfg and cfg.get("weights_only") is None:
                cfg.weights_only = True
            if sub == "fit":
                self.run_dir = run_folder(ckpt) if ckpt is not None else _next_version(root)
            else:
                self.run_dir = run_folder(ckpt) if ckpt is not None else root
            self._custom_logger = trainer.get("logger") not in (None, True)

        def _instantiate_trainer(self, config: Dict[str, Any], callbacks: List[Any]):
            from lightning.pytorch.callbacks import ModelCheckpoint

            from gdl_pyg.lightning.callbacks import LastCheckpoint, PredictionWriter, ResumeState
            from gdl_pyg.lightning.equivariance_report import EquivarianceReport

            sub = self.subcommand
            run = getattr(self, "run_dir", None)
            if run is not None and not getattr(self, "_custom_logger", True):
                if sub == "fit":
                    config["logger"] = _default_loggers(run)
                    config["default_root_dir"] = os.path.dirname(run)
                else:
                    config["logger"] = False
                    config["default_root_dir"] = run
            _add_progress_bar(config, callbacks)
            plugins = config.get("plugins")
            plugins = [] if plugins is None else \
                list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
            if not any(type(p).__name__.endswith("CheckpointIO") for p in plugins):
                plugins.append(SafeCheckpointIO())
            config["plugins"] = plugins
            trainer = super()._instantiate_trainer(config, callbacks)
            if sub != "fit":  # keep the config that trained the checkpoint as config.yaml
                for cb in trainer.callbacks:
                    if type(cb).__name__ == "SaveConfigCallback":
                        cb.config_filename = f"config_{sub}.yaml"
            if sub == "fit" and \
                    not any(isinstance(cb, LastCheckpoint) for cb in trainer.callbacks) \
                    and any(isinstance(cb, ModelCheckpoint) for cb in trainer.callbacks) \
                    and not trainer.fast_dev_run:
                last = LastCheckpoint()
                trainer.callbacks.append(last)
            if sub == "fit" and not any(isinstance(cb, EquivarianceReport)
                                        for cb in trainer.callbacks):
                trainer.callbacks.append(EquivarianceReport())
            if not any(isinstance(cb, ResumeState) for cb in trainer.callbacks):
                trainer.callbacks.append(ResumeState())
            # the lean epoch step (gdl_pyg.lightning.loop), also for a trainer
            # built with run=False and fitted by hand
            from gdl_pyg.lightning.loop import use_lean_loop
            use_lean_loop(trainer)
            if sub == "predict" and not any(isinstance(cb, PredictionWriter)
                                            for cb in trainer.callbacks):
                trainer.callbacks.append(PredictionWriter())
            return trainer

    GdlCLI.__module__, GdlCLI.__qualname__ = __name__, "GdlCLI"
    return GdlCLI


def _add_progress_bar(config: Dict[str, Any], callbacks: List[Any]) -> None:
    r"""Adds a :class:`~gdl_pyg.lightning.callbacks.TimedProgressBar` to
    ``callbacks`` unless the trainer's progress bar is off or the user gave
    one (Lightning would otherwise add its own, which redraws every batch)."""
    from lightning.pytorch.callbacks.progress import ProgressBar

    from gdl_pyg.lightning.callbacks import TimedProgressBar

    if config.get("enable_progress_bar") is False:
        return
    given = config.get("callbacks")
    given = [] if given is None else list(given) if isinstance(given, (list, tuple)) else [given]
    if any(isinstance(cb, ProgressBar) for cb in given + list(callbacks)):
        return
    callbacks.append(TimedProgressBar())


def _csv_logger_class():
    import csv

    from lightning.pytorch.loggers import CSVLogger
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter
    from lightning.pytorch.loggers.logger import rank_zero_experiment

    class _AppendingWriter(ExperimentWriter):
        # Lightning's writer deletes an existing metrics.csv; a run resumed into
        # its own folder appends to it instead (with the old header kept).
        def _check_log_dir_exists(self) -> None:
            if self._fs.isfile(self.metrics_file_path):
                with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                    header = next(csv.reader(f), [])
                self.metrics_keys = sorted(header)

    class RunCSVLogger(CSVLogger):
        @property
        @rank_zero_experiment
        def experiment(self):
            if self._experiment is None:
                self._fs.makedirs(self.root_dir, exist_ok=True)
                self._experiment = _AppendingWriter(log_dir=self.log_dir)
            return self._experiment

    return RunCSVLogger


def _default_loggers(run: str) -> list:
    CSVLogger = _csv_logger_class()
    save_dir, version = os.path.dirname(run), os.path.basename(run)
    m = _VERSION_RE.match(version)
    version = int(m.group(1)) if m else version  # "version_<n>" either way; v_num shows n
    loggers = [CSVLogger(save_dir=save_dir, name="", version=version)]
    try:
        import tensorboard  # noqa: F401
        from lightning.pytorch.loggers import TensorBoardLogger
        loggers.append(TensorBoardLogger(save_dir=save_dir, name="", version=version,
                                         default_hp_metric=False))
    except ImportError:
        pass
    return loggers


def _package_version() -> str:
    try:
        from importlib.metadata import version
        return version("gdl_pyg")
    except Exception:  # pragma: no cover - not installed as a distribution
        import gdl_pyg
        return getattr(gdl_pyg, "__version__", "unknown")


def _print_configs() -> None:
    names = list_configs()
    width = max((len(n) for n in names), default=0)
    print(f"Shipped configs ({len(names)}), run one with 'gdl-pyg fit --config NAME':")
    for name in names:
        print(f"  {name:<{width}}  {describe_config(name)}")


def _rewrite_config_names(args: List[str]) -> List[str]:
    r"""``--config NAME`` / ``--config=NAME`` of a shipped config becomes its
    path (a file of that name in the working folder wins)."""
    out = list(args)
    for i, arg in enumerate(out):
        value, prefix = None, None
        if arg == "--config" and i + 1 < len(out):
            value, index, prefix = out[i + 1], i + 1, ""
        elif arg.startswith("--config="):
            value, index, prefix = arg[len("--config="):], i, "--config="
        if value is None or os.path.isfile(value) or "\n" in value or ":" in value:
            continue
        stem = value[:-5] if value.endswith((".yaml", ".yml")) else value
        if stem in list_configs():
            out[index] = prefix + config_path(stem)
        elif "/" not in value and os.sep not in value:
            raise ValueError(f"--config {value!r}: no such file, and no shipped config of that "
                             f"name; 'gdl-pyg configs' lists them: {list_configs()}")
    return out


@contextmanager
def _argv(args: List[str]):
    saved = sys.argv
    sys.argv = [saved[0] if saved else "gdl-pyg"] + list(args)
    try:
        yield
    finally:
        sys.argv = saved


def main(args: Optional[List[str]] = None) -> None:
    r"""Runs the command line: ``main(["fit", "--config", "gcnn_digits"])``.

    Besides Lightning's subcommands ``fit | validate | test | predict``,
    ``gdl-pyg configs`` lists the shipped configs and ``gdl-pyg --version``
    prints the version. ``--config`` takes a path or a shipped config's name.
    The resolved config is saved as ``config.yaml`` in the run folder.
    Errors in what was asked for (an unknown config, a missing or unsafe
    checkpoint) end the program with a one-line message and exit status 2
    when run as a command; called from Python they raise.

    Args:
        args (list of str, optional): the arguments; :obj:`None` reads
            ``sys.argv``. (default: :obj:`None`)
    """
    from_cli = args is None
    argv = list(sys.argv[1:] if args is None else args)
    try:
        if argv[:1] in (["--version"], ["-V"]):
            print(f"gdl-pyg {_package_version()}")
            return
        if argv[:1] == ["configs"]:
            _print_configs()
            return
        argv = _rewrite_config_names(argv)
        # From the command line, sys.argv keeps the whole (rewritten) command,
        # which DDP's launcher re-runs in each new process. From Python, the
        # arguments go in `args` alone (LightningCLI warns when given both).
        with _argv(argv if from_cli else []):
            __getattr__("GdlCLI")(
                subclass_mode_model=True,
                subclass_mode_data=True,
                save_config_kwargs={"overwrite": True},
                parser_kwargs={"description": _DESCRIPTION, "prog": "gdl-pyg"},
                args=None if from_cli else argv,
                run=True,
            )
    except ValueError as err:  # CheckpointError is a ValueError
        from gdl_pyg.lightning.checkpoint import CheckpointError

        if not from_cli or not isinstance(err, CheckpointError) and \
                not str(err).startswith("--config"):
            raise
        print(f"gdl-pyg: error: {err}", file=sys.stderr)
        raise SystemExit(2)


_LAZY = {"GdlCLI": None, "CheckpointError": "gdl_pyg.lightning.checkpoint",
         "SafeCheckpointIO": "gdl_pyg.lightning.checkpoint",
         "load_checkpoint": "gdl_pyg.lightning.checkpoint"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name == "GdlCLI":
        value = _make_gdl_cli()
    else:
        import importlib
        value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # built / imported once
    return value


if __name__ == "__main__":
    main()
