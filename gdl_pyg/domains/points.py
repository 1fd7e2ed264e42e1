r"""Point clouds as graphs with the tangent-plane geometry of meshes.

:func:`points_to_data` builds a :math:`k`-NN or radius graph on a point cloud
and attaches the attributes :func:`gdl_pyg.domains.mesh_to_data` produces for
meshes (``normal``, ``frame``, ``edge_logmap``, ``edge_connection``), with the
same conventions, so intrinsic and gauge equivariant mesh layers run on point
clouds unchanged and :class:`gdl_pyg.groups.GaugeGroup` acts on the result.
"""
import math
from typing import Optional

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

from gdl_pyg.domains.mesh import (_check_pos, _edge_blocks, _extrinsic_edges, _tangent_frame,
                                  _to_out, _unit)

__all__ = ["points_to_data", "estimate_normals"]


def _check_int(value, name: str, fn: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"'{fn}' expected '{name}' to be an integer >= {minimum} "
                         f"(got {value!r})")
    return int(value)


def _check_batch(batch: Optional[Tensor], N: int, fn: str) -> Optional[Tensor]:
    if batch is None:
        return None
    if not isinstance(batch, Tensor) or batch.dim() != 1 or batch.numel() != N:
        shape = list(batch.shape) if isinstance(batch, Tensor) else type(batch).__name__
        raise ValueError(f"'{fn}' expected 'batch' of shape [{N}] (got {shape})")
    if N > 1 and bool((batch[1:] < batch[:-1]).any()):
        raise ValueError(f"'{fn}' expected a sorted 'batch' vector")
    return batch


def _orient(P: np.ndarray, n: np.ndarray, nbr_src: np.ndarray, nbr_dst: np.ndarray,
            graph_id: np.ndarray, how: Optional[str]) -> np.ndarray:
    if how is None:
        return n
    N = P.shape[0]
    G = int(graph_id.max()) + 1
    cnt = np.bincount(graph_id, minlength=G).astype(np.float64)
    centroid = np.stack([np.bincount(graph_id, P[:, k], minlength=G) for k in range(3)],
                        axis=-1) / cnt[:, None]
    outward = P - centroid[graph_id]
    if how == "centroid":
        sign = np.where((n * outward).sum(-1) < 0, -1.0, 1.0)
        return n * sign[:, None]
    # "mst" (Hoppe et al. 1992): propagate along the minimum spanning tree of
    # the symmetrised neighbour graph weighted by 1 - |n_i . n_j|, from the
    # point farthest from its graph's centroid, oriented outward.
    import scipy.sparse as sp
    from scipy.sparse.csgraph import breadth_first_order, connected_components, \
        minimum_spanning_tree
    w = 1.0 - np.abs((n[nbr_src] * n[nbr_dst]).sum(-1)) + 1e-9
    A = sp.coo_matrix((w, (nbr_src, nbr_dst)), shape=(N, N)).tocsr()
    A = A.maximum(A.T)
    T = minimum_spanning_tree(A)
    T = T + T.T
    ncomp, label = connected_components(T, directed=False)
    dist = np.linalg.norm(outward, axis=-1)
    sign = np.ones(N)
    order_all = np.lexsort((-dist, label))
    first = np.ones(N, bool)
    first[1:] = label[order_all][1:] != label[order_all][:-1]
    for seed in order_all[first]:
        order, pred = breadth_first_order(T, int(seed), directed=False,
                                          return_predecessors=True)
        sign[seed] = -1.0 if float(n[seed] @ outward[seed]) < 0 else 1.0
        rel = np.sign((n[order[1:]] * n[pred[order[1:]]]).sum(-1))
        rel[rel == 0] = 1.0
        sgn = sign.tolist()
        for v, p, s in zip(order[1:].tolist(), pred[order[1:]].tolist(), rel.tolist()):
            sgn[v] = sgn[p] * s
        sign = np.asarray(sgn)
    return n * sign[:, None]


