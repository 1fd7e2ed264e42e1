r"""Triangle meshes as graphs: discrete differential geometry for mesh layers.

:func:`mesh_to_data` turns ``pos [N, 3]`` and ``face [3, F]`` into a
:class:`~torch_geometric.data.Data` carrying everything intrinsic mesh CNNs
(Geodesic CNN, MoNet, GEM-CNN) and spectral / diffusion layers read, computed
once in float64 (a preprocessing step, usable through the
:class:`gdl_pyg.transforms.MeshGeometry` pre-transform):

* ``normal [N, 3]``: vertex normals (angle-weighted by default), oriented by
  the face winding (counter-clockwise faces seen from the normal's side);
* ``face_normal [F, 3]``, ``face_area [F]``;
* ``mass [N]``: the vertex area (mixed Voronoi by default);
* ``laplacian_index [2, nnz]``, ``laplacian_weight [nnz]``: the cotangent
  Laplacian in coalesced COO form (diagonal included). The key contains
  ``"index"``, so PyG's batching concatenates it along the last dimension and
  shifts it by the number of nodes: a batch holds the block-diagonal Laplacian
  of its meshes (see :func:`laplacian_matrix`);
* ``frame [N, 2, 3]``: an orthonormal tangent basis :math:`(e_1, e_2)` per
  vertex (rows), with :math:`e_1 \times e_2 = n`;
* ``edge_index [2, E]``: the mesh edges in both directions (plus geodesic
  neighbours, see :obj:`geodesic_radius`), ``edge_index[0] = j`` the source
  and ``edge_index[1] = i`` the target, sorted by target then source;
* ``edge_logmap [E, 2]``: polar coordinates :math:`(r, \phi)` of the source
  :math:`j` in the tangent plane of the target :math:`i`, :math:`\phi`
  measured from :math:`e_1` towards :math:`e_2` of :math:`i`;
* ``edge_connection [E]``: the discrete Levi-Civita connection: a tangent
  vector at angle :math:`\alpha` in :math:`j`'s frame has angle
  :math:`\alpha + c_{ji}` in :math:`i`'s frame after parallel transport.

These are the conventions :class:`gdl_pyg.groups.GaugeGroup` acts on
(:math:`\phi' = \phi - \theta_i`, :math:`c' = c + \theta_j - \theta_i`).
Angles are wrapped to :math:`(-\pi, \pi]`.
"""
import math
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

__all__ = ["mesh_to_data", "laplacian_matrix"]

_TWO_PI = 2.0 * math.pi
#: Appended to errors that ``gdl_pyg.io.clean_mesh`` / ``read_mesh(..., clean=True)`` fix.
_CLEAN_HINT = (" (gdl_pyg.io.clean_mesh(pos, face) repairs this, or read the file with "
               "gdl_pyg.io.read_mesh(path, clean=True))")
#: Appended to non-manifold errors, which cleaning does not repair.
_MANIFOLD_HINT = (" (clean=True does not repair non-manifold vertices; "
                  "read_mesh(path, require_manifold=True) rejects such files)")


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


#: Appended to errors about geometry that the dtype of ``pos`` cannot hold.
_SCALE_HINT = ("; rescale the positions (e.g. with torch_geometric.transforms.NormalizeScale) "
               "or pass them in torch.float64")


