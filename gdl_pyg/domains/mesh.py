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
from typing import NamedTuple, Optional, Tuple

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
    :class:`ValueError`. A cast to the dtype of ``x`` itself changes nothing
    and is not checked; otherwise one pass over the result decides whether
    the element-wise comparison with ``x`` is needed."""
    src = torch.from_numpy(np.ascontiguousarray(x))
    out = src.to(dtype=like.dtype)
    if (fn is not None and out.dtype != src.dtype and out.is_floating_point()
            and out.numel()):
        if not bool(torch.isfinite(out).all()):
            bad = ~torch.isfinite(out) & torch.from_numpy(np.isfinite(x))
            if bool(bad.any()):
                raise ValueError(f"'{fn}': '{name}' reaches {float(np.abs(x).max()):.3g}, "
                                 f"which overflows {like.dtype} (largest finite value "
                                 f"{torch.finfo(like.dtype).max:.3g})" + _SCALE_HINT)
        if positive and bool((out == 0).any()):
            zero = (out == 0) & torch.from_numpy(x > 0)
            if bool(zero.any()):
                raise ValueError(f"'{fn}': '{name}' goes down to {float(x[x > 0].min()):.3g}, "
                                 f"which underflows to 0 in {like.dtype} (smallest positive "
                                 f"value {torch.finfo(like.dtype).smallest_normal:.3g})"
                                 + _SCALE_HINT)
    return out.to(like.device)


def _check_normalized(fn: str, weight: np.ndarray, mass: np.ndarray, dtype: torch.dtype,
                      row: np.ndarray, ptr: Optional[np.ndarray] = None) -> None:
    r"""Raises :class:`ValueError` unless :math:`M^{-1} L` (the weights divided
    by the mass of their row, what :func:`laplacian_matrix` with
    :obj:`normalize=True` and diffusion layers compute) is finite in
    ``dtype``. With :obj:`ptr` (the CSR row pointer of ``row``, every row
    non-empty), the largest weight of each row is divided by its mass, which
    is the same maximum where it passes (division by a positive mass keeps
    the order), and the entries are only all divided to report a failure."""
    if weight.size == 0 or not torch.empty(0, dtype=dtype).is_floating_point():
        return
    if ptr is not None:
        with np.errstate(divide="ignore", invalid="ignore"):  # the full check warns
            big = float(np.max(np.maximum.reduceat(np.abs(weight), ptr[:-1]) / mass))
        if math.isfinite(big) and big <= torch.finfo(dtype).max:
            return
    big = float(np.max(np.abs(weight) / mass[row]))
    if not math.isfinite(big) or big > torch.finfo(dtype).max:
        raise ValueError(f"'{fn}': the mass-normalised Laplacian M^-1 L reaches {big:.3g}, "
                         f"which overflows {dtype} (largest finite value "
                         f"{torch.finfo(dtype).max:.3g})" + _SCALE_HINT)


def _wrap(angle: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    r"""Wraps angles to :math:`(-\pi, \pi]` (into :obj:`out` if given).

    Bit for bit ``remainder(angle + pi, 2 pi) - pi`` (with :math:`-\pi`
    mapped to :math:`\pi`), without the division of ``np.remainder`` on the
    common range: for :math:`y = \text{angle} + \pi` in :math:`[-2\pi, 0)`
    the remainder is the rounded :math:`y + 2\pi`, in :math:`[2\pi, 4\pi)` the
    exact :math:`y - 2\pi` (Sterbenz), in :math:`[0, 2\pi)` :math:`y` itself;
    values further out (and infinities) take ``np.remainder``."""
    y = np.add(angle, math.pi, out=out)
    lo = y < 0
    hi = y >= _TWO_PI
    far = None
    if y.size and not (y.min() >= -_TWO_PI and y.max() < 2 * _TWO_PI):  # NaN: far too
        far = np.flatnonzero(~((y >= -_TWO_PI) & (y < 2 * _TWO_PI)))
        y_far = y[far]
    np.add(y, _TWO_PI, out=y, where=lo)
    np.subtract(y, _TWO_PI, out=y, where=hi)
    if far is not None:
        y[far] = np.remainder(y_far, _TWO_PI)
    y -= math.pi
    np.copyto(y, math.pi, where=y == -math.pi)
    return y


def _unit(v: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    n = np.linalg.norm(v, axis=-1)
    return v / np.maximum(n, 1e-300)[..., None], n


def _norm_rows(x: np.ndarray) -> np.ndarray:
    r"""The norms of the columns of ``x [3, N]``, rounded as
    ``np.linalg.norm(x.T, axis=-1)`` (``(x_0^2 + x_1^2) + x_2^2``), on
    contiguous rows."""
    out = np.multiply(x[0], x[0])
    t = np.multiply(x[1], x[1])
    out += t
    out += np.multiply(x[2], x[2], out=t)
    return np.sqrt(out, out=out)


# --------------------------------------------------------------------------
# shared extrinsic helpers (also used by gdl_pyg.domains.points)
# --------------------------------------------------------------------------
def _tangent_frame(normal: np.ndarray, ref: np.ndarray, rel_eps: float = 1e-8) -> np.ndarray:
    r"""``[N, 2, 3]`` frames: :math:`e_1` the normalised projection of ``ref``
    onto the tangent plane, :math:`e_2 = n \times e_1`. Where ``ref`` is
    (nearly) parallel to the normal, the coordinate axis least aligned with the
    normal is projected instead.

    Computed on the transposed ``[3, N]`` rows with the roundings of
    ``(ref * normal).sum(-1)``, ``np.linalg.norm(..., axis=-1)`` and
    ``np.cross`` on ``[N, 3]`` (sums left to right)."""
    N = normal.shape[0]
    n = np.ascontiguousarray(normal.T)
    d = np.array(ref.T, dtype=np.float64, order="C")  # becomes ref - (ref . n) n
    t = np.empty(N)
    s = np.multiply(d[0], n[0])
    s += np.multiply(d[1], n[1], out=t)
    s += np.multiply(d[2], n[2], out=t)
    ref_len = _norm_rows(d)
    for k in range(3):
        d[k] -= np.multiply(s, n[k], out=t)
    d_len = _norm_rows(d)
    bad = d_len <= rel_eps * np.maximum(ref_len, 1e-300)
    if bad.any():
        nb = normal[bad]
        axis = np.eye(3)[np.argmin(np.abs(nb), axis=-1)]
        db = axis - (axis * nb).sum(-1, keepdims=True) * nb
        d[:, bad] = db.T
        d_len[bad] = np.linalg.norm(db, axis=-1)
    d /= np.maximum(d_len, 1e-300)  # e1
    frame = np.empty((N, 2, 3))
    frame[:, 0] = d.T
    e2 = frame[:, 1].T  # n x e1, as np.cross
    for k, (i, j) in enumerate(((1, 2), (2, 0), (0, 1))):
        np.multiply(n[i], d[j], out=s)
        s -= np.multiply(n[j], d[i], out=t)
        e2[k] = s
    return frame


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


#: Edges per block of :func:`_edge_blocks`.
_EDGE_BLOCK = 65536


def _edge_blocks(src: np.ndarray, dst: np.ndarray):
    r"""Yields ``(block, src[block], dst[block])`` over blocks of
    :obj:`_EDGE_BLOCK` edges, so that per-edge ``[E, 3]`` temporaries stay
    small (per-edge operations give the results of one pass, bit for bit)."""
    for lo in range(0, src.size, _EDGE_BLOCK):
        block = slice(lo, lo + _EDGE_BLOCK)
        yield block, src[block], dst[block]


def _extrinsic_edges(P: np.ndarray, normal: np.ndarray, frame: np.ndarray, src: np.ndarray,
                     dst: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    r"""The extrinsic polar angle :math:`\phi_i(j)` (:func:`_projected_angle`
    of :math:`x_j - x_i`) and connection (:func:`_extrinsic_connection`) of
    every edge ``j = src -> i = dst``, in blocks of edges (:func:`_edge_blocks`)."""
    phi, conn = np.empty(src.size), np.empty(src.size)
    for block, bs, bd in _edge_blocks(src, dst):
        phi[block] = _projected_angle(P[bs] - P[bd], frame[bd])
        conn[block] = _extrinsic_connection(normal, frame, bs, bd)
    return phi, conn


# --------------------------------------------------------------------------
# mesh geometry
# --------------------------------------------------------------------------
def _lookup(keys_sorted: np.ndarray, query: np.ndarray) -> np.ndarray:
    r"""Positions of ``query`` in the sorted ``keys_sorted``; -1 if absent."""
    idx = np.searchsorted(keys_sorted, query)
    idx = np.minimum(idx, max(len(keys_sorted) - 1, 0))
    found = keys_sorted[idx] == query if len(keys_sorted) else np.zeros(len(query), bool)
    return np.where(found, idx, -1)


#: Faces per block of :func:`_corner_data`: its temporaries then stay in the cache.
_BLOCK = 4096


class _Corners(NamedTuple):
    r"""Per corner ``c = 3 f + k`` (face ``f``, local ``k``) of a mesh."""
    a: np.ndarray  #: the corner vertex
    b: np.ndarray  #: the next vertex of the face
    c: np.ndarray  #: the previous vertex of the face
    angle: np.ndarray  #: the tip angle
    half_cot: np.ndarray  #: half its cotangent: the weight of the opposite edge (b, c)
    length: np.ndarray  #: |x_b - x_a|
    mass: np.ndarray  #: the corner's share of the vertex area
    normal: np.ndarray  #: [3, C] its weighted face normal (summed into vertex normals)
    weight: np.ndarray  #: the weight of that face normal (angle or face area)
    face_normal: np.ndarray  #: [F, 3]
    face_area: np.ndarray  #: [F]


def _corner_data(Pt: np.ndarray, F: np.ndarray, normal_weighting: str = "angle",
                 mass: str = "mixed") -> _Corners:
    r"""Everything local to a face (see :class:`_Corners`) from the
    transposed positions ``Pt [3, N]`` and the faces ``F [F, 3]``, in one
    pass over blocks of :obj:`_BLOCK` faces.

    In a block, the coordinates of the face vertices are gathered once as
    ``[3, 3, faces]`` (coordinate, corner ``k``, face), so that every
    operation runs on long contiguous rows; the per-corner results are
    written out in corner order. The corner's ``b - a`` is the edge vector
    :math:`e_k = x_{k+1} - x_k` and its ``c - a`` the negated previous one,
    :math:`-e_{k-1}`, hence

    .. math::
        (b - a) \times (c - a) = e_{k-1} \times e_k, \qquad
        (b - a) \cdot (c - a) = -e_k \cdot e_{k-1},

    evaluated with the roundings of the direct formulas (negation is exact
    and ``-p - (-q)`` rounds like ``q - p``): the results are those of the
    differences of gathered positions, bit for bit. ``|c - a|^2`` is the
    previous corner's ``|b - a|^2``."""
    nF = F.shape[0]
    C = 3 * nF
    a = F.reshape(-1)
    b = np.take(F, [1, 2, 0], axis=1).reshape(-1)
    c = np.take(F, [2, 0, 1], axis=1).reshape(-1)
    angle, half_cot, length, corner_mass = (np.empty(C) for _ in range(4))
    normal = np.empty((3, C))
    face_normal = np.empty((nF, 3))
    face_area = np.empty(nF)
    area_weight = normal_weighting == "area"
    weight = np.empty(C) if area_weight else angle
    FT = np.ascontiguousarray(F.T)  # [3, F]
    nxt, prv = [1, 2, 0], [2, 0, 1]

    def corners(x, s):  # the [3 (k), n] view of the per-corner x[s]
        return x[s].reshape(-1, 3).T

    for lo in range(0, nF, _BLOCK):
        hi = min(nF, lo + _BLOCK)
        n, s = hi - lo, slice(3 * lo, 3 * hi)
        G = np.take(Pt, FT[:, lo:hi], axis=1)  # [3, 3, n]
        e = np.empty((3, 4, n))  # e_k = x_{k+1} - x_k at e[:, k + 1], and e_2 at e[:, 0]
        np.subtract(G[:, 1:], G[:, :2], out=e[:, 1:3])
        np.subtract(G[:, 0], G[:, 2], out=e[:, 3])
        e[:, 0] = e[:, 3]
        u = e[:, 1:].reshape(3, -1)  # e_k = b - a
        p = e[:, :3].reshape(3, -1)  # e_{k-1} = a - c
        t = np.empty(3 * n)
        cr = np.empty((3, 3 * n))  # (b - a) x (c - a) = p x u
        for d, (i, j) in enumerate(((1, 2), (2, 0), (0, 1))):
            np.multiply(p[i], u[j], out=cr[d])
            np.multiply(p[j], u[i], out=t)
            cr[d] -= t
        dbl = np.multiply(cr[0], cr[0])  # twice the face area
        dbl += np.multiply(cr[1], cr[1], out=t)
        dbl += np.multiply(cr[2], cr[2], out=t)
        np.sqrt(dbl, out=dbl)
        dot = np.multiply(u[0], p[0])  # (b - a) . (c - a) = -q0 - q1 - q2
        np.negative(dot, out=dot)
        dot -= np.multiply(u[1], p[1], out=t)
        dot -= np.multiply(u[2], p[2], out=t)
        ang = np.arctan2(dbl, dot).reshape(3, n)
        corners(angle, s)[:] = ang
        cot = np.divide(dot, np.maximum(dbl, 1e-300, out=t), out=dot).reshape(3, n)
        np.multiply(cot, 0.5, out=corners(half_cot, s))
        sq = np.multiply(u[0], u[0])  # |b - a|^2
        sq += np.multiply(u[1], u[1], out=t)
        sq += np.multiply(u[2], u[2], out=t)
        sq = sq.reshape(3, n)
        np.sqrt(sq, out=corners(length, s))
        # the corner k = 0 spans the face: its cross product is the face's
        dbl_f = dbl[:n]
        fa = np.multiply(dbl_f, 0.5, out=face_area[lo:hi])
        fn = np.divide(cr[:, :n], np.maximum(dbl_f, 1e-300))  # [3, n]
        face_normal[lo:hi].T[:] = fn
        w = ang
        if area_weight:
            w = np.broadcast_to(fa, (3, n))
            corners(weight, s)[:] = w
        normal_s = normal[:, s].reshape(3, n, 3)  # (coordinate, face, k)
        for k in range(3):
            np.multiply(w[k], fn, out=normal_s[:, :, k])
        if mass == "barycentric":
            corners(corner_mass, s)[:] = fa / 3.0
            continue
        # mixed Voronoi (Meyer et al. 2003): |b - a|^2 cot(c) + |c - a|^2 cot(b)
        voronoi = sq * cot[prv]
        voronoi += sq[prv] * cot[nxt]
        voronoi /= 8.0
        obtuse = ang > 0.5 * math.pi
        np.copyto(voronoi, np.where(obtuse, fa / 2.0, fa / 4.0), where=obtuse.any(0))
        corners(corner_mass, s)[:] = voronoi
    return _Corners(a, b, c, angle, half_cot, length, corner_mass, normal, weight,
                    face_normal, face_area)


