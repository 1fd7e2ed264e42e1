r"""The :class:`MeshHierarchy` transform: coarser levels of a mesh for the
pooling of gauge equivariant mesh CNNs (`"Gauge Equivariant Mesh CNNs"
<https://arxiv.org/abs/2003.05425>`_), computed once as a pre-transform.

Level :math:`0` is the mesh graph written by
:func:`gdl_pyg.domains.mesh_to_data` (``edge_index``, ``edge_logmap``,
``edge_connection``). Level :math:`l \geq 1` is made from level :math:`l-1`:

* ``pool_index_l [N_l]``: the level-:math:`(l-1)` vertices kept as the coarse
  vertices (farthest point sampling), in increasing order; coarse vertex
  :math:`k` keeps the tangent frame of vertex ``pool_index_l[k]``;
* ``pool_cluster_l [N_{l-1}]``: the coarse vertex nearest to every
  level-:math:`(l-1)` vertex along the graph (Dijkstra);
* ``pool_transport_l [N_{l-1}]``: the angle of parallel transport from every
  vertex to its coarse parent along the shortest path (the sum of the
  connection angles along it): a tangent vector at angle :math:`\alpha` in
  the frame of :math:`v` has angle :math:`\alpha + t_v` in the frame of its
  parent;
* ``edge_index_l [2, E_l]``, ``edge_logmap_l [E_l, 2]``,
  ``edge_connection_l [E_l]``: the coarse graph (two coarse vertices are
  neighbours when their clusters touch) with the conventions of the mesh
  (``edge_index_l[0] = j`` the source, ``[1] = i`` the target, :math:`(r,
  \phi)` of :math:`j` in the tangent plane of :math:`i` by the discrete
  exponential map along the shortest path, and the connection :math:`c_{ji}`
  along it), so that :class:`~gdl_pyg.nn.conv.GEMConv` runs on every level;
* ``num_nodes_l`` (int) and ``batch_l [N_l]`` (zeros; the graph index of
  every coarse vertex after batching), plus ``pos_l`` and ``frame_l`` where
  the mesh has ``pos`` and ``frame``.

The result is a :class:`MeshHierarchyData`, whose ``__inc__`` shifts every
level's indices by that level's number of vertices, so
:class:`~torch_geometric.data.Batch` concatenates hierarchies correctly.
"""
import math
import re
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from gdl_pyg.domains.mesh import _lookup, _tie_free_predecessor, _wrap
from gdl_pyg.utils import check_edge_index

__all__ = ["MeshHierarchy", "MeshHierarchyData"]

_LEVEL_KEY = re.compile(r"^(edge_index|pool_cluster|pool_index)_(\d+)$")
_LEVEL_ANY = re.compile(r"^(edge_index|edge_logmap|edge_connection|pool_cluster|pool_index|"
                        r"pool_transport|num_nodes|batch|pos|frame)_(\d+)$")
_RTOL = 1e-9  # relative tolerance under which distances count as ties


class MeshHierarchyData(Data):
    r"""A mesh :class:`~torch_geometric.data.Data` with the levels written by
    :class:`MeshHierarchy`. When batched, ``edge_index_l`` and
    ``pool_cluster_l`` are shifted by the number of level-:math:`l` vertices
    (``num_nodes_l``) and ``pool_index_l`` by the number of
    level-:math:`(l-1)` vertices of the preceding graphs."""

    def __inc__(self, key: str, value, *args, **kwargs):
        m = _LEVEL_KEY.match(key)
        if m is not None:
            kind, level = m.group(1), int(m.group(2))
            if kind == "pool_index":
                return self.num_nodes if level == 1 else int(self[f"num_nodes_{level - 1}"])
            return int(self[f"num_nodes_{level}"])
        return super().__inc__(key, value, *args, **kwargs)


# --------------------------------------------------------------------------
# one coarsening step, in numpy float64
# --------------------------------------------------------------------------
def _graph(N: int, src: np.ndarray, dst: np.ndarray, r: np.ndarray):
    r"""Sorts the edges by target then source and symmetrises the lengths
    (the Dijkstra weights): ``(order, ptr, w, G)``."""
    import scipy.sparse as sp
    order = np.lexsort((src, dst))
    src, dst, r = src[order], dst[order], r[order]
    key = dst * N + src
    rev = _lookup(key, src * N + dst)
    w = np.where(rev >= 0, 0.5 * (r + r[np.maximum(rev, 0)]), r)
    w = np.maximum(w, 1e-12 * max(float(w.max(initial=0.0)), 1e-300))  # no zero weights
    ptr = np.searchsorted(dst, np.arange(N + 1))
    # G[a, b] = length of the edge b -> a: Dijkstra from s walks the in-edges
    G = sp.csr_matrix((w, (dst, src)), shape=(N, N))
    return order, ptr, w, G


