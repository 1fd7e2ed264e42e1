r"""Data modules for graphs and sets, all generated or shipped (no download):

* :class:`KarateClubDataModule`: Zachary's karate club
  (:class:`torch_geometric.datasets.KarateClub`), node classification on one
  graph with train / validation / test node masks (full batch);
* :class:`SyntheticGraphsDataModule`: generated graph classification where
  only the structure carries the label (constant node features): the number
  of independent cycles, or which of three 5-node motifs with the same
  number of edges is planted in a random tree;
* :class:`SetsDataModule`: sets of integers (nodes without edges) labelled
  by a permutation-invariant function: the parity of their sum, their
  maximum, or the number of distinct values.

With a single test split the split is unnamed (:attr:`test_names` is
empty), so the tasks log ``test/acc``.
"""
from typing import List, Literal, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import degree, to_undirected

from gdl_pyg.lightning.data import (GraphDataModule, _check_fractions, _check_positive_int,
                                    _check_seed)
from gdl_pyg.transforms.positional_encoding import LaplacianPE, RandomWalkPE

__all__ = ["KarateClubDataModule", "SyntheticGraphsDataModule", "SetsDataModule",
           "random_tree", "MOTIFS"]


class _SingleTestSplit:
    r"""Mixin: one test split, left unnamed so that tasks log ``test/<metric>``."""

    @property
    def test_names(self) -> List[str]:
        return [] if len(self.test_datasets) <= 1 else list(self.test_datasets.keys())