def _in_face(x: np.ndarray, shift: int) -> np.ndarray:
    r"""The per-corner array ``x`` read at the corner ``shift`` places further
    in the same face (``3 f + (k + shift) % 3``)."""
    return np.take(x.reshape(-1, 3), [1, 2, 0] if shift == 1 else [2, 0, 1],
                   axis=1).reshape(-1)


def _in_face_index(corner: np.ndarray, shift: int) -> np.ndarray:
    r"""The corner ``shift`` places further in the same face as ``corner``."""
    k = corner % 3
    return corner - k + (k + shift) % 3


def _edges(N: int, a: np.ndarray, b: np.ndarray, c: np.ndarray):
    r"""Unique mesh edges in both directions, ``[2, E]`` sorted by target then
    source, the first edge of every row (``ptr [N + 1]``, CSR) and for every
    corner the index of the edge ``b -> a`` (its next vertex seen from ``a``)
    and ``c -> a``.

    One sort of the ``2 C`` keys ``a N + b`` and ``a N + c`` (which hold
    every directed edge of every face) groups them; the group ranks are the
    edge indices, scattered back to the corners, so no later look-up
    (``searchsorted``) is needed. The sort is PyTorch's (on one thread about
    twice as fast as NumPy's timsort on these keys); stable, so the result
    does not depend on the sort's implementation.
    """
    C = a.size
    key = np.empty(2 * C, np.int64)  # target-major: (i = a, j = b or c)
    np.multiply(a, N, out=key[:C])
    key[:C] += b
    np.multiply(a, N, out=key[C:])
    key[C:] += c
    # each 2C-sized buffer is dropped once used: the peak memory of a call is
    # what the allocator maps afresh (and the kernel zeroes) on every call
    ks, order = torch.sort(torch.from_numpy(key), stable=True)
    del key
    uniq, rank = torch.unique_consecutive(ks, return_inverse=True)
    del ks
    eid = np.empty(2 * C, np.int64)
    eid[order.numpy()] = rank.numpy()
    del order, rank
    uniq = uniq.numpy()
    edge_index = np.empty((2, uniq.size), np.int64)
    src, dst = edge_index
    torch.div(torch.from_numpy(uniq), N, rounding_mode="floor", out=torch.from_numpy(dst))
    np.multiply(dst, N, out=src)
    np.subtract(uniq, src, out=src)
    del uniq
    ptr = np.zeros(N + 1, np.int64)
    np.cumsum(np.bincount(dst, minlength=N), out=ptr[1:])
    return edge_index, ptr, eid[:C], eid[C:]


