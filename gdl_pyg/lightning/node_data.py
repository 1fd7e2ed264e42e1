r"""Data modules for node-level tasks on one (possibly large) graph, served
whole (full batch) or by neighbour sampling:

* :class:`NodeDataModule`: the base class: one graph with ``train_mask``,
  ``val_mask`` and ``test_mask``; :obj:`loader` ``"full"`` serves the whole
  graph as one batch, ``"neighbor"`` serves mini-batches of seed nodes with
  their sampled neighbourhoods (PyG's
  :class:`~torch_geometric.loader.NeighborLoader`, seeds taken from the split's
  mask);
* :class:`SBMDataModule`: a generated stochastic block model whose node
  features are noisy class means (no download, any size);
* :class:`PyGDatasetDataModule`: one of PyG's own data sets
  (``name="Planetoid/Cora"``) read from a local folder, never downloaded.

A neighbour-sampled batch holds its ``batch_size`` seed nodes first (PyG's
convention, with ``n_id`` the global ids of its nodes); the node tasks of
:mod:`gdl_pyg.lightning.node_task` score only those. ``predict`` always serves
the whole graph, so predictions come one row per node.
"""
import importlib
import inspect
from typing import Any, Dict, List, Literal, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from torch_geometric.utils import coalesce, to_undirected

from gdl_pyg.lightning.data import (GraphDataModule, _check_fractions, _check_positive_int,
                                    _check_seed)

__all__ = ["NodeDataModule", "SBMDataModule", "PyGDatasetDataModule",
           "stochastic_block_model", "require_neighbor_sampler"]

LOADERS = ("full", "neighbor")


def require_neighbor_sampler(cls: str = "NeighborLoader") -> None:
    r"""Raises :class:`ImportError` when PyG has no backend for neighbour
    sampling (neither ``pyg-lib`` nor ``torch-sparse`` is installed)."""
    import torch_geometric.typing as pyg_typing
    if not (pyg_typing.WITH_PYG_LIB or pyg_typing.WITH_TORCH_SPARSE):
        raise ImportError(
            f"'{cls}' needs a neighbour sampler, from 'pyg-lib' or 'torch-sparse', and "
            f"neither is installed. Install the [scatter] extra (pip install "
            f"'gdl_pyg[scatter]', or pip install --no-build-isolation torch-scatter "
            f"torch-sparse; they build from source in a few minutes), or use "
            f"loader='full'")


def _check_num_neighbors(cls: str, num_neighbors) -> List[int]:
    if not isinstance(num_neighbors, (list, tuple)) or not num_neighbors or not all(
            isinstance(k, int) and not isinstance(k, bool) and (k > 0 or k == -1)
            for k in num_neighbors):
        raise ValueError(f"'{cls}' expected 'num_neighbors' to be a non-empty list of "
                         f"positive integers or -1 (all neighbours), one per layer, e.g. "
                         f"[10, 10] (got {num_neighbors!r})")
    return [int(k) for k in num_neighbors]


class _SingleGraph(torch.utils.data.Dataset):
    r"""A one-graph dataset (what the full-batch loaders serve)."""

    def __init__(self, data: Data):
        self.data = data

    def __len__(self) -> int:
        return 1

    def __getitem__(self, idx: int) -> Data:
        if idx != 0:
            raise IndexError(idx)
        return self.data


