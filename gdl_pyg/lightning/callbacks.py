r"""Callbacks of the ``gdl-pyg`` command: learning-curve plots and a compact
table of test results, both written into the run folder
(``trainer.log_dir``, or ``trainer.default_root_dir`` without a logger)."""
import json
import math
import os
from typing import Dict, List, Optional, Sequence

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

__all__ = ["LearningCurvePlot", "ResultsPrinter", "run_dir"]


def run_dir(trainer: Trainer) -> str:
    r"""The folder of the current run: ``trainer.log_dir`` (the logger's
    version folder), or ``trainer.default_root_dir`` without a logger."""
    path = trainer.log_dir if trainer.loggers else None
    return path if path else trainer.default_root_dir


def _scalar(value) -> Optional[float]:
    try:
        v = float(value)
    except (TypeError, ValueError, RuntimeError):
        return None
    return v if math.isfinite(v) else None


class LearningCurvePlot(Callback):
    r"""Plots training and validation curves (one panel per metric, e.g. loss
    and accuracy, against the epoch) and saves them as a PNG in the run
    folder at the end of :meth:`~lightning.pytorch.Trainer.fit`.

    The values are read from ``trainer.callback_metrics`` at the end of each
    training / validation epoch (``train/<metric>``, ``val/<metric>``), so the
    plot does not depend on the logger. Nothing is written during
    ``fast_dev_run`` or sanity checking. Uses matplotlib's ``Agg`` backend.

    Args:
        metrics (list of str, optional): metric names without the
            ``train/`` / ``val/`` prefix, one panel each; names never logged are
            skipped. (default: :obj:`["loss", "acc"]`)
        filename (str, optional): the file name inside the run folder.
            (default: :obj:`"learning_curves.png"`)
    """

    def __init__(self, metrics: Sequence[str] = ("loss", "acc"),
                 filename: str = "learning_curves.png"):
        super().__init__()
        if isinstance(metrics, str) or not all(isinstance(m, str) for m in metrics):
            raise TypeError(f"'LearningCurvePlot' expected a list of metric names (got "
                            f"{metrics!r})")
        if not metrics:
            raise ValueError("'LearningCurvePlot' expected at least one metric name")
        if not filename.lower().endswith(".png"):
            raise ValueError(f"'LearningCurvePlot' writes PNG files; expected a file name "
                             f"ending in '.png' (got {filename!r})")
        self.metrics = list(metrics)
        self.filename = filename
        self.history: Dict[str, Dict[int, float]] = {}
        self.path: Optional[str] = None

    def _record(self, trainer: Trainer, prefix: str) -> None:
        for name in self.metrics:
            key = f"{prefix}/{name}"
            value = _scalar(trainer.callback_metrics.get(key))
            if value is not None:
                self.history.setdefault(key, {})[trainer.current_epoch] = value

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.history = {}
        self.path = None

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._record(trainer, "train")

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._record(trainer, "val")

    @rank_zero_only
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.fast_dev_run:
            return
        names = [m for m in self.metrics
                 if f"train/{m}" in self.history or f"val/{m}" in self.history]
        if not names:
            rank_zero_info("LearningCurvePlot: no metrics were logged, nothing to plot")
            return
        self.path = self.plot(names, os.path.join(run_dir(trainer), self.filename))
        rank_zero_info(f"Learning curves saved to {self.path}")

    def plot(self, names: List[str], path: str) -> str:
        r"""Draws the recorded curves of the metrics ``names`` into ``path``."""
        import matplotlib
        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure  # no pyplot: no global state, no GUI

        fig = Figure(figsize=(4.5 * len(names), 3.5), dpi=100)
        axes = fig.subplots(1, len(names), squeeze=False)[0]
        for ax, name in zip(axes, names):
            for split, style in (("train", "-o"), ("val", "-s")):
                curve = self.history.get(f"{split}/{name}")
                if curve:
                    epochs = sorted(curve)
                    ax.plot([e + 1 for e in epochs], [curve[e] for e in epochs], style,
                            markersize=3, label=split)
            ax.set_xlabel("epoch")
            ax.set_ylabel(name)
            ax.set_title(name)
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path)
        return path

    def __repr__(self) -> str:
        return f"{type(self).__name__}(metrics={self.metrics}, filename={self.filename!r})"


class ResultsPrinter(Callback):
    r"""At the end of :meth:`~lightning.pytorch.Trainer.test`, prints the
    ``test/<metric>_<set>`` results as a small table (one row per test set,
    one column per metric) and saves them as JSON in the run folder.

    Args:
        filename (str, optional): the JSON file inside the run folder
            (:obj:`None` to only print). (default: :obj:`"test_results.json"`)
    """

    def __init__(self, filename: Optional[str] = "test_results.json"):
        super().__init__()
        self.filename = filename
        self.results: Dict[str, float] = {}
        self.path: Optional[str] = None

    @staticmethod
    def table(results: Dict[str, float], names: Sequence[str] = ()) -> str:
        r"""``results`` (``{"test/<metric>_<set>": value}``) as a text table:
        one row per test set in ``names``, one column per metric."""
        rows: Dict[str, Dict[str, float]] = {}
        for key, value in results.items():
            metric = key[len("test/"):]
            row = ""
            for name in sorted(names, key=len, reverse=True):
                if metric.endswith(f"_{name}"):
                    metric, row = metric[:-len(name) - 1], name
                    break
            rows.setdefault(row or "test", {})[metric] = value
        metrics = sorted({m for r in rows.values() for m in r})
        header = ["set"] + metrics
        lines = [header] + [[row] + [f"{r[m]:.4f}" if m in r else "-" for m in metrics]
                            for row, r in rows.items()]
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        out = [fmt.format(*lines[0]), "  ".join("-" * w for w in widths)]
        out += [fmt.format(*line) for line in lines[1:]]
        return "\n".join(out)

    @rank_zero_only
    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.results = {k: v for k, v in ((k, _scalar(v)) for k, v in
                                          trainer.callback_metrics.items())
                        if k.startswith("test/") and v is not None}
        if not self.results:
            return
        dm = getattr(trainer, "datamodule", None)
        names = [str(n) for n in getattr(dm, "test_names", [])] if dm is not None else []
        rank_zero_info("\n" + self.table(self.results, names) + "\n")
        if self.filename and not trainer.fast_dev_run:
            self.path = os.path.join(run_dir(trainer), self.filename)
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            with open(self.path, "w") as f:
                json.dump(self.results, f, indent=2, sort_keys=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(filename={self.filename!r})"
