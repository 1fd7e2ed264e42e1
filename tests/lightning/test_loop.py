r"""The lean training step (``gdl_pyg.lightning.loop``) is Lightning's step:
the same weights, optimizer and scheduler states, progress counters,
checkpoints, hook calls (order and arguments) and logged values, bit for bit,
and Lightning's own step wherever the lean one would differ."""
import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop

import gdl_pyg.lightning.loop as lean
from gdl_pyg.lightning.loop import _LeanTrainingEpochLoop, direct_step_ok, use_lean_loop
from gdl_pyg.lightning.task import GraphClassificationTask
from gdl_pyg.nn.models.grid_cnn import GridCNN

from test_task import TinyGrids, _StepScheduled, _task, assert_same_training_state


class _Hooks(Callback):
    r"""Records every per-step hook with its arguments (batch sums stand for
    the batches) and the global step; optionally logs a value per step."""

    def __init__(self, log=False):
        self.calls, self.log_values = [], log

    def _batch(self, batch):
        return round(float(batch.x.sum()), 6)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.calls.append(("start", batch_idx, self._batch(batch), trainer.global_step))

    def on_before_backward(self, trainer, pl_module, loss):
        self.calls.append(("before_backward", float(loss.detach())))

    def on_after_backward(self, trainer, pl_module):
        grad = next(pl_module.parameters()).grad
        self.calls.append(("after_backward", float(grad.abs().sum())))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.calls.append(("before_optimizer_step", trainer.global_step))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.calls.append(("end", batch_idx, self._batch(batch), float(loss),
                           trainer.global_step))
        if self.log_values:
            pl_module.log("cb/batch", float(batch_idx), on_step=True, on_epoch=True,
                          batch_size=1)


class _BatchHooks(_Hooks):
    r"""Only the batch hooks (so the task's direct optimizer step runs)."""

    on_before_backward = Callback.on_before_backward
    on_after_backward = Callback.on_after_backward
    on_before_optimizer_step = Callback.on_before_optimizer_step


def _loop_state(trainer):
    loop = trainer.fit_loop.epoch_loop
    return (loop.batch_progress.state_dict(),
            loop.manual_optimization.optim_step_progress.state_dict(),
            loop.automatic_optimization.optim_progress.state_dict(),
            loop._batches_that_stepped, trainer.global_step, trainer.current_epoch)


def _run(task, lean_loop, callbacks=(), epochs=3, ckpt_path=None, root=None, **kw):
    tr = Trainer(accelerator="cpu", max_epochs=epochs, logger=False,
                 enable_checkpointing=root is not None, default_root_dir=root,
                 enable_progress_bar=False, enable_model_summary=False,
                 callbacks=list(callbacks), **kw)
    if lean_loop:
        assert use_lean_loop(tr)
    torch.manual_seed(1)
    tr.fit(task, TinyGrids(batch_size=6), ckpt_path=ckpt_path)  # batches of 6, 6, 4
    return tr


def _assert_same(a, b):
    assert_same_training_state(a, b)
    assert _loop_state(a) == _loop_state(b)
    assert {k: float(v) for k, v in a.callback_metrics.items()} == \
        {k: float(v) for k, v in b.callback_metrics.items()}


@pytest.fixture
def lightning_steps(monkeypatch):
    r"""Counts the steps that Lightning's own ``advance`` runs."""
    count = {"n": 0}
    original = _TrainingEpochLoop.advance

    def counted(self, data_fetcher):
        count["n"] += 1
        return original(self, data_fetcher)

    monkeypatch.setattr(_TrainingEpochLoop, "advance", counted)
    return count


@pytest.mark.parametrize("cls, kw", [(GraphClassificationTask, {}),
                                     (GraphClassificationTask, {"scheduler": "cosine"}),
                                     (_StepScheduled, {})])
@pytest.mark.parametrize("hooks", [_Hooks, _BatchHooks])
def test_lean_step_is_lightnings_step(cls, kw, hooks, lightning_steps):
    rec_lean, rec = hooks(log=True), hooks(log=True)
    a = _run(_task(cls, **kw), True, [rec_lean])
    assert lightning_steps["n"] == 0  # every step took the lean path
    assert isinstance(a.fit_loop.epoch_loop, _LeanTrainingEpochLoop)
    b = _run(_task(cls, **kw), False, [rec])
    assert lightning_steps["n"] == 9
    _assert_same(a, b)
    assert rec_lean.calls == rec.calls
    kinds = {c[0] for c in rec.calls}
    assert kinds == ({"start", "end"} if hooks is _BatchHooks else
                     {"start", "end", "before_backward", "after_backward",
                      "before_optimizer_step"})
    assert len([c for c in rec.calls if c[0] == "end"]) == 9
    assert "cb/batch_epoch" in a.callback_metrics  # a callback's self.log works