class NodeDataModule(GraphDataModule):
    r"""The base data module of transductive node-level tasks on one graph
    with boolean node masks ``train_mask``, ``val_mask`` and ``test_mask``.
    Subclasses implement :meth:`load_graph`.

    With :obj:`loader="full"` every stage gets the whole graph as one batch
    (the tasks pick the nodes of the stage's mask). With
    :obj:`loader="neighbor"` training uses PyG's
    :class:`~torch_geometric.loader.NeighborLoader`: :obj:`batch_size` seed
    nodes drawn (shuffled) from ``train_mask``, with :obj:`num_neighbors[l]`
    sampled neighbours per node at hop :math:`l` (``-1``: all). Validation and
    test use the same sampling on their masks when :obj:`eval_loader` is
    ``"neighbor"``, the whole graph when it is ``"full"``; ``predict`` always
    serves the whole graph. Neighbour sampling needs ``pyg-lib`` or
    ``torch-sparse`` (the ``[scatter]`` extra).

    Args:
        loader (str, optional): ``"full"`` or ``"neighbor"``.
            (default: :obj:`"full"`)
        num_neighbors (list of int, optional): neighbours sampled per hop;
            its length should be the number of message-passing layers.
            (default: :obj:`[10, 10]`)
        batch_size (int, optional): seed nodes per mini-batch (neighbour
            sampling only). (default: :obj:`512`)
        eval_loader (str, optional): ``"full"`` or ``"neighbor"``, the loader
            of validation and test when :obj:`loader` is ``"neighbor"``.
            (default: :obj:`"full"`)
        num_workers (int, optional): dataloader worker processes.
            (default: :obj:`0`)
    """

    def __init__(self, loader: Literal["full", "neighbor"] = "full",
                 num_neighbors: Sequence[int] = (10, 10), batch_size: int = 512,
                 eval_loader: Literal["full", "neighbor"] = "full", num_workers: int = 0):
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        name = type(self).__name__
        for key, value in (("loader", loader), ("eval_loader", eval_loader)):
            if value not in LOADERS:
                raise ValueError(f"'{name}' expected {key} 'full' or 'neighbor' (got {value!r})")
        self.loader = loader
        self.eval_loader = eval_loader
        self.num_neighbors = _check_num_neighbors(name, num_neighbors)
        self.data: Optional[Data] = None

    # ------------------------------------------------------------ template
    def load_graph(self) -> Data:
        r"""The graph, with ``x``, ``edge_index``, ``y`` and the three masks."""
        raise NotImplementedError

    @property
    def test_names(self) -> List[str]:
        return []  # one unnamed test split: the tasks log test/<metric>

    def setup(self, stage: Optional[str] = None) -> None:
        if self.data is not None:
            return
        data = self.load_graph()
        _check_graph(type(self).__name__, data)
        self.data = data
        self.train_dataset = _SingleGraph(data)
        self.val_dataset = _SingleGraph(data)
        self.test_datasets = {"test": _SingleGraph(data)}

    # ------------------------------------------------------------ loaders
    def _neighbor_loader(self, split: str, shuffle: bool):
        require_neighbor_sampler(type(self).__name__)
        from torch_geometric.loader import NeighborLoader
        data = self._require_data(split)
        return NeighborLoader(data, num_neighbors=self.num_neighbors,
                              input_nodes=data[f"{split}_mask"], batch_size=self.batch_size,
                              shuffle=shuffle, num_workers=self.num_workers,
                              persistent_workers=self.num_workers > 0)

    def _full_loader(self, split: str) -> DataLoader:
        self._require_data(split)
        return DataLoader(_SingleGraph(self.data), batch_size=1, shuffle=False,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def _require_data(self, split: str) -> Data:
        if self.data is None:
            raise RuntimeError(f"'{type(self).__name__}' has no {split} split; call 'setup' "
                               f"first (the Trainer does)")
        return self.data

    def train_dataloader(self):
        if self.loader == "neighbor":
            return self._neighbor_loader("train", shuffle=True)
        return self._full_loader("train")

    def val_dataloader(self):
        if self.loader == "neighbor" and self.eval_loader == "neighbor":
            return self._neighbor_loader("val", shuffle=False)
        return self._full_loader("val")

    def test_dataloader(self):
        if self.loader == "neighbor" and self.eval_loader == "neighbor":
            return [self._neighbor_loader("test", shuffle=False)]
        return [self._full_loader("test")]

    def predict_dataloader(self):
        return [self._full_loader("predict")]

    @property
    def predict_names(self) -> List[str]:
        return ["nodes"]

    @property
    def num_features(self) -> int:
        r"""The node feature width (after :meth:`setup`)."""
        return int(self._require_data("feature").x.size(-1))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(loader={self.loader!r}, "
                f"num_neighbors={self.num_neighbors}, batch_size={self.batch_size})")


def _check_graph(cls: str, data: Data) -> None:
    N = data.num_nodes
    for key in ("x", "edge_index", "y"):
        if data.get(key) is None:
            raise ValueError(f"'{cls}' expected a graph with '{key}' (got keys {data.keys()})")
    for split in ("train", "val", "test"):
        mask = data.get(f"{split}_mask")
        if mask is None or mask.dtype != torch.bool or mask.shape != (N,):
            got = "none" if mask is None else f"{mask.dtype} {list(mask.shape)}"
            raise ValueError(f"'{cls}' expected a boolean '{split}_mask' of shape [{N}] "
                             f"(got {got})")
        if not bool(mask.any()):
            raise ValueError(f"'{cls}' got an empty '{split}_mask'")


def random_node_split(num_nodes: int, train_fraction: float, val_fraction: float,
                      test_fraction: float, generator: torch.Generator):
    r"""Disjoint random ``(train_mask, val_mask, test_mask)`` of the given
    fractions of :obj:`num_nodes` nodes."""
    perm = torch.randperm(num_nodes, generator=generator)
    n_train = int(round(train_fraction * num_nodes))
    n_val = int(round(val_fraction * num_nodes))
    n_test = int(round(test_fraction * num_nodes))
    masks = []
    for lo, hi in ((0, n_train), (n_train, n_train + n_val),
                   (n_train + n_val, n_train + n_val + n_test)):
        mask = torch.zeros(num_nodes, dtype=torch.bool)
        mask[perm[lo:hi]] = True
        masks.append(mask)
    return tuple(masks)


def _check_split_fractions(cls: str, train_fraction, val_fraction, test_fraction) -> None:
    _check_fractions(cls, val_fraction, test_fraction)
    if isinstance(train_fraction, bool) or not isinstance(train_fraction, (int, float)) \
            or not 0.0 < train_fraction < 1.0 \
            or train_fraction + val_fraction + test_fraction > 1.0 + 1e-9:
        raise ValueError(f"'{cls}' expected train_fraction in (0, 1) with train_fraction + "
                         f"val_fraction + test_fraction <= 1 (got {train_fraction!r} + "
                         f"{val_fraction!r} + {test_fraction!r})")


# ----------------------------------------------------------------------- SBM
def stochastic_block_model(block_sizes: Sequence[int], p_in: float, p_out: float,
                           generator: torch.Generator) -> Tensor:
    r"""The undirected edges ``[2, E]`` (both directions, sorted, no self
    loops) of a stochastic block model: nodes :math:`0, \dots, N-1` in
    consecutive blocks of sizes :obj:`block_sizes`, each pair joined with
    probability :obj:`p_in` within a block and :obj:`p_out` across blocks.

    For every pair of blocks the number of edges is drawn from its binomial
    distribution and the endpoints uniformly (with replacement, duplicates
    merged), so the cost is :math:`O(E)`, not :math:`O(N^2)`; at the sparse
    densities of interest the merged duplicates are a fraction of about
    :math:`p/2` of the edges."""
    sizes = [int(s) for s in block_sizes]
    starts = [sum(sizes[:b]) for b in range(len(sizes))]
    N = sum(sizes)
    rows, cols = [], []
    for a in range(len(sizes)):
        for b in range(a, len(sizes)):
            pairs = sizes[a] * (sizes[a] - 1) // 2 if a == b else sizes[a] * sizes[b]
            p = p_in if a == b else p_out
            if pairs == 0 or p <= 0:
                continue
            m = int(torch.binomial(torch.tensor([float(pairs)], dtype=torch.float64),
                                   torch.tensor([float(p)], dtype=torch.float64),
                                   generator=generator))
            u = torch.randint(0, sizes[a], (m,), generator=generator) + starts[a]
            v = torch.randint(0, sizes[b], (m,), generator=generator) + starts[b]
            rows.append(u)
            cols.append(v)
    if not rows:
        return torch.empty(2, 0, dtype=torch.long)
    edge_index = torch.stack([torch.cat(rows), torch.cat(cols)])
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    return coalesce(to_undirected(edge_index, num_nodes=N), num_nodes=N)


class SBMDataModule(NodeDataModule):
    r"""Node classification on a generated stochastic block model (the
    community detection benchmark of `"Supervised Community Detection with
    Line Graph Neural Networks" <https://arxiv.org/abs/1705.08415>`_, here
    with node features): :obj:`num_nodes` nodes in :obj:`num_blocks` equal
    blocks (the labels), on average :obj:`avg_degree_in` neighbours inside
    their block and :obj:`avg_degree_out` outside it; node features
    :math:`\mathbf{x}_u = s\,\boldsymbol{\mu}_{c(u)} +
    \boldsymbol{\varepsilon}_u` with random unit class means
    :math:`\boldsymbol{\mu}_c \in \mathbb{R}^F`, signal :math:`s` =
    :obj:`feature_signal` and standard normal noise, so a node's own
    features are a weak cue and averaging over its neighbourhood a strong
    one. Node ids are shuffled (blocks are not contiguous).

    The graph and the random train / validation / test node masks are a
    deterministic function of the arguments (:obj:`seed`); any size is
    generated in :math:`O(N + E)`.

    Args:
        num_nodes (int, optional): (default: :obj:`3000`)
        num_blocks (int, optional): blocks = classes. (default: :obj:`4`)
        avg_degree_in (float, optional): expected neighbours in the own
            block. (default: :obj:`6.0`)
        avg_degree_out (float, optional): expected neighbours in the other
            blocks. (default: :obj:`2.0`)
        num_features (int, optional): :math:`F`. (default: :obj:`16`)
        feature_signal (float, optional): :math:`s`. (default: :obj:`1.0`)
        train_fraction (float, optional): (default: :obj:`0.5`)
        val_fraction (float, optional): (default: :obj:`0.25`)
        test_fraction (float, optional): (default: :obj:`0.25`)
        seed (int, optional): seeds the graph, the features and the masks.
            (default: :obj:`0`)
        loader, num_neighbors, batch_size, eval_loader, num_workers: see
            :class:`NodeDataModule`.
    """

    def __init__(self, num_nodes: int = 3000, num_blocks: int = 4,
                 avg_degree_in: float = 6.0, avg_degree_out: float = 2.0,
                 num_features: int = 16, feature_signal: float = 1.0,
                 train_fraction: float = 0.5, val_fraction: float = 0.25,
                 test_fraction: float = 0.25, seed: int = 0,
                 loader: Literal["full", "neighbor"] = "full",
                 num_neighbors: Sequence[int] = (10, 10), batch_size: int = 512,
                 eval_loader: Literal["full", "neighbor"] = "full", num_workers: int = 0):
        super().__init__(loader=loader, num_neighbors=num_neighbors, batch_size=batch_size,
                         eval_loader=eval_loader, num_workers=num_workers)
        name = type(self).__name__
        _check_positive_int(name, "num_blocks", num_blocks, minimum=2)
        _check_positive_int(name, "num_nodes", num_nodes, minimum=2 * num_blocks)
        _check_positive_int(name, "num_features", num_features)
        for key, value in (("avg_degree_in", avg_degree_in), ("avg_degree_out", avg_degree_out),
                           ("feature_signal", feature_signal)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"'{name}' expected a non-negative '{key}' (got {value!r})")
        _check_split_fractions(name, train_fraction, val_fraction, test_fraction)
        _check_seed(name, seed)
        self.num_nodes = num_nodes
        self.num_blocks = num_blocks
        self.avg_degree_in = float(avg_degree_in)
        self.avg_degree_out = float(avg_degree_out)
        self._num_features = num_features
        self.feature_signal = float(feature_signal)
        self.train_fraction = float(train_fraction)
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        self.seed = seed
        self.save_hyperparameters()

    @property
    def num_classes(self) -> int:
        r"""The number of classes (blocks)."""
        return self.num_blocks

    @property
    def num_features(self) -> int:
        r"""The node feature width."""
        return self._num_features

    def load_graph(self) -> Data:
        gen = torch.Generator().manual_seed(self.seed)
        N, B = self.num_nodes, self.num_blocks
        sizes = [N // B + (1 if b < N % B else 0) for b in range(B)]
        block = torch.repeat_interleave(torch.arange(B), torch.tensor(sizes))
        p_in = min(1.0, self.avg_degree_in / max(max(sizes) - 1, 1))
        p_out = min(1.0, self.avg_degree_out / max(N - max(sizes), 1))
        edge_index = stochastic_block_model(sizes, p_in, p_out, gen)
        perm = torch.randperm(N, generator=gen)  # node u of the blocks becomes perm[u]
        y = torch.empty(N, dtype=torch.long)
        y[perm] = block
        edge_index = coalesce(perm[edge_index], num_nodes=N)
        means = torch.randn(B, self._num_features, generator=gen)
        means = means / means.norm(dim=1, keepdim=True)
        x = self.feature_signal * means[y] + torch.randn(N, self._num_features, generator=gen)
        train, val, test = random_node_split(N, self.train_fraction, self.val_fraction,
                                             self.test_fraction, gen)
        return Data(x=x, edge_index=edge_index, y=y, train_mask=train, val_mask=val,
                    test_mask=test)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_nodes={self.num_nodes}, "
                f"num_blocks={self.num_blocks}, loader={self.loader!r}, seed={self.seed})")


# ------------------------------------------------------------- PyG data sets
def _resolve_dataset(cls_name: str, name: str) -> type:
    if "." in cls_name:
        module, _, attr = cls_name.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"'PyGDatasetDataModule' cannot import the dataset class "
                             f"{cls_name!r} of name {name!r}: {exc}") from None
    else:
        import torch_geometric.datasets as datasets
        cls = getattr(datasets, cls_name, None)
        if cls is None:
            raise ValueError(f"'PyGDatasetDataModule' expected the name of a class of "
                             f"torch_geometric.datasets, optionally with its 'name' "
                             f"argument, as 'Planetoid/Cora' or 'KarateClub', or a dotted "
                             f"class path (got {name!r}: no class {cls_name!r})")
    if not (isinstance(cls, type) and issubclass(cls, torch.utils.data.Dataset)):
        raise ValueError(f"'PyGDatasetDataModule' expected {cls_name!r} to be a dataset class "
                         f"(got {type(cls).__name__})")
    return cls


