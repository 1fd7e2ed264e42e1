import pytest
import torch
from torch_geometric.data import Batch

from gdl_pyg.groups import TimeWarping
from gdl_pyg.lightning.sequence_data import (TimeWarpDataModule, make_event_sequences,
                                             warp_sequences)


@pytest.mark.parametrize("task", ["first", "last"])
def test_event_sequences_are_labelled_by_event_order(task):
    graphs = make_event_sequences(50, length=12, num_symbols=3, min_events=2, max_events=5,
                                  task=task, noise=0.0,
                                  generator=torch.Generator().manual_seed(0))
    assert len(graphs) == 50
    for data in graphs:
        assert data.x.shape == (12, 3) and data.y.shape == (1,)
        assert data.t.tolist() == list(range(12))
        events = (data.x.sum(-1) > 0).nonzero().view(-1)
        assert 2 <= events.numel() <= 5
        assert bool(((data.x == 0) | (data.x == 1)).all())
        when = events[0] if task == "first" else events[-1]
        assert int(data.x[when].argmax()) == int(data.y)
    labels = torch.cat([g.y for g in graphs])
    assert labels.unique().numel() == 3


def test_warp_sequences_is_the_time_warping_action():
    graphs = make_event_sequences(5, length=6, generator=torch.Generator().manual_seed(1))
    fast = warp_sequences(graphs, 3, torch.Generator().manual_seed(2))
    gen, group = torch.Generator().manual_seed(2), TimeWarping(3)
    ref = [group.act(group.sample(g, generator=gen), g) for g in graphs]
    for a, b in zip(fast, ref):
        for key in ("x", "t", "y", "edge_index"):
            assert torch.equal(a[key], b[key]), key
        assert a.num_nodes == b.num_nodes


def test_data_module_splits():
    dm = TimeWarpDataModule(num_train=40, num_val=10, num_test=20, length=8, max_warp=3,
                            batch_size=8, seed=3)
    assert dm.train_dataset is None  # nothing is built before setup
    dm.setup()
    assert (len(dm.train_dataset), len(dm.val_dataset)) == (40, 10)
    assert dm.test_names == ["unwarped", "warped"]
    assert dm.num_classes == dm.num_features == 4
    plain, warped = dm.test_datasets["unwarped"], dm.test_datasets["warped"]
    longer = 0
    for a, b in zip(plain, warped):
        assert torch.equal(a.y, b.y)
        # the warp repeats steps: 't' keeps the original clock
        assert torch.equal(b.x, a.x[b.t])
        assert bool((b.t[1:] - b.t[:-1] >= 0).all()) and b.t.unique().numel() == 8
        assert b.edge_index.size(1) == b.num_nodes - 1
        longer += b.num_nodes > a.num_nodes
    assert longer > 10
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, Batch) and batch.y.shape == (8,) and batch.num_graphs == 8
    assert len(dm.test_dataloader()) == 2
    # the data are a function of the arguments
    again = TimeWarpDataModule(num_train=40, num_val=10, num_test=20, length=8, max_warp=3,
                               seed=3)
    again.setup("test")
    assert again.train_dataset is None
    assert all(torch.equal(a.x, b.x) for a, b in zip(again.test_datasets["warped"], warped))
    other = TimeWarpDataModule(num_train=40, num_val=10, num_test=20, length=8, seed=4)
    other.setup("fit")
    assert not torch.equal(other.train_dataset[0].x, dm.train_dataset[0].x)
    assert repr(dm) == ("TimeWarpDataModule(task='first', length=8, max_warp=3, "
                        "batch_size=8, seed=3)")


def test_fit_and_test_with_a_task(tmp_path):
    import lightning.pytorch as pl

    from gdl_pyg.lightning.task import GraphClassificationTask
    from gdl_pyg.nn.models.sequence_rnn import SequenceClassifier
    dm = TimeWarpDataModule(num_train=32, num_val=16, num_test=16, length=6, batch_size=16)
    task = GraphClassificationTask(SequenceClassifier(4, 8, 4, time_aware=True))
    trainer = pl.Trainer(fast_dev_run=1, accelerator="cpu", default_root_dir=tmp_path,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(task, datamodule=dm)
    results = trainer.test(task, datamodule=dm, verbose=False)
    keys = set().union(*results)
    assert {"test/acc_unwarped", "test/acc_warped"} <= keys


def test_errors():
    with pytest.raises(ValueError, match="'num_train'"):
        TimeWarpDataModule(num_train=0)
    with pytest.raises(ValueError, match="min_events <= max_events <= length"):
        TimeWarpDataModule(length=3, max_events=4)
    with pytest.raises(ValueError, match="'first' or 'last'"):
        TimeWarpDataModule(task="middle")
    with pytest.raises(ValueError, match="noise"):
        TimeWarpDataModule(noise=-1.0)
    with pytest.raises(ValueError, match="'num_symbols'"):
        make_event_sequences(4, num_symbols=1)
    with pytest.raises(TypeError, match="seed"):
        TimeWarpDataModule(seed="0")
