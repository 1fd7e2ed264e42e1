r"""``gdl-pyg`` across processes: Lightning's DDP on CPU (gloo), launched as a
user would (``python -m gdl_pyg fit ... --trainer.strategy ddp
--trainer.devices 2``), with metrics synchronised over the processes and only
rank 0 writing files.

The comparisons use ``gnn_graphs`` with 240 graphs (144 train, 36 val, 60
test: all even, so the distributed sampler pads nothing):

* **fit**: 2 processes x batch 8 against 1 process x batch 16, the 1-process
  run under ``--trainer.strategy ddp --trainer.devices 1`` so that both use
  Lightning's ``DistributedSampler`` with the same seeded permutation. Each
  step of the 2-process run then sees the same 16 graphs as the 1-process
  step (rank ``r`` takes every other one), and DDP's gradient mean over the
  two equal halves is the 1-process gradient: the validation metrics of every
  epoch and the final weights agree to float32 rounding (tolerance ``1e-5``;
  measured ``~2e-7``).
* **validate / test** of one checkpoint with 2 processes against 1 process:
  equal to ``1e-6``, while the metrics of one process's half of the data
  differ from them (so an unsynchronised rank-0 value would fail).
"""
import csv
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from torch_geometric.data import Batch, Data

from gdl_pyg.lightning.checkpoint import load_checkpoint
from gdl_pyg.lightning.cli import main
from gdl_pyg.lightning.node_task import NodeClassificationTask
from gdl_pyg.lightning.task import GraphClassificationTask, GraphRegressionTask

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.accelerator", "cpu"]
DATA = ["--config", "gnn_graphs", "--data.init_args.num_graphs", "240"]
METRICS = ("val/acc", "val/f1", "val/loss")


def _cli(*args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "gdl_pyg", *args], capture_output=True,
                          text=True, cwd=str(cwd), timeout=400, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def _ddp(devices: int):
    return ["--trainer.strategy", "ddp", "--trainer.devices", str(devices)]


def _val_rows(path):
    with open(path, newline="") as f:
        return [{k: float(r[k]) for k in METRICS} for r in csv.DictReader(f) if r["val/acc"]]


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, fs in os.walk(root) for f in fs)


# ------------------------------------------------------------ fast checks
class _Head(torch.nn.Module):
    def __init__(self, level: str, out: int = 3):
        super().__init__()
        self.level, self.num_classes = level, out
        self.lin = torch.nn.Linear(4, out)

    def forward(self, batch):
        h = self.lin(batch.x)
        if self.level == "node":
            return h
        from torch_geometric.nn import global_mean_pool
        return global_mean_pool(h, batch.batch)


def _batch(y_per_node: bool, regression: bool = False):
    gen = torch.Generator().manual_seed(0)
    graphs = []
    for n in (5, 7):
        x = torch.randn(n, 4, generator=gen)
        if y_per_node:
            y = torch.randint(0, 3, (n,), generator=gen)
            graphs.append(Data(x=x, y=y, train_mask=torch.ones(n, dtype=torch.bool),
                               val_mask=torch.ones(n, dtype=torch.bool),
                               test_mask=torch.ones(n, dtype=torch.bool)))
        else:
            y = torch.randn(1, 3, generator=gen) if regression else \
                torch.randint(0, 3, (1,), generator=gen)
            graphs.append(Data(x=x, y=y))
    return Batch.from_data_list(graphs)


def _logged(task, batch):
    r"""``(name, value, kwargs)`` of every ``self.log`` in the three steps."""
    calls = []
    task.log = lambda name, value, **kw: calls.append((name, value, kw))
    # the last training batch of its epoch: the tasks log the epoch's train values
    task._trainer = SimpleNamespace(test_dataloaders=None, datamodule=None, is_last_batch=True,
                                    current_epoch=0)
    task.training_step(batch, 0)
    task.validation_step(batch, 0)
    task.test_step(batch, 0)
    return calls


def _unsynced(calls):
    return [name for name, value, kw in calls
            if isinstance(value, torch.Tensor) and not kw.get("sync_dist", False)]


@pytest.mark.parametrize("make", [
    lambda: (GraphClassificationTask(_Head("graph")), _batch(False)),
    lambda: (GraphRegressionTask(_Head("graph")), _batch(False, regression=True)),
    lambda: (NodeClassificationTask(_Head("node")), _batch(True)),
], ids=["graph_classification", "graph_regression", "node_classification"])
def test_every_logged_tensor_is_synchronised(make):
    # Plain tensors are reduced over processes only with sync_dist=True;
    # torchmetrics objects gather their own states when computed.
    task, batch = make()
    calls = _logged(task, batch)
    names = {name for name, _, _ in calls}
    assert {"train/loss", "val/loss", "test/loss"} <= names
    assert any(not isinstance(v, torch.Tensor) for _, v, _ in calls)  # metric objects
    assert _unsynced(calls) == []


def test_the_sync_check_catches_an_unsynchronised_log():
    class Unsynced(GraphClassificationTask):
        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            out = self(batch)
            self.log("val/loss", self.criterion(out, self._targets(batch, out)),
                     batch_size=batch.num_graphs)

    assert _unsynced(_logged(Unsynced(_Head("graph")), _batch(False))) == ["val/loss"]


# ------------------------------------------------- 2 processes against 1
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    r"""``gnn_graphs`` (240 graphs, 2 epochs) fitted by 2 processes x batch 8
    (``two``) and by 1 process x batch 16 (``one``), in a clean working
    folder (``cwd``)."""
    cwd = tmp_path_factory.mktemp("ddp")
    fit = ["fit", *DATA, "--trainer.max_epochs", "2", *QUIET]
    _cli(*fit, *_ddp(2), "--data.init_args.batch_size", "8",
         "--trainer.default_root_dir", "two", cwd=cwd)
    _cli(*fit, *_ddp(1), "--data.init_args.batch_size", "16",
         "--trainer.default_root_dir", "one", cwd=cwd)
    return cwd


