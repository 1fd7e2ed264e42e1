import pytest
import torch
from lightning.pytorch import Trainer

from gdl_pyg.lightning.graph_data import KarateClubDataModule
from gdl_pyg.lightning.node_task import NodeClassificationTask
from gdl_pyg.nn.models.gnn import GNN

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _karate():
    dm = KarateClubDataModule(train_per_class=2, seed=0)
    dm.setup()
    return dm, dm.train_dataset[0]


def test_forward_and_masked_loss():
    torch.manual_seed(0)
    task = NodeClassificationTask(GNN(34, 16, 4))
    assert task.num_classes == 4
    dm, data = _karate()
    out = task(data)
    assert out.shape == (34, 4)
    # the loss of a stage is the cross-entropy of the masked nodes
    logits, y, n = task._masked(data, out, "val")
    assert n == 13 and torch.equal(y, data.y[data.val_mask])
    assert torch.allclose(task.criterion(logits, y),
                          torch.nn.functional.cross_entropy(out[data.val_mask], y))
    # without a mask, all nodes count
    bare = data.clone()
    del bare.train_mask
    assert task._masked(bare, out, "train")[2] == 34
    assert task.predict_step(data, 0).shape == (34,)


def test_bad_model_output():
    task = NodeClassificationTask(GNN(34, 16, 4, level="graph"))
    _, data = _karate()
    with pytest.raises(ValueError, match=r"\[num_nodes, num_classes\]"):
        task(data)
    bad = data.clone()
    bad.train_mask = bad.train_mask.long()
    with pytest.raises(ValueError, match="boolean"):
        NodeClassificationTask(GNN(34, 16, 4))._masked(bad, torch.zeros(34, 4), "train")
    with pytest.raises(ValueError, match="num_classes"):
        NodeClassificationTask(torch.nn.Linear(2, 2))


def _majority_share(y):
    r"""The accuracy of always predicting the most frequent class of ``y``."""
    return float(torch.bincount(y).max()) / y.numel()


def test_training_logs_masked_metrics(tmp_path):
    torch.manual_seed(0)
    dm = KarateClubDataModule(train_per_class=2, seed=0)
    # no dropout: 60 full-batch steps fit the 8 labelled nodes and put every one
    # of 10 seeds tried (torch.manual_seed(0..9)) at >= 10/13 test nodes
    task = NodeClassificationTask(GNN(34, 16, 4), lr=0.01)
    trainer = Trainer(max_epochs=60, accelerator="cpu", logger=False,
                      enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=str(tmp_path),
                      log_every_n_steps=1)
    trainer.fit(task, dm)
    metrics = trainer.callback_metrics
    for key in ("train/loss", "train/acc", "val/loss", "val/acc"):
        assert key in metrics
    assert float(metrics["train/acc"]) == 1.0  # the 8 labelled nodes
    results = trainer.test(task, dm, verbose=False)[0]
    assert set(results) == {"test/loss", "test/acc", "test/f1"}
    # the logged accuracy is the accuracy on the 13 test nodes
    task.eval()
    data = dm.test_datasets["test"][0]
    with torch.no_grad():
        pred = task(data).argmax(-1)
    test = data.test_mask
    acc = float((pred[test] == data.y[test]).float().mean())
    assert abs(results["test/acc"] - acc) < 1e-6
    # a clear margin over always predicting the majority class (8 of the 13
    # test nodes, 0.615): at least two more nodes right (seeds 0..9: 0.77-0.85)
    baseline = _majority_share(data.y[test])
    assert baseline > 0.6
    assert acc >= baseline + 0.15, (acc, baseline)
    # over all 26 unlabelled nodes, where the majority class holds 11 (0.42)
    unlabelled = ~data.train_mask
    acc_all = float((pred[unlabelled] == data.y[unlabelled]).float().mean())
    assert acc_all >= _majority_share(data.y[unlabelled]) + 0.25, acc_all  # seeds 0..9: >= 0.73
