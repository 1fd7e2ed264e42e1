import pytest
import torch
from lightning.pytorch import Callback, Trainer
from torch_geometric.nn import global_mean_pool

from gdl_pyg.domains.grid import grid_to_data
from gdl_pyg.lightning.data import GraphDataModule
from gdl_pyg.lightning.task import GraphClassificationTask, GraphRegressionTask
from gdl_pyg.nn.models.grid_cnn import GridCNN


class TinyGrids(GraphDataModule):
    r"""Random 4x4 grids; class = whether the mean pixel is positive."""

    def __init__(self, names=("a", "b"), regression=False, batch_size=8):
        super().__init__(batch_size=batch_size)
        self.names = names
        self.regression = regression

    def make(self, n, seed):
        gen = torch.Generator().manual_seed(seed)
        graphs = []
        for _ in range(n):
            img = torch.randn(1, 4, 4, generator=gen)
            g = grid_to_data(img)
            g.y = img.mean().view(1, 1) if self.regression else (img.mean() > 0).long().view(1)
            graphs.append(g)
        return graphs

    def setup(self, stage=None):
        self.train_dataset, self.val_dataset = self.make(16, 0), self.make(8, 1)
        self.test_datasets = {name: self.make(8 + 4 * i, 2 + i)
                              for i, name in enumerate(self.names)}


def trainer(**kw):
    kw.setdefault("max_epochs", 1)
    return Trainer(accelerator="cpu", logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, **kw)


class MeanRegressor(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(1, 1)

    def forward(self, data):
        return self.lin(global_mean_pool(data.x, data.batch))


def test_classification_metrics_per_test_set():
    task = GraphClassificationTask(GridCNN(1, 2, hidden_channels=4, num_layers=2), lr=1e-2)
    assert task.num_classes == 2  # taken from the model
    assert "model" not in task.hparams and task.hparams["lr"] == 1e-2
    dm = TinyGrids(names=("upright", "rotated"))
    tr = trainer()
    tr.fit(task, dm)
    for key in ("train/loss", "train/acc", "val/loss", "val/acc", "val/f1"):
        assert key in tr.callback_metrics, key
    res = tr.test(task, dm, verbose=False)
    assert len(res) == 2
    assert set(res[0]) == {"test/loss_upright", "test/acc_upright", "test/f1_upright"}
    assert set(res[1]) == {"test/loss_rotated", "test/acc_rotated", "test/f1_rotated"}

    # the logged accuracy is the accuracy over the whole test set (not a batch mean)
    task.eval()
    with torch.no_grad():
        for name, r in zip(dm.test_names, res):
            correct = sum(int((task(b).argmax(-1) == b.y).sum())
                          for b in dm._loader(dm.test_datasets[name], name))
            assert r[f"test/acc_{name}"] == pytest.approx(correct / len(dm.test_datasets[name]))

    # a second test run starts from fresh metric states
    res2 = tr.test(task, dm, verbose=False)
    assert res2[0]["test/acc_upright"] == pytest.approx(res[0]["test/acc_upright"])

    # the same for validation (its metrics accumulate with update, and
    # Lightning computes and resets them per epoch)
    with torch.no_grad():
        correct = sum(int((task(b).argmax(-1) == b.y).sum()) for b in dm.val_dataloader())
    for _ in range(2):
        val = tr.validate(task, dm, verbose=False)[0]
        assert val["val/acc"] == pytest.approx(correct / len(dm.val_dataset))

    # predict returns classes per graph, one list per predict dataloader
    pred = tr.predict(task, dm)
    assert len(pred) == 2 and pred[0][0].dtype == torch.long
    assert torch.cat(pred[1]).shape == (len(dm.test_datasets["rotated"]),)


def test_single_unnamed_test_set_and_regression():
    class OneSet(TinyGrids):
        @property
        def test_names(self):
            return []  # unnamed: metrics are plain test/<metric>

    task = GraphRegressionTask(MeanRegressor(), loss="l1", lr=1e-2, scheduler="cosine")
    dm = OneSet(names=("only",), regression=True)
    tr = trainer(max_epochs=2)
    tr.fit(task, dm)
    assert "val/mae" in tr.callback_metrics and "val/mse" in tr.callback_metrics
    # the cosine schedule anneals over max_epochs
    sched = tr.lr_scheduler_configs[0].scheduler
    assert isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR) and sched.T_max == 2
    res = tr.test(task, dm, verbose=False)
    assert set(res[0]) == {"test/loss", "test/mse", "test/mae"}
    pred = tr.predict(task, dm)
    assert pred[0].shape == (8, 1)  # one predict dataloader: a list of batch outputs


