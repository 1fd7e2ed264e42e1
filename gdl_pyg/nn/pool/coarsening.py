r"""Graph coarsening without pyg-lib / torch-cluster: a Graclus-style greedy
heavy-edge matching, and pooling of a graph by its clusters (the
scale-separation stage of the blueprint of Bronstein et al. 2021, sec. 4.6).

The matching is the *greedy heavy-edge matching*: undirected edges are visited
in decreasing weight and an edge is matched when both ends are still free.
It is computed in pure torch by rounds of *locally dominant* edges (each free
node points to its best free incident edge; edges chosen by both ends are
matched), which gives exactly the greedy result for the same strict edge
order, in few vectorised rounds. Ties of weight are broken by random
priorities drawn *per edge* from a seeded generator, so the result is
deterministic given the seed and equivariant to node relabelling (the edge
order, which permutations keep, carries the tie-breaking).
"""
import math
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.nn.pool import avg_pool, max_pool
from torch_geometric.nn.pool.consecutive import consecutive_cluster
from torch_geometric.typing import OptTensor
from torch_geometric.utils import scatter

from gdl_pyg.nn._checks import check_index
from gdl_pyg.utils import _eager, check_edge_index

__all__ = ["heavy_edge_matching", "coarsen", "GraclusPooling"]


@_eager
def heavy_edge_matching(edge_index: Tensor, edge_weight: OptTensor = None,
                        num_nodes: Optional[int] = None, seed: int = 0,
                        normalized: bool = False, priority: OptTensor = None) -> Tensor:
    r"""Greedy heavy-edge matching of the nodes of a graph (Graclus/Metis
    style coarsening, see the module docstring for the algorithm).

    Args:
        edge_index (torch.Tensor): edge indices :math:`(2, E)`; the graph is
            treated as undirected, self loops are ignored.
        edge_weight (torch.Tensor, optional): edge weights :math:`(E)`; the
            weight of an undirected edge is the largest of its copies.
            (default: :obj:`None`, all ones: a random maximal matching)
        num_nodes (int, optional): the number of nodes :math:`N`.
        seed (int, optional): seeds the tie-breaking priorities. (default: :obj:`0`)
        normalized (bool, optional): uses Graclus' normalised-cut weights
            :math:`w_{uv}(1/d_u + 1/d_v)` with weighted degrees :math:`d`.
            (default: :obj:`False`)
        priority (torch.Tensor, optional): tie-breaking priorities :math:`(E)`
            (lower first; an undirected edge takes the lowest of its copies).
            (default: :obj:`None`, uniform random numbers drawn per edge
            position from :obj:`seed`: equivariant as long as the edge order
            travels with the graph, as under
            :class:`~gdl_pyg.groups.Permutations`)

    Returns:
        :obj:`cluster` :math:`(N)`: consecutive cluster ids, equal for the two
        ends of each matched edge; unmatched nodes are singletons.
    """
    check_edge_index(edge_index, num_nodes, "heavy_edge_matching")
    if not isinstance(edge_index, Tensor) or edge_index.layout != torch.strided:
        raise TypeError(f"'heavy_edge_matching' expected a dense 'edge_index' [2, num_edges] "
                        f"(got {type(edge_index).__name__} with a sparse layout)")
    if edge_index.dtype != torch.long:  # int32 is accepted, as in PyG
        edge_index = edge_index.long()
    device = edge_index.device
    N = int(edge_index.max()) + 1 if num_nodes is None and edge_index.numel() else (num_nodes or 0)
    E = edge_index.size(1)
    w = torch.ones(E, dtype=torch.float64, device=device) if edge_weight is None \
        else edge_weight.detach().to(torch.float64).view(-1)
    if w.numel() != E:
        raise ValueError(f"Expected one weight per edge ({E}) (got {w.numel()})")
    if normalized:
        deg = scatter(w, edge_index[0], 0, dim_size=N, reduce="sum").clamp_min(1e-300)
        w = w * (1.0 / deg[edge_index[0]] + 1.0 / deg[edge_index[1]])
    if priority is None:
        gen = torch.Generator().manual_seed(seed)
        prio = torch.rand(E, generator=gen, dtype=torch.float64).to(device)
    else:
        prio = priority.detach().to(torch.float64).view(-1)
        if prio.numel() != E:
            raise ValueError(f"Expected one priority per edge ({E}) (got {prio.numel()})")

    u, v = edge_index[0].minimum(edge_index[1]), edge_index[0].maximum(edge_index[1])
    keep = u != v
    u, v, w, prio = u[keep], v[keep], w[keep], prio[keep]
    # one undirected edge per unordered pair: weight max, priority min
    key = u * N + v
    pair, inv = torch.unique(key, return_inverse=True)
    M = pair.numel()
    pw = torch.full((M, ), -float("inf"), dtype=torch.float64, device=device)
    pw = pw.scatter_reduce(0, inv, w, reduce="amax")
    pp = torch.full((M, ), float("inf"), dtype=torch.float64, device=device)
    pp = pp.scatter_reduce(0, inv, prio, reduce="amin")
    pu, pv = pair // max(N, 1), pair % max(N, 1)
    # strict total order of undirected edges: heavier first, then priority
    order = torch.argsort(pp, stable=True)
    order = order[torch.argsort(-pw[order], stable=True)]
    rank = torch.empty(M, dtype=torch.long, device=device)
    rank[order] = torch.arange(M, device=device)
    # note: ranks and priorities are attached to edges, never to node ids

    mate = torch.full((N, ), -1, dtype=torch.long, device=device)
    big = M + 1
    while rank.numel() > 0:  # each round matches at least the best remaining edge
        best = torch.full((N, ), big, dtype=torch.long, device=device)
        best = best.scatter_reduce(0, pu, rank, reduce="amin")
        best = best.scatter_reduce(0, pv, rank, reduce="amin")
        chosen = (best[pu] == rank) & (best[pv] == rank)
        mate[pu[chosen]] = pv[chosen]
        mate[pv[chosen]] = pu[chosen]
        alive = (mate[pu] < 0) & (mate[pv] < 0)
        pu, pv, rank = pu[alive], pv[alive], rank[alive]
    nodes = torch.arange(N, device=device)
    root = torch.where(mate >= 0, torch.minimum(nodes, mate), nodes)
    return consecutive_cluster(root)[0]


