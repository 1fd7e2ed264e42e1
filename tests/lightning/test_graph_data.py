import pytest
import torch
from torch_geometric.utils import degree

from gdl_pyg.lightning.graph_data import (MOTIFS, KarateClubDataModule, SetsDataModule,
                                          SyntheticGraphsDataModule, random_tree)


def test_karate_masks():
    dm = KarateClubDataModule(train_per_class=2, seed=0)
    assert repr(dm) == "KarateClubDataModule(train_per_class=2, seed=0)"
    dm.setup("fit")
    data = dm.train_dataset[0]
    assert data.num_nodes == 34 and data.x.shape == (34, 34) and data.num_edges == 156
    tr, va, te = data.train_mask, data.val_mask, data.test_mask
    assert bool((tr.int() + va.int() + te.int() == 1).all())  # a partition of the nodes
    assert data.y[tr].bincount(minlength=4).tolist() == [2, 2, 2, 2]
    assert int(va.sum()) == 13 and int(te.sum()) == 13
    # deterministic in the seed, different across seeds
    other = KarateClubDataModule(seed=0)
    other.setup()
    assert torch.equal(other.train_dataset[0].test_mask, te)
    third = KarateClubDataModule(seed=1)
    third.setup()
    assert not torch.equal(third.train_dataset[0].train_mask, tr)
    # one graph per loader, one unnamed test split
    batch = next(iter(dm.train_dataloader()))
    assert batch.num_graphs == 1 and batch.num_nodes == 34
    assert dm.test_names == [] and len(dm.test_dataloader()) == 1
    with pytest.raises(ValueError, match="cannot label"):
        KarateClubDataModule(train_per_class=5).setup()
    with pytest.raises(ValueError, match="val_fraction"):
        KarateClubDataModule(val_fraction=1.0)


def _triangles(data):
    A = torch.zeros(data.num_nodes, data.num_nodes)
    A[data.edge_index[0], data.edge_index[1]] = 1
    return int(torch.trace(A @ A @ A)) // 6


def test_random_tree():
    gen = torch.Generator().manual_seed(0)
    ei = random_tree(12, gen)
    assert ei.shape == (2, 22)
    # connected with n - 1 edges: a tree
    reach = torch.zeros(12, dtype=torch.bool)
    reach[0] = True
    for _ in range(12):
        reach[ei[1][reach[ei[0]]]] = True
    assert bool(reach.all())


def test_synthetic_motifs():
    dm = SyntheticGraphsDataModule(task="motifs", num_graphs=60, num_nodes_range=(6, 9))
    assert dm.num_classes == 3 and dm.num_features == 1
    graphs = dm.generate()
    assert torch.cat([g.y for g in graphs]).bincount().tolist() == [20, 20, 20]
    # the triangles of the planted motif (trees have none) identify the label
    expected = {0: 1, 1: 2, 2: 0}  # house, bowtie, K_{2,3}
    assert list(MOTIFS) == ["house", "bowtie", "k23"]
    for g in graphs:
        n = g.num_nodes - 5
        assert 6 <= n <= 9
        assert g.num_edges == 2 * (n - 1 + 6 + 1)  # the same number of edges for all classes
        assert torch.equal(g.x, torch.ones(g.num_nodes, 1))
        assert _triangles(g) == expected[int(g.y)]
        assert not bool((g.edge_index[0] == g.edge_index[1]).any())
    # deterministic
    again = SyntheticGraphsDataModule(task="motifs", num_graphs=60, num_nodes_range=(6, 9))
    assert all(torch.equal(a.edge_index, b.edge_index) for a, b in zip(graphs, again.generate()))


def test_synthetic_cycles_degree_features_and_splits():
    dm = SyntheticGraphsDataModule(task="cycles", num_graphs=40, max_cycles=3,
                                   features="degree", max_degree=4, batch_size=8)
    assert dm.num_classes == 4 and dm.num_features == 5
    dm.setup()
    graphs = dm.train_dataset + dm.val_dataset + dm.test_datasets["test"]
    assert len(dm.test_datasets["test"]) == 10 and len(dm.val_dataset) == 6
    for g in graphs:
        assert g.num_edges // 2 - g.num_nodes + 1 == int(g.y)  # cyclomatic number
        deg = degree(g.edge_index[1], g.num_nodes).clamp(max=4).long()
        assert torch.equal(g.x.argmax(1), deg) and torch.equal(g.x.sum(1), torch.ones(g.num_nodes))
    batch = next(iter(dm.train_dataloader()))
    assert batch.num_graphs == 8 and batch.x.size(1) == 5
    assert dm.test_names == []


@pytest.mark.parametrize("pe", ["laplacian", "random_walk"])
def test_synthetic_positional_encodings(pe):
    dm = SyntheticGraphsDataModule(task="motifs", num_graphs=20, pe=pe, pe_dim=4, seed=3)
    dm.setup()
    attr = f"{pe}_pe"
    for g in dm.val_dataset:
        assert g[attr].shape == (g.num_nodes, 4)
    train = [dm.train_dataset[i] for i in range(len(dm.train_dataset))]
    if pe == "laplacian":  # training graphs are served with random sign flips
        again = [dm.train_dataset[i] for i in range(len(dm.train_dataset))]
        assert all(torch.allclose(a[attr].abs(), b[attr].abs()) for a, b in zip(train, again))
        assert any(not torch.equal(a[attr], b[attr]) for a, b in zip(train, again))
    batch = next(iter(dm.train_dataloader()))
    assert batch[attr].shape == (batch.num_nodes, 4)


def test_synthetic_bad_input():
    with pytest.raises(ValueError, match="task"):
        SyntheticGraphsDataModule(task="triangles")
    with pytest.raises(ValueError, match="num_nodes_range"):
        SyntheticGraphsDataModule(num_nodes_range=(5, 2))
    with pytest.raises(ValueError, match="extra edges"):
        SyntheticGraphsDataModule(task="cycles", num_nodes_range=(3, 4), max_cycles=3)
    with pytest.raises(TypeError, match="seed"):
        SyntheticGraphsDataModule(seed="0")


@pytest.mark.parametrize("task", ["sum_parity", "max", "unique"])
def test_sets(task):
    dm = SetsDataModule(task=task, num_sets=100, set_size_range=(1, 6), num_values=7,
                        batch_size=16)
    assert dm.num_features == 7
    assert dm.num_classes == {"sum_parity": 2, "max": 7, "unique": 6}[task]
    dm.setup()
    sets = dm.train_dataset + dm.val_dataset + dm.test_datasets["test"]
    assert len(sets) == 100
    for s in sets:
        values = s.x.argmax(1)
        assert 1 <= s.num_nodes <= 6 and s.edge_index is None
        y = {"sum_parity": int(values.sum()) % 2, "max": int(values.max()),
             "unique": values.unique().numel() - 1}[task]
        assert int(s.y) == y and 0 <= y < dm.num_classes
    batch = next(iter(dm.train_dataloader()))
    assert batch.num_graphs == 16 and batch.batch.shape == (batch.num_nodes,)
    with pytest.raises(ValueError, match="set_size_range"):
        SetsDataModule(set_size_range=(0, 3))
    with pytest.raises(ValueError, match="task"):
        SetsDataModule(task="median")