def _to_out(x: np.ndarray, like: Tensor, fn: Optional[str] = None, name: str = "",
            positive: bool = False) -> Tensor:
    r"""``x`` (float64) in the dtype and on the device of ``like``. With
    :obj:`fn`, checks the cast on the CPU first: a value finite in float64
    that overflows the dtype (an area of ``1e40`` in float32), or, with
    :obj:`positive`, a positive value that underflows to zero, raises
    :class:`ValueError`."""
    out = torch.from_numpy(np.ascontiguousarray(x)).to(dtype=like.dtype)
    if fn is not None and out.is_floating_point() and out.numel():
        bad = ~torch.isfinite(out) & torch.from_numpy(np.isfinite(x))
        if bool(bad.any()):
            raise ValueError(f"'{fn}': '{name}' reaches {float(np.abs(x).max()):.3g}, which "
                             f"overflows {like.dtype} (largest finite value "
                             f"{torch.finfo(like.dtype).max:.3g})" + _SCALE_HINT)
        if positive:
            zero = (out == 0) & torch.from_numpy(x > 0)
            if bool(zero.any()):
                raise ValueError(f"'{fn}': '{name}' goes down to {float(x[x > 0].min()):.3g}, "
                                 f"which underflows to 0 in {like.dtype} (smallest positive "
                                 f"value {torch.finfo(like.dtype).smallest_normal:.3g})"
                                 + _SCALE_HINT)
    return out.to(like.device)


