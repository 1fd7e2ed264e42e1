r"""Lightning tasks for graph-level prediction with any ``gdl_pyg`` model.

A task wraps a model (any :class:`torch.nn.Module` called as ``model(batch)``
on a PyG :class:`~torch_geometric.data.Batch`, returning ``[num_graphs, out]``)
with a loss, metrics and an optimizer, in the style of torchgeo's tasks:
:class:`GraphLevelTask` calls the template methods :meth:`configure_models`,
:meth:`configure_losses` and :meth:`configure_metrics`, which subclasses fill.

Logged names: ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``, and one
set per test dataloader, suffixed by the data module's
:attr:`~gdl_pyg.lightning.data.GraphDataModule.test_names` (e.g.
``test/acc_upright``, ``test/acc_rotated``).

Training steps only accumulate: the loss goes into :attr:`train_loss` (a
:class:`WeightedMean`, weighted by the batch size) and the outputs
into :attr:`train_metrics` with ``update``; nothing is computed per batch. The
epoch values (``train/loss``, ``train/acc``, ...) are logged once, from the
epoch's last training step (so callbacks such as
:class:`~gdl_pyg.lightning.callbacks.LearningCurvePlot` see them in their
``on_train_epoch_end``), or from :meth:`on_train_epoch_end` when an epoch
stops early (``max_steps``).

The losses and outputs are queued and reach :attr:`train_loss` and
:attr:`train_metrics` in one ``update`` per
:attr:`GraphLevelTask.train_metrics_every` steps (and at the epoch's end): the
epoch values are the same (up to the order of a floating-point sum), since the
states are sums over samples, and the per-step cost of torchmetrics'
``update`` is paid once per group.

**The training loop.** :meth:`training_step` computes the loss with
:meth:`training_loss` (which subclasses implement) and, when nothing needs
Lightning's automatic optimization, also takes the optimizer step itself
(Lightning's manual optimization: ``zero_grad``, :meth:`manual_backward`,
``step``, then the learning-rate schedulers at the points where Lightning
would step them). The result is the same step for step (tested against the
automatic loop to the last bit) at a fraction of the per-step cost of
Lightning's automatic loop. The automatic loop is used instead when the
trainer clips gradients (``gradient_clip_val``) or accumulates them
(``accumulate_grad_batches``), for several optimizers or a
``ReduceLROnPlateau`` schedule, when a subclass overrides
:meth:`training_step`, ``optimizer_step``, ``optimizer_zero_grad`` or
``configure_gradient_clipping``, or when ``automatic_optimization`` is set by
hand. (In the manual loop, callbacks' ``on_before_zero_grad`` is not called.)
Where ``manual_backward`` and Lightning's optimizer wrapper would only call
``loss.backward()`` and ``optimizer.step()`` (one process, 32-bit precision,
no profiler, no callback or module hook around them:
:func:`gdl_pyg.lightning.loop.direct_step_ok`, decided at the start of each
fit), the step calls those two directly, keeping Lightning's step count.
``gdl-pyg fit`` also gives its trainer :mod:`gdl_pyg.lightning.loop`'s lean
epoch step, which dispatches the per-step hooks only to the callbacks that
implement them.

Across processes (``--trainer.strategy ddp --trainer.devices N``) every logged
value is over all processes: the validation and test losses are logged with
``sync_dist=True`` (their batch-size-weighted means are summed over the
processes before dividing), and the torchmetrics objects (the training loss
among them) gather their states before ``compute``, so ``val/acc`` is the
accuracy on the whole validation set.
"""
from typing import Any, Dict, List, Literal, Optional, Tuple, Union

import torch
import torchmetrics
from lightning.pytorch import LightningModule
from torch import Tensor

__all__ = ["GraphLevelTask", "GraphClassificationTask", "GraphRegressionTask",
           "WeightedMean"]


def _cli_hparams_given() -> bool:
    r"""Whether the module is being built by :class:`LightningCLI`, which
    hands :meth:`save_hyperparameters` the *config* of every argument (so the
    nested ``model`` is stored as ``class_path`` / ``init_args`` and
    :meth:`load_from_checkpoint` can rebuild it)."""
    try:  # a private hook of Lightning >= 2.3; without it the model is not stored
        from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
    except ImportError:  # pragma: no cover
        return False
    return _given_hyperparameters.get() is not None