def test_optimizer_options():
    model = GridCNN(1, 3, hidden_channels=4, num_layers=1)
    opt = GraphClassificationTask(model, optimizer="adamw", weight_decay=0.1,
                                  lr=0.5).configure_optimizers()["optimizer"]
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.param_groups[0]["lr"] == 0.5 and opt.param_groups[0]["weight_decay"] == 0.1
    opt = GraphClassificationTask(model).configure_optimizers()
    assert isinstance(opt["optimizer"], torch.optim.Adam) and "lr_scheduler" not in opt


def test_errors():
    model = GridCNN(1, 3, hidden_channels=4, num_layers=1)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        GraphClassificationTask("GridCNN")
    with pytest.raises(ValueError, match="num_classes"):
        GraphClassificationTask(MeanRegressor())
    with pytest.raises(ValueError, match="learning rate"):
        GraphClassificationTask(model, lr=0.0)
    with pytest.raises(ValueError, match="scheduler"):
        GraphClassificationTask(model, scheduler="linear")
    with pytest.raises(ValueError, match="optimizer"):
        GraphClassificationTask(model, optimizer="sgd")
    with pytest.raises(ValueError, match="label_smoothing"):
        GraphClassificationTask(model, label_smoothing=1.0)
    with pytest.raises(ValueError, match="loss"):
        GraphRegressionTask(MeanRegressor(), loss="huber")
    dm = TinyGrids()
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    # a model returning the wrong number of classes or rows is named in the error
    with pytest.raises(ValueError, match=r"\[num_graphs, 2\]"):
        task = GraphClassificationTask(model, num_classes=2)
        task.training_step(batch, 0)

    class NodeLevel(torch.nn.Module):
        num_classes = 2

        def forward(self, data):
            return data.x.repeat(1, 2)

    with pytest.raises(ValueError, match=r"\[num_graphs, out\] = \[8, out\]"):
        GraphClassificationTask(NodeLevel())(batch)


class _StepRecorder(Callback):
    r"""The loss and batch size of every training step, and the train values
    that :class:`LearningCurvePlot`-style callbacks see at each epoch end."""

    def __init__(self):
        self.steps, self.seen = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append((trainer.current_epoch, float(outputs["loss"]), int(batch.num_graphs)))

    def on_train_epoch_end(self, trainer, pl_module):
        self.seen.append({k: float(v) for k, v in trainer.callback_metrics.items()
                          if k.startswith("train/")})


def _count_logs(task):
    calls = []
    log = task.log

    def counting(name, value, *args, **kwargs):
        calls.append(name)
        return log(name, value, *args, **kwargs)

    task.log = counting
    return calls