def test_direct_step_is_chosen_per_fit():
    seen = {}

    class Probe(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            seen.setdefault(type(self).__name__, []).append(pl_module._direct_step)

    class ProbeWithBackwardHook(Probe):
        def on_after_backward(self, trainer, pl_module):
            pass

    task = _task()
    _run(task, True, [Probe()], epochs=1)
    _run(task, True, [ProbeWithBackwardHook()], epochs=1)
    _run(task, True, [Probe()], epochs=1, gradient_clip_val=1.0)  # automatic loop
    assert seen == {"Probe": [True, False], "ProbeWithBackwardHook": [False]}
    assert task._direct_step is False  # reset after each fit


def test_the_comparison_sees_a_skipped_hook(monkeypatch):
    # the checks above fail on a lean step that drops a hook
    rec_lean, rec = _BatchHooks(), _BatchHooks()
    original = _LeanTrainingEpochLoop._callbacks

    def drop_batch_end(self, callbacks, hook, *args):
        if hook != "on_train_batch_end":
            original(self, callbacks, hook, *args)

    monkeypatch.setattr(_LeanTrainingEpochLoop, "_callbacks", drop_batch_end)
    a = _run(_task(), True, [rec_lean], epochs=1)
    b = _run(_task(), False, [rec], epochs=1)
    assert rec_lean.calls != rec.calls
    _assert_same(a, b)  # the weights do not tell


class _StopAtSecond(GraphClassificationTask):
    def on_train_batch_start(self, batch, batch_idx):
        return -1 if batch_idx == 1 else None


class _ScaledTransfer(GraphClassificationTask):
    def on_after_batch_transfer(self, batch, dataloader_idx):
        batch.x = batch.x * 2
        return batch


@pytest.mark.filterwarnings("ignore:You have overridden `on_after_batch_transfer`")
@pytest.mark.parametrize("cls", [_StopAtSecond, _ScaledTransfer])
def test_module_hooks_in_the_lean_step(cls, lightning_steps):
    rec_lean, rec = _Hooks(), _Hooks()
    a = _run(_task(cls), True, [rec_lean])
    assert lightning_steps["n"] == 0
    b = _run(_task(cls), False, [rec])
    _assert_same(a, b)
    assert rec_lean.calls == rec.calls
    if cls is _StopAtSecond:  # one step per epoch, then the epoch ends
        assert a.global_step == 3
    else:  # the hook saw (and changed) every batch
        assert a.global_step == 9


@pytest.mark.parametrize("kw", [{"profiler": "simple"}, {"gradient_clip_val": 0.5},
                                {"accumulate_grad_batches": 2}])
def test_lightnings_step_where_the_lean_one_would_differ(kw, lightning_steps):
    tr = Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                 enable_progress_bar=False, enable_model_summary=False, **kw)
    installed = use_lean_loop(tr)
    assert installed is ("profiler" not in kw)
    torch.manual_seed(1)
    tr.fit(_task(), TinyGrids(batch_size=6))
    assert lightning_steps["n"] == 3


@pytest.mark.filterwarnings("ignore:Using ModelCheckpoint with manual optimization")
def test_resume_mid_epoch_and_at_epoch_end(tmp_path, lightning_steps):
    # checkpoints after every second step, then a resume from each kind
    def fit(lean_loop, root, epochs, ckpt=None):
        every = ModelCheckpoint(dirpath=str(root), every_n_train_steps=2, save_top_k=-1,
                                filename="{step}")
        rec = _Hooks()
        tr = _run(_task(scheduler="cosine"), lean_loop, [every, rec], epochs=epochs,
                  ckpt_path=ckpt, root=str(root))
        return tr, rec

    a, _ = fit(True, tmp_path / "a", 2)
    b, _ = fit(False, tmp_path / "b", 2)
    _assert_same(a, b)
    for name in ("step=2.ckpt", "step=6.ckpt"):  # mid-epoch, and the end of epoch 2
        ca = torch.load(tmp_path / "a" / name, weights_only=False)
        cb = torch.load(tmp_path / "b" / name, weights_only=False)
        assert ca["loops"] == cb["loops"] and ca["global_step"] == cb["global_step"]
        lightning_steps["n"] = 0
        ra, rec_a = fit(True, tmp_path / f"ra{name}", 3, str(tmp_path / "a" / name))
        assert lightning_steps["n"] == 1  # the first step after a restart is Lightning's
        rb, rec_b = fit(False, tmp_path / f"rb{name}", 3, str(tmp_path / "b" / name))
        _assert_same(ra, rb)
        assert rec_a.calls == rec_b.calls and ra.global_step == 9


def test_use_lean_loop_only_where_tested(monkeypatch):
    assert lean.lightning_version_tested("2.6.6")
    assert not lean.lightning_version_tested("2.7.0")
    assert not lean.lightning_version_tested("3.6")
    tr = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    monkeypatch.setattr(lean, "TESTED_LIGHTNING", ("1.9",))
    assert not use_lean_loop(tr) and type(tr.fit_loop.epoch_loop) is _TrainingEpochLoop
    monkeypatch.undo()

    class Custom(_TrainingEpochLoop):
        pass

    tr.fit_loop.epoch_loop.__class__ = Custom
    assert not use_lean_loop(tr) and type(tr.fit_loop.epoch_loop) is Custom
    tr = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    assert use_lean_loop(tr) and use_lean_loop(tr)  # twice is fine
    assert type(tr.fit_loop.epoch_loop) is _LeanTrainingEpochLoop


def test_direct_step_ok():
    task = _task()
    tr = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    assert direct_step_ok(tr, task)

    class Hooked(Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            pass

    assert not direct_step_ok(Trainer(accelerator="cpu", logger=False,
                                      callbacks=[Hooked()]), task)
    assert not direct_step_ok(Trainer(accelerator="cpu", logger=False,
                                      precision="bf16-mixed"), task)
    assert not direct_step_ok(Trainer(accelerator="cpu", logger=False, profiler="simple"),
                              task)

    class OwnBackward(GraphClassificationTask):
        def backward(self, loss, *args, **kwargs):
            loss.backward(*args, **kwargs)

    assert not direct_step_ok(tr, OwnBackward(GridCNN(1, 2, hidden_channels=4, num_layers=2)))
    # a hook set on the instance counts too
    task.on_after_backward = lambda: None
    assert not direct_step_ok(tr, task)
