import pytest
import torch
from lightning.pytorch import Trainer
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