# ---------------------------------------------------------------------- Karate
class KarateClubDataModule(_SingleTestSplit, GraphDataModule):
    r"""Zachary's karate club network (34 members, 78 friendships) from the
    `"An Information Flow Model for Conflict and Fission in Small Groups"
    <https://www.journals.uchicago.edu/doi/abs/10.1086/jar.33.4.3629752>`_
    paper, as shipped by :class:`torch_geometric.datasets.KarateClub` (built
    in, no download): four community labels, one-hot node identities as
    features (``x [34, 34]``).

    Transductive node classification on the single graph: :obj:`train_per_class`
    random nodes of each class are labelled for training (``train_mask``);
    the others are split at random into ``val_mask`` and ``test_mask``
    (:obj:`val_fraction` of them for validation). Every loader serves the
    same graph (one batch per epoch); a
    :class:`~gdl_pyg.lightning.node_task.NodeClassificationTask` picks the
    mask of the stage.

    Args:
        train_per_class (int, optional): labelled training nodes per class.
            (default: :obj:`2`)
        val_fraction (float, optional): fraction of the remaining nodes used
            for validation (the rest is the test set). (default: :obj:`0.5`)
        seed (int, optional): seeds the masks. (default: :obj:`0`)
        num_workers (int, optional): dataloader worker processes.
            (default: :obj:`0`)
    """

    #: Number of classes (communities).
    num_classes = 4
    #: Node feature width (one-hot node identities).
    num_features = 34

    def __init__(self, train_per_class: int = 2, val_fraction: float = 0.5, seed: int = 0,
                 num_workers: int = 0):
        super().__init__(batch_size=1, num_workers=num_workers)
        name = type(self).__name__
        _check_positive_int(name, "train_per_class", train_per_class)
        if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) \
                or not 0.0 < val_fraction < 1.0:
            raise ValueError(f"'{name}' expected 'val_fraction' in (0, 1) "
                             f"(got {val_fraction!r})")
        _check_seed(name, seed)
        self.train_per_class = train_per_class
        self.val_fraction = float(val_fraction)
        self.seed = seed
        self.save_hyperparameters()

    def masks(self, y: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        r"""Seeded ``(train_mask, val_mask, test_mask)`` for labels ``y [N]``:
        disjoint boolean masks covering all nodes."""
        gen = torch.Generator().manual_seed(self.seed)
        N = y.numel()
        train = torch.zeros(N, dtype=torch.bool)
        for c in range(int(y.max()) + 1):
            idx = (y == c).nonzero().view(-1)
            if idx.numel() <= self.train_per_class:
                raise ValueError(f"'{type(self).__name__}' cannot label {self.train_per_class} "
                                 f"nodes of class {c}, which has {idx.numel()}")
            train[idx[torch.randperm(idx.numel(), generator=gen)[:self.train_per_class]]] = True
        rest = (~train).nonzero().view(-1)
        rest = rest[torch.randperm(rest.numel(), generator=gen)]
        n_val = int(round(self.val_fraction * rest.numel()))
        val = torch.zeros(N, dtype=torch.bool)
        test = torch.zeros(N, dtype=torch.bool)
        val[rest[:n_val]] = True
        test[rest[n_val:]] = True
        return train, val, test

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_dataset is not None:
            return
        from torch_geometric.datasets import KarateClub
        raw = KarateClub()[0]
        train, val, test = self.masks(raw.y)
        data = Data(x=raw.x, edge_index=raw.edge_index, y=raw.y, train_mask=train,
                    val_mask=val, test_mask=test)
        self.train_dataset = [data]
        self.val_dataset = [data]
        self.test_datasets = {"test": [data]}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(train_per_class={self.train_per_class}, "
                f"seed={self.seed})")


# ------------------------------------------------------------- synthetic graphs
#: The three motifs of the ``"motifs"`` task: 5 nodes and 6 edges each.
#: ``house``: a square with a triangular roof; ``bowtie``: two triangles
#: sharing a node; ``k23``: the complete bipartite graph K_{2,3} (three
#: squares, no triangle). ``house`` and ``k23`` have the same degrees.
MOTIFS = {
    "house": [(0, 1), (1, 2), (2, 3), (3, 0), (0, 4), (1, 4)],
    "bowtie": [(0, 1), (1, 2), (2, 0), (0, 3), (3, 4), (4, 0)],
    "k23": [(0, 2), (0, 3), (0, 4), (1, 2), (1, 3), (1, 4)],
}


def random_tree(num_nodes: int, generator: torch.Generator) -> Tensor:
    r"""A random recursive tree: node :math:`i > 0` is joined to a uniformly
    random node :math:`j < i`. Returns the undirected edges ``[2, 2(n-1)]``."""
    if num_nodes < 2:
        return torch.empty(2, 0, dtype=torch.long)
    child = torch.arange(1, num_nodes)
    parent = (torch.rand(num_nodes - 1, generator=generator) * child).long()
    return to_undirected(torch.stack([parent, child]), num_nodes=num_nodes)


def _relabel(edge_index: Tensor, num_nodes: int, generator: torch.Generator) -> Tensor:
    r"""Shuffles node ids, so that no label leaks through the node order."""
    perm = torch.randperm(num_nodes, generator=generator)
    return perm[edge_index]


class SyntheticGraphsDataModule(_SingleTestSplit, GraphDataModule):
    r"""Generated graph classification where only the structure carries
    the label (all node features equal, or the node degrees), solvable by a
    1-WL-expressive GNN (e.g. GIN with a sum readout):

    * ``"cycles"``: a random tree on :math:`n` nodes plus :math:`c` extra
      random edges; the label is the number of independent cycles
      (cyclomatic number) :math:`c = |\mathcal{E}| - |\mathcal{V}| + 1 \in
      \{0, \dots, \text{max\_cycles}\}`, uniformly distributed
      (:obj:`max_cycles` + 1 classes).
    * ``"motifs"``: a random tree on :math:`n` nodes with one of the
      :data:`MOTIFS` (house, bowtie, :math:`K_{2,3}`: 5 nodes and 6 edges
      each) joined to a random tree node by one edge; the label is the motif
      (3 classes). Node and edge counts do not depend on the label, and house
      and :math:`K_{2,3}` have the same degrees, so a model must look at
      2-hop structure.

    The tree sizes :math:`n` are uniform in :obj:`num_nodes_range`. Node
    ids are shuffled. Each graph has ``x`` (``[N, 1]`` ones for
    :obj:`features="constant"`, or the one-hot degree clipped at
    :obj:`max_degree`, ``[N, max_degree + 1]``), ``edge_index`` (both
    directions) and ``y [1]``; with :obj:`pe` also the positional encodings
    (``laplacian_pe`` or ``random_walk_pe``, ``[N, pe_dim]``) from
    :mod:`gdl_pyg.transforms.positional_encoding`. The Laplacian encodings of
    the training graphs get random sign flips every time a graph is served.

    Args:
        task (str, optional): ``"cycles"`` or ``"motifs"``. (default: :obj:`"motifs"`)
        num_graphs (int, optional): graphs in total. (default: :obj:`2000`)
        num_nodes_range (tuple of int, optional): the range (inclusive) of
            the random tree sizes. (default: :obj:`(10, 20)`)
        max_cycles (int, optional): the largest number of cycles of the
            ``"cycles"`` task. (default: :obj:`3`)
        features (str, optional): ``"constant"`` or ``"degree"``.
            (default: :obj:`"constant"`)
        max_degree (int, optional): degree clipping of :obj:`features="degree"`.
            (default: :obj:`8`)
        pe (str, optional): ``"none"``, ``"laplacian"`` or ``"random_walk"``.
            (default: :obj:`"none"`)
        pe_dim (int, optional): width of the encodings. (default: :obj:`8`)
        val_fraction (float, optional): (default: :obj:`0.15`)
        test_fraction (float, optional): (default: :obj:`0.25`)
        batch_size (int, optional): graphs per mini-batch. (default: :obj:`64`)
        seed (int, optional): the data are a deterministic function of the
            arguments. (default: :obj:`0`)
        num_workers (int, optional): dataloader worker processes.
            (default: :obj:`0`)
    """

    def __init__(self, task: Literal["cycles", "motifs"] = "motifs", num_graphs: int = 2000,
                 num_nodes_range: Tuple[int, int] = (10, 20), max_cycles: int = 3,
                 features: Literal["constant", "degree"] = "constant", max_degree: int = 8,
                 pe: Literal["none", "laplacian", "random_walk"] = "none", pe_dim: int = 8,
                 val_fraction: float = 0.15, test_fraction: float = 0.25,
                 batch_size: int = 64, seed: int = 0, num_workers: int = 0):
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        name = type(self).__name__
        if task not in ("cycles", "motifs"):
            raise ValueError(f"'{name}' expected task 'cycles' or 'motifs' (got {task!r})")
        if features not in ("constant", "degree"):
            raise ValueError(f"'{name}' expected features 'constant' or 'degree' "
                             f"(got {features!r})")
        if pe not in ("none", "laplacian", "random_walk"):
            raise ValueError(f"'{name}' expected pe 'none', 'laplacian' or 'random_walk' "
                             f"(got {pe!r})")
        _check_positive_int(name, "num_graphs", num_graphs, minimum=3)
        _check_positive_int(name, "max_cycles", max_cycles)
        _check_positive_int(name, "max_degree", max_degree)
        _check_positive_int(name, "pe_dim", pe_dim)
        if not (isinstance(num_nodes_range, (tuple, list)) and len(num_nodes_range) == 2
                and all(isinstance(v, int) and not isinstance(v, bool)
                        for v in num_nodes_range)
                and 3 <= num_nodes_range[0] <= num_nodes_range[1]):
            raise ValueError(f"'{name}' expected num_nodes_range (lo, hi) with 3 <= lo <= hi "
                             f"(got {num_nodes_range!r})")
        if task == "cycles" and max_cycles > num_nodes_range[0] * (
                num_nodes_range[0] - 1) // 2 - (num_nodes_range[0] - 1):
            raise ValueError(f"'{name}': trees of {num_nodes_range[0]} nodes have room for "
                             f"fewer than {max_cycles} extra edges; raise num_nodes_range")
        _check_fractions(name, val_fraction, test_fraction)
        _check_seed(name, seed)
        self.task = task
        self.num_graphs = num_graphs
        self.num_nodes_range = (int(num_nodes_range[0]), int(num_nodes_range[1]))
        self.max_cycles = max_cycles
        self.features = features
        self.max_degree = max_degree
        self.pe = pe
        self.pe_dim = pe_dim
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        self.seed = seed
        self.save_hyperparameters()

    @property
    def num_classes(self) -> int:
        r"""The number of classes: 3 motifs, or :obj:`max_cycles` + 1."""
        return 3 if self.task == "motifs" else self.max_cycles + 1

    @property
    def num_features(self) -> int:
        r"""The node feature width."""
        return 1 if self.features == "constant" else self.max_degree + 1

    # ------------------------------------------------------------ generation
    def _cycles_graph(self, label: int, n: int, gen: torch.Generator) -> Tuple[Tensor, int]:
        edge_index = random_tree(n, gen)
        adj = torch.zeros(n, n, dtype=torch.bool)
        adj[edge_index[0], edge_index[1]] = True
        adj |= torch.eye(n, dtype=torch.bool)
        free = (~adj).triu().nonzero()  # [M, 2] candidate extra edges u < v
        extra = free[torch.randperm(free.size(0), generator=gen)[:label]].t()
        edge_index = torch.cat([edge_index, to_undirected(extra, num_nodes=n)], dim=1)
        return edge_index, n

    def _motifs_graph(self, label: int, n: int, gen: torch.Generator) -> Tuple[Tensor, int]:
        tree = random_tree(n, gen)
        motif = torch.tensor(list(MOTIFS.values())[label], dtype=torch.long).t() + n
        anchor_tree = int(torch.randint(0, n, (1,), generator=gen))
        anchor_motif = n + int(torch.randint(0, 5, (1,), generator=gen))
        link = torch.tensor([[anchor_tree], [anchor_motif]])
        edge_index = torch.cat([tree, to_undirected(torch.cat([motif, link], dim=1),
                                                    num_nodes=n + 5)], dim=1)
        return edge_index, n + 5

    def make_graph(self, label: int, gen: torch.Generator) -> Data:
        r"""One graph of class :obj:`label` (without encodings)."""
        lo, hi = self.num_nodes_range
        n = int(torch.randint(lo, hi + 1, (1,), generator=gen))
        if self.task == "cycles":
            edge_index, N = self._cycles_graph(label, n, gen)
        else:
            edge_index, N = self._motifs_graph(label, n, gen)
        edge_index = _relabel(edge_index, N, gen)
        order = (edge_index[1] * N + edge_index[0]).argsort()  # sorted by target
        edge_index = edge_index[:, order]
        if self.features == "constant":
            x = torch.ones(N, 1)
        else:
            deg = degree(edge_index[1], N, dtype=torch.long).clamp(max=self.max_degree)
            x = torch.nn.functional.one_hot(deg, self.max_degree + 1).to(torch.float32)
        return Data(x=x, edge_index=edge_index, y=torch.tensor([label]), num_nodes=N)

    def generate(self) -> List[Data]:
        r"""All :obj:`num_graphs` graphs (balanced classes, shuffled), with
        the encodings (canonical signs) when :obj:`pe` is set."""
        gen = torch.Generator().manual_seed(self.seed)
        labels = torch.arange(self.num_graphs) % self.num_classes
        labels = labels[torch.randperm(self.num_graphs, generator=gen)]
        graphs = [self.make_graph(int(c), gen) for c in labels]
        if self.pe == "laplacian":
            pe = LaplacianPE(self.pe_dim, random_sign_flip=False)
            graphs = [pe(g) for g in graphs]
        elif self.pe == "random_walk":
            pe = RandomWalkPE(self.pe_dim)
            graphs = [pe(g) for g in graphs]
        return graphs

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_dataset is not None:
            return
        graphs = self.generate()
        n_test = int(round(self.test_fraction * len(graphs)))
        n_val = int(round(self.val_fraction * len(graphs)))
        train = graphs[n_test + n_val:]
        if self.pe == "laplacian":
            train = _SignFlipped(train, self.seed)
        self.train_dataset = train
        self.val_dataset = graphs[n_test:n_test + n_val]
        self.test_datasets = {"test": graphs[:n_test]}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(task={self.task!r}, num_graphs={self.num_graphs}, "
                f"features={self.features!r}, pe={self.pe!r}, seed={self.seed})")


class _SignFlipped(torch.utils.data.Dataset):
    r"""Serves graphs with the sign of every Laplacian eigenvector flipped
    at random on each access (the training augmentation of
    :class:`~gdl_pyg.transforms.positional_encoding.LaplacianPE`, here on
    precomputed canonical eigenvectors, so no eigendecomposition per step)."""

    def __init__(self, graphs: List[Data], seed: int, attr: str = "laplacian_pe"):
        self.graphs = graphs
        self.attr = attr
        self.gen = torch.Generator().manual_seed(seed + 1)

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, idx: int) -> Data:
        data = self.graphs[idx]
        pe = data[self.attr]
        sign = 2 * torch.randint(0, 2, (1, pe.size(1)), generator=self.gen) - 1
        out = data.clone()
        out[self.attr] = pe * sign.to(pe.dtype)
        return out


