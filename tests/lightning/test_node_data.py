r"""Node-level data modules: the generated stochastic block model, PyG data
sets read from a local folder (never downloaded), and neighbour-sampled
loading, whose seed-node outputs equal the full-graph outputs."""
import os
import pickle

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from torch_geometric.nn import SAGEConv

from gdl_pyg.lightning.node_data import (NodeDataModule, PyGDatasetDataModule, SBMDataModule,
                                         require_neighbor_sampler, stochastic_block_model)


def _has_sampler() -> bool:
    try:
        require_neighbor_sampler()
    except ImportError:
        return False
    return True


# PyG's NeighborLoader needs pyg-lib or torch-sparse (the [scatter] extra)
needs_sampler = pytest.mark.skipif(not _has_sampler(),
                                   reason="neighbour sampling needs torch-sparse or pyg-lib")
from gdl_pyg.lightning.node_task import NodeClassificationTask, seed_count
from gdl_pyg.nn.models.gnn import GNN

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]


# ------------------------------------------------------------------- the SBM
def test_stochastic_block_model_structure():
    gen = torch.Generator().manual_seed(0)
    sizes = [300, 200, 100]
    ei = stochastic_block_model(sizes, p_in=0.05, p_out=0.005, generator=gen)
    block = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    assert (ei[0] != ei[1]).all()  # no self loops
    pairs = set(map(tuple, ei.t().tolist()))
    assert all((v, u) in pairs for u, v in pairs)  # undirected
    assert len(pairs) == ei.size(1)  # no duplicates
    same = block[ei[0]] == block[ei[1]]
    # expected undirected edge counts: inside 0.05 * sum n(n-1)/2, across 0.005 * sum n_a n_b
    inside = 0.05 * sum(n * (n - 1) / 2 for n in sizes)
    across = 0.005 * (300 * 200 + 300 * 100 + 200 * 100)
    assert abs(int(same.sum()) / 2 - inside) < 0.1 * inside
    assert abs(int((~same).sum()) / 2 - across) < 0.2 * across
    again = stochastic_block_model(sizes, 0.05, 0.005, torch.Generator().manual_seed(0))
    assert torch.equal(ei, again)


def test_sbm_data_module():
    dm = SBMDataModule(num_nodes=1000, num_blocks=4, seed=1)
    dm.setup()
    d = dm.data
    assert d.x.shape == (1000, 16) and d.y.shape == (1000,)
    assert torch.equal(torch.bincount(d.y), torch.full((4,), 250))
    masks = torch.stack([d.train_mask, d.val_mask, d.test_mask])
    assert torch.equal(masks.sum(0), torch.ones(1000, dtype=torch.long))  # disjoint, cover
    assert masks.sum(1).tolist() == [500, 250, 250]
    # homophily: about avg_degree_in / (avg_degree_in + avg_degree_out) = 0.75 of the edges
    same = (d.y[d.edge_index[0]] == d.y[d.edge_index[1]]).float().mean()
    assert 0.7 < float(same) < 0.8
    # labels are not the node order, and the data are a function of the seed
    assert not torch.equal(d.y, d.y.sort().values)
    dm2 = SBMDataModule(num_nodes=1000, num_blocks=4, seed=1)
    dm2.setup()
    assert torch.equal(dm2.data.x, d.x) and torch.equal(dm2.data.edge_index, d.edge_index)
    dm3 = SBMDataModule(num_nodes=1000, num_blocks=4, seed=2)
    dm3.setup()
    assert not torch.equal(dm3.data.y, d.y)
    assert dm.num_classes == 4 and dm.num_features == 16
    assert "SBMDataModule(num_nodes=1000" in repr(dm)


@pytest.mark.parametrize("kwargs, match", [
    (dict(loader="minibatch"), "loader"),
    (dict(eval_loader="sampled"), "eval_loader"),
    (dict(num_neighbors=[]), "num_neighbors"),
    (dict(num_neighbors=[10, 0]), "num_neighbors"),
    (dict(train_fraction=0.6, val_fraction=0.3, test_fraction=0.3), "train_fraction"),
    (dict(num_blocks=1), "num_blocks"),
])
def test_sbm_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SBMDataModule(**kwargs)