@_eager
def coarsen(cluster: Tensor, data: Data, reduce: str = "mean") -> Data:
    r"""Pools a graph :obj:`data` by :obj:`cluster`: node features are averaged
    (:obj:`"mean"`, :func:`~torch_geometric.nn.pool.avg_pool`) or maxed
    (:obj:`"max"`, :func:`~torch_geometric.nn.pool.max_pool`), ``pos`` averaged,
    edges mapped to cluster pairs (self loops removed, duplicates coalesced
    with their ``edge_attr`` summed), ``batch`` kept per cluster."""
    if reduce not in ("mean", "max"):
        raise ValueError(f"'coarsen' expected reduce 'mean' or 'max' (got {reduce!r})")
    if cluster.numel() != data.num_nodes:
        raise ValueError(f"Expected one cluster id per node ({data.num_nodes}) "
                         f"(got {cluster.numel()})")
    fn = avg_pool if reduce == "mean" else max_pool
    out = fn(cluster, data)
    if isinstance(out, Batch):  # keep the input's type for plain Data
        out = Data(**{k: out[k] for k in out.keys()})
    return out


class GraclusPooling(torch.nn.Module):
    r"""Coarsening by greedy heavy-edge matching (:func:`heavy_edge_matching`)
    followed by pooling (:func:`coarsen`): roughly halves the number of nodes,
    like :func:`torch_geometric.nn.pool.graclus` + :func:`~torch_geometric.nn.pool.max_pool`
    from the `"Weighted Graph Cuts without Eigenvectors: A Multilevel Approach"
    <https://ieeexplore.ieee.org/document/4302760>`_ paper, without pyg-lib.
    Permutation equivariant (the pooled graph is relabelled consistently), so
    followed by a global readout it is invariant. Ties of edge weight are
    broken by a fixed random projection of the features of both ends,
    :math:`\mathbf{r}^\top(\mathbf{x}_u + \mathbf{x}_v)`, which does not
    depend on node or edge order (the edge order of a coarsened graph does),
    so stacked levels stay equivariant; nodes with equal features fall back
    to the edge order.

    Args:
        reduce (str, optional): :obj:`"mean"` or :obj:`"max"`. (default: :obj:`"max"`)
        normalized (bool, optional): Graclus' normalised-cut weights.
            (default: :obj:`False`)
        seed (int, optional): tie-breaking seed. (default: :obj:`0`)

    Shapes:
        - **input:** node features :math:`(N, F)`, edge indices :math:`(2, E)`,
          edge weights :math:`(E)` *(optional)*, batch :math:`(N)` *(optional)*
        - **output:** :obj:`(x, edge_index, edge_weight, batch, cluster)` of the
          coarse graph, with :obj:`cluster` :math:`(N)` mapping fine to coarse
          nodes.
    """
    group_name = "Permutations"

    def __init__(self, reduce: str = "max", normalized: bool = False, seed: int = 0):
        super().__init__()
        if reduce not in ("mean", "max"):
            raise ValueError(f"'GraclusPooling' expected reduce 'mean' or 'max' (got {reduce!r})")
        self.reduce = reduce
        self.normalized = normalized
        self.seed = seed

    @_eager
    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: OptTensor = None,
                batch: OptTensor = None
                ) -> Tuple[Tensor, Tensor, OptTensor, OptTensor, Tensor]:
        name = type(self).__name__
        if not isinstance(x, Tensor) or x.dim() < 1:
            got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"'{name}' expected node features 'x' of shape [num_nodes, *] "
                             f"(got {got})")
        N = x.size(0)
        check_edge_index(edge_index, N, name)
        if not isinstance(edge_index, Tensor) or edge_index.layout != torch.strided:
            raise TypeError(f"'{name}' expected a dense 'edge_index' [2, num_edges] (got "
                            f"{type(edge_index).__name__} with a sparse layout)")
        if edge_index.dtype != torch.long:  # int32 is accepted, as in PyG
            edge_index = edge_index.long()
        E = edge_index.size(1)
        if edge_weight is not None and (not isinstance(edge_weight, Tensor)
                                        or edge_weight.shape != (E,)):
            got = list(edge_weight.shape) if isinstance(edge_weight, Tensor) else \
                type(edge_weight).__name__
            raise ValueError(f"'{name}' expected 'edge_weight' of shape [{E}], one entry per "
                             f"edge (got {got})")
        check_index(batch, N, name, "batch")
        gen = torch.Generator().manual_seed(self.seed)
        # the feature width (x[0].numel() fails on a graph without nodes)
        width = math.prod(x.shape[1:])
        r = torch.randn(max(width, 1), generator=gen, dtype=torch.float64)[:width]
        feat = x.detach().reshape(N, width).to(torch.float64) @ r.to(x.device)
        priority = feat[edge_index[0]] + feat[edge_index[1]]
        cluster = heavy_edge_matching(edge_index, edge_weight, x.size(0), self.seed,
                                      self.normalized, priority)
        data = Data(x=x, edge_index=edge_index, num_nodes=x.size(0))
        if edge_weight is not None:
            data.edge_attr = edge_weight
        if batch is not None:
            data.batch = batch
        out = coarsen(cluster, data, self.reduce)
        return out.x, out.edge_index, out.get("edge_attr"), out.get("batch"), cluster

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reduce={self.reduce})"