def test_training_logs_epoch_values_once_per_epoch(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    from gdl_pyg.lightning.callbacks import LearningCurvePlot
    torch.manual_seed(0)
    task = GraphClassificationTask(GridCNN(1, 2, hidden_channels=4, num_layers=2), lr=1e-2)
    calls = _count_logs(task)
    rec, plot = _StepRecorder(), LearningCurvePlot(metrics=["loss", "acc"])
    dm = TinyGrids(batch_size=6)  # 16 graphs: batches of 6, 6, 4
    tr = Trainer(accelerator="cpu", max_epochs=3, logger=CSVLogger(str(tmp_path)),
                 enable_checkpointing=False, enable_progress_bar=False,
                 enable_model_summary=False, callbacks=[rec, plot], log_every_n_steps=1)
    tr.fit(task, dm)
    # the train values are logged once per epoch, not per step
    assert sum(c == "train/loss" for c in calls) == 3
    assert len(rec.steps) == 9
    # callbacks see every epoch's values in on_train_epoch_end ...
    assert [sorted(s) for s in rec.seen] == [["train/acc", "train/f1", "train/loss"]] * 3
    for epoch, seen in enumerate(rec.seen):
        # ... and train/loss is the batch-size-weighted mean of the epoch's step losses
        steps = [(loss, n) for e, loss, n in rec.steps if e == epoch]
        mean = sum(loss * n for loss, n in steps) / sum(n for _, n in steps)
        assert seen["train/loss"] == pytest.approx(mean, rel=1e-6)
        assert 0.0 <= seen["train/acc"] <= 1.0
    assert sorted(plot.history["train/loss"]) == sorted(plot.history["train/acc"]) == [0, 1, 2]
    assert plot.history["train/loss"] == {e: pytest.approx(s["train/loss"])
                                          for e, s in enumerate(rec.seen)}
    # metrics.csv: one train row per epoch, with the usual keys
    import csv
    with open(tr.logger.log_dir + "/metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    train = [r for r in rows if r["train/loss"]]
    assert [int(r["epoch"]) for r in train] == [0, 1, 2]
    assert all(r["train/acc"] and r["train/f1"] for r in train)
    assert {"epoch", "step", "train/loss", "train/acc", "train/f1", "val/loss", "val/acc",
            "val/f1"} <= set(rows[0])
    # the running states are not in the checkpointed state_dict
    assert not any(k.startswith(("train_loss", "train_metrics")) for k in task.state_dict())


def test_an_epoch_cut_short_still_logs_its_train_values(tmp_path):
    from gdl_pyg.lightning.callbacks import LearningCurvePlot
    task = GraphClassificationTask(GridCNN(1, 2, hidden_channels=4, num_layers=2), lr=1e-2)
    rec, plot = _StepRecorder(), LearningCurvePlot(metrics=["loss"])
    tr = trainer(max_epochs=5, max_steps=3, callbacks=[rec, plot], limit_val_batches=0,
                 default_root_dir=str(tmp_path))  # the plot goes there, not into the repo
    tr.fit(task, TinyGrids())  # 2 steps per epoch: epoch 1 stops after its first step
    assert [e for e, _, _ in rec.steps] == [0, 0, 1]
    assert tr.callback_metrics["train/loss"] == pytest.approx(rec.steps[-1][1], rel=1e-6)
    assert sorted(plot.history["train/loss"]) == [0, 1]  # caught up at the end of training
    assert task.train_loss.update_count == 0  # Lightning computed and reset it


def test_training_step_by_hand_logs_every_call():
    task = GraphClassificationTask(GridCNN(1, 2, hidden_channels=4, num_layers=2))
    logged = []
    task.log = lambda name, value, **kw: logged.append((name, value, kw))
    dm = TinyGrids()
    dm.setup()
    from torch_geometric.data import Batch
    batch = Batch.from_data_list(dm.train_dataset[:5])
    loss = task.training_step(batch, 0)
    assert loss.requires_grad
    (name, value, kw), = [c for c in logged if c[0] == "train/loss"]
    assert value is task.train_loss and kw["on_epoch"] and not kw["on_step"]
    assert float(task.train_loss.compute()) == pytest.approx(float(loss))


def test_weighted_mean():
    from gdl_pyg.lightning.task import WeightedMean
    m = WeightedMean()
    m.update(torch.tensor(1.0), weight=6)
    m.update(torch.tensor(0.0), weight=2)
    m.update(torch.tensor([3.0, 5.0]), weight=1)  # every element counts once
    assert float(m.compute()) == pytest.approx((6 + 8) / 10)
    assert m.state_dict() == {}  # nothing of it goes into checkpoints
    m.reset()
    m.update(torch.tensor(float("nan")), weight=3)
    assert torch.isnan(m.compute())  # a NaN loss shows, it is not dropped


# ------------------------------------------------------------ training loop
# When Lightning's automatic optimization is not needed, training_step takes
# the optimizer step itself (manual optimization); the result must be the
# automatic loop's, to the last bit, with the schedulers stepped at the same
# points.

class _Record(Callback):
    r"""Per step: the loop in use, the learning rate and the global step; per
    epoch: the train values that callbacks see."""

    def __init__(self):
        self.automatic, self.lrs, self.steps, self.epochs = set(), [], [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.automatic.add(pl_module.automatic_optimization)
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])
        self.steps.append(trainer.global_step)

    def on_train_epoch_end(self, trainer, pl_module):
        self.epochs.append({k: float(v) for k, v in trainer.callback_metrics.items()
                            if k.startswith(("train/", "val/"))})


class _StepScheduled(GraphClassificationTask):
    r"""A per-step schedule with frequency 2 (and the task's defaults otherwise)."""

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
        return {"optimizer": opt,
                "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 2}}


def _task(cls=GraphClassificationTask, **kw):
    torch.manual_seed(0)
    kw.setdefault("lr", 1e-2)
    return cls(GridCNN(1, 2, hidden_channels=4, num_layers=2), **kw)


def _fit(task, automatic=None, epochs=3, ckpt_path=None, default_root_dir=None, **kw):
    if automatic is not None:
        task.automatic_optimization = automatic
    rec = _Record()
    tr = Trainer(accelerator="cpu", max_epochs=epochs, logger=False,
                 enable_checkpointing=default_root_dir is not None,
                 default_root_dir=default_root_dir, enable_progress_bar=False,
                 enable_model_summary=False, callbacks=[rec], **kw)
    torch.manual_seed(1)
    tr.fit(task, TinyGrids(batch_size=6), ckpt_path=ckpt_path)  # batches of 6, 6, 4
    return tr, rec


def assert_same_training_state(tr_a, tr_b):
    r"""The two trainers' modules, optimizers and schedulers are equal, bit
    for bit, and they took the same number of steps."""
    task_a, task_b = tr_a.lightning_module, tr_b.lightning_module
    for (name, p), q in zip(task_a.state_dict().items(), task_b.state_dict().values()):
        assert torch.equal(p, q), name
    opt_a, opt_b = tr_a.optimizers[0].state_dict(), tr_b.optimizers[0].state_dict()
    assert opt_a["param_groups"] == opt_b["param_groups"]
    for key, state in opt_a["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt_b["state"][key][name]))
    sched_a = [c.scheduler.state_dict() for c in tr_a.lr_scheduler_configs]
    sched_b = [c.scheduler.state_dict() for c in tr_b.lr_scheduler_configs]
    assert sched_a == sched_b
    assert tr_a.global_step == tr_b.global_step


def _assert_same_run(a, b):
    (tr_a, rec_a), (tr_b, rec_b) = a, b
    assert_same_training_state(tr_a, tr_b)
    assert rec_a.lrs == rec_b.lrs and rec_a.steps == rec_b.steps
    assert rec_a.epochs == rec_b.epochs


@pytest.mark.parametrize("scheduler", ["none", "cosine"])
def test_manual_loop_matches_the_automatic_loop_bit_for_bit(scheduler):
    manual = _fit(_task(scheduler=scheduler))
    automatic = _fit(_task(scheduler=scheduler), automatic=True)
    assert manual[1].automatic == {False} and automatic[1].automatic == {True}
    _assert_same_run(manual, automatic)
    assert manual[0].global_step == 9  # global_step after fit counts the manual steps
    if scheduler == "cosine":  # one scheduler step per epoch, after its last batch
        assert manual[0].lr_scheduler_configs[0].scheduler.last_epoch == 3
        assert len(set(manual[1].lrs)) == 3


def test_manual_loop_steps_per_step_schedules_with_their_frequency():
    manual = _fit(_task(_StepScheduled))
    automatic = _fit(_task(_StepScheduled), automatic=True)
    _assert_same_run(manual, automatic)
    # stepped after the 2nd batch of each epoch (batch_idx + 1 even; epochs of 3
    # batches): 3 scheduler steps in 9 training steps
    assert manual[0].lr_scheduler_configs[0].scheduler.last_epoch == 3
    assert manual[1].lrs[:6] == pytest.approx([0.1, 0.1, 0.07, 0.07, 0.07, 0.049])


def test_regression_and_max_steps_match():
    torch.manual_seed(0)
    manual = _fit(GraphRegressionTask(MeanRegressor(), lr=1e-2), max_steps=5)
    torch.manual_seed(0)
    automatic = _fit(GraphRegressionTask(MeanRegressor(), lr=1e-2), automatic=True,
                     max_steps=5)
    _assert_same_run(manual, automatic)
    assert manual[0].global_step == 5 and manual[1].automatic == {False}


@pytest.mark.parametrize("kw, reason", [
    ({"gradient_clip_val": 0.5}, "gradient clipping"),
    ({"accumulate_grad_batches": 2}, "gradient accumulation"),
])
def test_automatic_loop_where_the_trainer_needs_it(kw, reason):
    task = _task()
    before = [p.detach().clone() for p in task.parameters()]
    tr, rec = _fit(task, epochs=1, **kw)
    assert rec.automatic == {True}
    assert task._automatic_loop_reason() == reason
    assert any(not torch.equal(p, q) for p, q in zip(before, task.parameters()))


def test_automatic_loop_for_an_overridden_training_step_or_hook():
    class OwnStep(GraphClassificationTask):
        def training_step(self, batch, batch_idx):  # the Lightning convention: return the loss
            return super().training_loss(batch, batch_idx)

    class OwnClipping(GraphClassificationTask):
        def configure_gradient_clipping(self, optimizer, gradient_clip_val=None,
                                        gradient_clip_algorithm=None):
            self.clipped = True

    task = _task(OwnStep)
    before = [p.detach().clone() for p in task.parameters()]
    tr, rec = _fit(task, epochs=1)
    assert rec.automatic == {True} and tr.global_step == 3
    assert any(not torch.equal(p, q) for p, q in zip(before, task.parameters()))
    task = _task(OwnClipping)
    tr, rec = _fit(task, epochs=1)
    assert rec.automatic == {True} and task.clipped
    # the plain task after a fit with clipping goes back to the manual loop
    task = _task()
    _fit(task, epochs=1, gradient_clip_val=1.0)
    tr, rec = _fit(task, epochs=2)
    assert rec.automatic == {False}


def test_manual_by_hand_is_honoured():
    class Manual(GraphClassificationTask):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            opt = self.optimizers()
            loss = self.training_loss(batch, batch_idx)
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()

    task = _task(Manual)
    tr, rec = _fit(task, epochs=1)
    assert rec.automatic == {False} and tr.global_step == 3


@pytest.mark.parametrize("first, second", [(True, None), (None, True)])
def test_resume_across_loops_keeps_the_global_step(tmp_path, first, second):
    tr, _ = _fit(_task(scheduler="cosine"), automatic=first, epochs=2,
                 default_root_dir=str(tmp_path))
    ckpt = tr.checkpoint_callback.best_model_path or tr.checkpoint_callback.last_model_path
    assert tr.global_step == 6
    tr, rec = _fit(_task(scheduler="cosine"), automatic=second, epochs=3, ckpt_path=ckpt,
                   default_root_dir=str(tmp_path))
    assert rec.steps == [6, 7, 8] and tr.global_step == 9


def test_queued_train_metrics_equal_per_step_updates():
    a = _task()
    a.train_metrics_every = 1
    b = _task()
    b.train_metrics_every = 32
    ra, rb = _fit(a)[1], _fit(b)[1]
    assert ra.epochs == rb.epochs
    assert {"train/acc", "train/f1", "train/loss"} <= set(ra.epochs[0])


def test_concat_of_queued_inputs():
    from gdl_pyg.lightning.task import _concat

    q = [(torch.ones(2, 3), {"e": (torch.tensor(1.0), torch.zeros(1))}),
         (torch.zeros(1, 3), {"e": (torch.tensor(2.0), torch.ones(1))})]
    out, pairs = _concat(q)
    assert out.shape == (3, 3) and torch.equal(out[2], torch.zeros(3))
    assert torch.equal(pairs["e"][0], torch.tensor([1.0, 2.0]))
    assert torch.equal(pairs["e"][1], torch.tensor([0.0, 1.0]))
    with pytest.raises(TypeError, match="expected tensors"):
        _concat([("a",), ("b",)])


def test_weighted_mean_with_one_weight_per_value():
    from gdl_pyg.lightning.task import WeightedMean

    a, b = WeightedMean(), WeightedMean()
    values, sizes = torch.tensor([1.0, 2.0, 4.0]), torch.tensor([2.0, 1.0, 1.0])
    for v, n in zip(values, sizes):
        a.update(v, weight=float(n))
    b.update(values, weight=sizes)
    assert float(a.compute()) == pytest.approx(float(b.compute())) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="one weight per value"):
        b.update(values, weight=torch.ones(2))