def _laplacian(N: int, edge_index: np.ndarray, ptr: np.ndarray, eid_next: np.ndarray,
               eid_prev: np.ndarray, b: np.ndarray, c: np.ndarray,
               half_cot: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    r"""The coalesced COO cotangent Laplacian built directly on the edge list:
    its pattern is the edges (row = target) plus the diagonal, merged in
    row-major order by index arithmetic (no sparse-format round trip)."""
    src, dst = edge_index
    E = src.size
    # the corner at a weighs the opposite edge (b, c): the edge (row b, col c)
    # is "next" of the corner at b; (row c, col b) is "previous" of the corner at c
    C = half_cot.size
    w = np.empty(2 * C)
    w[:C] = w[C:] = half_cot
    idx = np.empty(2 * C, np.int64)
    np.take(eid_next.reshape(-1, 3), [1, 2, 0], axis=1, out=idx[:C].reshape(-1, 3))
    np.take(eid_prev.reshape(-1, 3), [2, 0, 1], axis=1, out=idx[C:].reshape(-1, 3))
    off = np.bincount(idx, w, minlength=E)
    np.negative(off, out=off)
    idx[:C], idx[C:] = b, c
    diag = np.bincount(idx, w, minlength=N)
    lower = src < dst
    n_lower = np.bincount(dst[lower], minlength=N)
    nnz = E + N
    index = np.empty((2, nnz), np.int64)
    rows, cols = index
    vals = np.empty(nnz)
    # the diagonal of row i comes after the edges of the rows before it and the
    # edges of its own row with a smaller column; the edges fill the rest in order
    ar = np.arange(N)
    pd = ptr[:-1] + ar
    pd += n_lower
    pe = np.ones(nnz, bool)
    pe[pd] = False
    rows[pe], cols[pe], vals[pe] = dst, src, off
    rows[pd], cols[pd], vals[pd] = ar, ar, diag
    return index, vals


def _corner_owners(E: int, eid_next: np.ndarray, eid_prev: np.ndarray):
    r"""Per edge ``j -> i`` the corner at ``i`` whose next vertex is ``j``
    (``owner_next``, -1 if none: the last neighbour of a boundary vertex is
    only the previous vertex of a corner), a mask of the edges that have one
    (``[E + 1]``, the sink ``E`` has none), and the corners whose previous
    edge has none. Raises unless every directed edge belongs to at most one
    face (a consistently oriented manifold mesh)."""
    C = eid_next.size
    corners = np.arange(C)
    owner_next = np.full(E, -1, dtype=np.int64)
    owner_next[eid_next] = corners
    if not np.array_equal(owner_next[eid_next], corners):
        raise ValueError(
            "'mesh_to_data' with method='intrinsic' requires a consistently oriented "
            "manifold mesh, but a directed edge belongs to more than one face (a "
            "non-manifold edge or flipped faces); fix the mesh or use method='extrinsic'"
            + _CLEAN_HINT)
    owned = np.zeros(E + 1, bool)
    owned[:E] = owner_next >= 0
    return owner_next, owned, np.flatnonzero(~owned[eid_prev])


def _intrinsic_polar(N, a, angle, edge_index, ptr, eid_next, eid_prev, owner_next, owned,
                     open_corners):
    r"""Angle-normalised polar angles :math:`\phi_i(j)` of the 1-rings, per
    edge (not yet wrapped), and the reference neighbour (whose direction is
    :math:`\phi = 0`) of every vertex; ``owner_next``, ``owned`` and
    ``open_corners`` as returned by :func:`_corner_owners`.

    Walks the corners around every vertex counter-clockwise and accumulates
    tip angles. The walk runs on the edges: the corner at ``i`` whose next
    vertex is ``j`` stands for the edge ``j -> i``, so that the corners of a
    vertex lie side by side in the edge list, and the next corner of the walk
    is the corner's previous edge. All vertices advance at once, one corner
    per step; the edge index ``E`` is a sink (its successor is itself, its
    angle 0) where a walk has ended, and the finished walks are dropped once
    they are half of those left, so the work stays linear in the corner
    count.
    """
    src, dst = edge_index
    E = src.size
    is_prev = np.zeros(E, bool)
    is_prev[eid_prev] = True
    # start corner per vertex: the corner with no predecessor (boundary
    # vertices), else the corner whose next vertex has the smallest index
    first = np.flatnonzero(owned[:E] & ~is_prev)  # the boundary corners
    n_bnd = np.bincount(dst[first], minlength=N)
    if (n_bnd > 1).any():
        v = int(np.nonzero(n_bnd > 1)[0][0])
        raise ValueError(
            f"'mesh_to_data' with method='intrinsic' requires a manifold mesh, but vertex "
            f"{v} touches several boundary fans (a non-manifold vertex); fix the mesh or use "
            f"method='extrinsic'" + _MANIFOLD_HINT)
    # the first edge of a row has the smallest source; on a vertex without
    # boundary corner every neighbour is the next vertex of one of its corners
    start = ptr[:-1].copy()
    start[~owned[start]] = -1
    start[dst[first]] = first
    cur = start[start >= 0]
    # a walk ends at the sink: after the last corner of a boundary fan (whose
    # previous edge belongs to no corner) or before coming back to its start
    succ = np.full(E + 1, E, dtype=np.int64)
    succ[eid_next] = eid_prev
    is_start = np.zeros(E + 1, bool)
    is_start[cur] = True
    succ[~owned[succ] | is_start[succ]] = E
    ang = np.zeros(E + 1)
    ang[eid_next] = angle
    cum = np.full(E + 1, np.nan)
    acc = np.zeros(cur.size)
    alive = cur.size
    while alive:
        cum[cur] = acc
        acc += ang[cur]
        cur = succ[cur]
        alive = int(np.count_nonzero(cur != E))
        if 2 * alive <= cur.size:
            keep = cur != E
            cur, acc = cur[keep], acc[keep]
    phi = cum[:E]  # a view: scaled in place below
    missed = owned[:E] & np.isnan(phi)
    if missed.any():
        v = int(a[owner_next[missed].min()])
        raise ValueError(
            f"'mesh_to_data' with method='intrinsic' requires a manifold mesh, but the faces "
            f"around vertex {v} form more than one fan (a non-manifold vertex); fix the mesh "
            f"or use method='extrinsic'" + _MANIFOLD_HINT)
    total = np.bincount(a, angle, minlength=N)
    scale = np.where(n_bnd == 1, 1.0, _TWO_PI / np.maximum(total, 1e-300))
    phi *= scale[dst]
    # the last neighbour of a boundary vertex is only the previous vertex of a
    # corner: phi there is the corner's (scaled) cumulative angle plus its tip angle
    cp = open_corners
    if cp.size:
        phi[eid_prev[cp]] = phi[eid_next[cp]] + scale[a[cp]] * angle[cp]
    ref = np.full(N, -1, dtype=np.int64)
    ref[start >= 0] = src[start[start >= 0]]
    return phi, ref


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
    Pt = np.ascontiguousarray(P.T)  # [3, N]
    K = _corner_data(Pt, F, normal_weighting, mass)
    a, b, c, angle, face_area = K.a, K.b, K.c, K.angle, K.face_area
    ext = np.linalg.norm(Pt.max(1) - Pt.min(1))
    tiny = face_area <= 1e-14 * max(ext, 1e-300) ** 2
    if tiny.any():
        raise ValueError(f"'mesh_to_data' received {int(tiny.sum())} degenerate face(s) of "
                         f"(near) zero area (e.g. face {int(np.nonzero(tiny)[0][0])}); "
                         f"remove them first" + _CLEAN_HINT)

    # vertex normals: the weighted face normals summed per corner vertex
    nsum = np.stack([np.bincount(a, K.normal[d], minlength=N) for d in range(3)])
    nlen = _norm_rows(nsum)
    normal = (nsum / np.maximum(nlen, 1e-300)).T  # [N, 3], as _unit(nsum.T)
    wsum = np.bincount(a, K.weight, minlength=N)
    if (nlen <= 1e-12 * np.maximum(wsum, 1e-300)).any():
        v = int(np.nonzero(nlen <= 1e-12 * wsum)[0][0])
        raise ValueError(f"'mesh_to_data' cannot define a normal at vertex {v}: its face "
                         f"normals cancel out (inconsistently oriented faces?)" + _CLEAN_HINT)
    # per-corner arrays are dropped once used (a smaller peak is less memory the
    # allocator maps afresh on every call, see _edges)
    vmass = np.bincount(a, K.mass, minlength=N)
    K = K._replace(normal=None, weight=None, mass=None)
    del Pt, nsum, nlen, wsum

    edge_index, ptr, eid_next, eid_prev = _edges(N, a, b, c)
    lap_index, lap_weight = _laplacian(N, edge_index, ptr, eid_next, eid_prev, b, c,
                                       K.half_cot)
    K = K._replace(b=None, c=None, half_cot=None)
    del b, c

    src, dst = edge_index
    E = src.size
    logmap = np.empty((E, 2))  # (r, phi), filled in place
    # |x_j - x_i| of the edge (i = a, j = b or c): the corner's edge lengths
    r = logmap[:, 0]
    r[eid_next] = K.length
    if method == "intrinsic":
        owner_next, owned, cp = _corner_owners(E, eid_next, eid_prev)
        # every edge is the next edge of a corner, or the previous edge of a corner cp
        # (whose length is that of the corner before it)
        r[eid_prev[cp]] = K.length[_in_face_index(cp, 2)]
        phi, ref = _intrinsic_polar(N, a, angle, edge_index, ptr, eid_next, eid_prev,
                                    owner_next, owned, cp)
        frame = _tangent_frame(normal, P[ref] - P)
        # the edge i -> j of the edge j -> i (row a, col b) is "previous" of
        # the corner at b; that of (row a, col c) is "next" of the corner at c
        rev = np.empty(E, np.int64)
        rev[eid_next] = _in_face(eid_prev, 1)
        rev[eid_prev[cp]] = eid_next[_in_face_index(cp, 2)]
        conn = phi + math.pi
        conn -= phi[rev]
        del rev, owner_next, owned
        _wrap(conn, out=conn)
        _wrap(phi, out=phi)
    else:
        r[eid_prev] = _in_face(K.length, 2)
        ref = src[ptr[:-1]]  # smallest neighbour index
        frame = _tangent_frame(normal, P[ref] - P)
        phi, conn = _extrinsic_edges(P, normal, frame, src, dst)
    logmap[:, 1] = phi
    del eid_next, eid_prev, a, angle, F
    K = K._replace(a=None, angle=None, length=None)

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
        logmap = np.stack([r, phi], axis=-1)

    # every result is checked after its cast to the dtype of pos (areas grow with the
    # square of the scale: positions of 1e20 or 1e-25 are fine in float32, their areas not)
    fn = "mesh_to_data"
    dev = pos.device
    _check_normalized(fn, lap_weight, vmass, pos.dtype, lap_index[0], ptr + np.arange(N + 1))
    return Data(
        pos=pos,
        face=face.to(torch.long),
        normal=_to_out(normal, pos, fn, "normal"),
        face_normal=_to_out(K.face_normal, pos, fn, "face_normal"),
        face_area=_to_out(face_area, pos, fn, "face_area", positive=True),
        mass=_to_out(vmass, pos, fn, "mass", positive=True),
        laplacian_index=torch.from_numpy(lap_index).to(dev),
        laplacian_weight=_to_out(lap_weight, pos, fn, "laplacian_weight"),
        frame=_to_out(frame, pos, fn, "frame"),
        edge_index=torch.from_numpy(np.ascontiguousarray(edge_index)).to(dev),
        edge_logmap=_to_out(logmap, pos, fn, "edge_logmap", positive=True),
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
