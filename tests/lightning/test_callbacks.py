import pytest

from gdl_pyg.lightning.callbacks import LearningCurvePlot, ResultsPrinter

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_learning_curve_plot_draws_recorded_history(tmp_path):
    cb = LearningCurvePlot(metrics=["loss", "acc"])
    assert repr(cb) == "LearningCurvePlot(metrics=['loss', 'acc'], filename='learning_curves.png')"
    cb.history = {"train/loss": {0: 2.0, 1: 1.0, 2: 0.5}, "val/loss": {0: 2.2, 1: 1.4},
                  "train/acc": {0: 0.1, 1: 0.5, 2: 0.8}}
    path = cb.plot(["loss", "acc"], str(tmp_path / "sub" / "curves.png"))
    data = open(path, "rb").read()
    assert data[:8] == PNG_MAGIC
    import matplotlib.image
    img = matplotlib.image.imread(path)
    assert img.shape[1] > img.shape[0] > 100  # two panels side by side


def test_learning_curve_plot_arguments():
    with pytest.raises(TypeError, match="list of metric names"):
        LearningCurvePlot(metrics="loss")
    with pytest.raises(ValueError, match="at least one"):
        LearningCurvePlot(metrics=[])
    with pytest.raises(ValueError, match=".png"):
        LearningCurvePlot(filename="curves.pdf")


def test_results_table():
    results = {"test/acc_upright": 0.98, "test/acc_rotated": 0.5, "test/loss_upright": 0.1,
               "test/loss_rotated": 2.0, "test/f1_rotated": 0.45}
    table = ResultsPrinter.table(results, ["upright", "rotated"])
    lines = table.splitlines()
    assert lines[0].split() == ["set", "acc", "f1", "loss"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert rows["upright"] == ["0.9800", "-", "0.1000"]
    assert rows["rotated"] == ["0.5000", "0.4500", "2.0000"]
    # unnamed single test set
    assert ResultsPrinter.table({"test/acc": 0.25}).splitlines()[2].split() == ["test", "0.2500"]
    assert repr(ResultsPrinter()) == "ResultsPrinter(filename='test_results.json')"


# ------------------------------------------------- train values caught up
def test_learning_curve_plot_catches_up_train_values_logged_after_it(tmp_path):
    # A task that logs its train values from its own on_train_epoch_end, which
    # Lightning calls after the callbacks' on_train_epoch_end.
    import torch
    from lightning.pytorch import LightningModule, Trainer

    class LateLogger(LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(1, 1)

        def training_step(self, batch, batch_idx):
            return self.lin(batch).pow(2).mean()

        def on_train_epoch_end(self):
            self.log("train/loss", float(self.current_epoch) + 0.5)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    plot = LearningCurvePlot(metrics=["loss"])
    tr = Trainer(accelerator="cpu", max_epochs=3, logger=False, enable_checkpointing=False,
                 enable_progress_bar=False, enable_model_summary=False, callbacks=[plot],
                 default_root_dir=str(tmp_path))
    tr.fit(LateLogger(), torch.utils.data.DataLoader(torch.randn(4, 1), batch_size=2))
    assert plot.history["train/loss"] == {0: 0.5, 1: 1.5, 2: 2.5}
    assert open(plot.path, "rb").read()[:8] == PNG_MAGIC


# ------------------------------------------ predictions of several processes
def _graphs(n=5):
    import torch
    from torch_geometric.data import Data
    gen = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        k = 3 + i
        out.append(Data(x=torch.randn(k, 2, generator=gen), pos=torch.randn(k, 3, generator=gen),
                        y=torch.tensor([i % 2])))
    return out


def _records(graphs, index_batches, level):
    r"""What PredictionWriter keeps for batches of ``graphs[i]``, ``i`` in
    each of ``index_batches``: graph-level predictions ``10 * i`` or
    node-level predictions (the first feature)."""
    import torch
    from torch_geometric.data import Batch
    out = []
    for idx in index_batches:
        batch = Batch.from_data_list([graphs[i] for i in idx])
        if level == "graph":
            named = {"prediction": torch.tensor([10 * i for i in idx])}
        else:
            named = {"prediction": (batch.x[:, 0] * 100).round().long()}
        out.append((named, batch, list(idx)))
    return out


def _csv(tmp_path, name, records, level):
    from types import SimpleNamespace

    from gdl_pyg.lightning.callbacks import PredictionWriter
    writer = PredictionWriter(max_files=2, max_render=0)
    writer._write_set(str(tmp_path), name, records, SimpleNamespace(level=level))
    return open(tmp_path / f"{name}.csv").read()


@pytest.mark.parametrize("level", ["graph", "node"])
def test_merged_predictions_of_two_processes_equal_one_process(tmp_path, level):
    from gdl_pyg.lightning.callbacks import _merge_predictions
    graphs = _graphs(5)
    one = _records(graphs, [[0, 1], [2, 3], [4]], level)
    # DistributedSampler(shuffle=False), 2 processes: indices 0..4 padded with 0,
    # rank 0 takes 0, 2, 4 and rank 1 takes 1, 3, 0 (the padding repeat)
    rank0 = _records(graphs, [[0, 2], [4]], level)
    rank1 = _records(graphs, [[1, 3], [0]], level)
    merged = _merge_predictions([{0: rank0}, {0: rank1}], None)
    assert list(merged) == [0] and len(merged[0]) == 1
    named, batch, indices = merged[0][0]
    assert indices == [0, 1, 2, 3, 4] and batch.num_graphs == 5
    expected = _csv(tmp_path, "one", one, level)
    assert _csv(tmp_path, "merged", merged[0], level) == expected
    if level == "graph":
        assert named["prediction"].tolist() == [0, 10, 20, 30, 40]
        assert expected.splitlines()[1:3] == ["0,0,0", "1,10,1"]  # graph, prediction, target
    else:
        assert len(expected.splitlines()) == 1 + sum(g.num_nodes for g in graphs)
    # the processes' order without the indices is not the data set's order
    assert _csv(tmp_path, "naive", rank0 + rank1, level) != expected


def test_merged_predictions_without_indices_keep_the_processes_order():
    from gdl_pyg.lightning.callbacks import _merge_predictions
    graphs = _graphs(4)
    rank0 = [(n, b, []) for n, b, _ in _records(graphs, [[0, 2]], "graph")]
    rank1 = _records(graphs, [[1, 3]], "graph")
    merged = _merge_predictions([{0: rank0}, {0: rank1, 1: rank1}], None)
    assert sorted(merged) == [0, 1]
    assert [r[0]["prediction"].tolist() for r in merged[0]] == [[0, 20], [10, 30]]
    assert merged[1][0][0]["prediction"].tolist() == [10, 30]


# ---------------------------------------------------------------- progress bar
class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_timed_progress_bar_redraws_at_most_every_interval(monkeypatch):
    import gdl_pyg.lightning.callbacks as callbacks
    from gdl_pyg.lightning.callbacks import TimedProgressBar
    clock = _Clock()
    monkeypatch.setattr(callbacks.time, "monotonic", clock)
    bar = TimedProgressBar(refresh_interval=0.5)
    monkeypatch.setattr(TimedProgressBar, "is_enabled", property(lambda self: True))
    drawn = []
    for n in range(1, 11):
        clock.now += 0.2
        drawn.append(bar._should_update(n, 10))
    # the first batch, then one redraw per 0.5 s (every third batch of 0.2 s),
    # and the last one always
    assert drawn == [True, False, False, True, False, False, True, False, False, True]
    every = TimedProgressBar(refresh_interval=0)
    assert all(every._should_update(n, 10) for n in range(1, 11))
    # refresh_rate still applies, as in Lightning's bar
    rate = TimedProgressBar(refresh_interval=0, refresh_rate=4)
    assert [rate._should_update(n, 10) for n in range(1, 11)] == \
        [n % 4 == 0 or n == 10 for n in range(1, 11)]


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "0.1", True])
def test_timed_progress_bar_rejects_a_bad_interval(bad):
    from gdl_pyg.lightning.callbacks import TimedProgressBar
    with pytest.raises(ValueError, match="refresh_interval"):
        TimedProgressBar(refresh_interval=bad)