# ------------------------------------------------------- neighbour sampling
def test_missing_sampler_backend_is_a_clear_error(monkeypatch):
    import torch_geometric.typing as pyg_typing
    # with or without a sampler installed: both backends are switched off here
    monkeypatch.setattr(pyg_typing, "WITH_PYG_LIB", False)
    monkeypatch.setattr(pyg_typing, "WITH_TORCH_SPARSE", False)
    dm = SBMDataModule(num_nodes=200, loader="neighbor")
    dm.setup()
    with pytest.raises(ImportError, match=r"\[scatter\].*torch-sparse"):
        dm.train_dataloader()
    # the full-batch loader needs no sampler
    full = SBMDataModule(num_nodes=200)
    full.setup()
    assert next(iter(full.train_dataloader())).num_nodes == 200


class _Sage(torch.nn.Module):
    r"""Two mean-aggregation layers: their output at a node depends on its
    2-hop in-neighbourhood only, so neighbour sampling with all neighbours
    ([-1, -1]) must reproduce it exactly on the seeds."""

    num_classes = 4

    def __init__(self, in_channels=16, hidden=8, out=4, num_layers=2):
        super().__init__()
        dims = [in_channels] + [hidden] * (num_layers - 1) + [out]
        self.convs = torch.nn.ModuleList(SAGEConv(a, b, aggr="mean")
                                         for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, data):
        h = data.x
        for k, conv in enumerate(self.convs):
            h = conv(h, data.edge_index)
            if k < len(self.convs) - 1:
                h = h.relu()
        return h


@needs_sampler
def test_sampled_seed_outputs_equal_full_graph_outputs():
    torch.manual_seed(0)
    dm = SBMDataModule(num_nodes=600, seed=3, loader="neighbor", num_neighbors=[-1, -1],
                       batch_size=64, eval_loader="neighbor")
    dm.setup()
    model = _Sage().double().eval()
    data = dm.data.clone()
    data.x = data.x.double()
    with torch.no_grad():
        full = model(data)
        seen = torch.zeros(600, dtype=torch.bool)
        for batch in dm.val_dataloader():
            batch.x = batch.x.double()
            bs = seed_count(batch)
            assert bs == batch.batch_size and bs <= 64
            seeds = batch.n_id[:bs]
            assert batch.val_mask[:bs].all()  # seeds come from the split's mask
            out = model(batch)[:bs]
            torch.testing.assert_close(out, full[seeds], rtol=0, atol=1e-12)
            seen[seeds] = True
    assert torch.equal(seen, dm.data.val_mask)  # every validation node once
    # truncated sampling ([2, 2]) changes the outputs: the equality above is not vacuous
    dm2 = SBMDataModule(num_nodes=600, seed=3, loader="neighbor", num_neighbors=[2, 2],
                        batch_size=64, eval_loader="neighbor")
    dm2.setup()
    batch = next(iter(dm2.val_dataloader()))
    batch.x = batch.x.double()
    with torch.no_grad():
        out = model(batch)[:batch.batch_size]
    assert (out - full[batch.n_id[:batch.batch_size]]).abs().max() > 1e-3


@needs_sampler
def test_task_scores_only_seed_nodes():
    dm = SBMDataModule(num_nodes=600, seed=3, loader="neighbor", num_neighbors=[5, 5],
                       batch_size=32)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch.num_nodes > 32
    task = NodeClassificationTask(_Sage())
    out = task(batch)
    logits, y, n = task._masked(batch, out, "train")
    assert n == 32 and torch.equal(logits, out[:32]) and torch.equal(y, batch.y[:32])
    assert torch.equal(y, dm.data.y[batch.n_id[:32]])
    # the loss of the step is the cross-entropy of the seeds alone
    torch.testing.assert_close(task.training_step(batch, 0),
                               torch.nn.functional.cross_entropy(out[:32], batch.y[:32]))
    assert task.predict_step(batch, 0).shape == (32,)


