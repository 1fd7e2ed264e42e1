r"""A frozen copy of ``gdl_pyg/domains/mesh.py`` as of commit b0c6225 (before
the linear-time rewrite of ``mesh_to_data``): the expected values of
``tests/domains/test_mesh.py::test_matches_reference_implementation``.
Not collected by pytest (no ``test_`` prefix); do not edit."""
import math
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

__all__ = ["mesh_to_data", "laplacian_matrix"]

_TWO_PI = 2.0 * math.pi


# --------------------------------------------------------------------------
# validation and conversion
# --------------------------------------------------------------------------
def _check_pos(pos: Tensor, fn: str) -> None:
    if not isinstance(pos, Tensor):
        raise TypeError(f"'{fn}' expected 'pos' to be a torch.Tensor (got {type(pos).__name__})")
    if pos.dim() != 2 or pos.size(1) != 3:
        raise ValueError(f"Expected 'pos' tensor with shape [num_nodes, 3] "
                         f"(got {list(pos.shape)})")
    if not pos.is_floating_point():
        raise TypeError(f"'{fn}' expected a floating-point 'pos' (got {pos.dtype})")
    if pos.size(0) == 0:
        raise ValueError(f"'{fn}' received an empty 'pos' (no vertices)")
    if not bool(torch.isfinite(pos).all()):
        raise ValueError(f"'{fn}' received a 'pos' with NaN or infinite values")


def _check_face(face: Tensor, num_nodes: int) -> None:
    if not isinstance(face, Tensor):
        raise TypeError(f"'mesh_to_data' expected 'face' to be a torch.Tensor "
                        f"(got {type(face).__name__})")
    if face.dim() != 2 or face.size(0) != 3:
        raise ValueError(f"Expected 'face' tensor with shape [3, num_faces] "
                         f"(got {list(face.shape)})")
    if face.is_floating_point() or face.is_complex() or face.dtype == torch.bool:
        raise TypeError(f"Expected an integer 'face' tensor (got {face.dtype})")
    if face.size(1) == 0:
        raise ValueError("'mesh_to_data' received an empty mesh (no faces)")
    lo, hi = int(face.min()), int(face.max())
    if lo < 0 or hi >= num_nodes:
        raise ValueError(f"Expected 'face' indices in [0, {num_nodes - 1}] for {num_nodes} "
                         f"vertices (got values in [{lo}, {hi}])")


def _to_out(x: np.ndarray, like: Tensor) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(dtype=like.dtype, device=like.device)


def _wrap(angle: np.ndarray) -> np.ndarray:
    r"""Wraps angles to :math:`(-\pi, \pi]`."""
    out = np.remainder(angle + math.pi, _TWO_PI) - math.pi
    out[out == -math.pi] = math.pi
    return out