def estimate_normals(pos: Tensor, k: int = 16, batch: Optional[Tensor] = None,
                     orientation: Optional[str] = "mst") -> Tensor:
    r"""Unit normals of a point cloud by local PCA (`Hoppe et al. 1992
    <https://doi.org/10.1145/133994.134011>`_): the eigenvector of the
    smallest eigenvalue of the covariance of each point's :obj:`k` nearest
    neighbours and itself,

    .. math::
        C_i = \sum_{j \in \mathcal{N}(i) \cup \{i\}}
            (\mathbf{x}_j - \bar{\mathbf{x}}_i)(\mathbf{x}_j - \bar{\mathbf{x}}_i)^\top.

    Args:
        pos (torch.Tensor): points ``[N, 3]``.
        k (int, optional): neighbours per point. (default: :obj:`16`)
        batch (torch.Tensor, optional): sorted batch vector ``[N]``.
            (default: :obj:`None`)
        orientation (str, optional): ``"mst"`` propagates a consistent sign
            along a minimum spanning tree of the :math:`k`-NN graph (weights
            :math:`1 - |n_i \cdot n_j|`), starting outward at the point
            farthest from the centroid; ``"centroid"`` points every normal away
            from the centroid (right for star-shaped shapes); :obj:`None` keeps
            the arbitrary PCA sign. Both choices commute with rigid motions.
            (default: :obj:`"mst"`)
    """
    _check_pos(pos, "estimate_normals")
    k = _check_int(k, "k", "estimate_normals", 2)
    batch = _check_batch(batch, pos.size(0), "estimate_normals")
    n, _, _ = _estimate_normals(pos, k, batch, orientation)
    return _to_out(n, pos)


def _rank_in_target(dst: np.ndarray) -> np.ndarray:
    r"""Position of each edge among the edges of its target (edges grouped by
    target, as the k-NN search returns them: nearest first)."""
    if dst.size == 0:
        return np.zeros(0, dtype=np.int64)
    start = np.ones(dst.size, bool)
    start[1:] = dst[1:] != dst[:-1]
    first = np.maximum.accumulate(np.where(start, np.arange(dst.size), 0))
    return np.arange(dst.size) - first


def _estimate_normals(pos: Tensor, k: int, batch: Optional[Tensor], orientation,
                      edge_index: Optional[np.ndarray] = None):
    r"""PCA normals; ``edge_index`` (a k-NN graph with at least :obj:`k`
    neighbours per point, nearest first) is reused when given."""
    from gdl_pyg.ops import knn_graph
    if orientation not in ("mst", "centroid", None):
        raise ValueError(f"Expected orientation 'mst', 'centroid' or None (got {orientation!r})")
    P = pos.detach().cpu().to(torch.float64).numpy()
    N = P.shape[0]
    if edge_index is None:
        ei = knn_graph(pos.detach().to(torch.float64), k, batch, loop=False).cpu().numpy()
    else:
        ei = edge_index[:, _rank_in_target(edge_index[1]) < k]
    src = np.concatenate([ei[0], np.arange(N)])
    dst = np.concatenate([ei[1], np.arange(N)])
    cnt = np.bincount(dst, minlength=N).astype(np.float64)
    if (cnt < 3).any():
        raise ValueError(f"'points_to_data' needs at least 3 points per cloud to estimate "
                         f"normals (a cloud has {int(cnt.min())})")
    mean = np.stack([np.bincount(dst, P[src, c], minlength=N) for c in range(3)], -1) \
        / cnt[:, None]
    d = P[src] - mean[dst]
    cov = np.zeros((N, 3, 3))
    np.add.at(cov, dst, d[:, :, None] * d[:, None, :])
    _, vec = np.linalg.eigh(cov)
    n = vec[:, :, 0]
    gid = np.zeros(N, dtype=np.int64) if batch is None else batch.cpu().numpy()
    n = _orient(P, n, ei[0], ei[1], gid, orientation)
    return n, ei, gid


