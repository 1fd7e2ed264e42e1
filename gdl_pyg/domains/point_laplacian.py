r"""A Laplacian and a mass matrix for point clouds, in the spirit of
`"A Laplacian for Nonmanifold Triangle Meshes"
<https://doi.org/10.1111/cgf.14069>`_ (Sharp and Crane 2020, point-cloud
variant).

Each point :math:`i` projects its :math:`k` nearest neighbours onto its
tangent plane (the plane orthogonal to its normal), triangulates them there
(a planar Delaunay triangulation) and keeps the triangles incident to
itself. The union of these triangles over all points, taken in 3-d with the
original positions, is a *tufted cover*: a (generally non-manifold) triangle
soup in which every triangle occurs up to three times. The cotangent
Laplacian and the lumped (barycentric) mass of that soup, each divided by 3,
are returned, so that a smooth function sees, on average, the surface once.

Degenerate triangles are handled by the intrinsic *mollification* of the
paper: all edge lengths grow by the same small :math:`\delta` until every
triangle inequality holds with a margin :math:`\epsilon \bar{\ell}`.
Unlike the paper, no intrinsic Delaunay edge flips are made, so a few
off-diagonal weights can be positive (the matrix is still positive
semi-definite: it is the Dirichlet energy of a piecewise-linear function).
"""
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from gdl_pyg.domains.mesh import _check_normalized, _check_pos, _to_out, _unit

__all__ = ["point_cloud_laplacian", "tufted_triangles"]


def _pca_normals(P: np.ndarray, nbr: np.ndarray) -> np.ndarray:
    r"""Unoriented PCA normals ``[N, 3]`` from neighbour lists ``nbr [N, k+1]``
    (each point first); the sign does not matter for the Laplacian."""
    Q = P[nbr]  # [N, k+1, 3]
    d = Q - Q.mean(1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", d, d)
    _, vec = np.linalg.eigh(cov)
    return vec[:, :, 0]


def tufted_triangles(pos: Tensor, k: int = 30, normal: Optional[Tensor] = None) -> Tensor:
    r"""The triangles ``[3, T]`` of the tufted cover of a point cloud: for each
    point, the triangles of the planar Delaunay triangulation of itself and
    its :obj:`k` nearest neighbours projected on its tangent plane that
    contain it (the point first, counter-clockwise around the normal).

    Args:
        pos (torch.Tensor): points ``[N, 3]``.
        k (int, optional): neighbours per point. (default: :obj:`30`)
        normal (torch.Tensor, optional): normals ``[N, 3]``; local PCA
            normals otherwise. (default: :obj:`None`)
    """
    P, nbr, n = _prepare(pos, k, normal, "tufted_triangles")
    return torch.from_numpy(_tufted(P, nbr, n).T.copy())


def _prepare(pos: Tensor, k, normal: Optional[Tensor], fn: str):
    from scipy.spatial import cKDTree
    _check_pos(pos, fn)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 3:
        raise ValueError(f"'{fn}' expected 'k' to be an integer >= 3 (got {k!r})")
    N = pos.size(0)
    if N < 4:
        raise ValueError(f"'{fn}' needs at least 4 points (got {N})")
    k = int(min(k, N - 1))
    P = pos.detach().cpu().to(torch.float64).numpy()
    _, nbr = cKDTree(P).query(P, k=k + 1)
    # the query point itself first (duplicates could put another point first)
    self_first = nbr[:, 0] == np.arange(N)
    if not self_first.all():
        for i in np.nonzero(~self_first)[0]:
            row = [i] + [j for j in nbr[i] if j != i][:k]
            nbr[i] = row
    if normal is None:
        n = _pca_normals(P, nbr)
    else:
        if not isinstance(normal, Tensor) or normal.shape != pos.shape:
            shape = list(normal.shape) if isinstance(normal, Tensor) else type(normal).__name__
            raise ValueError(f"Expected 'normal' tensor with shape [{N}, 3] (got {shape})")
        n, ln = _unit(normal.detach().cpu().to(torch.float64).numpy())
        if not np.isfinite(ln).all() or (ln == 0).any():
            raise ValueError(f"'{fn}' received zero, NaN or infinite normals")
    return P, nbr, n


def _tufted(P: np.ndarray, nbr: np.ndarray, n: np.ndarray) -> np.ndarray:
    from scipy.spatial import Delaunay, QhullError
    # tangent bases of every point (any: Delaunay is rotation invariant)
    ref = np.eye(3)[np.argmin(np.abs(n), axis=-1)]
    e1, _ = _unit(ref - (ref * n).sum(-1, keepdims=True) * n)
    e2 = np.cross(n, e1)
    D = P[nbr] - P[:, None, :]  # [N, k+1, 3]
    uv = np.stack([(D * e1[:, None]).sum(-1), (D * e2[:, None]).sum(-1)], -1)
    tris = []
    for i in range(P.shape[0]):
        try:
            simplices = Delaunay(uv[i]).simplices
        except QhullError:  # all neighbours collinear in the tangent plane
            continue
        mine = simplices[(simplices == 0).any(1)]
        if mine.size == 0:
            continue
        # rotate each triangle so the centre comes first, then orient it
        # counter-clockwise in the tangent plane
        r = np.argmax(mine == 0, axis=1)
        idx = (np.arange(3)[None, :] + r[:, None]) % 3
        mine = np.take_along_axis(mine, idx, 1)
        a, b = uv[i][mine[:, 1]], uv[i][mine[:, 2]]
        flip = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0] < 0
        mine[flip] = mine[flip][:, [0, 2, 1]]
        tris.append(nbr[i][mine])
    if not tris:
        raise ValueError("'point_cloud_laplacian' found no triangles: the points are "
                         "collinear")
    return np.concatenate(tris, 0).astype(np.int64)