class WeightedMean(torchmetrics.Metric):
    r"""The weighted mean :math:`\sum_b w_b v_b / \sum_b w_b` of the values
    given to :meth:`update` (e.g. the batch losses weighted by the batch
    sizes), with its two sums reduced over processes before :meth:`compute`.

    Unlike :class:`torchmetrics.MeanMetric`, an update is two in-place
    additions: no NaN check (which reads the value back from the device every
    step; a NaN loss shows as a NaN mean) and no broadcasting. (In
    torchmetrics 1.9, ``MeanMetric(nan_strategy="disable")`` also drops the
    weights.)
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("weight", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, value: Tensor, weight: Union[float, Tensor] = 1.0) -> None:
        r"""Adds ``value`` (a tensor; every element counts once) with
        ``weight`` (a number or a scalar tensor), or with one weight per
        element (a tensor of ``value``'s shape: e.g. a queue of step means
        and their batch sizes)."""
        value = value.detach()
        if isinstance(weight, Tensor) and weight.dim() > 0:
            if weight.shape != value.shape:
                raise ValueError(f"'WeightedMean' expected one weight per value, of shape "
                                 f"{list(value.shape)} (got {list(weight.shape)})")
            weight = weight.to(value.dtype)
            self.total += (value * weight).sum()
            self.weight += weight.sum()
            return
        self.total += value.sum() * weight
        self.weight += weight * value.numel()

    def compute(self) -> Tensor:
        return self.total / self.weight


def _concat(queue: List[Tuple[Any, ...]]) -> Tuple[Any, ...]:
    r"""The queued argument tuples of :meth:`GraphLevelTask._train_update`,
    concatenated argument by argument (tensors along dim 0, 0-dim tensors as
    one row each; tuples, lists and dicts of tensors element-wise)."""
    def cat(items):
        first = items[0]
        if isinstance(first, Tensor):
            return torch.cat([t.reshape(1) if t.dim() == 0 else t for t in items])
        if isinstance(first, dict):
            return {k: cat([item[k] for item in items]) for k in first}
        if isinstance(first, (tuple, list)):
            return type(first)(cat([item[i] for item in items]) for i in range(len(first)))
        raise TypeError(f"expected tensors, or tuples / dicts of tensors, as metric inputs "
                        f"(got {type(first).__name__})")

    if len(queue) == 1:
        return queue[0]
    return tuple(cat([args[i] for args in queue]) for i in range(len(queue[0])))


def _check_model(cls: str, model: Any) -> None:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"'{cls}' expected 'model' to be a torch.nn.Module (got "
                        f"{type(model).__name__}); from the CLI give it as "
                        f"'class_path' / 'init_args'")


class GraphLevelTask(LightningModule):
    r"""The base task for models with one output row per graph.

    Subclasses implement :meth:`configure_losses`, :meth:`configure_metrics`
    (a :class:`torchmetrics.MetricCollection` with keys such as ``"acc"``) and
    :meth:`_targets`. The model is called as ``model(batch)`` and must return
    ``[num_graphs, out]``.

    Args:
        model (torch.nn.Module): the network, ``model(batch) -> [num_graphs, out]``.
            From the CLI, give it as ``class_path`` / ``init_args``.
        lr (float, optional): the learning rate. (default: :obj:`1e-3`)
        weight_decay (float, optional): weight decay of the optimizer
            (decoupled for ``"adamw"``). (default: :obj:`0.0`)
        optimizer (str, optional): ``"adam"`` or ``"adamw"``.
            (default: :obj:`"adam"`)
        scheduler (str, optional): ``"none"`` or ``"cosine"`` (cosine annealing
            of the learning rate to :obj:`min_lr` over ``max_epochs``).
            (default: :obj:`"none"`)
        min_lr (float, optional): the final learning rate of the cosine
            schedule. (default: :obj:`0.0`)
    """

    def __init__(self, model: torch.nn.Module, lr: float = 1e-3, weight_decay: float = 0.0,
                 optimizer: Literal["adam", "adamw"] = "adam",
                 scheduler: Literal["none", "cosine"] = "none", min_lr: float = 0.0):
        super().__init__()
        name = type(self).__name__
        _check_model(name, model)
        if not lr > 0:
            raise ValueError(f"'{name}' expected a positive learning rate (got {lr!r})")
        if weight_decay < 0 or min_lr < 0:
            raise ValueError(f"'{name}' expected non-negative weight_decay and min_lr (got "
                             f"{weight_decay!r}, {min_lr!r})")
        if optimizer not in ("adam", "adamw"):
            raise ValueError(f"'{name}' expected optimizer 'adam' or 'adamw' (got {optimizer!r})")
        if scheduler not in ("none", "cosine"):
            raise ValueError(f"'{name}' expected scheduler 'none' or 'cosine' "
                             f"(got {scheduler!r})")
        # From the CLI the model's config is stored (and rebuilt on loading a
        # checkpoint); a model object passed in Python is not pickled into hparams.
        self.save_hyperparameters(ignore=[] if _cli_hparams_given() else ["model"])
        self.model = model
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()
        # The running, batch-size-weighted mean of the training loss over the
        # epoch (not in the state_dict; summed over processes before compute).
        self.train_loss = WeightedMean()
        self._train_logged_epoch: Optional[int] = None
        # the steps' metric inputs, waiting for one update (see _train_update)
        self._train_queue: List[Tuple[Any, ...]] = []
        self._loss_queue: List[Tuple[Tensor, float]] = []
        # None: chosen at on_fit_start (see automatic_optimization)
        self._automatic_optimization = None
        self._manual_loop = False
        self._direct_step = False

    #: Training steps whose metric inputs are queued before one
    #: ``train_metrics.update`` on all of them (the epoch values are the same).
    train_metrics_every: int = 32

    # ------------------------------------------------------ template methods
    def configure_models(self) -> None:
        r"""Builds submodules around :attr:`model` (none by default)."""

    def configure_losses(self) -> None:
        r"""Sets :attr:`criterion`, ``criterion(output, target) -> loss``."""
        raise NotImplementedError

    def configure_metrics(self) -> None:
        r"""Sets :attr:`train_metrics`, :attr:`val_metrics` and the template
        :attr:`metrics` (a :class:`torchmetrics.MetricCollection`) that is
        cloned for every test / predict dataloader."""
        raise NotImplementedError

    def _targets(self, batch: Any, out: Tensor) -> Tensor:
        raise NotImplementedError

    # ------------------------------------------------------- training loop
    @property
    def automatic_optimization(self) -> bool:
        r"""Whether Lightning's automatic optimization runs the steps. Unless
        set by hand, :obj:`False` during a fit that needs nothing of it (see
        the module docstring), so that :meth:`training_step` steps the
        optimizer itself."""
        if self._automatic_optimization is not None:
            return bool(self._automatic_optimization)
        return not self._manual_loop

    @automatic_optimization.setter
    def automatic_optimization(self, value: bool) -> None:
        self._automatic_optimization = value

    def _automatic_loop_reason(self) -> Optional[str]:
        r"""Why this fit needs Lightning's automatic optimization, or
        :obj:`None` (then :meth:`training_step` steps the optimizer)."""
        cls = type(self)
        if cls.training_step is not GraphLevelTask.training_step:
            return "training_step is overridden"
        for hook in ("optimizer_step", "optimizer_zero_grad", "configure_gradient_clipping"):
            if getattr(cls, hook) is not getattr(LightningModule, hook):
                return f"{hook} is overridden"
        trainer = self.trainer
        if trainer.gradient_clip_val:
            return "gradient clipping"
        if trainer.accumulate_grad_batches != 1:
            return "gradient accumulation"
        if len(trainer.optimizers) != 1:
            return f"{len(trainer.optimizers)} optimizers"
        if any(config.reduce_on_plateau for config in trainer.lr_scheduler_configs):
            return "a ReduceLROnPlateau schedule"
        return None

    def on_fit_start(self) -> None:
        # The optimizers and schedulers are configured by now, the training
        # state not yet restored (see on_train_start).
        self._manual_loop = (self._automatic_optimization is None
                             and self._automatic_loop_reason() is None)

    def on_fit_end(self) -> None:
        self._manual_loop = self._direct_step = False

    def on_train_start(self) -> None:
        self._sync_step_counters()
        from gdl_pyg.lightning.loop import direct_step_ok
        self._direct_step = self._steps_itself and direct_step_ok(self.trainer, self)

    def on_train_end(self) -> None:
        self._sync_step_counters()

    def _sync_step_counters(self) -> None:
        # Lightning counts optimizer steps (trainer.global_step) in the progress
        # of the loop that took them. Both get the larger count at the start
        # (a checkpoint written by one loop resumes in the other) and at the
        # end (global_step after fit reads the automatic loop's).
        try:
            loop = self.trainer.fit_loop.epoch_loop
            counters = (loop.automatic_optimization.optim_progress.optimizer.step.total,
                        loop.manual_optimization.optim_step_progress.total)
        except AttributeError:  # pragma: no cover - a Lightning without these
            return
        steps = max(c.completed for c in counters)
        for c in counters:
            if c.completed < steps:
                c.ready = c.completed = steps

    @property
    def _steps_itself(self) -> bool:
        # this fit chose the manual loop, and nobody has set
        # automatic_optimization by hand since
        return self._manual_loop and self._automatic_optimization is None

    def _manual_step(self, loss: Tensor) -> None:
        r"""The optimizer step of Lightning's automatic loop, in the same
        order: ``zero_grad``, backward, ``step``."""
        optimizer = self.optimizers()
        optimizer.zero_grad()
        if self._direct_step:
            # what manual_backward and LightningOptimizer.step come down to
            # when no hook is around them (gdl_pyg.lightning.loop.direct_step_ok)
            loss.backward()
            optimizer._on_before_step()
            optimizer.optimizer.step()
            optimizer._on_after_step()
            return
        self.manual_backward(loss)
        optimizer.step()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Where Lightning's automatic loop steps the schedulers: after the
        # batch-end hooks, "step" ones every batch and "epoch" ones after the
        # epoch's last batch (before validation).
        if not self._steps_itself:
            return
        trainer = self.trainer
        configs = trainer.lr_scheduler_configs
        if not configs:
            return
        epoch_loop = trainer.fit_loop.epoch_loop
        epoch_done = epoch_loop._num_ready_batches_reached()
        for interval, index in (("step", epoch_loop.batch_idx + 1),
                                ("epoch", trainer.current_epoch + 1)):
            if interval == "epoch" and not epoch_done:
                continue
            for config in configs:
                if config.interval == interval and index % config.frequency == 0:
                    self.lr_scheduler_step(config.scheduler, None)

    # -------------------------------------------------------------- helpers
    def _init_metric_collections(self, metrics: torchmetrics.MetricCollection) -> None:
        self.metrics = metrics
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        # one collection per test dataloader, created on first use
        self.test_metrics = torch.nn.ModuleDict()

    def forward(self, batch: Any) -> Tensor:
        out = self.model(batch)
        num_graphs = int(batch.num_graphs) if hasattr(batch, "num_graphs") else None
        if not isinstance(out, Tensor) or out.dim() != 2 or (
                num_graphs is not None and out.size(0) != num_graphs):
            shape = list(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"'{type(self).__name__}' expected the model to return "
                             f"[num_graphs, out] = [{num_graphs}, out] (got {shape})")
        return out

    def _test_name(self, dataloader_idx: int) -> str:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        names = getattr(dm, "test_names", None) if dm is not None else None
        if names and dataloader_idx < len(names):
            return str(names[dataloader_idx])
        return str(dataloader_idx)

    def _test_collection(self, dataloader_idx: int) -> Tuple[str, torchmetrics.MetricCollection]:
        r"""The ``(ModuleDict key, metric collection)`` of a test dataloader,
        created on first use (named ``test/<metric>_<test set name>``, or
        ``test/<metric>`` for a single unnamed test set)."""
        if self._num_test_loaders() > 1 or self._test_name(0) != "0":
            name = self._test_name(dataloader_idx)
            key, postfix = "_" + name.replace(".", "_"), f"_{name}"
        else:
            key, postfix = "_single", None
        if key not in self.test_metrics:
            self.test_metrics[key] = self.metrics.clone(prefix="test/", postfix=postfix
                                                        ).to(self.device)
        return key, self.test_metrics[key]

    def _num_test_loaders(self) -> int:
        loaders = getattr(self.trainer, "test_dataloaders", None)
        return len(loaders) if isinstance(loaders, (list, tuple)) else 1

    def _is_last_train_batch(self, batch_idx: int) -> bool:
        trainer = self._trainer
        if trainer is None:  # called by hand: every call is an "epoch"
            return True
        if getattr(trainer, "is_last_batch", False):
            return True
        num = getattr(trainer, "num_training_batches", None)
        return isinstance(num, int) and batch_idx + 1 >= num

    def _train_epoch(self) -> int:
        return int(getattr(self._trainer, "current_epoch", 0) or 0)

    def _log_train_epoch(self, batch_size: Optional[int] = None) -> None:
        r"""Logs :attr:`train_loss` and :attr:`train_metrics` as epoch values,
        once per epoch (Lightning computes them, synchronised over
        processes, and resets them at the epoch's end)."""
        epoch = self._train_epoch()
        if self._train_logged_epoch == epoch:
            return
        self._train_logged_epoch = epoch
        self.log("train/loss", self.train_loss, batch_size=batch_size, on_step=False,
                 on_epoch=True, prog_bar=True)
        self.log_dict(self.train_metrics, batch_size=batch_size, on_step=False, on_epoch=True)

    def _train_step_end(self, loss: Tensor, batch_size: int, batch_idx: int) -> None:
        r"""Adds a training step's loss to :attr:`train_loss` (weighted by
        ``batch_size``) and, on the epoch's last step, logs the epoch values.
        The step's metric inputs must already be queued
        (:meth:`_train_update`). :meth:`training_loss` calls this instead of
        ``self.log``."""
        self._loss_queue.append((loss.detach(), batch_size))
        if self._is_last_train_batch(batch_idx):
            self._flush_train_metrics()
            self._log_train_epoch(batch_size)
        elif len(self._loss_queue) >= max(int(self.train_metrics_every), 1):
            self._flush_train_metrics()

    def _train_update(self, *args: Any) -> None:
        r"""Queues a training step's (detached) metric inputs; every
        :attr:`train_metrics_every` steps and at the epoch's end
        (:meth:`_train_step_end` decides) they enter :attr:`train_metrics` in
        one :meth:`_update_train_metrics` call, each argument concatenated
        along its first dimension (tensors, and tuples or dicts of them)."""
        self._train_queue.append(args)

    def _update_train_metrics(self, *args: Any) -> None:
        r"""Updates :attr:`train_metrics` with the concatenated inputs of
        :meth:`_train_update` (by default ``(output, target)``)."""
        self.train_metrics.update(*args)

    def _flush_train_loss(self) -> None:
        if not self._loss_queue:
            return
        queue, self._loss_queue = self._loss_queue, []
        losses = torch.stack([loss.reshape(()) for loss, _ in queue])
        sizes = torch.tensor([float(n) for _, n in queue], device=losses.device)
        self.train_loss.update(losses, weight=sizes)

    def _flush_train_metrics(self) -> None:
        r"""Passes the queued losses to :attr:`train_loss` and the queued
        metric inputs to :attr:`train_metrics`."""
        self._flush_train_loss()
        if not self._train_queue:
            return
        queue, self._train_queue = self._train_queue, []
        self._update_train_metrics(*_concat(queue))

    def on_train_epoch_start(self) -> None:
        self._train_logged_epoch = None
        self._train_queue, self._loss_queue = [], []

    def on_train_epoch_end(self) -> None:
        # An epoch cut short (``max_steps``, a callback's -1) has no last batch.
        self._flush_train_metrics()
        if self.train_loss.update_count > 0:
            self._log_train_epoch()

    # ---------------------------------------------------------------- steps
    def training_loss(self, batch: Any, batch_idx: int) -> Tensor:
        r"""The loss of one training batch; queues the step's metric inputs
        (:meth:`_train_update`) and ends with :meth:`_train_step_end`.
        Subclasses override this rather than :meth:`training_step`."""
        out = self(batch)
        y = self._targets(batch, out)
        loss = self.criterion(out, y)
        self._train_update(out.detach(), y)
        self._train_step_end(loss, batch.num_graphs, batch_idx)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        r""":meth:`training_loss`, plus the optimizer step when Lightning's
        automatic optimization is off (see the module docstring)."""
        loss = self.training_loss(batch, batch_idx)
        if self._steps_itself:
            self._manual_step(loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        out = self(batch)
        y = self._targets(batch, out)
        bs = batch.num_graphs
        self.log("val/loss", self.criterion(out, y), batch_size=bs, prog_bar=True,
                 add_dataloader_idx=False, sync_dist=True)
        # update, not forward: forward also computes every metric on the batch,
        # which nothing logs (the epoch values come from the accumulated state)
        self.val_metrics.update(out, y)
        self.log_dict(self.val_metrics, batch_size=bs, prog_bar=True, add_dataloader_idx=False)

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        out = self(batch)
        y = self._targets(batch, out)
        bs = batch.num_graphs
        key, metrics = self._test_collection(dataloader_idx)
        loss_name = "test/loss" + (metrics.postfix or "")
        self.log(loss_name, self.criterion(out, y), batch_size=bs, add_dataloader_idx=False,
                 sync_dist=True)
        metrics.update(out, y)
        # The collections are created on demand (one per test dataloader), after
        # Lightning has mapped its Metric attributes, so each metric is logged
        # with its attribute path; Lightning computes and resets it per epoch.
        for base, metric in metrics.items(keep_base=True, copy_state=False):
            self.log(f"{metrics.prefix}{base}{metrics.postfix or ''}", metric, batch_size=bs,
                     add_dataloader_idx=False, metric_attribute=f"test_metrics.{key}.{base}")

    def configure_optimizers(self) -> Dict[str, Any]:
        hp = self.hparams
        opt_cls = torch.optim.AdamW if hp.get("optimizer", "adam") == "adamw" else torch.optim.Adam
        optimizer = opt_cls(self.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
        if hp.get("scheduler", "none") == "cosine":
            max_epochs = self.trainer.max_epochs if self._trainer is not None else None
            t_max = max_epochs if isinstance(max_epochs, int) and max_epochs > 0 else 1
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=t_max, eta_min=hp.get("min_lr", 0.0))
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        return {"optimizer": optimizer}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"


class GraphClassificationTask(GraphLevelTask):
    r"""Graph classification: cross-entropy on logits ``[num_graphs, C]``,
    accuracy (micro, ``"acc"``) and macro F1 (``"f1"``) via torchmetrics;
    :meth:`predict_step` returns the predicted classes ``[num_graphs]``.

    Args:
        model (torch.nn.Module): ``model(batch) -> [num_graphs, num_classes]``
            logits.
        num_classes (int, optional): the number of classes; by default the
            model's ``num_classes`` attribute. (default: :obj:`None`)
        label_smoothing (float, optional): label smoothing of the
            cross-entropy. (default: :obj:`0.0`)
        lr (float, optional): see :class:`GraphLevelTask`. (default: :obj:`1e-3`)
        weight_decay (float, optional): (default: :obj:`0.0`)
        optimizer (str, optional): ``"adam"`` or ``"adamw"``.
            (default: :obj:`"adam"`)
        scheduler (str, optional): ``"none"`` or ``"cosine"``.
            (default: :obj:`"none"`)
        min_lr (float, optional): (default: :obj:`0.0`)
    """

    def __init__(self, model: torch.nn.Module, num_classes: Optional[int] = None,
                 label_smoothing: float = 0.0, lr: float = 1e-3, weight_decay: float = 0.0,
                 optimizer: Literal["adam", "adamw"] = "adam",
                 scheduler: Literal["none", "cosine"] = "none", min_lr: float = 0.0):
        _check_model(type(self).__name__, model)
        if num_classes is None:
            num_classes = getattr(model, "num_classes", None)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"'{type(self).__name__}' expected 'num_classes' >= 2, or a model "
                             f"with an integer 'num_classes' attribute (got {num_classes!r})")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"'{type(self).__name__}' expected label_smoothing in [0, 1) "
                             f"(got {label_smoothing!r})")
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        super().__init__(model, lr=lr, weight_decay=weight_decay, optimizer=optimizer,
                         scheduler=scheduler, min_lr=min_lr)

    def configure_losses(self) -> None:
        self.criterion = torch.nn.CrossEntropyLoss(label_smoothing=self.label_smoothing)

    def configure_metrics(self) -> None:
        C = self.num_classes
        self._init_metric_collections(torchmetrics.MetricCollection({
            "acc": torchmetrics.classification.MulticlassAccuracy(C, average="micro"),
            "f1": torchmetrics.classification.MulticlassF1Score(C, average="macro"),
        }, compute_groups=False))

    def _targets(self, batch: Any, out: Tensor) -> Tensor:
        y = batch.y.view(-1).long()
        if out.size(-1) != self.num_classes:
            raise ValueError(f"'{type(self).__name__}' expected logits of shape "
                             f"[num_graphs, {self.num_classes}] (got {list(out.shape)})")
        return y

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        r"""The predicted class of every graph, ``[num_graphs]``."""
        return self(batch).argmax(dim=-1)