def _argmax_tie(values: np.ndarray, rtol: float = _RTOL) -> int:
    r"""The lowest index among the (near) maximisers: deterministic and
    independent of round-off."""
    m = values.max()
    if not math.isfinite(m):
        return int(np.nonzero(values == m)[0][0])
    return int(np.nonzero(values >= m - rtol * max(abs(m), 1e-300))[0][0])


def _fps(N: int, G, P: Optional[np.ndarray], k: int, sampling: str,
         rtol: float = _RTOL) -> np.ndarray:
    r"""Farthest point sampling of ``k`` vertices, started at the vertex
    farthest from the centroid (or vertex 0 without positions), geodesic
    (Dijkstra) or Euclidean distances."""
    from scipy.sparse.csgraph import dijkstra
    start = 0 if P is None else _argmax_tie(((P - P.mean(0)) ** 2).sum(-1), rtol)
    chosen = [start]
    if sampling == "geodesic":
        dist = dijkstra(G, directed=True, indices=start)
    else:
        dist = np.sqrt(((P - P[start]) ** 2).sum(-1))
    dist[start] = -1.0
    for _ in range(1, k):
        nxt = _argmax_tie(dist, rtol)
        chosen.append(nxt)
        if sampling == "geodesic":
            lim = dist[nxt]
            d = dijkstra(G, directed=True, indices=nxt, limit=lim if math.isfinite(lim)
                         else np.inf)
        else:
            d = np.sqrt(((P - P[nxt]) ** 2).sum(-1))
        dist = np.minimum(dist, d)
        dist[nxt] = -1.0
    return np.sort(np.asarray(chosen, dtype=np.int64))