@pytest.mark.slow
def test_ddp_fit_matches_one_process_with_the_same_effective_batch(runs):
    assert sorted(os.listdir(runs)) == ["one", "two"]  # nothing else in the working folder
    for name in ("one", "two"):
        assert os.listdir(runs / name) == ["version_0"]
    files = _files(runs / "two")
    # one writer: one metrics.csv, one TensorBoard file, the PNG, best + last checkpoints
    assert sum(f.endswith("metrics.csv") for f in files) == 1
    assert sum("tfevents" in f for f in files) <= 1
    assert "version_0/learning_curves.png" in files
    assert "version_0/checkpoints/last.ckpt" in files
    assert any(f.startswith("version_0/checkpoints/best-") for f in files)

    two = _val_rows(runs / "two" / "version_0" / "metrics.csv")
    one = _val_rows(runs / "one" / "version_0" / "metrics.csv")
    assert len(two) == len(one) == 2
    for a, b in zip(two, one):
        for key in METRICS:
            assert abs(a[key] - b[key]) < 1e-5, (key, a, b)

    wa = load_checkpoint(runs / "two" / "version_0" / "checkpoints" / "last.ckpt")
    wb = load_checkpoint(runs / "one" / "version_0" / "checkpoints" / "last.ckpt")
    assert wa["global_step"] == wb["global_step"] == 18  # 144 graphs / 16 per step, 2 epochs
    diff = max((wa["state_dict"][k] - wb["state_dict"][k]).abs().max().item()
               for k in wb["state_dict"])
    assert diff < 1e-5


def _half_metrics(ckpt):
    r"""The validation metrics of rank 0's half of the validation set (every
    other graph), computed in this process."""
    from gdl_pyg.lightning.graph_data import SyntheticGraphsDataModule

    state = load_checkpoint(ckpt)
    hp = state["hyper_parameters"]
    from gdl_pyg.nn.models.gnn import GNN
    task = GraphClassificationTask(GNN(**hp["model"]["init_args"]), lr=hp["lr"])
    task.load_state_dict(state["state_dict"])
    task.eval()
    dm = SyntheticGraphsDataModule(num_graphs=240, features="degree", max_degree=8)
    dm.setup()
    half = Batch.from_data_list(dm.val_dataset[0::2])
    with torch.no_grad():
        out = task(half)
        y = task._targets(half, out)
        return {"val/acc": float((out.argmax(-1) == y).float().mean()),
                "val/loss": float(task.criterion(out, y))}


@pytest.mark.slow
def test_ddp_validate_and_test_equal_one_process(runs, monkeypatch):
    ckpt = runs / "two" / "version_0" / "checkpoints" / "last.ckpt"
    common = [*DATA, "--ckpt_path", str(ckpt), "--trainer.default_root_dir", "two", *QUIET]
    csv_logger = ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
                  "--trainer.logger.save_dir"]
    _cli("validate", *common, *_ddp(2), *csv_logger, "val2", cwd=runs)
    _cli("test", *common, *_ddp(2), cwd=runs)
    with open(runs / "two" / "version_0" / "test_results.json") as f:
        test2 = json.load(f)

    monkeypatch.chdir(runs)
    main(["validate", *common, "--trainer.devices", "1", *csv_logger, "val1"])
    main(["test", *common, "--trainer.devices", "1"])
    with open(runs / "two" / "version_0" / "test_results.json") as f:
        test1 = json.load(f)

    (v2,) = _val_rows(runs / "val2" / "lightning_logs" / "version_0" / "metrics.csv")
    (v1,) = _val_rows(runs / "val1" / "lightning_logs" / "version_0" / "metrics.csv")
    for key in METRICS:
        assert abs(v2[key] - v1[key]) < 1e-6, (key, v2, v1)
    assert set(test2) == set(test1) == {"test/acc", "test/f1", "test/loss"}
    for key in test1:
        assert abs(test2[key] - test1[key]) < 1e-6, (key, test2, test1)
    # the last epoch of the 2-process fit logged the same synchronised values
    fit_last = _val_rows(runs / "two" / "version_0" / "metrics.csv")[-1]
    assert all(abs(fit_last[k] - v1[k]) < 1e-6 for k in METRICS)
    # ... which one process's half of the validation set does not give
    half = _half_metrics(ckpt)
    assert abs(half["val/loss"] - v1["val/loss"]) > 1e-4


@pytest.mark.slow
def test_ddp_predict_writes_every_graph(runs, monkeypatch):
    # 2 processes: each predicts every other graph; rank 0 gathers them all,
    # restores the data set's order and writes the file one process writes.
    ckpt = runs / "two" / "version_0" / "checkpoints" / "last.ckpt"
    common = [*DATA, "--ckpt_path", str(ckpt), "--trainer.default_root_dir", "two", *QUIET]
    path = runs / "two" / "version_0" / "predictions" / "test.csv"
    _cli("predict", *common, *_ddp(2), cwd=runs)
    with open(path, newline="") as f:
        two = list(csv.DictReader(f))
    assert [int(r["graph"]) for r in two] == list(range(60))
    monkeypatch.chdir(runs)
    main(["predict", *common, "--trainer.devices", "1"])
    with open(path, newline="") as f:
        one = list(csv.DictReader(f))
    assert two == one  # same graphs, predictions and targets, row by row