def _local_only(cls: type, hint: str) -> type:
    r"""A subclass of the PyG dataset :obj:`cls` whose ``download`` raises a
    clear error instead of going online."""
    from torch_geometric.data import Dataset as PyGDataset
    if not issubclass(cls, PyGDataset) or cls.download is PyGDataset.download:
        return cls  # nothing to download (built in or generated)

    def download(self) -> None:
        files = [f for f in (self.raw_file_names if isinstance(self.raw_file_names,
                             (list, tuple)) else [self.raw_file_names])]
        raise FileNotFoundError(
            f"'PyGDatasetDataModule' found no raw files of {cls.__name__} in "
            f"'{self.raw_dir}' (and does not download). Expected there: "
            f"{', '.join(map(str, files))}. Copy them into that folder (PyG's layout "
            f"'<root>/.../raw/'; on a machine with internet, {hint} downloads them into "
            f"the same layout), or set --data.init_args.root to the folder that holds them.")

    return type(cls.__name__, (cls,), {"download": download, "__module__": cls.__module__})


class PyGDatasetDataModule(NodeDataModule):
    r"""Node-level tasks on one graph of a PyG data set read from a local
    folder (:obj:`root`), never downloaded: with the files missing,
    :meth:`setup` raises :class:`FileNotFoundError` naming the folder and the
    files PyG expects there (its ``raw/`` layout).

    :obj:`name` is a class of :mod:`torch_geometric.datasets`, with the
    value of its ``name`` argument after a slash (``"Planetoid/Cora"``,
    ``"Amazon/Photo"``, ``"KarateClub"``), or a dotted path to any PyG
    :class:`~torch_geometric.data.Dataset` class; :obj:`dataset_kwargs` go to
    its constructor, and :obj:`root` is passed when the class takes one.
    Graph :obj:`index` of the data set is used.

    Splits: :obj:`split="dataset"` uses the data set's own ``train_mask``,
    ``val_mask`` and ``test_mask`` (column :obj:`split_index` of 2-D masks,
    as in the data sets that ship several splits); ``"random"`` draws
    disjoint random masks of the given fractions (seeded by :obj:`seed`).

    Args:
        name (str): e.g. ``"Planetoid/Cora"``.
        root (str, optional): the folder of the data set, as given to the
            PyG class (for ``Planetoid``, the folder holding ``Cora/raw``).
            (default: :obj:`None`)
        dataset_kwargs (dict, optional): more constructor arguments.
            (default: :obj:`None`)
        index (int, optional): the graph of the data set. (default: :obj:`0`)
        split (str, optional): ``"dataset"`` or ``"random"``.
            (default: :obj:`"dataset"`)
        split_index (int, optional): the column of 2-D masks.
            (default: :obj:`0`)
        train_fraction (float, optional): for ``split="random"``.
            (default: :obj:`0.6`)
        val_fraction (float, optional): (default: :obj:`0.2`)
        test_fraction (float, optional): (default: :obj:`0.2`)
        seed (int, optional): seeds the random split. (default: :obj:`0`)
        loader, num_neighbors, batch_size, eval_loader, num_workers: see
            :class:`NodeDataModule`.
    """

    def __init__(self, name: str, root: Optional[str] = None,
                 dataset_kwargs: Optional[Dict[str, Any]] = None, index: int = 0,
                 split: Literal["dataset", "random"] = "dataset", split_index: int = 0,
                 train_fraction: float = 0.6, val_fraction: float = 0.2,
                 test_fraction: float = 0.2, seed: int = 0,
                 loader: Literal["full", "neighbor"] = "full",
                 num_neighbors: Sequence[int] = (10, 10), batch_size: int = 512,
                 eval_loader: Literal["full", "neighbor"] = "full", num_workers: int = 0):
        super().__init__(loader=loader, num_neighbors=num_neighbors, batch_size=batch_size,
                         eval_loader=eval_loader, num_workers=num_workers)
        cls = type(self).__name__
        if not isinstance(name, str) or not name.strip("/"):
            raise ValueError(f"'{cls}' expected a data set name such as 'Planetoid/Cora' "
                             f"(got {name!r})")
        if split not in ("dataset", "random"):
            raise ValueError(f"'{cls}' expected split 'dataset' or 'random' (got {split!r})")
        if dataset_kwargs is not None and not isinstance(dataset_kwargs, dict):
            raise TypeError(f"'{cls}' expected 'dataset_kwargs' to be a dict (got "
                            f"{type(dataset_kwargs).__name__})")
        _check_positive_int(cls, "index", index, minimum=0)
        _check_positive_int(cls, "split_index", split_index, minimum=0)
        _check_split_fractions(cls, train_fraction, val_fraction, test_fraction)
        _check_seed(cls, seed)
        self.name = name
        self.root = root
        self.dataset_kwargs = dict(dataset_kwargs or {})
        self.index = index
        self.split = split
        self.split_index = split_index
        self.train_fraction = float(train_fraction)
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        self.seed = seed
        self.save_hyperparameters()

    def dataset(self):
        r"""The PyG data set (read, and processed on first use, from
        :obj:`root`)."""
        cls_name, _, sub = self.name.partition("/")
        dataset_cls = _resolve_dataset(cls_name, self.name)
        params = inspect.signature(dataset_cls.__init__).parameters
        kwargs = dict(self.dataset_kwargs)
        if sub:
            if "name" not in params:
                raise ValueError(f"'{type(self).__name__}' got {self.name!r}, but "
                                 f"{dataset_cls.__name__} takes no 'name' argument; use "
                                 f"name={cls_name!r}")
            kwargs.setdefault("name", sub)
        if "root" in params:
            if self.root is None:
                raise ValueError(f"'{type(self).__name__}' needs the folder of "
                                 f"{self.name!r}: set 'root' (--data.init_args.root PATH)")
            kwargs["root"] = self.root
        call = f"{dataset_cls.__name__}(" + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) \
            + ")"
        return _local_only(dataset_cls, call)(**kwargs)

    def load_graph(self) -> Data:
        ds = self.dataset()
        if self.index >= len(ds):
            raise ValueError(f"'{type(self).__name__}' expected 'index' < {len(ds)}, the "
                             f"number of graphs of {self.name!r} (got {self.index})")
        raw = ds[self.index]
        data = Data(x=raw.x, edge_index=raw.edge_index, y=raw.y, num_nodes=raw.num_nodes)
        if data.x is None:
            raise ValueError(f"'{type(self).__name__}' expected node features 'x' in "
                             f"{self.name!r}")
        if raw.y is not None and raw.y.dim() == 2 and raw.y.size(1) == 1:
            data.y = raw.y.view(-1)
        N = data.num_nodes
        if self.split == "random":
            gen = torch.Generator().manual_seed(self.seed)
            masks = random_node_split(N, self.train_fraction, self.val_fraction,
                                      self.test_fraction, gen)
        else:
            masks = []
            for split in ("train", "val", "test"):
                mask = raw.get(f"{split}_mask")
                if mask is None:
                    raise ValueError(f"'{type(self).__name__}' found no '{split}_mask' in "
                                     f"{self.name!r} (keys {raw.keys()}); use split='random'")
                if mask.dim() == 2:
                    if self.split_index >= mask.size(1):
                        raise ValueError(f"'{type(self).__name__}' expected split_index < "
                                         f"{mask.size(1)} (got {self.split_index})")
                    mask = mask[:, self.split_index]
                masks.append(mask.bool())
        data.train_mask, data.val_mask, data.test_mask = masks
        return data

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, root={self.root!r}, "
                f"split={self.split!r}, loader={self.loader!r})")