@needs_sampler
def test_neighbor_sampled_training_learns(tmp_path):
    # 3000 nodes, 4 blocks; a node's own features give about 0.55 accuracy
    # (signal 1.0 in 16 dims), its neighbourhood much more
    seed_everything(0)
    dm = SBMDataModule(num_nodes=3000, seed=0, loader="neighbor", num_neighbors=[10, 10],
                       batch_size=256, eval_loader="full")
    model = GNN(16, 32, 4, num_layers=2, flavour="message_passing")
    task = NodeClassificationTask(model, lr=0.01, weight_decay=0.0)
    trainer = Trainer(max_epochs=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=str(tmp_path), num_sanity_val_steps=0)
    trainer.fit(task, dm)
    assert trainer.global_step == 4 * 6  # 1500 training seeds in batches of 256
    results = trainer.test(task, dm, verbose=False)[0]
    data = dm.data
    majority = float(torch.bincount(data.y[data.test_mask]).max()) / int(data.test_mask.sum())
    assert majority < 0.3
    assert results["test/acc"] > majority + 0.45, results  # seeds 0, 1, 2: 0.895-0.900
    # the full-batch test accuracy is the accuracy of the full-graph predictions
    task.eval()
    with torch.no_grad():
        full = task(data).argmax(-1)
    acc = float((full[data.test_mask] == data.y[data.test_mask]).float().mean())
    assert abs(results["test/acc"] - acc) < 1e-6
    # sampled evaluation with all neighbours gives the same predictions on its seeds
    dm_all = SBMDataModule(num_nodes=3000, seed=0, loader="neighbor", num_neighbors=[-1, -1],
                           batch_size=500, eval_loader="neighbor")
    dm_all.setup()
    with torch.no_grad():
        for batch in dm_all.test_dataloader()[0]:
            bs = batch.batch_size
            logits = task(batch)[:bs]
            torch.testing.assert_close(logits, task(data)[batch.n_id[:bs]], rtol=1e-4,
                                       atol=1e-4)
    # the feature-only baseline is clearly worse: graph structure is used
    mu = torch.stack([data.x[data.train_mask & (data.y == c)].mean(0) for c in range(4)])
    nearest = torch.cdist(data.x, mu).argmin(-1)
    feat_acc = float((nearest[data.test_mask] == data.y[data.test_mask]).float().mean())
    assert results["test/acc"] > feat_acc + 0.15, (results, feat_acc)


# ---------------------------------------------------------- PyG data sets
def _write_planetoid(folder, prefix="cora", n=600, n_train=20, n_test=60, F=8, C=3, seed=0):
    r"""A tiny citation graph in Planetoid's raw format (``ind.<prefix>.x``,
    ... pickles and ``test.index``): nodes ``n - n_test ..`` are the test
    nodes, listed shuffled. Returns ``(x, y, edges, test_index)``."""
    import scipy.sparse as sp
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    X = (rng.random((n, F)) < 0.3).astype(np.float32)
    onehot = np.eye(C, dtype=np.int64)[y]
    test_index = rng.permutation(np.arange(n - n_test, n))
    edges = set()
    while len(edges) < 2 * n:
        u, v = rng.integers(0, n, 2)
        if u != v:
            edges.add((int(min(u, v)), int(max(u, v))))
    graph = {i: [] for i in range(n)}
    for u, v in edges:
        graph[u].append(v)
        graph[v].append(u)
    items = {"x": sp.csr_matrix(X[:n_train]), "y": onehot[:n_train],
             "allx": sp.csr_matrix(X[:n - n_test]), "ally": onehot[:n - n_test],
             "tx": sp.csr_matrix(X[test_index]), "ty": onehot[test_index], "graph": graph}
    os.makedirs(folder, exist_ok=True)
    for key, value in items.items():
        with open(os.path.join(folder, f"ind.{prefix}.{key}"), "wb") as f:
            pickle.dump(value, f, protocol=2)
    np.savetxt(os.path.join(folder, f"ind.{prefix}.test.index"), test_index, fmt="%d")
    return X, y, edges, test_index


@needs_sampler
def test_pyg_dataset_from_local_root(tmp_path):
    X, y, edges, test_index = _write_planetoid(str(tmp_path / "Cora" / "raw"))
    dm = PyGDatasetDataModule("Planetoid/Cora", root=str(tmp_path))
    dm.setup()
    d = dm.data
    assert torch.equal(d.x, torch.from_numpy(X))
    assert torch.equal(d.y, torch.from_numpy(y))
    got = {(min(u, v), max(u, v)) for u, v in d.edge_index.t().tolist()}
    assert got == edges
    # Planetoid's public split: the first 20 nodes train, the next 500 validate
    assert d.train_mask.nonzero().view(-1).tolist() == list(range(20))
    assert d.val_mask.nonzero().view(-1).tolist() == list(range(20, 520))
    assert d.test_mask.nonzero().view(-1).tolist() == sorted(test_index.tolist())
    assert dm.num_features == 8
    # processed once: a second module reads the processed files
    assert os.path.isdir(tmp_path / "Cora" / "processed")
    # a random split of the same graph, seeded
    rnd = PyGDatasetDataModule("Planetoid/Cora", root=str(tmp_path), split="random", seed=1,
                               train_fraction=0.5, val_fraction=0.25, test_fraction=0.25)
    rnd.setup()
    assert rnd.data.train_mask.sum() == 300 and rnd.data.test_mask.sum() == 150
    assert not (rnd.data.train_mask & rnd.data.val_mask).any()
    # and the loaders serve it, full batch and sampled
    batch = next(iter(dm.train_dataloader()))
    assert batch.num_nodes == 600
    sampled = PyGDatasetDataModule("Planetoid/Cora", root=str(tmp_path), loader="neighbor",
                                   num_neighbors=[3], batch_size=8)
    sampled.setup()
    b = next(iter(sampled.train_dataloader()))
    assert b.batch_size == 8 and b.train_mask[:8].all()


