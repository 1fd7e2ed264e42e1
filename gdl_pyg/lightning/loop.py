r"""A leaner training step for Lightning's epoch loop.

Lightning's training epoch loop dispatches every per-step hook through
``lightning.pytorch.trainer.call``: for each batch it walks every callback for
``on_train_batch_start`` and ``on_train_batch_end``, opens a profiler section
and builds a state key for each, routes the batch through three batch-transfer
hooks, and inspects the signature of ``training_step`` again. In the manual
loop of :class:`~gdl_pyg.lightning.task.GraphLevelTask`, ``manual_backward``
and the optimizer step add ``on_before_backward``, ``on_after_backward`` and
``on_before_optimizer_step`` for every callback. A ``gdl-pyg fit`` run has
eight callbacks, and only two implement any per-step hook; on a small model
(2.5 ms per step) that dispatch was a fifth of the step.

:func:`use_lean_loop` gives a trainer's epoch loop a step that calls the same
hooks, in the same order and with the same arguments, but only on the
callbacks and modules that implement them, and that skips the batch-transfer
hooks when neither the module nor the data module overrides them (the batch
then goes to the device with Lightning's ``move_data_to_device``, as the
default hooks do). Which callbacks and hooks those are is read at the start
of every epoch (a callback added in the middle of an epoch is called from
the next one). Progress counters, logging, validation, checkpoints and
restarts are Lightning's own. The ``gdl-pyg`` command (:class:`~gdl_pyg.lightning.
cli.GdlCLI`) calls it on every trainer it builds.

The lean step runs only where it is exactly Lightning's: one process
(``SingleDeviceStrategy``), no profiler, manual optimization, a
``training_step`` that takes the batch (not ``dataloader_iter``), and not the
first step after a mid-epoch restart; any other step is Lightning's own
``advance``. The loop subclasses a private Lightning class, so it is installed
only for the Lightning versions it was tested with (:data:`TESTED_LIGHTNING`);
on others :func:`use_lean_loop` leaves the trainer alone and returns
:obj:`False`.

:func:`direct_step_ok` is the matching test for the optimizer step: whether
``manual_backward`` and ``LightningOptimizer.step`` would do nothing but
``loss.backward()`` and ``optimizer.step()`` (one process, 32-bit precision,
no profiler, and no callback or module hook around them).
"""
from collections import OrderedDict
from typing import Any, List, NamedTuple, Optional

import lightning.pytorch as pl
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch import Callback, LightningDataModule, LightningModule
from lightning.pytorch.loops.fetchers import _DataLoaderIterDataFetcher
from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.trainer import call
from lightning.pytorch.utilities.signature_utils import is_param_in_hook_signature

__all__ = ["use_lean_loop", "direct_step_ok", "TESTED_LIGHTNING"]

#: The ``major.minor`` Lightning versions whose epoch loop :func:`use_lean_loop`
#: was tested against.
TESTED_LIGHTNING = ("2.6",)

_TRANSFER_HOOKS = ("on_before_batch_transfer", "transfer_batch_to_device",
                   "on_after_batch_transfer")
_STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")


def overrides(obj: Any, name: str, base: type) -> bool:
    r"""Whether ``obj.name`` is something other than ``base.name`` (a method
    overridden in a subclass, or a function set on the instance)."""
    fn = getattr(obj, name, None)
    if fn is None:
        return False
    return getattr(fn, "__func__", fn) is not getattr(base, name)


def _callbacks_with(trainer: "pl.Trainer", hook: str) -> List[Callback]:
    return [cb for cb in trainer.callbacks if overrides(cb, hook, Callback)]


def _one_process(trainer: "pl.Trainer") -> bool:
    return (type(trainer.strategy) is SingleDeviceStrategy and trainer.world_size == 1
            and isinstance(trainer.profiler, PassThroughProfiler))


def direct_step_ok(trainer: "pl.Trainer", module: LightningModule) -> bool:
    r"""Whether, in manual optimization, ``module.manual_backward(loss)`` and
    ``LightningOptimizer.step()`` reduce to ``loss.backward()`` and the wrapped
    optimizer's ``step()``: one process, Lightning's 32-bit
    :class:`~lightning.pytorch.plugins.precision.Precision`, no profiler, no
    callback implementing ``on_before_backward``, ``on_after_backward`` or
    ``on_before_optimizer_step``, and a module that overrides none of these
    nor ``backward``."""
    if not _one_process(trainer) or type(trainer.precision_plugin) is not Precision:
        return False
    if getattr(module, "_fabric", None) is not None:
        return False
    if any(overrides(module, h, LightningModule) for h in _STEP_HOOKS + ("backward",)):
        return False
    return not any(_callbacks_with(trainer, h) for h in _STEP_HOOKS)


class _Plan(NamedTuple):
    start_callbacks: List[Callback]
    end_callbacks: List[Callback]
    module_start: bool
    module_end: bool
    transfer_hooks: bool
    batch_idx: bool