def _exp_map_trees(N, src, dst, ptr, w, r, phi, conn, G, sources, limit,
                   chunk_entries: int = 4_000_000, rtol: float = _RTOL):
    r"""Shortest-path trees from ``sources`` (up to ``limit``), with per
    reached vertex ``j`` of source ``s``: the distance, the discrete
    exponential-map vector of ``j`` in ``s``'s frame (complex) and the
    transport angle from ``j`` to ``s`` (sum of connections along the path).
    Edges are sorted by target; ``(s, j)`` pairs are returned sorted."""
    from scipy.sparse.csgraph import dijkstra
    ekey = dst * N + src
    chunk = max(1, chunk_entries // max(N, 1))
    out = [[], [], [], [], []]
    for lo in range(0, sources.size, chunk):
        S = sources[lo:lo + chunk]
        dist = dijkstra(G, directed=True, indices=S, limit=limit)
        ss, jj = np.nonzero(np.isfinite(dist))
        s = S[ss]
        d = dist[ss, jj]
        self_ = jj == s
        p = np.full(s.size, -1, dtype=np.int64)
        nz = ~self_
        p[nz] = _tie_free_predecessor(dist, ss[nz], s[nz], jj[nz], src, ptr, w, rtol=rtol)
        pkey = ss * N + jj  # sorted (row-major nonzero)
        parent = _lookup(pkey, ss * N + np.maximum(p, 0))
        vec = np.zeros(s.size, dtype=np.complex128)
        tra = np.zeros(s.size)
        done = self_.copy()
        while not done.all():
            todo = np.nonzero(~done & done[np.maximum(parent, 0)] & (parent >= 0))[0]
            if todo.size == 0:  # cannot happen on a shortest-path tree
                raise RuntimeError("Inconsistent Dijkstra predecessor tree")
            par = parent[todo]
            e = _lookup(ekey, p[todo] * N + jj[todo])  # edge j -> p: j in p's frame
            vec[todo] = vec[par] + r[e] * np.exp(1j * (phi[e] + tra[par]))
            tra[todo] = tra[par] + conn[e]
            done[todo] = True
        for lst, val in zip(out, (s, jj, d, vec, tra)):
            lst.append(val)
    s, jj, d, vec, tra = (np.concatenate(v) for v in out)
    order = np.lexsort((jj, s))
    return s[order], jj[order], d[order], vec[order], tra[order]


def _coarsen(N, src, dst, r, phi, conn, P, ratio, sampling, rtol: float = _RTOL):
    r"""One level: ``(index, cluster, transport, (src, dst, r, phi, conn) of
    the coarse graph)``."""
    from scipy.sparse.csgraph import connected_components, dijkstra
    order, ptr, w, G = _graph(N, src, dst, r)
    src, dst, r, phi, conn = src[order], dst[order], r[order], phi[order], conn[order]
    n_comp = connected_components(G, directed=False)[0]
    k = min(N, max(int(math.ceil(ratio * N)), n_comp))
    index = _fps(N, G, P, k, sampling, rtol)
    # covering radius, then trees out to the farthest possible touching cluster
    D = dijkstra(G, directed=True, indices=index, min_only=True)
    if not np.isfinite(D).all():  # every component holds a coarse vertex
        raise RuntimeError("Farthest point sampling left a component without a coarse vertex")
    limit = (2.0 * float(D.max()) + float(w.max())) * (1 + 1e-6) + 1e-12
    s, j, d, vec, tra = _exp_map_trees(N, src, dst, ptr, w, r, phi, conn, G, index, limit,
                                       rtol=rtol)
    # nearest coarse vertex, ties to the lowest index
    best = np.full(N, np.inf)
    np.minimum.at(best, j, d)
    ok = d <= best[j] * (1 + rtol) + 1e-300
    coarse_of = np.full(N, -1, dtype=np.int64)
    coarse_of[index] = np.arange(k)
    pick = np.full(N, np.iinfo(np.int64).max)
    np.minimum.at(pick, j[ok], coarse_of[s[ok]])
    cluster = pick
    pair = _lookup(s * N + j, index[cluster] * N + np.arange(N))
    transport = tra[pair]
    # coarse graph: clusters that touch
    a, b = cluster[src], cluster[dst]
    cross = a != b
    ckey = np.unique(b[cross] * k + a[cross])  # target-major
    cj, ci = ckey % k, ckey // k  # source j, target i (coarse indices)
    e = _lookup(s * N + j, index[ci] * N + index[cj])
    if (e < 0).any():
        raise RuntimeError("A touching cluster lies beyond the search radius")
    v = vec[e]
    coarse = (cj, ci, np.abs(v), np.angle(v), _wrap(tra[e].copy()))
    return index, cluster, _wrap(transport.copy()), coarse


class MeshHierarchy(BaseTransform):
    r"""Builds coarser levels of a mesh for pooling in gauge equivariant mesh
    CNNs (`"Gauge Equivariant Mesh CNNs" <https://arxiv.org/abs/2003.05425>`_,
    sec. 5): at every level a fraction :obj:`ratios[l]` of the vertices is
    kept by farthest point sampling, every vertex joins the cluster of its
    nearest kept vertex :math:`p(v)` along the graph, and the coarse graph
    links clusters that touch. The transport to the parent and the coarse
    geometry follow the shortest paths :math:`v = u_0, u_1, \dots, u_m = p(v)`:

    .. math::
        t_v = \sum_{k=0}^{m-1} c_{u_k u_{k+1}}, \qquad
        \mathbf{log}_{i}(j) = \sum_{k} e^{\mathrm{i}\,\tau_{k}}\,
        r_{u_{k+1} u_k}\, e^{\mathrm{i}\,\phi_{u_{k+1} u_k}},

    (the discrete exponential map of Schmidt et al. 2006: the edge vectors
    along the path from :math:`i` to :math:`j`, each transported to
    :math:`i` by the accumulated connection :math:`\tau_k`). Under a gauge
    change :math:`\theta` of the fine frames (coarse vertices keep the frames
    of the vertices they were chosen from) these transform as
    :math:`t_v' = t_v + \theta_v - \theta_{p(v)}`,
    :math:`\phi' = \phi - \theta_i`, :math:`c_{ji}' = c_{ji} + \theta_j -
    \theta_i`; the choice of the coarse vertices, the clusters and the
    lengths depend on edge lengths only (and the start vertex of the
    sampling on the distance to the centroid), so the hierarchy is invariant
    under rigid motions and, up to ties, under relabelling of the vertices.
    Equal distances are broken by the lowest index. See the module
    :mod:`gdl_pyg.transforms.mesh_hierarchy` for the attributes it writes.

    Use it after :class:`~gdl_pyg.transforms.MeshGeometry`, as a
    ``pre_transform``: ``Compose([MeshGeometry(), MeshHierarchy()])``.

    Args:
        ratios (sequence of float, optional): the fraction of vertices kept
            at every level. (default: :obj:`(0.25, 0.25)`)
        sampling (str, optional): distances of the farthest point sampling,
            ``"geodesic"`` (Dijkstra along edges) or ``"euclidean"`` (of
            ``pos``). (default: :obj:`"geodesic"`)
    """

    def __init__(self, ratios: Sequence[float] = (0.25, 0.25), sampling: str = "geodesic"):
        if isinstance(ratios, (int, float)):
            ratios = (ratios,)
        ratios = tuple(ratios)
        if len(ratios) == 0 or not all(isinstance(q, (int, float)) and not isinstance(q, bool)
                                       and 0.0 < q <= 1.0 for q in ratios):
            raise ValueError(f"'MeshHierarchy' expected a non-empty sequence of ratios in "
                             f"(0, 1] (got {ratios!r})")
        if sampling not in ("geodesic", "euclidean"):
            raise ValueError(f"'MeshHierarchy' expected sampling 'geodesic' or 'euclidean' "
                             f"(got {sampling!r})")
        self.ratios = tuple(float(q) for q in ratios)
        self.sampling = sampling

    def forward(self, data: Data) -> MeshHierarchyData:
        name = type(self).__name__
        missing = [k for k in ("edge_index", "edge_logmap", "edge_connection")
                   if data.get(k) is None]
        if missing:
            raise ValueError(f"'{name}' expected a mesh 'Data' with the geometry of "
                             f"'mesh_to_data' (missing {missing}); apply 'MeshGeometry' first")
        if data.get("batch") is not None:
            raise ValueError(f"'{name}' works on one mesh at a time (got a batch); apply it "
                             f"before batching, e.g. as a pre_transform")
        if self.sampling == "euclidean" and data.get("pos") is None:
            raise ValueError(f"'{name}' with sampling='euclidean' needs 'pos'")
        out = MeshHierarchyData()
        for key, value in data:
            if _LEVEL_ANY.match(key) is None:  # drop the levels of an earlier run
                out[key] = value
        like = data.edge_logmap
        N = data.num_nodes
        check_edge_index(data.edge_index, N, name)
        E = data.edge_index.size(1)
        for key, width in (("edge_logmap", (E, 2)), ("edge_connection", (E,))):
            if tuple(data[key].shape) != width:
                raise ValueError(f"'{name}' expected '{key}' of shape {list(width)}, one row "
                                 f"per edge (got {list(data[key].shape)})")
        src, dst = (t.detach().cpu().numpy().astype(np.int64) for t in data.edge_index)
        lm = data.edge_logmap.detach().cpu().to(torch.float64).numpy()
        r, phi = lm[:, 0], lm[:, 1]
        conn = data.edge_connection.detach().cpu().to(torch.float64).numpy()
        pos = data.get("pos")
        frame = data.get("frame")
        P = None if pos is None else pos.detach().cpu().to(torch.float64).numpy()
        dev = like.device
        # ties (symmetric meshes have many) are broken by index below the round-off of
        # the dtype the geometry came in, so a rotated float32 copy gets the same levels
        rtol = max(_RTOL, 100 * torch.finfo(like.dtype).eps) if like.is_floating_point() \
            else _RTOL

        def long(x: np.ndarray) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64)).to(dev)

        def real(x: np.ndarray) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(x)).to(dtype=like.dtype, device=dev)

        for level, ratio in enumerate(self.ratios, start=1):
            index, cluster, transport, (src, dst, r, phi, conn) = _coarsen(
                N, src, dst, r, phi, conn, P, ratio, self.sampling, rtol)
            k = index.size
            out[f"pool_index_{level}"] = long(index)
            out[f"pool_cluster_{level}"] = long(cluster)
            out[f"pool_transport_{level}"] = real(transport)
            out[f"edge_index_{level}"] = long(np.stack([src, dst]).reshape(2, -1))
            out[f"edge_logmap_{level}"] = real(np.stack([r, phi], -1).reshape(-1, 2))
            out[f"edge_connection_{level}"] = real(conn)
            out[f"num_nodes_{level}"] = int(k)
            out[f"batch_{level}"] = torch.zeros(k, dtype=torch.long, device=dev)
            if pos is not None:
                pos = pos[long(index)]
                out[f"pos_{level}"] = pos
                P = P[index]
            if frame is not None:
                frame = frame[long(index)]
                out[f"frame_{level}"] = frame
            N = k
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(ratios={self.ratios})"