def test_pyg_dataset_missing_files_names_folder_and_files(tmp_path):
    dm = PyGDatasetDataModule("Planetoid/Cora", root=str(tmp_path / "data"))
    with pytest.raises(FileNotFoundError) as info:
        dm.setup()
    msg = str(info.value)
    assert os.path.join(str(tmp_path / "data"), "Cora", "raw") in msg
    assert "ind.cora.x" in msg and "ind.cora.test.index" in msg
    assert "Planetoid(" in msg and "--data.init_args.root" in msg


def test_pyg_dataset_without_root_and_bad_names(tmp_path):
    # a built-in data set (no root, no files) goes through the same path
    dm = PyGDatasetDataModule("KarateClub", split="random", train_fraction=0.5,
                              val_fraction=0.25, test_fraction=0.25)
    dm.setup()
    assert dm.data.x.shape == (34, 34) and int(dm.data.train_mask.sum()) == 17
    dotted = PyGDatasetDataModule("torch_geometric.datasets.KarateClub", split="random",
                                  train_fraction=0.5, val_fraction=0.25, test_fraction=0.25)
    dotted.setup()
    assert torch.equal(dotted.data.edge_index, dm.data.edge_index)
    assert torch.equal(dotted.data.train_mask, dm.data.train_mask)  # same seed, same split
    with pytest.raises(ValueError, match="no 'val_mask'.*split='random'"):
        PyGDatasetDataModule("KarateClub").setup()  # it ships a train_mask only
    fake = PyGDatasetDataModule("FakeDataset", split="random",
                                dataset_kwargs=dict(num_graphs=1, avg_num_nodes=80,
                                                    num_channels=5, num_classes=3))
    fake.setup()
    assert fake.data.x.size(1) == 5
    with pytest.raises(ValueError, match="no class 'Planetoidd'"):
        PyGDatasetDataModule("Planetoidd/Cora").setup()
    with pytest.raises(ValueError, match="set 'root'"):
        PyGDatasetDataModule("Planetoid/Cora").setup()
    with pytest.raises(ValueError, match="takes no 'name'"):
        PyGDatasetDataModule("KarateClub/Zachary").setup()
    with pytest.raises(ValueError, match="split='random'"):
        PyGDatasetDataModule("FakeDataset", dataset_kwargs=dict(num_graphs=1)).setup()
    with pytest.raises(ValueError, match="split"):
        PyGDatasetDataModule("KarateClub", split="public")


def test_node_data_module_base_requires_masks():
    class NoMasks(NodeDataModule):
        def load_graph(self):
            from torch_geometric.data import Data
            return Data(x=torch.zeros(3, 1), edge_index=torch.zeros(2, 0, dtype=torch.long),
                        y=torch.zeros(3, dtype=torch.long))

    with pytest.raises(ValueError, match="boolean 'train_mask' of shape \\[3\\]"):
        NoMasks().setup()
    with pytest.raises(RuntimeError, match="setup"):
        NoMasks().train_dataloader()


@needs_sampler
def test_neighbor_loader_takes_a_distributed_sampler():
    # Under DDP the Trainer calls train_dataloader() inside this context and
    # re-creates the loader with a DistributedSampler: each process then gets
    # its share of the seed nodes, all from the training mask.
    from lightning.fabric.utilities.data import _replace_dunder_methods
    from lightning.pytorch.utilities.data import _update_dataloader
    from torch.utils.data import DataLoader, DistributedSampler
    dm = SBMDataModule(num_nodes=600, loader="neighbor", batch_size=64)
    dm.setup()
    with _replace_dunder_methods(DataLoader, "dataset"):
        loader = dm.train_dataloader()
    shares = []
    for rank in range(2):
        sampler = DistributedSampler(loader.dataset, num_replicas=2, rank=rank, shuffle=True,
                                     seed=0)
        new = _update_dataloader(loader, sampler)
        shares.append(torch.cat([b.n_id[:b.batch_size] for b in new]))
    both = torch.cat(shares)
    assert shares[0].numel() == shares[1].numel() == 150
    assert torch.equal(both.sort().values, dm.data.train_mask.nonzero().view(-1))