def _cotan_laplacian(P: np.ndarray, T: np.ndarray, mollify: float):
    r"""Cotangent weights and barycentric mass of the triangle soup ``T
    [F, 3]`` from mollified edge lengths."""
    N = P.shape[0]
    # edge opposite to corner c: between corners c+1 and c+2
    ell = np.stack([np.linalg.norm(P[T[:, (c + 1) % 3]] - P[T[:, (c + 2) % 3]], axis=-1)
                    for c in range(3)], 1)  # [F, 3]
    eps = mollify * ell.mean()
    slack = np.stack([ell[:, (c + 1) % 3] + ell[:, (c + 2) % 3] - ell[:, c]
                      for c in range(3)], 1)
    delta = max(0.0, eps - slack.min())
    ell = ell + delta
    s = ell.sum(1) / 2
    area = np.sqrt(np.maximum(s * (s - ell[:, 0]) * (s - ell[:, 1]) * (s - ell[:, 2]),
                              0.0))
    area = np.maximum(area, 1e-300)
    rows, cols, vals = [], [], []
    sq = ell**2
    for c in range(3):
        a, b = (c + 1) % 3, (c + 2) % 3
        # cot of the angle at corner c: (l_a^2 + l_b^2 - l_c^2) / (4 A)
        cot = (sq[:, a] + sq[:, b] - sq[:, c]) / (4 * area)
        w = 0.5 * cot
        i, j = T[:, a], T[:, b]
        rows += [i, j, i, j]
        cols += [j, i, i, j]
        vals += [-w, -w, w, w]
    import scipy.sparse as sp
    L = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(N, N)).tocsr()
    L.sum_duplicates()
    mass = np.bincount(T.reshape(-1), np.repeat(area / 3, 3), minlength=N)
    return L, mass


def point_cloud_laplacian(pos: Tensor, k: int = 30, normal: Optional[Tensor] = None,
                          mollify: float = 1e-5) -> Tuple[Tensor, Tensor, Tensor]:
    r"""The Laplacian :math:`L` and lumped mass :math:`M` of a point cloud
    from the tufted cover of its local tangent-plane Delaunay triangulations
    (see the module docstring), with the conventions of
    :func:`gdl_pyg.domains.mesh_to_data` (positive semi-definite, diagonal
    included):

    .. math::
        L = \frac{1}{3} \sum_{t \in \mathcal{T}} L_t, \qquad
        M_{ii} = \frac{1}{3} \sum_{t \ni i} \frac{A_t}{3},

    where :math:`\mathcal{T}` collects, for every point :math:`i`, the
    triangles around :math:`i` of the Delaunay triangulation of its
    :math:`k` nearest neighbours projected on its tangent plane, and
    :math:`L_t` is the cotangent Laplacian of triangle :math:`t`,
    :math:`(L_t)_{ij} = -\tfrac{1}{2}\cot\theta_{ij}`.

    Args:
        pos (torch.Tensor): points ``[N, 3]`` of one cloud.
        k (int, optional): neighbours per point. (default: :obj:`30`)
        normal (torch.Tensor, optional): normals ``[N, 3]`` (only the tangent
            planes matter, not the sign); local PCA normals otherwise.
            (default: :obj:`None`)
        mollify (float, optional): mollification :math:`\epsilon`, relative
            to the mean edge length. (default: :obj:`1e-5`)

    Returns:
        ``(laplacian_index [2, nnz], laplacian_weight [nnz], mass [N])``,
        coalesced (sorted by row then column), in the dtype and on the
        device of :obj:`pos`.
    """
    fn = "point_cloud_laplacian"
    P, nbr, n = _prepare(pos, k, normal, fn)
    if not isinstance(mollify, (int, float)) or not mollify >= 0:
        raise ValueError(f"'{fn}' expected a non-negative 'mollify' (got {mollify!r})")
    T = _tufted(P, nbr, n)
    L, mass = _cotan_laplacian(P, T, float(mollify))
    L = (L / 3.0).tocoo()
    mass = mass / 3.0
    # isolated points (in no triangle) get a tiny mass, relative to the largest, so M
    # stays invertible at any scale
    if (mass <= 0).any():
        mass = np.where(mass > 0, mass, mass.max() * 1e-12 if mass.max() > 0 else 1.0)
    order = np.lexsort((L.col, L.row))
    index = np.stack([L.row[order], L.col[order]]).astype(np.int64)
    # checked after the cast to the dtype of pos (see mesh_to_data)
    _check_normalized(fn, L.data[order], mass, pos.dtype, index[0])
    return (torch.from_numpy(index).to(pos.device),
            _to_out(L.data[order], pos, fn, "laplacian_weight"),
            _to_out(mass, pos, fn, "mass", positive=True))