def _check_normalized(fn: str, weight: np.ndarray, mass: np.ndarray, dtype: torch.dtype,
                      row: np.ndarray) -> None:
    r"""Raises :class:`ValueError` unless :math:`M^{-1} L` (the weights divided
    by the mass of their row, what :func:`laplacian_matrix` with
    :obj:`normalize=True` and diffusion layers compute) is finite in
    ``dtype``."""
    if weight.size == 0 or not torch.empty(0, dtype=dtype).is_floating_point():
        return
    big = float(np.max(np.abs(weight) / mass[row]))
    if not math.isfinite(big) or big > torch.finfo(dtype).max:
        raise ValueError(f"'{fn}': the mass-normalised Laplacian M^-1 L reaches {big:.3g}, "
                         f"which overflows {dtype} (largest finite value "
                         f"{torch.finfo(dtype).max:.3g})" + _SCALE_HINT)


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
    tip angle and its cotangent, the squared lengths of the edges ``a b`` and
    ``a c``; plus face normals and areas.

    Computed on contiguous rows ``[3, 3, F]`` (coordinate, corner ``k``,
    face) from the three edge vectors of each face: the corner's ``b - a`` is
    an edge vector and its ``c - a`` the negated previous one, the same
    floating-point values as the differences of gathered positions (negation
    is exact); the results are interleaved to the corner order at the end."""
    a = F.reshape(-1)
    b = F[:, [1, 2, 0]].reshape(-1)
    c = F[:, [2, 0, 1]].reshape(-1)
    Pt = np.ascontiguousarray(P.T)  # [3, N]
    V0, V1, V2 = Pt[:, F[:, 0]], Pt[:, F[:, 1]], Pt[:, F[:, 2]]  # [3, F]
    e0, e1, e2 = V1 - V0, V2 - V1, V0 - V2
    u0, u1, u2 = np.stack([e0, e1, e2], axis=1)  # b - a, each [3 (k), F]
    w0, w1, w2 = -np.stack([e2, e0, e1], axis=1)  # c - a
    # the cross product with numpy.cross's arithmetic
    cr0 = u1 * w2 - u2 * w1
    cr1 = u2 * w0 - u0 * w2
    cr2 = u0 * w1 - u1 * w0
    dbl = np.sqrt(cr0 * cr0 + cr1 * cr1 + cr2 * cr2)
    dot = u0 * w0 + u1 * w1 + u2 * w2
    # the corner k = 0 of each face spans the face: its cross product is the face's
    dbl_f = dbl[0]
    face_normal = np.stack([cr0[0], cr1[0], cr2[0]], axis=-1)
    face_normal /= np.maximum(dbl_f, 1e-300)[:, None]

    def corners(x):  # [3 (k), F] -> [C], c = 3 f + k
        return x.T.reshape(-1)

    return (a, b, c, corners(np.arctan2(dbl, dot)), corners(dot / np.maximum(dbl, 1e-300)),
            face_normal, 0.5 * dbl_f, corners(u0 * u0 + u1 * u1 + u2 * u2),
            corners(w0 * w0 + w1 * w1 + w2 * w2))


def _in_face(x: np.ndarray, shift: int) -> np.ndarray:
    r"""The per-corner array ``x`` read at the corner ``shift`` places further
    in the same face (``3 f + (k + shift) % 3``)."""
    return np.roll(x.reshape(-1, 3), -shift, axis=1).reshape(-1)


def _edges(N: int, a: np.ndarray, b: np.ndarray, c: np.ndarray):
    r"""Unique mesh edges in both directions, ``[2, E]`` sorted by target then
    source, and for every corner the index of the edge ``b -> a`` (its next
    vertex seen from ``a``) and ``c -> a``.

    One stable sort of the ``2 C`` keys ``a N + b`` and ``a N + c`` (which
    hold every directed edge of every face) groups them; the group ranks are
    the edge indices, scattered back to the corners, so no later look-up
    (``searchsorted``) is needed. The keys of a mesh come in long sorted runs,
    which the stable sort (timsort) exploits: about linear time in practice.
    """
    C = a.size
    key = np.concatenate([a * N + b, a * N + c])  # target-major: (i = a, j = b or c)
    order = np.argsort(key, kind="stable")
    ks = key[order]
    new = np.empty(2 * C, bool)
    new[0] = True
    np.not_equal(ks[1:], ks[:-1], out=new[1:])
    uniq = ks[new]
    eid = np.empty(2 * C, np.int64)
    eid[order] = np.cumsum(new) - 1
    edge_index = np.stack([uniq % N, uniq // N])
    return edge_index, eid[:C], eid[C:]


def _laplacian(N: int, edge_index: np.ndarray, eid_next: np.ndarray, eid_prev: np.ndarray,
               b: np.ndarray, c: np.ndarray, cot: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    r"""The coalesced COO cotangent Laplacian built directly on the edge list:
    its pattern is the edges (row = target) plus the diagonal, merged in
    row-major order by index arithmetic (no sparse-format round trip)."""
    src, dst = edge_index
    E = src.size
    w = 0.5 * cot  # the corner at a weighs the opposite edge (b, c)
    # the edge (row b, col c) is "next" of the corner at b; (row c, col b)
    # is "previous" of the corner at c
    e_bc, e_cb = _in_face(eid_next, 1), _in_face(eid_prev, 2)
    off = -np.bincount(np.concatenate([e_bc, e_cb]), np.concatenate([w, w]), minlength=E)
    diag = np.bincount(np.concatenate([b, c]), np.concatenate([w, w]), minlength=N)
    count = np.bincount(dst, minlength=N)
    first = np.cumsum(count) - count  # first edge of each row
    lower = src < dst
    n_lower = np.bincount(dst[lower], minlength=N)
    nnz = E + N
    rows = np.empty(nnz, np.int64)
    cols = np.empty(nnz, np.int64)
    vals = np.empty(nnz)
    # an edge moves past the diagonals of the rows before it, and past its
    # own row's diagonal when its column is larger
    pe = np.arange(E) + dst + ~lower
    pd = first + np.arange(N) + n_lower
    rows[pe], cols[pe], vals[pe] = dst, src, off
    ar = np.arange(N)
    rows[pd], cols[pd], vals[pd] = ar, ar, diag
    return np.stack([rows, cols]), vals


def _mass(N: int, a, angle, cot, sq_ab, sq_ac, face_area, kind: str) -> np.ndarray:
    A = np.repeat(face_area, 3)
    if kind == "barycentric":
        return np.bincount(a, A / 3.0, minlength=N)
    # mixed Voronoi (Meyer et al. 2003). Corner order c = 3 f + k; the corner
    # at a is followed by the corner at b (k + 1) and at c (k + 2) in its face.
    voronoi = (sq_ab * _in_face(cot, 2) + sq_ac * _in_face(cot, 1)) / 8.0
    obtuse = angle > 0.5 * math.pi
    obtuse_face = np.repeat(obtuse.reshape(-1, 3).any(-1), 3)
    area = np.where(obtuse_face, np.where(obtuse, A / 2.0, A / 4.0), voronoi)
    return np.bincount(a, area, minlength=N)


def _intrinsic_polar(N, a, b, angle, edge_index, eid_next, eid_prev):
    r"""Angle-normalised polar coordinates of the 1-rings.

    Walks the corners around every vertex counter-clockwise and accumulates
    tip angles. Returns per corner the cumulative angle of its next vertex
    ``b`` (scaled), the scale per vertex, the reference neighbour (whose
    direction is :math:`\phi = 0`) of every vertex, and per edge the corner
    at its target whose next (``owner_next``) or previous (``owner_prev``)
    vertex is its source (-1 if none).
    """
    C = a.size
    E = edge_index.shape[1]
    if bool((np.bincount(eid_next, minlength=E) > 1).any()):
        raise ValueError(
            "'mesh_to_data' with method='intrinsic' requires a consistently oriented "
            "manifold mesh, but a directed edge belongs to more than one face (a "
            "non-manifold edge or flipped faces); fix the mesh or use method='extrinsic'"
            + _CLEAN_HINT)
    corners = np.arange(C)
    owner_next = np.full(E, -1, dtype=np.int64)
    owner_next[eid_next] = corners
    owner_prev = np.full(E, -1, dtype=np.int64)
    owner_prev[eid_prev] = corners
    succ = owner_next[eid_prev]  # the corner at a whose next vertex is our c
    has_pred = np.zeros(C, bool)
    has_pred[succ[succ >= 0]] = True
    # start corner per vertex: the corner with no predecessor (boundary
    # vertices), else the corner whose next vertex has the smallest index
    boundary_corner = ~has_pred
    n_bnd = np.bincount(a, boundary_corner, minlength=N)
    if (n_bnd > 1).any():
        v = int(np.nonzero(n_bnd > 1)[0][0])
        raise ValueError(
            f"'mesh_to_data' with method='intrinsic' requires a manifold mesh, but vertex "
            f"{v} touches several boundary fans (a non-manifold vertex); fix the mesh or use "
            f"method='extrinsic'" + _MANIFOLD_HINT)
    is_bnd_vertex = n_bnd == 1
    # the first edge of a row has the smallest source; on a vertex without
    # boundary corner every neighbour is the next vertex of one of its corners
    count = np.bincount(edge_index[1], minlength=N)
    start = owner_next[np.cumsum(count) - count]
    bc = np.nonzero(boundary_corner)[0]
    start[a[bc]] = bc
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
            f"or use method='extrinsic'" + _MANIFOLD_HINT)
    total = np.bincount(a, angle, minlength=N)
    scale = np.where(is_bnd_vertex, 1.0, _TWO_PI / np.maximum(total, 1e-300))
    ref = np.full(N, -1, dtype=np.int64)
    ref[start >= 0] = b[start[start >= 0]]
    return cum * scale[a], scale, ref, owner_next, owner_prev


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
                         f"{F[np.nonzero(rep)[0][0]].tolist()})" + _CLEAN_HINT)
    used = np.zeros(N, bool)
    used[F.reshape(-1)] = True
    if not used.all():
        raise ValueError(f"'mesh_to_data' received {int((~used).sum())} vertices that belong "
                         f"to no face (e.g. vertex {int(np.nonzero(~used)[0][0])}); remove "
                         f"unreferenced vertices first" + _CLEAN_HINT)
    a, b, c, angle, cot, face_normal, face_area, sq_ab, sq_ac = _corner_data(P, F)
    ext = np.linalg.norm(P.max(0) - P.min(0))
    tiny = face_area <= 1e-14 * max(ext, 1e-300) ** 2
    if tiny.any():
        raise ValueError(f"'mesh_to_data' received {int(tiny.sum())} degenerate face(s) of "
                         f"(near) zero area (e.g. face {int(np.nonzero(tiny)[0][0])}); "
                         f"remove them first" + _CLEAN_HINT)

    # vertex normals: the weighted face normals summed per corner vertex
    wgt = angle if normal_weighting == "angle" else np.repeat(face_area, 3)
    fn = np.repeat(face_normal, 3, axis=0)
    nsum = np.stack([np.bincount(a, wgt * fn[:, k], minlength=N) for k in range(3)], axis=-1)
    normal, nlen = _unit(nsum)
    wsum = np.bincount(a, wgt, minlength=N)
    if (nlen <= 1e-12 * np.maximum(wsum, 1e-300)).any():
        v = int(np.nonzero(nlen <= 1e-12 * wsum)[0][0])
        raise ValueError(f"'mesh_to_data' cannot define a normal at vertex {v}: its face "
                         f"normals cancel out (inconsistently oriented faces?)" + _CLEAN_HINT)

    edge_index, eid_next, eid_prev = _edges(N, a, b, c)
    lap_index, lap_weight = _laplacian(N, edge_index, eid_next, eid_prev, b, c, cot)
    vmass = _mass(N, a, angle, cot, sq_ab, sq_ac, face_area, mass)

    src, dst = edge_index
    # |x_j - x_i| of the edge (i = a, j = b or c): the corner's edge lengths
    r = np.empty(src.size)
    r[eid_next] = np.sqrt(sq_ab)
    r[eid_prev] = np.sqrt(sq_ac)
    if method == "intrinsic":
        cum, scale, ref, owner_next, owner_prev = _intrinsic_polar(N, a, b, angle, edge_index,
                                                                   eid_next, eid_prev)
        frame = _tangent_frame(normal, P[ref] - P)
        # phi_i(j) via the corner at i whose next vertex is j; the last
        # neighbour of a boundary vertex is only a previous vertex
        phi = np.empty(src.size)
        ok = owner_next >= 0
        phi[ok] = cum[owner_next[ok]]
        cp = owner_prev[~ok]
        phi[~ok] = cum[cp] + scale[a[cp]] * angle[cp]
        # the edge i -> j of the edge j -> i (row a, col b) is "previous" of
        # the corner at b; that of (row a, col c) is "next" of the corner at c
        rev = np.empty(src.size, np.int64)
        rev[eid_next] = _in_face(eid_prev, 1)
        rev[eid_prev] = _in_face(eid_next, 2)
        conn = _wrap(phi + math.pi - phi[rev])
        phi = _wrap(phi)
    else:
        count = np.bincount(dst, minlength=N)
        ref = src[np.cumsum(count) - count]  # smallest neighbour index
        frame = _tangent_frame(normal, P[ref] - P)
        phi = _projected_angle(P[src] - P[dst], frame[dst])
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

    # every result is checked after its cast to the dtype of pos (areas grow with the
    # square of the scale: positions of 1e20 or 1e-25 are fine in float32, their areas not)
    fn = "mesh_to_data"
    dev = pos.device
    _check_normalized(fn, lap_weight, vmass, pos.dtype, lap_index[0])
    return Data(
        pos=pos,
        face=face.to(torch.long),
        normal=_to_out(normal, pos, fn, "normal"),
        face_normal=_to_out(face_normal, pos, fn, "face_normal"),
        face_area=_to_out(face_area, pos, fn, "face_area", positive=True),
        mass=_to_out(vmass, pos, fn, "mass", positive=True),
        laplacian_index=torch.from_numpy(lap_index).to(dev),
        laplacian_weight=_to_out(lap_weight, pos, fn, "laplacian_weight"),
        frame=_to_out(frame, pos, fn, "frame"),
        edge_index=torch.from_numpy(np.ascontiguousarray(edge_index)).to(dev),
        edge_logmap=_to_out(np.stack([r, phi], axis=-1), pos, fn, "edge_logmap",
                            positive=True),
        edge_connection=_to_out(conn, pos, fn, "edge_connection"),
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
        if not bool(torch.isfinite(weight).all()):
            raise ValueError(f"'laplacian_matrix': the mass-normalised Laplacian M^-1 L is "
                             f"not finite in {weight.dtype} (a zero or subnormal 'mass', or "
                             f"weights too large for the dtype)" + _SCALE_HINT)
    N = data.num_nodes
    return torch.sparse_coo_tensor(index, weight, (N, N), check_invariants=False).coalesce()