# ------------------------------------------------------------------------ sets
class SetsDataModule(_SingleTestSplit, GraphDataModule):
    r"""Sets of integers :math:`\{a_1, \dots, a_n\}`, :math:`a_i \in \{0,
    \dots, \text{num\_values} - 1\}` drawn uniformly with repetition and
    :math:`n` uniform in :obj:`set_size_range`, labelled by a permutation
    invariant function (`"Deep Sets" <https://arxiv.org/abs/1703.06114>`_;
    sec. 5.2 of the `"Geometric Deep Learning"
    <https://arxiv.org/abs/2104.13478>`_ book):

    * ``"sum_parity"``: :math:`\sum_i a_i \bmod 2` (2 classes);
    * ``"max"``: :math:`\max_i a_i` (:obj:`num_values` classes, skewed
      towards large values);
    * ``"unique"``: the number of distinct values minus one
      (``set_size_range[1]`` classes).

    Every set is a graph without edges: ``x [n, num_values]`` (one-hot
    values), ``y [1]``; batching gives the ``batch`` vector that the set
    layers aggregate over.

    Args:
        task (str, optional): ``"sum_parity"``, ``"max"`` or ``"unique"``.
            (default: :obj:`"sum_parity"`)
        num_sets (int, optional): sets in total. (default: :obj:`4000`)
        set_size_range (tuple of int, optional): the range (inclusive) of
            set sizes. (default: :obj:`(2, 10)`)
        num_values (int, optional): the number of distinct element values.
            (default: :obj:`10`)
        val_fraction (float, optional): (default: :obj:`0.15`)
        test_fraction (float, optional): (default: :obj:`0.25`)
        batch_size (int, optional): sets per mini-batch. (default: :obj:`64`)
        seed (int, optional): the data are a deterministic function of the
            arguments. (default: :obj:`0`)
        num_workers (int, optional): dataloader worker processes.
            (default: :obj:`0`)
    """

    def __init__(self, task: Literal["sum_parity", "max", "unique"] = "sum_parity",
                 num_sets: int = 4000, set_size_range: Tuple[int, int] = (2, 10),
                 num_values: int = 10, val_fraction: float = 0.15,
                 test_fraction: float = 0.25, batch_size: int = 64, seed: int = 0,
                 num_workers: int = 0):
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        name = type(self).__name__
        if task not in ("sum_parity", "max", "unique"):
            raise ValueError(f"'{name}' expected task 'sum_parity', 'max' or 'unique' "
                             f"(got {task!r})")
        _check_positive_int(name, "num_sets", num_sets, minimum=3)
        _check_positive_int(name, "num_values", num_values, minimum=2)
        if not (isinstance(set_size_range, (tuple, list)) and len(set_size_range) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in set_size_range)
                and 1 <= set_size_range[0] <= set_size_range[1]):
            raise ValueError(f"'{name}' expected set_size_range (lo, hi) with 1 <= lo <= hi "
                             f"(got {set_size_range!r})")
        _check_fractions(name, val_fraction, test_fraction)
        _check_seed(name, seed)
        self.task = task
        self.num_sets = num_sets
        self.set_size_range = (int(set_size_range[0]), int(set_size_range[1]))
        self.num_values = num_values
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        self.seed = seed
        self.save_hyperparameters()

    @property
    def num_classes(self) -> int:
        r"""The number of classes of the task."""
        if self.task == "sum_parity":
            return 2
        if self.task == "max":
            return self.num_values
        return self.set_size_range[1]

    @property
    def num_features(self) -> int:
        r"""The element feature width (one-hot values)."""
        return self.num_values

    def label(self, values: Tensor) -> int:
        r"""The label of the set with elements :obj:`values` (``[n]`` integers)."""
        if self.task == "sum_parity":
            return int(values.sum()) % 2
        if self.task == "max":
            return int(values.max())
        return int(values.unique().numel()) - 1

    def generate(self) -> List[Data]:
        r"""All :obj:`num_sets` sets."""
        gen = torch.Generator().manual_seed(self.seed)
        lo, hi = self.set_size_range
        sizes = torch.randint(lo, hi + 1, (self.num_sets,), generator=gen)
        sets = []
        for n in sizes.tolist():
            values = torch.randint(0, self.num_values, (n,), generator=gen)
            x = torch.nn.functional.one_hot(values, self.num_values).to(torch.float32)
            sets.append(Data(x=x, y=torch.tensor([self.label(values)]), num_nodes=n))
        return sets

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_dataset is not None:
            return
        sets = self.generate()
        n_test = int(round(self.test_fraction * len(sets)))
        n_val = int(round(self.val_fraction * len(sets)))
        self.train_dataset = sets[n_test + n_val:]
        self.val_dataset = sets[n_test:n_test + n_val]
        self.test_datasets = {"test": sets[:n_test]}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(task={self.task!r}, num_sets={self.num_sets}, "
                f"set_size_range={self.set_size_range}, num_values={self.num_values}, "
                f"seed={self.seed})")