def points_to_data(pos: Tensor, k: Optional[int] = None, r: Optional[float] = None,
                   normal: Optional[Tensor] = None, batch: Optional[Tensor] = None,
                   max_num_neighbors: int = 32, normal_k: int = 16,
                   orientation: Optional[str] = "mst") -> Data:
    r"""Converts a point cloud into a :class:`~torch_geometric.data.Data` with
    a neighbourhood graph and the tangent-plane geometry of
    :func:`gdl_pyg.domains.mesh_to_data`.

    Edges ``j -> i`` (``edge_index[0] = j``, ``edge_index[1] = i``) join each
    point :math:`i` to its :obj:`k` nearest neighbours
    (:func:`gdl_pyg.ops.knn_graph`) or to all points within distance
    :obj:`r` (:func:`gdl_pyg.ops.radius_graph`). Normals are given or
    estimated by local PCA (:func:`estimate_normals`). With :math:`e_1` the
    direction to the nearest graph neighbour projected onto the tangent plane
    and :math:`e_2 = n \times e_1` (both commute with rigid motions):

    .. math::
        r_{ij} = \lVert \mathbf{x}_j - \mathbf{x}_i \rVert, \qquad
        \phi_i(j) = \operatorname{atan2}\bigl(\langle \mathbf{x}_j -
        \mathbf{x}_i, e_{2,i}\rangle, \langle \mathbf{x}_j - \mathbf{x}_i,
        e_{1,i}\rangle\bigr),

    (the log map to first order: the chord length stands for the geodesic
    distance, and angles are not rescaled since a point has no 1-ring), and
    :math:`c_{ji}` is the angle in :math:`i`'s frame of :math:`e_{1,j}` rotated
    by the minimal rotation taking :math:`n_j` to :math:`n_i` (the discrete
    Levi-Civita connection of GEM-CNN's point-cloud variant).

    Args:
        pos (torch.Tensor): points ``[N, 3]``.
        k (int, optional): neighbours per point (give :obj:`k` or :obj:`r`).
        r (float, optional): neighbourhood radius (give :obj:`k` or :obj:`r`).
        normal (torch.Tensor, optional): known normals ``[N, 3]`` (normalised
            here); estimated when :obj:`None`. (default: :obj:`None`)
        batch (torch.Tensor, optional): sorted batch vector ``[N]`` for several
            clouds at once. (default: :obj:`None`)
        max_num_neighbors (int, optional): cap of the radius graph.
            (default: :obj:`32`)
        normal_k (int, optional): neighbours for the PCA normals.
            (default: :obj:`16`)
        orientation (str, optional): normal orientation, see
            :func:`estimate_normals`. (default: :obj:`"mst"`)

    Shapes:
        - **input:** ``pos [N, 3]``, ``normal [N, 3]``, ``batch [N]``
        - **output:** a ``Data`` with ``pos [N, 3]``, ``normal [N, 3]``,
          ``frame [N, 2, 3]``, ``edge_index [2, E]``, ``edge_logmap [E, 2]``,
          ``edge_connection [E]`` (and ``batch [N]``).
    """
    fn = "points_to_data"
    _check_pos(pos, fn)
    N = pos.size(0)
    if (k is None) == (r is None):
        raise ValueError(f"'{fn}' expected exactly one of 'k' (k-NN graph) or 'r' (radius "
                         f"graph) (got k={k!r}, r={r!r})")
    batch = _check_batch(batch, N, fn)
    from gdl_pyg.ops import knn_graph, radius_graph
    pos64 = pos.detach().to(torch.float64)
    knn_edges = None
    if k is not None:
        k = _check_int(k, "k", fn)
        K = k if normal is not None else max(k, _check_int(normal_k, "normal_k", fn, 2))
        knn_edges = knn_graph(pos64, K, batch, loop=False)
        edge_index = knn_edges[:, torch.from_numpy(
            _rank_in_target(knn_edges[1].cpu().numpy()) < k).to(knn_edges.device)]
    else:
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not (r > 0) \
                or not math.isfinite(r):
            raise ValueError(f"'{fn}' expected a positive, finite radius 'r' (got {r!r})")
        edge_index = radius_graph(pos64, float(r), batch, loop=False,
                                  max_num_neighbors=max_num_neighbors)
    P = pos64.cpu().numpy()
    if normal is None:
        normal_k = _check_int(normal_k, "normal_k", fn, 2)
        n, _, _ = _estimate_normals(
            pos, normal_k, batch, orientation,
            None if knn_edges is None else knn_edges.cpu().numpy())
    else:
        if not isinstance(normal, Tensor) or normal.shape != pos.shape:
            shape = list(normal.shape) if isinstance(normal, Tensor) else type(normal).__name__
            raise ValueError(f"Expected 'normal' tensor with shape [{N}, 3] (got {shape})")
        n, ln = _unit(normal.detach().cpu().to(torch.float64).numpy())
        if not np.isfinite(ln).all() or (ln == 0).any():
            raise ValueError(f"'{fn}' received zero, NaN or infinite normals")
    ei = edge_index.cpu().numpy()
    src, dst = ei
    dist = np.empty(src.size)
    for block, bs, bd in _edge_blocks(src, dst):
        dist[block] = np.linalg.norm(P[bs] - P[bd], axis=-1)
    # reference neighbour: the nearest one (ties by lower index)
    ref = np.arange(N)
    if src.size:
        o = np.lexsort((src, dist, dst))
        first = np.ones(o.size, bool)
        first[1:] = dst[o][1:] != dst[o][:-1]
        ref[dst[o][first]] = src[o][first]
    frame = _tangent_frame(n, P[ref] - P)
    phi, conn = _extrinsic_edges(P, n, frame, src, dst)
    # checked after the cast to the dtype of pos (see mesh_to_data)
    data = Data(pos=pos, normal=_to_out(n, pos, fn, "normal"),
                frame=_to_out(frame, pos, fn, "frame"),
                edge_index=edge_index.to(pos.device),
                edge_logmap=_to_out(np.stack([dist, phi], axis=-1).reshape(-1, 2), pos, fn,
                                    "edge_logmap", positive=True),
                edge_connection=_to_out(conn, pos, fn, "edge_connection"))
    if batch is not None:
        data.batch = batch
    return data