@pytest.mark.parametrize("max_steps", [-1, 2])
def test_timed_progress_bar_ends_the_epoch_at_its_batch_count(monkeypatch, max_steps):
    # a clock that never moves: only the first and the last batch redraw, yet
    # at the epoch's end the bar shows every batch run (also when max_steps
    # stops the epoch early, where no last batch redraws)
    import torch
    from lightning.pytorch import Callback, Trainer

    import gdl_pyg.lightning.callbacks as callbacks
    from gdl_pyg.lightning.callbacks import TimedProgressBar
    from gdl_pyg.lightning.task import GraphClassificationTask
    from gdl_pyg.nn.models.grid_cnn import GridCNN
    from test_task import TinyGrids

    monkeypatch.setattr(callbacks.time, "monotonic", _Clock())
    seen = []

    class Probe(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            bar = trainer.progress_bar_callback.train_progress_bar
            seen.append((bar.n, bar.total))

    bar = TimedProgressBar()
    draws = []
    original = TimedProgressBar._should_update

    def counted(self, current, total):
        out = original(self, current, total)
        draws.append(out)
        return out

    monkeypatch.setattr(TimedProgressBar, "_should_update", counted)
    torch.manual_seed(0)
    tr = Trainer(accelerator="cpu", max_epochs=1, max_steps=max_steps, logger=False,
                 enable_checkpointing=False, enable_model_summary=False,
                 limit_val_batches=0, callbacks=[bar, Probe()])
    tr.fit(GraphClassificationTask(GridCNN(1, 2, hidden_channels=4, num_layers=2)),
           TinyGrids(batch_size=4))  # 16 graphs: 4 batches
    steps = 4 if max_steps < 0 else max_steps
    assert seen == [(steps, 4)]
    assert draws[:steps].count(True) == (2 if max_steps < 0 else 1)