class GraphRegressionTask(GraphLevelTask):
    r"""Graph regression: outputs ``[num_graphs, num_outputs]`` against
    targets ``y`` of the same shape (or ``[num_graphs]`` for one output);
    mean squared / absolute error (``"mse"``, ``"mae"``) via torchmetrics;
    :meth:`predict_step` returns the outputs.

    Args:
        model (torch.nn.Module): ``model(batch) -> [num_graphs, num_outputs]``.
        loss (str, optional): ``"mse"``, ``"l1"`` or ``"smooth_l1"``.
            (default: :obj:`"mse"`)
        lr (float, optional): see :class:`GraphLevelTask`. (default: :obj:`1e-3`)
        weight_decay (float, optional): (default: :obj:`0.0`)
        optimizer (str, optional): ``"adam"`` or ``"adamw"``.
            (default: :obj:`"adam"`)
        scheduler (str, optional): ``"none"`` or ``"cosine"``.
            (default: :obj:`"none"`)
        min_lr (float, optional): (default: :obj:`0.0`)
    """

    def __init__(self, model: torch.nn.Module, loss: Literal["mse", "l1", "smooth_l1"] = "mse",
                 lr: float = 1e-3, weight_decay: float = 0.0,
                 optimizer: Literal["adam", "adamw"] = "adam",
                 scheduler: Literal["none", "cosine"] = "none", min_lr: float = 0.0):
        if loss not in ("mse", "l1", "smooth_l1"):
            raise ValueError(f"'{type(self).__name__}' expected loss 'mse', 'l1' or "
                             f"'smooth_l1' (got {loss!r})")
        self.loss = loss
        super().__init__(model, lr=lr, weight_decay=weight_decay, optimizer=optimizer,
                         scheduler=scheduler, min_lr=min_lr)

    def configure_losses(self) -> None:
        self.criterion = {"mse": torch.nn.MSELoss, "l1": torch.nn.L1Loss,
                          "smooth_l1": torch.nn.SmoothL1Loss}[self.loss]()

    def configure_metrics(self) -> None:
        self._init_metric_collections(torchmetrics.MetricCollection({
            "mse": torchmetrics.MeanSquaredError(),
            "mae": torchmetrics.MeanAbsoluteError(),
        }, compute_groups=False))

    def _targets(self, batch: Any, out: Tensor) -> Tensor:
        y = batch.y.to(out.dtype)
        if y.dim() == 1:
            y = y.view(-1, 1)
        if y.numel() == out.numel():
            y = y.view(out.size(0), -1)
        if y.shape != out.shape:
            raise ValueError(f"'{type(self).__name__}' expected targets 'y' of shape "
                             f"{list(out.shape)} (got {list(batch.y.shape)})")
        return y

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        r"""The model's outputs ``[num_graphs, num_outputs]``."""
        return self(batch)