def _unit(v: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    n = np.linalg.norm(v, axis=-1)
    return v / np.maximum(n, 1e-300)[..., None], n


# --------------------------------------------------------------------------
# shared extrinsic helpers (also used by gdl_pyg.domains.points)
# --------------------------------------------------------------------------
def _tangent_frame(normal: np.ndarray, ref: np.ndarray, rel_eps: float = 1e-8) -> np.ndarray:
    r"""``[N, 2, 3]`` frames: :math:`e_1` the normalised projection of ``ref``
    onto the tangent plane, :math:`e_2 = n \times e_1`. Where ``ref`` is
    (nearly) parallel to the normal, the coordinate axis least aligned with the
    normal is projected instead."""
    d = ref - (ref * normal).sum(-1, keepdims=True) * normal
    bad = np.linalg.norm(d, axis=-1) <= rel_eps * np.maximum(np.linalg.norm(ref, axis=-1),
                                                             1e-300)
    if bad.any():
        axis = np.eye(3)[np.argmin(np.abs(normal[bad]), axis=-1)]
        d[bad] = axis - (axis * normal[bad]).sum(-1, keepdims=True) * normal[bad]
    e1, _ = _unit(d)
    e2 = np.cross(normal, e1)
    return np.stack([e1, e2], axis=1)


def _projected_angle(vec: np.ndarray, frame: np.ndarray) -> np.ndarray:
    r"""The angle of ``vec [E, 3]`` projected on the frames ``[E, 2, 3]``."""
    return np.arctan2((vec * frame[:, 1]).sum(-1), (vec * frame[:, 0]).sum(-1))


def _extrinsic_connection(normal: np.ndarray, frame: np.ndarray, src: np.ndarray,
                          dst: np.ndarray) -> np.ndarray:
    r"""The angle of the minimal rotation taking :math:`n_j` to :math:`n_i`
    (Rodrigues), applied to :math:`e_{1,j}` and read in :math:`i`'s frame.
    Antipodal normals (a rotation axis that is not unique) rotate about
    :math:`e_{2,j}`."""
    nj, ni = normal[src], normal[dst]
    v = frame[src, 0]
    c = (nj * ni).sum(-1, keepdims=True)
    a = np.cross(nj, ni)
    # R v = c v + a x v + (a . v) a / (1 + c)
    denom = 1.0 + c
    anti = denom[:, 0] < 1e-12
    denom = np.where(anti[:, None], 1.0, denom)
    rv = c * v + np.cross(a, v) + (a * v).sum(-1, keepdims=True) * a / denom
    if anti.any():  # rotation by pi about e2_j: e1 -> -e1
        rv[anti] = -v[anti]
    return np.arctan2((rv * frame[dst, 1]).sum(-1), (rv * frame[dst, 0]).sum(-1))


# --------------------------------------------------------------------------
# mesh geometry
# --------------------------------------------------------------------------
def _lookup(keys_sorted: np.ndarray, query: np.ndarray) -> np.ndarray:
    r"""Positions of ``query`` in the sorted ``keys_sorted``; -1 if absent."""
    idx = np.searchsorted(keys_sorted, query)
    idx = np.minimum(idx, max(len(keys_sorted) - 1, 0))
    found = keys_sorted[idx] == query if len(keys_sorted) else np.zeros(len(query), bool)
    return np.where(found, idx, -1)


def _corner_data(P: np.ndarray, F: np.ndarray):
    r"""Per corner ``(face f, local k)`` flattened as ``c = 3 f + k``: the corner
    vertex ``a``, the next ``b`` and previous ``c`` vertex of the face, the
    tip angle and its cotangent; plus face normals and areas."""
    a = F.reshape(-1)
    b = F[:, [1, 2, 0]].reshape(-1)
    c = F[:, [2, 0, 1]].reshape(-1)
    u, w = P[b] - P[a], P[c] - P[a]
    cr = np.cross(u, w)
    dbl = np.linalg.norm(cr, axis=-1)
    dot = (u * w).sum(-1)
    angle = np.arctan2(dbl, dot)
    cot = dot / np.maximum(dbl, 1e-300)
    cross_f = np.cross(P[F[:, 1]] - P[F[:, 0]], P[F[:, 2]] - P[F[:, 0]])
    dbl_f = np.linalg.norm(cross_f, axis=-1)
    return a, b, c, angle, cot, cross_f / np.maximum(dbl_f, 1e-300)[:, None], 0.5 * dbl_f


def _laplacian(N: int, a, b, c, cot) -> Tuple[np.ndarray, np.ndarray]:
    import scipy.sparse as sp
    w = 0.5 * cot  # the corner at a weighs the opposite edge (b, c)
    rows = np.concatenate([b, c, b, c])
    cols = np.concatenate([c, b, b, c])
    vals = np.concatenate([-w, -w, w, w])
    L = sp.coo_matrix((vals, (rows, cols)), shape=(N, N)).tocsr()
    L.sum_duplicates()
    L.sort_indices()
    L = L.tocoo()
    return np.stack([L.row, L.col]).astype(np.int64), L.data


def _mass(N: int, a, b, c, angle, cot, P, face_area, kind: str) -> np.ndarray:
    if kind == "barycentric":
        return np.bincount(a, np.repeat(face_area / 3.0, 3), minlength=N)
    # mixed Voronoi (Meyer et al. 2003). Corner order c = 3 f + k; the corner
    # at a is followed by the corner at b (k + 1) and at c (k + 2) in its face.
    f = np.arange(a.size) // 3
    k = np.arange(a.size) % 3
    cot_b = cot[3 * f + (k + 1) % 3]
    cot_c = cot[3 * f + (k + 2) % 3]
    lab2 = ((P[b] - P[a]) ** 2).sum(-1)
    lac2 = ((P[c] - P[a]) ** 2).sum(-1)
    voronoi = (lab2 * cot_c + lac2 * cot_b) / 8.0
    obtuse_face = (angle.reshape(-1, 3) > 0.5 * math.pi).any(-1)[f]
    A = face_area[f]
    area = np.where(obtuse_face, np.where(angle > 0.5 * math.pi, A / 2.0, A / 4.0), voronoi)
    return np.bincount(a, area, minlength=N)


def _edges(N: int, F: np.ndarray) -> np.ndarray:
    r"""Unique mesh edges in both directions, ``[2, E]`` sorted by target then
    source."""
    e = np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]], axis=0)
    e = np.concatenate([e, e[:, ::-1]], axis=0)
    key = np.unique(e[:, 1] * N + e[:, 0])  # target-major
    return np.stack([key % N, key // N])


def _intrinsic_polar(N, a, b, c, angle):
    r"""Angle-normalised polar coordinates of the 1-rings.

    Walks the corners around every vertex counter-clockwise and accumulates
    tip angles. Returns per corner the cumulative angle of its next vertex
    ``b`` (scaled), the scale per vertex, and the reference neighbour (whose
    direction is :math:`\phi = 0`) of every vertex.
    """
    C = a.size
    key_next = a * N + b
    order = np.argsort(key_next, kind="stable")
    ks = key_next[order]
    if C > 1 and bool((ks[1:] == ks[:-1]).any()):
        raise ValueError(
            "'mesh_to_data' with method='intrinsic' requires a consistently oriented "
            "manifold mesh, but a directed edge belongs to more than one face (a "
            "non-manifold edge or flipped faces); fix the mesh or use method='extrinsic'")
    pos_in = _lookup(ks, a * N + c)
    succ = np.where(pos_in >= 0, order[np.maximum(pos_in, 0)], -1)
    has_pred = np.zeros(C, bool)
    has_pred[succ[succ >= 0]] = True
    # start corner per vertex: the corner with no predecessor (boundary
    # vertices), else the corner whose next vertex has the smallest index
    boundary_corner = ~has_pred
    n_bnd = np.bincount(a, boundary_corner.astype(np.int64), minlength=N)
    if (n_bnd > 1).any():
        v = int(np.nonzero(n_bnd > 1)[0][0])
        raise ValueError(
            f"'mesh_to_data' with method='intrinsic' requires a manifold mesh, but vertex "
            f"{v} touches several boundary fans (a non-manifold vertex); fix the mesh or use "
            f"method='extrinsic'")
    is_bnd_vertex = n_bnd == 1
    # pick the start: primary sort key boundary-first, then next-vertex index
    prio = np.where(boundary_corner, -1, b)
    srt = np.lexsort((prio, a))
    first = np.ones(C, bool)
    first[1:] = a[srt][1:] != a[srt][:-1]
    start = np.full(N, -1, dtype=np.int64)
    start[a[srt][first]] = srt[first]
    cum = np.full(C, np.nan)
    cur = start[start >= 0]
    acc = np.zeros(cur.size)
    origin = cur.copy()
    while cur.size:
        cum[cur] = acc
        acc = acc + angle[cur]
        nxt = succ[cur]
        keep = (nxt >= 0) & (nxt != origin)
        cur, acc, origin = nxt[keep], acc[keep], origin[keep]
    if np.isnan(cum).any():
        v = int(a[np.isnan(cum)][0])
        raise ValueError(
            f"'mesh_to_data' with method='intrinsic' requires a manifold mesh, but the faces "
            f"around vertex {v} form more than one fan (a non-manifold vertex); fix the mesh "
            f"or use method='extrinsic'")
    total = np.bincount(a, angle, minlength=N)
    scale = np.where(is_bnd_vertex, 1.0, _TWO_PI / np.maximum(total, 1e-300))
    ref = np.full(N, -1, dtype=np.int64)
    ref[start >= 0] = b[start[start >= 0]]
    return cum * scale[a], scale, ref


def _tie_free_predecessor(dist, row, s, j, src, ptr, r, rtol: float = 1e-9):
    r"""The Dijkstra predecessor of ``j`` (from source ``s``), chosen as the
    lowest-index neighbour ``p`` with ``d(s, p) + l(p, j) = d(s, j)`` up to
    ``rtol``: equal-length paths (frequent on symmetric meshes) are broken by
    index, not by round-off, so the result commutes with rigid motions."""
    deg = ptr[j + 1] - ptr[j]
    rep = np.repeat(np.arange(j.size), deg)
    off = np.arange(rep.size) - np.repeat(np.cumsum(deg) - deg, deg)
    e = ptr[j][rep] + off  # in-edges p -> j
    p = src[e]
    cand = dist[row[rep], p] + r[e]
    target = dist[row[rep], j[rep]]
    ok = (cand <= target * (1 + rtol)) | (p == s[rep])
    best = np.full(j.size, np.iinfo(np.int64).max)
    np.minimum.at(best, rep[ok], p[ok])
    # the source itself wins when it is a neighbour on a shortest path
    direct = np.zeros(j.size, bool)
    direct[rep[ok & (p == s[rep])]] = True
    return np.where(direct, s, best)


def _geodesic_neighbours(N, edge_index, r, phi, conn, radius: float,
                         chunk_entries: int = 4_000_000):
    r"""Neighbours within Dijkstra distance ``radius`` and their discrete
    exponential-map coordinates (Schmidt et al. 2006): the log-map vector of
    ``j`` seen from ``i`` is the one of its Dijkstra predecessor ``p`` plus
    the edge vector ``p -> j`` (from ``p``'s polar map) parallel transported to
    ``i`` along the path; the transport angle accumulates the connection."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import dijkstra
    src, dst = edge_index
    G = sp.csr_matrix((r, (dst, src)), shape=(N, N))
    ekey = dst * N + src  # sorted: edges are target-major
    ptr = np.searchsorted(dst, np.arange(N + 1))
    chunk = max(1, chunk_entries // max(N, 1))
    out_s, out_j, out_v, out_a = [], [], [], []
    for lo in range(0, N, chunk):
        S = np.arange(lo, min(N, lo + chunk))
        dist = dijkstra(G, directed=True, indices=S, limit=radius)
        ss, jj = np.nonzero(np.isfinite(dist))
        s = S[ss]
        keep = jj != s
        s, jj = s[keep], jj[keep]
        p = _tie_free_predecessor(dist, ss[keep], s, jj, src, ptr, r)
        pkey = s * N + jj  # sorted by (s, j)
        parent = _lookup(pkey, s * N + p)
        parent[p == s] = -1
        vec = np.zeros(s.size, dtype=np.complex128)
        tra = np.zeros(s.size)
        done = np.zeros(s.size, bool)
        direct = p == s  # 1-ring: the edge's own coordinates
        e = _lookup(ekey, s[direct] * N + jj[direct])
        vec[direct] = r[e] * np.exp(1j * phi[e])
        tra[direct] = conn[e]
        done[direct] = True
        while not done.all():
            todo = np.nonzero(~done & done[np.maximum(parent, 0)] & (parent >= 0))[0]
            if todo.size == 0:  # cannot happen on a shortest-path tree
                raise RuntimeError("Inconsistent Dijkstra predecessor tree")
            par = parent[todo]
            e = _lookup(ekey, p[todo] * N + jj[todo])  # edge j -> p
            vec[todo] = vec[par] + r[e] * np.exp(1j * (phi[e] + tra[par]))
            tra[todo] = tra[par] + conn[e]
            done[todo] = True
        out_s.append(s)
        out_j.append(jj)
        out_v.append(vec)
        out_a.append(tra)
    return (np.concatenate(out_s), np.concatenate(out_j), np.concatenate(out_v),
            np.concatenate(out_a))


def mesh_to_data(pos: Tensor, face: Tensor, method: str = "intrinsic",
                 normal_weighting: str = "angle", mass: str = "mixed",
                 geodesic_radius: Optional[float] = None) -> Data:
    r"""Converts a triangle mesh into a :class:`~torch_geometric.data.Data`
    with the discrete differential geometry that mesh layers read (see the
    module docstring for the attributes).

    **Laplacian and mass.** The cotangent Laplacian
    (`Pinkall and Polthier 1993 <https://doi.org/10.1080/10586458.1993.10504266>`_,
    `Meyer et al. 2003 <https://doi.org/10.1007/978-3-662-05105-4_2>`_) is
    the positive semi-definite matrix

    .. math::
        L_{ij} = -\tfrac{1}{2}(\cot \alpha_{ij} + \cot \beta_{ij}),
        \qquad L_{ii} = -\sum_{j \neq i} L_{ij},

    with :math:`\alpha_{ij}, \beta_{ij}` the angles opposite the edge, so that
    :math:`(L\,\mathbf{x})_i \approx 2 H_i \mathbf{n}_i A_i` (the integrated
    mean-curvature normal) and :math:`M^{-1} L` approximates
    :math:`-\Delta`, with :math:`M = \mathrm{diag}(\mathrm{mass})`.

    **Polar maps and connection** (``method="intrinsic"``, the default). At
    every vertex the tip angles :math:`\theta` of its faces are accumulated
    counter-clockwise from a reference neighbour (the boundary neighbour on a
    boundary vertex, else the neighbour with the smallest index) and, at
    interior vertices, rescaled to sum to :math:`2\pi` (as in the
    `"Gauge Equivariant Mesh CNNs" <https://arxiv.org/abs/2003.05425>`_ paper
    and `Knöppel et al. 2013 <https://doi.org/10.1145/2461912.2462005>`_);
    boundary vertices keep their angles. This gives

    .. math::
        \phi_i(j) = \frac{2\pi}{\sum_{f \ni i} \theta_i^f}
            \sum_{\text{corners from the reference to } j} \theta,
        \qquad r_{ij} = \lVert \mathbf{x}_j - \mathbf{x}_i \rVert,

    and the discrete Levi-Civita connection of these tangent spaces (the
    edge keeps its angle with a transported vector):

    .. math::
        c_{ji} = \phi_i(j) + \pi - \phi_j(i).

    Both depend on edge lengths and connectivity only, so they are invariant
    under rigid motions (reflections included). Curvature then sits on faces:
    the holonomy around a face is
    :math:`\sum_{v \in f} (s_v - 1)\theta_v^f` with :math:`s_v` the angle
    scale, and around a vertex whose neighbours are all on the boundary it is
    exactly the angle defect :math:`2\pi - \sum_f \theta_v^f`. The ``frame``
    embeds these coordinates: :math:`e_1` is the direction of the reference
    neighbour projected onto the tangent plane, :math:`e_2 = n \times e_1`
    (rigid-motion equivariant). ``method="intrinsic"`` needs a consistently
    oriented manifold mesh (it raises :class:`ValueError` otherwise).

    ``method="extrinsic"`` works on any triangle soup: :math:`\phi` is the
    angle of :math:`\mathbf{x}_j - \mathbf{x}_i` projected onto the tangent
    plane of :math:`i`, and :math:`c_{ji}` the angle, in :math:`i`'s frame, of
    :math:`e_{1,j}` rotated by the minimal rotation taking :math:`n_j` to
    :math:`n_i` (as for point clouds, :func:`gdl_pyg.domains.points_to_data`).

    **Geodesic neighbourhoods.** With :obj:`geodesic_radius`, every vertex
    within Dijkstra distance ``geodesic_radius`` along mesh edges (an upper
    bound of the geodesic distance) becomes a neighbour too. Its polar
    coordinates are those of the discrete exponential map (Schmidt et al.
    2006): the 1-ring log-map vectors along the Dijkstra path, each parallel
    transported to :math:`i` with the connection, are summed; ``edge_connection``
    is the transport along that path. This is exact on flat meshes and a
    first-order approximation on curved ones (``r`` can differ from the
    Dijkstra distance).

    Args:
        pos (torch.Tensor): vertex positions ``[N, 3]`` (floating point).
        face (torch.Tensor): triangles ``[3, F]`` (integer), PyG layout.
        method (str, optional): ``"intrinsic"`` or ``"extrinsic"`` polar maps
            and connection (see above). (default: :obj:`"intrinsic"`)
        normal_weighting (str, optional): vertex normals as the normalised
            sum of face normals weighted by the tip ``"angle"`` (Thürmer and
            Wüthrich 1998) or the face ``"area"``. (default: :obj:`"angle"`)
        mass (str, optional): vertex areas, ``"mixed"`` Voronoi (Meyer et al.
            2003: Voronoi areas in non-obtuse triangles, half / quarter of the
            area in obtuse ones) or ``"barycentric"`` (a third of each face).
            (default: :obj:`"mixed"`)
        geodesic_radius (float, optional): add neighbours within this
            geodesic (Dijkstra) radius. (default: :obj:`None`)

    Shapes:
        - **input:** ``pos [N, 3]``, ``face [3, F]``
        - **output:** a ``Data`` with ``pos [N, 3]``, ``face [3, F]``,
          ``normal [N, 3]``, ``face_normal [F, 3]``, ``face_area [F]``,
          ``mass [N]``, ``laplacian_index [2, nnz]``,
          ``laplacian_weight [nnz]``, ``frame [N, 2, 3]``,
          ``edge_index [2, E]``, ``edge_logmap [E, 2]``,
          ``edge_connection [E]``; floating outputs in the dtype and on the
          device of ``pos``.
    """
    _check_pos(pos, "mesh_to_data")
    N = pos.size(0)
    _check_face(face, N)
    if method not in ("intrinsic", "extrinsic"):
        raise ValueError(f"Expected method 'intrinsic' or 'extrinsic' (got {method!r})")
    if normal_weighting not in ("angle", "area"):
        raise ValueError(f"Expected normal_weighting 'angle' or 'area' "
                         f"(got {normal_weighting!r})")
    if mass not in ("mixed", "barycentric"):
        raise ValueError(f"Expected mass 'mixed' or 'barycentric' (got {mass!r})")
    if geodesic_radius is not None and not (float(geodesic_radius) > 0
                                            and math.isfinite(float(geodesic_radius))):
        raise ValueError(f"Expected a positive, finite 'geodesic_radius' "
                         f"(got {geodesic_radius})")

    P = pos.detach().cpu().to(torch.float64).numpy()
    F = face.detach().cpu().to(torch.int64).numpy().T.copy()  # [F, 3]
    rep = (F[:, 0] == F[:, 1]) | (F[:, 1] == F[:, 2]) | (F[:, 2] == F[:, 0])
    if rep.any():
        raise ValueError(f"'mesh_to_data' received {int(rep.sum())} face(s) with a repeated "
                         f"vertex (e.g. face {int(np.nonzero(rep)[0][0])}: "
                         f"{F[np.nonzero(rep)[0][0]].tolist()})")
    used = np.zeros(N, bool)
    used[F.reshape(-1)] = True
    if not used.all():
        raise ValueError(f"'mesh_to_data' received {int((~used).sum())} vertices that belong "
                         f"to no face (e.g. vertex {int(np.nonzero(~used)[0][0])}); remove "
                         f"unreferenced vertices first")
    a, b, c, angle, cot, face_normal, face_area = _corner_data(P, F)
    ext = np.linalg.norm(P.max(0) - P.min(0))
    tiny = face_area <= 1e-14 * max(ext, 1e-300) ** 2
    if tiny.any():
        raise ValueError(f"'mesh_to_data' received {int(tiny.sum())} degenerate face(s) of "
                         f"(near) zero area (e.g. face {int(np.nonzero(tiny)[0][0])}); "
                         f"remove them first")

    # vertex normals
    wgt = angle if normal_weighting == "angle" else np.repeat(face_area, 3)
    nsum = np.zeros((N, 3))
    np.add.at(nsum, a, wgt[:, None] * np.repeat(face_normal, 3, axis=0))
    normal, nlen = _unit(nsum)
    if (nlen <= 1e-12 * np.maximum(np.bincount(a, wgt, minlength=N), 1e-300)).any():
        v = int(np.nonzero(nlen <= 1e-12 * np.bincount(a, wgt, minlength=N))[0][0])
        raise ValueError(f"'mesh_to_data' cannot define a normal at vertex {v}: its face "
                         f"normals cancel out")

    lap_index, lap_weight = _laplacian(N, a, b, c, cot)
    vmass = _mass(N, a, b, c, angle, cot, P, face_area, mass)

    edge_index = _edges(N, F)
    src, dst = edge_index
    d = P[src] - P[dst]
    r = np.linalg.norm(d, axis=-1)
    if method == "intrinsic":
        cum, scale, ref = _intrinsic_polar(N, a, b, c, angle)
        frame = _tangent_frame(normal, P[ref] - P)
        # phi_i(j) via the corner at i whose next vertex is j; the last
        # neighbour of a boundary vertex is only a previous vertex
        keys_next = a * N + b
        o1 = np.argsort(keys_next)
        phi = np.full(src.size, np.nan)
        pos1 = _lookup(keys_next[o1], dst * N + src)
        ok = pos1 >= 0
        phi[ok] = cum[o1[pos1[ok]]]
        keys_prev = a * N + c
        o2 = np.argsort(keys_prev)
        pos2 = _lookup(keys_prev[o2], dst * N + src)
        miss = ~ok
        cp = o2[pos2[miss]]
        phi[miss] = cum[cp] + scale[a[cp]] * angle[cp]
        rev = _lookup(dst * N + src, src * N + dst)  # index of the edge i -> j
        conn = _wrap(phi + math.pi - phi[rev])
        phi = _wrap(phi)
    else:
        ref = np.full(N, -1)
        order = np.lexsort((src, dst))
        first = np.ones(order.size, bool)
        first[1:] = dst[order][1:] != dst[order][:-1]
        ref[dst[order][first]] = src[order][first]  # smallest neighbour index
        frame = _tangent_frame(normal, P[ref] - P)
        phi = _projected_angle(d, frame[dst])
        conn = _extrinsic_connection(normal, frame, src, dst)

    if geodesic_radius is not None:
        s, jj, vec, tra = _geodesic_neighbours(N, edge_index, r, phi, conn,
                                               float(geodesic_radius))
        ekey = dst * N + src
        new = _lookup(ekey, s * N + jj) < 0
        src = np.concatenate([src, jj[new]])
        dst = np.concatenate([dst, s[new]])
        r = np.concatenate([r, np.abs(vec[new])])
        phi = np.concatenate([phi, np.angle(vec[new])])
        conn = np.concatenate([conn, _wrap(tra[new])])
        order = np.argsort(dst * N + src, kind="stable")
        src, dst, r, phi, conn = src[order], dst[order], r[order], phi[order], conn[order]
        edge_index = np.stack([src, dst])

    dev = pos.device
    return Data(
        pos=pos,
        face=face.to(torch.long),
        normal=_to_out(normal, pos),
        face_normal=_to_out(face_normal, pos),
        face_area=_to_out(face_area, pos),
        mass=_to_out(vmass, pos),
        laplacian_index=torch.from_numpy(lap_index).to(dev),
        laplacian_weight=_to_out(lap_weight, pos),
        frame=_to_out(frame, pos),
        edge_index=torch.from_numpy(np.ascontiguousarray(edge_index)).to(dev),
        edge_logmap=_to_out(np.stack([r, phi], axis=-1), pos),
        edge_connection=_to_out(conn, pos),
    )


def laplacian_matrix(data: Data, normalize: bool = False) -> Tensor:
    r"""The cotangent Laplacian of ``data`` (a mesh ``Data`` or a batch of
    them) as a coalesced ``torch.sparse_coo`` tensor ``[N, N]``; with
    :obj:`normalize`, :math:`M^{-1} L` (rows divided by ``mass``).

    Args:
        data (Data): made by :func:`mesh_to_data` (or a batch of such).
        normalize (bool, optional): divide row :math:`i` by the vertex area
            :math:`A_i`. (default: :obj:`False`)
    """
    if "laplacian_index" not in data or "laplacian_weight" not in data:
        raise ValueError("Expected a mesh 'Data' with 'laplacian_index' and 'laplacian_weight' "
                         "(made by 'mesh_to_data' or the 'MeshGeometry' transform)")
    index, weight = data.laplacian_index, data.laplacian_weight
    if normalize:
        weight = weight / data.mass[index[0]]
    N = data.num_nodes
    return torch.sparse_coo_tensor(index, weight, (N, N), check_invariants=False).coalesce()
