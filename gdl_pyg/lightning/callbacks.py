r"""Callbacks of the ``gdl-pyg`` command: learning-curve plots and a compact
table of test results, both written into the run folder
(``trainer.log_dir``, or ``trainer.default_root_dir`` without a logger)."""
import json
import math
import os
import time
from typing import Any, Dict, List, Optional, Sequence

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

__all__ = ["LearningCurvePlot", "ResultsPrinter", "PredictionWriter", "ResumeState",
           "LastCheckpoint", "TimedProgressBar", "run_dir"]


def run_dir(trainer: Trainer) -> str:
    r"""The folder of the current run: ``trainer.log_dir`` (the logger's
    version folder), or ``trainer.default_root_dir`` without a logger."""
    # Not ``trainer.log_dir``: it broadcasts from rank 0, a collective call
    # that hangs or fails under DDP when made from a rank-zero-only hook.
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
    logger = trainer.loggers[0] if trainer.loggers else None
    if logger is None:
        return trainer.default_root_dir
    path = logger.log_dir if isinstance(logger, (CSVLogger, TensorBoardLogger)) \
        else logger.save_dir
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
        if not getattr(self, "_restored", False):  # a resumed run keeps its earlier epochs
            self.history = {}
        self._restored = False
        self._pending = None
        self.path = None

    def state_dict(self) -> Dict[str, Any]:
        return {"history": {k: dict(v) for k, v in self.history.items()}}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.history = {k: {int(e): float(v) for e, v in h.items()}
                        for k, h in state_dict.get("history", {}).items()}
        self._restored = True

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._record(trainer, "train")
        # A task may log its epoch values from its own ``on_train_epoch_end``,
        # which Lightning calls after this hook (the gdl_pyg tasks do so when
        # an epoch stops early); then what is read now is missing or still the
        # previous epoch's. Lightning stores the epoch's final values after
        # all the epoch-end hooks, so they are read again at the next epoch's
        # start or at the end of training, and replace these.
        self._pending = trainer.current_epoch

    def _catch_up(self, trainer: Trainer) -> None:
        epoch, self._pending = getattr(self, "_pending", None), None
        if epoch is None:
            return
        for name in self.metrics:
            key = f"train/{name}"
            value = _scalar(trainer.callback_metrics.get(key))
            if value is not None:
                self.history.setdefault(key, {})[epoch] = value

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._catch_up(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._catch_up(trainer)

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
    one column per metric) and saves them as JSON in the run folder; after
    :meth:`~lightning.pytorch.Trainer.validate`, the same for ``val/*`` into
    ``validate_results.json``.

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

    def _report(self, trainer: Trainer, prefix: str, filename: Optional[str]) -> None:
        results = {k: v for k, v in ((k, _scalar(v)) for k, v in
                                     trainer.callback_metrics.items())
                   if k.startswith(prefix) and v is not None}
        if prefix == "test/":
            self.results = results
        if not results:
            return
        dm = getattr(trainer, "datamodule", None)
        names = [str(n) for n in getattr(dm, "test_names", [])] \
            if dm is not None and prefix == "test/" else []
        shown = {"test/" + k[len(prefix):]: v for k, v in results.items()}
        rank_zero_info("\n" + self.table(shown, names).replace("test", prefix[:-1], 1)
                       + "\n")
        if filename and not trainer.fast_dev_run:
            path = os.path.join(run_dir(trainer), filename)
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            tmp = f"{path}.tmp{os.getpid()}"
            with open(tmp, "w") as f:
                json.dump(results, f, indent=2, sort_keys=True)
            os.replace(tmp, path)
            if prefix == "test/":
                self.path = path

    @rank_zero_only
    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._report(trainer, "test/", self.filename)

    @rank_zero_only
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # only for 'gdl-pyg validate' (not the validation inside fit)
        if trainer.sanity_checking or trainer.state.fn != "validate":
            return
        name = None
        if self.filename:
            name = self.filename.replace("test", "validate") if "test" in self.filename \
                else "validate_" + self.filename
        self._report(trainer, "val/", name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(filename={self.filename!r})"


class LastCheckpoint(ModelCheckpoint):
    r"""Keeps ``last.ckpt``, the state at the end of the latest epoch, in the
    run's ``checkpoints/`` folder, overwritten every epoch.

    Lightning's own ``ModelCheckpoint(save_last=True)`` refreshes
    ``last.ckpt`` only when it also saves a best checkpoint, so after an
    epoch that did not improve the monitored metric, "last" is stale and a
    run resumed from it repeats epochs. ``gdl-pyg fit`` adds this callback
    (with :class:`ResumeState`), so ``--ckpt_path last`` always continues
    from the newest epoch. Takes :class:`~lightning.pytorch.callbacks.
    ModelCheckpoint`'s arguments; the defaults here are
    ``filename="last"``, ``monitor=None``, ``save_top_k=1``.
    """

    def __init__(self, dirpath: Optional[str] = None, filename: str = "last", **kwargs):
        kwargs.setdefault("monitor", None)
        kwargs.setdefault("save_top_k", 1)
        kwargs.setdefault("enable_version_counter", False)
        kwargs.setdefault("save_last", False)
        # every epoch, also in configs that validate only every n epochs
        kwargs.setdefault("save_on_train_epoch_end", True)
        super().__init__(dirpath=dirpath, filename=filename, **kwargs)


class TimedProgressBar(TQDMProgressBar):
    r"""Lightning's :class:`~lightning.pytorch.callbacks.TQDMProgressBar`,
    redrawn at most every :obj:`refresh_interval` seconds (and at the last
    batch of every bar).

    Lightning's bar redraws itself twice per batch (the count, then the
    metrics) whatever tqdm's own ``mininterval`` says; on a small model at
    several hundred steps a second those writes cost about 0.3 ms per step,
    a tenth of the step. ``gdl-pyg`` uses this bar unless the trainer is
    given another progress bar or ``enable_progress_bar=False``. The bar
    shows the same counts and metrics; at the end of a training epoch it
    shows the epoch's number of batches even when the last redraw was
    skipped (an epoch cut short by ``max_steps``).

    Args:
        refresh_interval (float, optional): the least number of seconds
            between two redraws; ``0`` redraws as often as
            :obj:`refresh_rate` allows, like Lightning's bar.
            (default: :obj:`0.1`)
        refresh_rate (int, optional): redraw at most every
            :obj:`refresh_rate` batches, as in Lightning's bar.
            (default: :obj:`1`)
        **kwargs: the other arguments of
            :class:`~lightning.pytorch.callbacks.TQDMProgressBar`.
    """

    def __init__(self, refresh_interval: float = 0.1, refresh_rate: int = 1, **kwargs: Any):
        if isinstance(refresh_interval, bool) or not isinstance(refresh_interval, (int, float)) \
                or not math.isfinite(refresh_interval) or refresh_interval < 0:
            raise ValueError(f"'TimedProgressBar' expected a finite refresh_interval >= 0 in "
                             f"seconds (got {refresh_interval!r})")
        super().__init__(refresh_rate=refresh_rate, **kwargs)
        self.refresh_interval = float(refresh_interval)
        self._last_draw = -math.inf

    def _should_update(self, current: int, total: Any) -> bool:
        if not super()._should_update(current, total):
            return False
        now = time.monotonic()
        if current == total or now - self._last_draw >= self.refresh_interval:
            self._last_draw = now
            return True
        return False

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        self._train_batches = batch_idx + 1
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        bar = self.train_progress_bar
        done = getattr(self, "_train_batches", None)
        if bar is not None and not bar.disable and done is not None and bar.n != done:
            bar.n = done  # the redraw below shows it
        super().on_train_epoch_end(trainer, pl_module)


class ResumeState(Callback):
    r"""Stores the random state of :mod:`torch` (CPU and CUDA), :mod:`numpy`
    and :mod:`random` in every checkpoint and restores it when training
    resumes, so that a run resumed with ``--ckpt_path last`` draws the same
    shuffles and dropout masks as one that was never interrupted (Lightning
    itself restores the weights, optimizer, scheduler and loop counters). The
    ``gdl-pyg`` command adds it to every trainer. Everything is stored as
    tensors and numbers, so the checkpoint still loads with
    ``weights_only=True``."""

    def state_dict(self) -> Dict[str, Any]:
        import random

        import numpy as np
        import torch

        py = random.getstate()
        name, keys, pos, has_gauss, cached = np.random.get_state()
        state = {
            "torch": torch.get_rng_state(),
            "python": [py[0], list(py[1]), py[2]],
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                      float(cached)],
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        import random

        import numpy as np
        import torch

        if "torch" in state_dict:
            torch.set_rng_state(state_dict["torch"])
        if "python" in state_dict:
            version, internal, gauss = state_dict["python"]
            random.setstate((version, tuple(internal), gauss))
        if "numpy" in state_dict:
            name, keys, pos, has_gauss, cached = state_dict["numpy"]
            np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


def _palette(labels, num_classes: Optional[int] = None):
    import matplotlib
    import numpy as np
    n = max(int(labels.max()) + 1 if labels.size else 1, num_classes or 0)
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "turbo"]
    values = labels % cmap.N if n <= 20 else labels / max(n - 1, 1)
    return (np.asarray(cmap(values))[:, :3] * 255).round().astype(np.uint8)


def _ramp(values):
    import matplotlib
    import numpy as np
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    scaled = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    return (np.asarray(matplotlib.colormaps["viridis"](scaled))[:, :3] * 255).round() \
        .astype(np.uint8)


class PredictionWriter(BasePredictionWriter):
    r"""Writes what :meth:`~lightning.pytorch.Trainer.predict` returns as
    files people open, into ``<run folder>/predictions/`` (the checkpoint's
    run folder when ``gdl-pyg predict`` is given one), and prints where:

    * ``<set>.csv`` per predict set: a row per graph (``graph``, the
      prediction(s), ``target`` when the data has one) for graph-level
      outputs, or a row per node (``graph``, ``node``, ...) for node-level
      outputs; a task returning both (e.g. energies and forces, named by its
      ``prediction_names``) gets ``<set>.csv`` and ``<set>_nodes.csv``;
    * for node-level outputs on data with 3-D ``pos`` (meshes, point clouds,
      molecules): ``<set>_<i>.ply``, the example coloured by its predicted
      label (or, on a colour ramp, by the predicted value or the length of a
      predicted vector) with a ``prediction`` vertex property, for the first
      :obj:`max_files` examples, and ``<set>.png``, a rendering of the first
      few side by side.

    The ``gdl-pyg predict`` command adds it when the config has none. Nothing
    is written during ``fast_dev_run``.

    Across processes (``--trainer.strategy ddp``), every process keeps its
    share of the predictions with the data set indices of its batches (which
    Lightning hands to a :class:`~lightning.pytorch.callbacks.
    BasePredictionWriter`); at the end they are gathered on rank 0
    (:func:`torch.distributed.all_gather_object`), put back in data set order
    with the distributed sampler's padding duplicates dropped, and rank 0
    writes the same files as one process would.

    Args:
        folder (str, optional): the folder inside the run folder.
            (default: :obj:`"predictions"`)
        max_files (int, optional): PLY files written per predict set.
            (default: :obj:`16`)
        max_render (int, optional): examples drawn in each PNG. (default: :obj:`6`)
    """

    def __init__(self, folder: str = "predictions", max_files: int = 16, max_render: int = 6):
        super().__init__(write_interval="batch")
        if max_files < 0 or max_render < 0:
            raise ValueError(f"'PredictionWriter' expected non-negative max_files and "
                             f"max_render (got {max_files}, {max_render})")
        self.folder = folder
        self.max_files = max_files
        self.max_render = max_render
        self.paths: List[str] = []
        self._records: Dict[int, list] = {}

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._records = {}
        self.paths = []

    def write_on_batch_end(self, trainer: Trainer, pl_module: LightningModule, prediction: Any,
                           batch_indices: Optional[Sequence[int]], batch: Any, batch_idx: int,
                           dataloader_idx: int = 0) -> None:
        r"""Keeps a batch's predictions, the batch (on the CPU) and the data
        set indices of its examples (from Lightning's sampler wrapper; empty
        when unknown) until :meth:`on_predict_end`."""
        named = _named_outputs(prediction, getattr(pl_module, "prediction_names", None))
        if not named:
            return
        indices = [int(i) for i in batch_indices] if batch_indices else []
        self._records.setdefault(dataloader_idx, []).append(
            (named, batch.to("cpu") if hasattr(batch, "to") else batch, indices))

    def _set_names(self, trainer: Trainer) -> List[str]:
        dm = getattr(trainer, "datamodule", None)
        names = list(getattr(dm, "predict_names", []) or []) if dm is not None else []
        return [str(n) for n in names]

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.fast_dev_run:  # as Lightning's own writers
            self._records = {}
            return
        if _world_size(trainer) > 1:  # every rank takes part; rank 0 writes
            import torch.distributed as dist
            shares: List[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(shares, self._records)
            self._records = {}
            if trainer.global_rank != 0:
                return
            self._records = _merge_predictions(shares, pl_module)
        if not self._records:
            return
        names = self._set_names(trainer)
        out_dir = os.path.join(run_dir(trainer), self.folder)
        os.makedirs(out_dir, exist_ok=True)
        for idx in sorted(self._records):
            name = names[idx] if idx < len(names) else f"set{idx}"
            name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
            self._write_set(out_dir, name, self._records[idx], pl_module)
        self._records = {}
        rank_zero_info(f"Predictions saved to {out_dir}: " +
                       ", ".join(os.path.basename(p) for p in self.paths[:8]) +
                       (f" and {len(self.paths) - 8} more" if len(self.paths) > 8 else ""))

    def _write_set(self, out_dir: str, name: str, records: list, pl_module) -> None:
        import numpy as np

        tables = {"graph": ([], []), "node": ([], [])}  # level -> (header parts, rows)
        examples = []
        graph_offset = 0
        for named, batch, *_ in records:
            num_nodes = getattr(batch, "num_nodes", None)
            num_graphs = int(getattr(batch, "num_graphs", 1) or 1)
            vec = getattr(batch, "batch", None)
            cols = {"graph": [], "node": []}
            headers = {"graph": [], "node": []}
            node_pred = None
            for key, out in named.items():
                level = _level(out, num_nodes, num_graphs, pl_module)
                if level is None:
                    continue  # neither one row per graph nor per node: not tabular
                node_level = level == "node"
                block = out.reshape(out.size(0), -1).numpy()
                cols[level].append(block)
                headers[level] += _column_names(key, block.shape[1])
                if node_level and node_pred is None:
                    node_pred = block
            y = getattr(batch, "y", None)
            for level, n in (("graph", num_graphs), ("node", num_nodes)):
                if not cols[level] or y is None or not hasattr(y, "size") or y.size(0) != n \
                        or y.numel() == 0:
                    continue
                block = y.reshape(n, -1).cpu().numpy()
                cols[level].append(block)
                headers[level] += _column_names("target", block.shape[1])
            if cols["graph"]:
                table = np.concatenate([c.astype(np.float64) if c.dtype.kind == "f" else c
                                        for c in cols["graph"]], axis=1) \
                    if len(cols["graph"]) > 1 else cols["graph"][0]
                tables["graph"][0][:] = ["graph"] + headers["graph"]
                tables["graph"][1].extend([graph_offset + k] + _cells(row)
                                          for k, row in enumerate(table))
            if cols["node"]:
                graph = vec.numpy() if vec is not None else np.zeros(num_nodes, np.int64)
                ptr = getattr(batch, "ptr", None)
                starts = ptr.numpy()[graph] if ptr is not None else np.zeros_like(graph)
                node = np.arange(num_nodes) - starts
                blocks = cols["node"]
                tables["node"][0][:] = ["graph", "node"] + headers["node"]
                for k in range(num_nodes):
                    row = []
                    for b in blocks:
                        row += _cells(b[k])
                    tables["node"][1].append([int(graph[k]) + graph_offset, int(node[k])] + row)
                examples.extend(_examples(batch, node_pred, graph, graph_offset))
            graph_offset += num_graphs
        both = bool(tables["graph"][1]) and bool(tables["node"][1])
        for level, (header, rows) in tables.items():
            if not rows:
                continue
            suffix = "_nodes" if both and level == "node" else ""
            path = os.path.join(out_dir, f"{name}{suffix}.csv")
            _write_csv(path, header, rows)
            self.paths.append(path)
        if examples:
            self._write_meshes(out_dir, name, examples)

    def _write_meshes(self, out_dir: str, name: str, examples: list) -> None:
        import numpy as np

        from gdl_pyg.io import write_mesh, write_points
        from torch_geometric.data import Data

        for i, (pos, face, pred) in enumerate(examples[:self.max_files]):
            value = _scalar_of(pred)
            colors = _palette(value.astype(np.int64)) if _is_label(pred) else _ramp(value)
            data = Data(pos=pos, color=colors, prediction=value.astype(np.float32))
            path = os.path.join(out_dir, f"{name}_{i}.ply")
            if face is not None and face.shape[1] > 0:
                write_mesh(path, data, face=face, vertex_attrs=["prediction"])
            else:
                write_points(path, data, point_attrs=["prediction"])
            self.paths.append(path)
        if self.max_render:
            path = os.path.join(out_dir, f"{name}.png")
            _render(examples[:self.max_render], path)
            self.paths.append(path)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(folder={self.folder!r}, max_files={self.max_files}, "
                f"max_render={self.max_render})")


def _world_size(trainer: Trainer) -> int:
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return int(getattr(trainer, "world_size", 1) or 1)


def _level(out, num_nodes: Optional[int], num_graphs: int, pl_module) -> Optional[str]:
    r"""``"node"`` for one row per node, ``"graph"`` for one row per graph,
    :obj:`None` for neither (a node-level task's graph of one node counts as
    node-level)."""
    if num_nodes is not None and out.size(0) == num_nodes and (
            num_nodes != num_graphs or getattr(pl_module, "level", "") == "node"):
        return "node"
    return "graph" if out.size(0) == num_graphs else None


def _split_record(named: Dict[str, Any], batch: Any, pl_module) -> Optional[list]:
    r"""A batch's predictions as one ``(named, example)`` per example, or
    :obj:`None` when the batch cannot be split (no ``to_data_list``)."""
    num_graphs = int(getattr(batch, "num_graphs", 1) or 1)
    num_nodes = getattr(batch, "num_nodes", None)
    if num_graphs == 1 and not hasattr(batch, "to_data_list"):
        return [(named, batch)]
    if not hasattr(batch, "to_data_list"):
        return None
    examples = batch.to_data_list()
    ptr = getattr(batch, "ptr", None)
    parts: List[Dict[str, Any]] = [{} for _ in range(num_graphs)]
    for key, out in named.items():
        level = _level(out, num_nodes, num_graphs, pl_module)
        if level == "graph":
            for k in range(num_graphs):
                parts[k][key] = out[k:k + 1]
        elif level == "node" and ptr is not None:
            for k in range(num_graphs):
                parts[k][key] = out[int(ptr[k]):int(ptr[k + 1])]
        else:  # not tabular: nothing is written for it
            continue
    return list(zip(parts, examples))


def _merge_predictions(shares: Sequence[Dict[int, list]], pl_module=None) -> Dict[int, list]:
    r"""Merges the prediction records of every process (``shares[rank]``:
    ``{dataloader index: [(named outputs, batch, data set indices), ...]}``)
    into one record per predict set, in data set order, each example once.

    A distributed sampler gives process ``r`` the examples ``r, r + W, ...``
    of the (padded) data set, repeating the first examples so that every
    process gets as many; the indices of each batch (from Lightning's batch
    sampler wrapper) put every example back in its place, and the repeats
    are dropped. A batch without indices (or that cannot be split into
    examples) makes its set fall back to the processes' order."""
    import torch
    from torch_geometric.data import Batch
    from torch_geometric.data.data import BaseData

    merged: Dict[int, list] = {}
    for idx in sorted({i for share in shares for i in (share or {})}):
        records = [rec for share in shares for rec in (share or {}).get(idx, [])]
        units: Dict[int, tuple] = {}
        ordered = True
        for named, batch, indices in records:
            split = _split_record(named, batch, pl_module)
            if split is None or len(indices) != len(split):
                ordered = False
                break
            for i, unit in zip(indices, split):
                units.setdefault(int(i), unit)  # the first copy; padding repeats it
        items = [units[i] for i in sorted(units)]
        if not ordered or not items or not all(isinstance(e, BaseData) for _, e in items):
            merged[idx] = records
            continue
        keys = [k for k in items[0][0] if all(k in named for named, _ in items)]
        named = {k: torch.cat([n[k] for n, _ in items], dim=0) for k in keys}
        merged[idx] = [(named, Batch.from_data_list([e for _, e in items]), sorted(units))]
    return merged


def _named_outputs(outputs: Any, names=None) -> Dict[str, Any]:
    r"""``predict_step``'s return value as ``{name: tensor}``: a tensor is
    ``"prediction"``, a tuple / list takes the task's ``prediction_names``
    (else ``output_<i>``), a dict keeps its keys."""
    import torch
    if isinstance(outputs, torch.Tensor):
        items = [("prediction", outputs)]
    elif isinstance(outputs, dict):
        items = list(outputs.items())
    elif isinstance(outputs, (tuple, list)):
        names = list(names or [])
        items = [(names[i] if i < len(names) else f"output_{i}", o)
                 for i, o in enumerate(outputs)]
    else:
        return {}
    return {str(k): (v.detach().cpu().reshape(1) if v.dim() == 0 else v.detach().cpu())
            for k, v in items if isinstance(v, torch.Tensor)}


def _column_names(key: str, width: int) -> List[str]:
    return [key] if width == 1 else [f"{key}_{k}" for k in range(width)]


def _write_csv(path: str, header: List[str], rows: list) -> None:
    import csv
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)


def _cells(row) -> list:
    return [int(v) if float(v).is_integer() and abs(v) < 2 ** 53 else float(v) for v in row]


def _scalar_of(pred):
    r"""One value per node to colour by: the label or value itself, or the
    length of a vector output (e.g. a force)."""
    import numpy as np
    if pred.shape[1] == 1:
        return pred[:, 0] if _is_label(pred) else pred[:, 0].astype(np.float64)
    return np.linalg.norm(pred.astype(np.float64), axis=1)


def _is_label(pred) -> bool:
    import numpy as np
    return pred.shape[1] == 1 and np.issubdtype(pred.dtype, np.integer)


def _examples(batch, pred, graph, offset) -> list:
    import numpy as np
    pos = getattr(batch, "pos", None)
    if pos is None or pos.dim() != 2 or pos.size(1) != 3 or pos.size(0) != pred.shape[0]:
        return []
    pos = pos.detach().cpu().numpy()
    face = getattr(batch, "face", None)
    face = face.detach().cpu().numpy() if face is not None and face.dim() == 2 else None
    out = []
    for g in np.unique(graph):
        nodes = np.nonzero(graph == g)[0]
        start = nodes[0]
        f = None
        if face is not None and face.shape[0] == 3:
            keep = (graph[face[0]] == g) if face.size else np.zeros(0, bool)
            f = face[:, keep] - start
        out.append((pos[nodes], f, pred[nodes]))
    return out


def _render(examples: list, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg", force=False)
    import numpy as np
    from matplotlib.figure import Figure

    n = len(examples)
    fig = Figure(figsize=(3.2 * n, 3.4), dpi=100)
    for i, (pos, face, pred) in enumerate(examples):
        ax = fig.add_subplot(1, n, i + 1, projection="3d")
        value = _scalar_of(pred)
        colors = (_palette(value.astype(np.int64)) if _is_label(pred) else _ramp(value)) / 255.0
        if face is not None and face.shape[1] > 0:
            tri = face.T
            ax.plot_trisurf(pos[:, 0], pos[:, 1], pos[:, 2], triangles=tri,
                            color=(0.8, 0.8, 0.8), linewidth=0, alpha=0.25, shade=False)
        ax.scatter(pos[:, 0], pos[:, 1], pos[:, 2], c=colors, s=4, depthshade=False)
        span = np.ptp(pos, axis=0).max() / 2 or 1.0
        centre = (pos.max(0) + pos.min(0)) / 2
        for setter, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre):
            setter(c - span, c + span)
        ax.set_axis_off()
        ax.set_title(f"example {i}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path + ".tmp.png")
    os.replace(path + ".tmp.png", path)