class _LeanTrainingEpochLoop(_TrainingEpochLoop):
    r"""Lightning's training epoch loop with :meth:`advance` calling only the
    hooks that someone implements (see the module docstring)."""

    _lean_plan: Optional[_Plan] = None

    def on_run_start(self, data_fetcher: Any) -> None:
        super().on_run_start(data_fetcher)
        self._lean_plan = self._make_plan(data_fetcher)

    def _make_plan(self, data_fetcher: Any) -> Optional[_Plan]:
        trainer = self.trainer
        module = trainer.lightning_module
        if not _one_process(trainer) or isinstance(data_fetcher, _DataLoaderIterDataFetcher):
            return None
        datamodule = getattr(trainer, "datamodule", None)
        transfer = any(overrides(module, h, LightningModule) for h in _TRANSFER_HOOKS) or (
            datamodule is not None and
            any(overrides(datamodule, h, LightningDataModule) for h in _TRANSFER_HOOKS))
        return _Plan(
            start_callbacks=_callbacks_with(trainer, "on_train_batch_start"),
            end_callbacks=_callbacks_with(trainer, "on_train_batch_end"),
            module_start=overrides(module, "on_train_batch_start", LightningModule),
            module_end=overrides(module, "on_train_batch_end", LightningModule),
            transfer_hooks=transfer,
            batch_idx=is_param_in_hook_signature(module.training_step, "batch_idx",
                                                 min_args=2))

    def advance(self, data_fetcher: Any) -> None:
        plan = self._lean_plan
        trainer = self.trainer
        if plan is None or self.restarting or trainer.lightning_module.automatic_optimization:
            return super().advance(data_fetcher)
        self.val_loop.restarting = False

        batch, _, __ = next(data_fetcher)
        batch_idx = self.batch_idx + 1
        self.batch_progress.is_last_batch = data_fetcher.done
        module = trainer.lightning_module
        batch = trainer.precision_plugin.convert_input(batch)
        if plan.transfer_hooks:
            batch = module._on_before_batch_transfer(batch, dataloader_idx=0)
            batch = call._call_strategy_hook(trainer, "batch_to_device", batch, dataloader_idx=0)
        else:
            batch = move_data_to_device(batch, trainer.strategy.root_device)

        self.batch_progress.increment_ready()
        trainer._logger_connector.on_batch_start(batch)

        output = None
        skip_rest = False
        if batch is None:
            self._warning_cache.warn("train_dataloader yielded None. If this was on purpose, "
                                     "ignore this warning...")
        else:
            self._callbacks(plan.start_callbacks, "on_train_batch_start", batch, batch_idx)
            response = None
            if plan.module_start:
                response = call._call_lightning_module_hook(trainer, "on_train_batch_start",
                                                            batch, batch_idx)
            skip_rest = response == -1
            if skip_rest:
                self.batch_progress.increment_by(0, is_last_batch=True)
            else:
                self.batch_progress.increment_started()
                kwargs = OrderedDict(batch=batch)
                if plan.batch_idx:
                    kwargs["batch_idx"] = batch_idx
                output = self.manual_optimization.run(kwargs)

        self.batch_progress.increment_processed()
        # Lightning's learning-rate scheduler updates here do nothing in manual
        # optimization; the task steps its schedulers itself.
        if skip_rest:
            raise StopIteration

        self._callbacks(plan.end_callbacks, "on_train_batch_end", output, batch, batch_idx)
        if plan.module_end:
            call._call_lightning_module_hook(trainer, "on_train_batch_end", output, batch,
                                             batch_idx)
        trainer._logger_connector.on_batch_end()
        self.batch_progress.increment_completed()
        trainer._logger_connector.update_train_step_metrics()

    def _callbacks(self, callbacks: List[Callback], hook: str, *args: Any) -> None:
        # call._call_callback_hooks, restricted to the callbacks that implement
        # the hook (without its per-callback profiler section: no profiler runs)
        if not callbacks:
            return
        trainer = self.trainer
        module = trainer.lightning_module
        previous, module._current_fx_name = module._current_fx_name, hook
        try:
            for callback in callbacks:
                getattr(callback, hook)(trainer, module, *args)
        finally:
            module._current_fx_name = previous


def lightning_version_tested(version: Optional[str] = None) -> bool:
    r"""Whether ``version`` (by default the installed Lightning's) is one of
    :data:`TESTED_LIGHTNING`."""
    version = pl.__version__ if version is None else version
    return ".".join(version.split(".")[:2]) in TESTED_LIGHTNING


def use_lean_loop(trainer: "pl.Trainer") -> bool:
    r"""Gives ``trainer``'s training epoch loop the lean step of this module
    (before ``fit``); returns whether it did. It does not on an untested
    Lightning version, with a profiler, or when the epoch loop is not
    Lightning's own class (a custom loop is left alone)."""
    loop = trainer.fit_loop.epoch_loop
    if isinstance(loop, _LeanTrainingEpochLoop):
        return True
    if type(loop) is not _TrainingEpochLoop or not lightning_version_tested():
        return False
    if not isinstance(trainer.profiler, PassThroughProfiler):
        return False  # keep the profiler's section names (they name the loop class)
    loop.__class__ = _LeanTrainingEpochLoop
    return True
