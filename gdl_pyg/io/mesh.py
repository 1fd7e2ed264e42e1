r"""Reading and writing triangle meshes as :class:`~torch_geometric.data.Data`.

A mesh ``Data`` holds ``pos [N, 3]`` (float) and ``face [3, F]`` (long, PyG's
layout: one column per triangle, corners in the file's orientation). PLY files
may add per-vertex ``normal [N, 3]``, ``color [N, 3 or 4]`` and any other
scalar vertex property under its own name (e.g. ``part [N]``).

All parsing goes through maintained libraries:

=============================================  =============================================
extension                                      reader / writer
=============================================  =============================================
``.off``                                       :mod:`trimesh` (reader), :mod:`meshio` (writer)
``.obj``                                       this module (see below), :mod:`meshio` (writer)
``.ply`` (ASCII, binary)                       :mod:`plyfile`
``.stl`` (ASCII, binary)                       :mod:`trimesh`
``.vtk`` ``.vtu`` ``.msh`` ``.mesh`` ``.inp``  :mod:`meshio` (legacy VTK, VTK XML, Gmsh 4.1,
                                               Medit, Abaqus)
=============================================  =============================================

The libraries are used with every "repair" switched off (trimesh with
``process=False``); :func:`read_mesh` then validates the result itself and
raises :class:`ValueError` naming the file and the problem. For OFF, trimesh's
tokeniser is used but its polygon triangulation (which reorders faces, and
fails on faces of more than four corners in trimesh 5.2) is intercepted so the
raw polygons are triangulated here, and the face count is checked against the
header.

**Polygons** with :math:`k > 3` corners are fan-triangulated from their first
corner, :math:`(v_0, v_i, v_{i+1})` for :math:`i = 1, \dots, k-2`, in file
order (each polygon's triangles are consecutive). The fan is exact for convex
(and, more generally, star-shaped about :math:`v_0`) polygons.

**OBJ** files are read by a small statement reader here, not by a library:
trimesh (5.2) splits a vertex into one copy per texture coordinate / normal
it is used with (or, with ``maintain_order=True``, drops the vertices after
the largest index used), groups the faces by material (so faces of several
``usemtl`` blocks come back out of file order, as separate geometries),
resolves relative (negative) indices against the whole file rather than the
line, and silently skips faces with fewer than three corners (so a truncated
file loads); meshio (5.3) fails on every file whose ``vt`` / ``vn`` counts
differ from its ``v`` count. Only the ``v`` and ``f`` statements define the
surface: ``pos`` holds one row per ``v`` line, in file order, and faces refer
to positions only (``f v/vt/vn`` uses ``v``); ``vt``, ``vn``, ``g``, ``o``,
``s``, ``mtllib`` / ``usemtl`` (the ``.mtl`` file is never opened), ``l``,
``p`` and free-form statements are ignored; comments, CRLF line ends, line
continuations (a trailing backslash) and relative indices are understood.
All corners of a face must have the same form (``v``, ``v/vt``, ``v//vn`` or
``v/vt/vn``).

**Truncation.** A text file (OBJ, OFF, ASCII PLY) cut inside its last
number still parses, as a different mesh (``f 1 2 967`` cut to ``f 1 2 96``).
Such a file is rejected when it does not end with a line break and its last
line ends in a number (for OBJ: a ``v`` or ``f`` line); the limit: a complete
file that merely lacks its final newline is rejected too (the message says to
append one), and a cut exactly before a line break cannot be detected. Header
counts (PLY elements, OFF vertices and faces) are checked against the file
size before anything is allocated from them.

**Cleaning** (:obj:`clean=True`, :func:`clean_mesh`) merges exactly equal
vertices, drops degenerate and duplicate triangles, orients the triangles
consistently (every edge shared by two triangles traversed in opposite
directions; per edge-connected component, the majority's orientation wins)
and closed components outwards (positive signed volume), and finally drops
unreferenced vertices; a flipped triangle ``(a, b, c)`` becomes ``(c, b, a)``.
Non-manifold edges and vertices are reported (:class:`MeshReport`) but not
repaired.

**STL** stores an unindexed triangle soup; exactly equal corner positions are
merged into one vertex on reading (vertices numbered by first appearance), so
an STL round trip keeps every triangle but not vertex order or unreferenced
vertices.
"""
import contextlib
import os
import re
import threading
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union
from unittest import mock

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

from gdl_pyg.io._utils import (
    PathLike,
    atomic_path,
    check_pos,
    check_declared_size,
    check_final_newline,
    check_readable,
    float_tensor,
    resolve_format,
    split_data,
    to_numpy,
)

__all__ = ["MeshReport", "read_mesh", "write_mesh", "mesh_report", "clean_mesh",
           "MESH_EXTENSIONS"]

#: extension -> canonical format (meshio's name for the meshio formats)
MESH_EXTENSIONS: Dict[str, str] = {
    "off": "off",
    "obj": "obj",
    "ply": "ply",
    "stl": "stl",
    "vtk": "vtk",
    "vtu": "vtu",
    "msh": "gmsh",
    "mesh": "medit",
    "inp": "abaqus",
}
_MESHIO_FORMATS = {"vtk", "vtu", "gmsh", "medit", "abaqus"}
_SURFACE_CELLS = {"triangle", "quad", "polygon"}
_IGNORED_CELLS = {"vertex", "line", "line3"}
_VOLUME_PREFIXES = ("tetra", "hexahedron", "wedge", "pyramid")

# PLY vertex properties with a fixed meaning; others become attributes of their own name
_PLY_XYZ = ("x", "y", "z")
_PLY_NORMAL = ("nx", "ny", "nz")
_PLY_COLOR = ("red", "green", "blue", "alpha")
_RESERVED = {"pos", "face", "normal", "color", "x", "y", "edge_index", "edge_attr", "batch",
             "ptr", "num_nodes"}

_OFF_LOCK = threading.Lock()


@dataclass(frozen=True)
class MeshReport:
    r"""What :func:`read_mesh` found in a mesh (before any cleaning).

    Args:
        num_duplicate_vertices (int): vertices whose position exactly equals
            that of an earlier vertex.
        num_unreferenced_vertices (int): vertices used by no face.
        num_degenerate_faces (int): triangles with a repeated corner (after
            merging duplicate vertices) or an area below
            ``area_tol * diagonal**2`` (``diagonal`` = bounding-box diagonal).
        num_duplicate_faces (int): non-degenerate triangles whose corner set
            (after merging duplicate vertices, ignoring orientation) equals
            that of an earlier triangle.
        num_polygons_triangulated (int): faces with more than three corners in
            the file.
        non_manifold_edges (int): edges shared by more than two triangles
            (counted after merging duplicate vertices and dropping degenerate
            and duplicate triangles).
        num_boundary_edges (int): edges used by exactly one triangle (same
            convention); zero for a closed surface.
        num_vertices (int): vertices in the file.
        num_faces (int): triangles after triangulation, before cleaning.
        non_manifold_vertices (int): vertices where two or more fans of
            triangles meet that share no edge around the vertex ("bow-ties";
            same convention as ``non_manifold_edges``).
        inconsistent_winding (int): triangles whose orientation disagrees
            with their edge-neighbours: per connected component (triangles
            joined by edges shared by exactly two triangles), the smaller of
            the two sets of triangles that a consistent orientation separates.
            :obj:`clean=True` flips them.
        num_inverted_components (int): closed, consistently orientable
            components whose (majority) orientation points inwards (negative
            signed volume); :obj:`clean=True` flips them outwards.
        num_non_orientable_edges (int): edges that stay inconsistently
            oriented whatever the orientation (a non-orientable component,
            e.g. a Möbius strip); no cleaning can fix them.
    """
    num_duplicate_vertices: int
    num_unreferenced_vertices: int
    num_degenerate_faces: int
    num_duplicate_faces: int
    num_polygons_triangulated: int
    non_manifold_edges: int
    num_boundary_edges: int = 0
    num_vertices: int = 0
    num_faces: int = 0
    non_manifold_vertices: int = 0
    inconsistent_winding: int = 0
    num_inverted_components: int = 0
    num_non_orientable_edges: int = 0

    @property
    def is_clean(self) -> bool:
        r""":obj:`True` when there is nothing that :obj:`clean=True` would change
        (remove or re-orient)."""
        return (self.num_duplicate_vertices == 0 and self.num_unreferenced_vertices == 0
                and self.num_degenerate_faces == 0 and self.num_duplicate_faces == 0
                and self.inconsistent_winding == 0 and self.num_inverted_components == 0)

    @property
    def is_manifold(self) -> bool:
        r""":obj:`True` without non-manifold edges and vertices."""
        return self.non_manifold_edges == 0 and self.non_manifold_vertices == 0

    @property
    def is_oriented(self) -> bool:
        r""":obj:`True` when every edge shared by two triangles is traversed in
        opposite directions by them, and closed components face outwards."""
        return (self.inconsistent_winding == 0 and self.num_inverted_components == 0
                and self.num_non_orientable_edges == 0)

    def problems(self) -> List[str]:
        r"""Human-readable list of what :obj:`clean=True` would fix."""
        names = [("num_duplicate_vertices", "duplicate vertex(es)"),
                 ("num_unreferenced_vertices", "unreferenced vertex(es)"),
                 ("num_degenerate_faces", "degenerate face(s)"),
                 ("num_duplicate_faces", "duplicate face(s)"),
                 ("inconsistent_winding", "face(s) wound against their neighbours"),
                 ("num_inverted_components", "inward-facing closed component(s)")]
        return [f"{getattr(self, k)} {text}" for k, text in names if getattr(self, k)]

    def to_dict(self) -> Dict[str, int]:
        return asdict(self)


# ---------------------------------------------------------------------------
# analysis and cleaning (pure numpy, float64)
# ---------------------------------------------------------------------------

def _unique_rows(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    r"""``(first, inverse)`` of the exactly equal rows of ``x [M, C]`` (int64 or
    float64): the index of each distinct row's first occurrence, and for each
    row the position of its distinct row in ``first``. As
    ``np.unique(x, axis=0, return_index=True, return_inverse=True)`` but an
    order of magnitude faster (one byte-string sort instead of a structured
    one); ``-0.0`` equals ``0.0``."""
    x = np.ascontiguousarray(x + 0.0 if x.dtype.kind == "f" else x)  # -0.0 + 0.0 = 0.0
    view = x.view(np.dtype((np.void, x.dtype.itemsize * x.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(view, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def _analyse(pos: np.ndarray, tri: np.ndarray, num_polygons: int, area_tol: float):
    r"""Returns the report and the arrays :func:`_clean` needs.

    ``pos [N, 3]`` float64, ``tri [T, 3]`` int64 (validated indices).
    """
    n = pos.shape[0]
    first, inverse = _unique_rows(pos)
    rep = first[inverse]  # representative (first occurrence) of each vertex
    num_dup_vertices = n - first.shape[0]

    referenced = np.zeros(n, dtype=bool)
    referenced[tri.reshape(-1)] = True
    num_unreferenced = int(n - referenced.sum())

    tri_m = rep[tri]
    repeated = ((tri_m[:, 0] == tri_m[:, 1]) | (tri_m[:, 1] == tri_m[:, 2])
                | (tri_m[:, 0] == tri_m[:, 2]))
    p0, p1, p2 = pos[tri[:, 0]], pos[tri[:, 1]], pos[tri[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(p1 - p0, p2 - p0), axis=1)
    diag = float(np.linalg.norm(pos.max(axis=0) - pos.min(axis=0))) if n else 0.0
    degenerate = repeated | (area <= area_tol * diag * diag)

    keep = ~degenerate
    idx_nd = np.nonzero(keep)[0]
    if idx_nd.size:
        key = np.sort(tri_m[idx_nd], axis=1)
        first_face, _ = _unique_rows(key)
        is_first = np.zeros(idx_nd.size, dtype=bool)
        is_first[first_face] = True
        keep[idx_nd[~is_first]] = False
        num_dup_faces = int(idx_nd.size - first_face.size)
    else:
        num_dup_faces = 0

    kept = tri_m[keep]
    topo = _topology(kept, pos, n)
    flip = np.zeros(tri.shape[0], dtype=bool)
    flip[keep] = topo["flip"]

    report = MeshReport(
        num_duplicate_vertices=int(num_dup_vertices),
        num_unreferenced_vertices=num_unreferenced,
        num_degenerate_faces=int(degenerate.sum()),
        num_duplicate_faces=num_dup_faces,
        num_polygons_triangulated=int(num_polygons),
        non_manifold_edges=topo["non_manifold_edges"],
        num_boundary_edges=topo["boundary_edges"],
        num_vertices=int(n),
        num_faces=int(tri.shape[0]),
        non_manifold_vertices=topo["non_manifold_vertices"],
        inconsistent_winding=topo["inconsistent"],
        num_inverted_components=topo["inverted"],
        num_non_orientable_edges=topo["non_orientable"],
    )
    return report, tri_m, keep, flip


def _topology(tri: np.ndarray, pos: np.ndarray, n: int) -> Dict[str, object]:
    r"""Edge / vertex manifoldness and a consistent, outward orientation of the
    triangles ``tri [T, 3]`` (no degenerate or duplicate triangles).

    Returns counts and ``flip [T]``: the triangles to reverse so that every
    edge shared by exactly two triangles is traversed in opposite directions
    by them (per component, keeping the majority's orientation), and closed
    components have a positive signed volume.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import breadth_first_order, connected_components

    T = tri.shape[0]
    out: Dict[str, object] = dict(non_manifold_edges=0, boundary_edges=0,
                                  non_manifold_vertices=0, inconsistent=0, inverted=0,
                                  non_orientable=0, flip=np.zeros(T, dtype=bool))
    if T == 0:
        return out
    # half-edges: corner k of face t runs from tri[t, k] to tri[t, k + 1]
    a = tri.reshape(-1)
    b = tri[:, [1, 2, 0]].reshape(-1)
    face = np.repeat(np.arange(T), 3)
    corner_a = np.arange(3 * T)  # the corner of face t at vertex a
    corner_b = 3 * face + (np.arange(3 * T) % 3 + 1) % 3  # ... and at vertex b
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    forward = a < b
    corner_lo = np.where(forward, corner_a, corner_b)
    corner_hi = np.where(forward, corner_b, corner_a)
    order = np.lexsort((hi, lo))
    lo_s, hi_s = lo[order], hi[order]
    start = np.ones(order.size, dtype=bool)
    start[1:] = (lo_s[1:] != lo_s[:-1]) | (hi_s[1:] != hi_s[:-1])
    group = np.cumsum(start) - 1  # undirected edge of each sorted half-edge
    counts = np.bincount(group)
    out["non_manifold_edges"] = int((counts > 2).sum())
    out["boundary_edges"] = int((counts == 1).sum())

    # non-manifold vertices: the corners at one vertex are joined when their faces
    # share an edge through it; a vertex whose corners form several groups is a bow-tie
    first = np.nonzero(start)[0][group]  # sorted position of the edge's first half-edge
    rows = np.concatenate([corner_lo[order], corner_hi[order]])
    cols = np.concatenate([corner_lo[order][first], corner_hi[order][first]])
    graph = coo_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)),
                       shape=(3 * T, 3 * T))
    _, fan = connected_components(graph, directed=False)
    pairs = np.unique(a * (3 * T) + fan) // (3 * T)  # one entry per (vertex, fan)
    out["non_manifold_vertices"] = int((np.bincount(pairs, minlength=n) > 1).sum())

    # orientation: faces are neighbours across edges shared by exactly two faces
    is_first = (counts[group] == 2) & start
    i1 = order[is_first]
    i2 = order[np.nonzero(is_first)[0] + 1]
    f1, f2 = face[i1], face[i2]
    same = forward[i1] == forward[i2]  # both run the same way along the edge: inconsistent
    adj = coo_matrix((np.ones(f1.size, dtype=np.int8), (f1, f2)), shape=(T, T))
    num_comp, comp = connected_components(adj, directed=False)
    # a spanning forest: breadth-first from a virtual root (node T) that is joined to
    # the first face of every component
    roots = np.unique(comp, return_index=True)[1]
    tree = coo_matrix((np.ones(f1.size + roots.size, dtype=np.int8),
                       (np.concatenate([f1, np.full(roots.size, T)]),
                        np.concatenate([f2, roots]))), shape=(T + 1, T + 1)).tocsr()
    _, pred = breadth_first_order(tree, T, directed=False, return_predecessors=True)
    pred = pred[:T]
    ar = np.arange(T)
    top = pred == T  # the component's root face
    # parity of each tree edge (pred -> face), looked up among the neighbour pairs
    key_adj = np.minimum(f1, f2) * (T + 1) + np.maximum(f1, f2)
    srt = np.argsort(key_adj)
    key_adj, par_adj = key_adj[srt], same[srt]
    p = np.where(top, ar, pred)
    key_tree = np.minimum(p, ar) * (T + 1) + np.maximum(p, ar)
    parity = np.zeros(T, dtype=bool)
    if key_adj.size:
        at = np.minimum(np.searchsorted(key_adj, key_tree), key_adj.size - 1)
        parity = np.where(top, False, par_adj[at])
    # flip relative to the root: xor of the parities up the tree (pointer jumping)
    # (invariant: acc[v] = xor from v up to anc[v]; roots have anc = self, acc = False)
    anc, flip = p, parity
    while True:
        nxt = anc[anc]
        if np.array_equal(nxt, anc):
            break
        flip = flip ^ flip[anc]
        anc = nxt
    # keep each component's majority orientation
    size = np.bincount(comp, minlength=num_comp)
    flipped = np.bincount(comp, flip.astype(np.int64), minlength=num_comp)
    flip = flip ^ (flipped * 2 > size)[comp]
    out["inconsistent"] = int(np.minimum(flipped, size - flipped).sum())
    bad = same ^ flip[f1] ^ flip[f2]  # still inconsistent: non-orientable
    out["non_orientable"] = int(bad.sum())
    # closed components (no boundary / non-manifold edge, orientable) face outwards
    open_comp = np.zeros(num_comp, dtype=bool)
    open_comp[comp[face[order[counts[group] != 2]]]] = True
    open_comp[comp[f1[bad]]] = True
    oriented = np.where(flip[:, None], tri[:, [2, 1, 0]], tri)
    p0, p1, p2 = pos[oriented[:, 0]], pos[oriented[:, 1]], pos[oriented[:, 2]]
    vol = np.bincount(comp, np.einsum("ij,ij->i", p0, np.cross(p1, p2)), minlength=num_comp)
    inverted = ~open_comp & (vol < 0)
    out["inverted"] = int(inverted.sum())
    out["flip"] = flip ^ inverted[comp]
    return out


def _clean(tri_m: np.ndarray, keep_face: np.ndarray, n: int,
           flip: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    r"""Returns ``(kept_vertices [N'], new_tri [T', 3])``: the original indices of
    the vertices that survive (in original order) and the remapped triangles,
    those marked in ``flip [T]`` reversed (corners ``(c, b, a)``)."""
    tri = tri_m if flip is None else np.where(flip[:, None], tri_m[:, [2, 1, 0]], tri_m)
    kept = tri[keep_face]
    used = np.zeros(n, dtype=bool)
    used[kept.reshape(-1)] = True
    kept_vertices = np.nonzero(used)[0]
    new_index = np.full(n, -1, dtype=np.int64)
    new_index[kept_vertices] = np.arange(kept_vertices.size)
    return kept_vertices, new_index[kept]


def _pos_face_numpy(pos, face, what: str) -> Tuple[np.ndarray, np.ndarray]:
    pos = check_pos(to_numpy(pos, "pos"), what).astype(np.float64)
    face = _check_face(to_numpy(face, "face"), pos.shape[0], what)
    return pos, face.T.copy()


def mesh_report(pos: Union[Tensor, np.ndarray], face: Union[Tensor, np.ndarray],
                area_tol: float = 1e-12) -> MeshReport:
    r"""Counts duplicate / unreferenced vertices, degenerate / duplicate faces,
    non-manifold edges and vertices, and inconsistently wound or inverted
    faces of a triangle mesh (see :class:`MeshReport`).

    Args:
        pos (torch.Tensor or numpy.ndarray): vertex positions :math:`[N, 3]`.
        face (torch.Tensor or numpy.ndarray): triangles :math:`[3, F]`.
        area_tol (float, optional): a triangle with area at most
            ``area_tol * diagonal**2`` is degenerate. (default: :obj:`1e-12`)
    """
    p, t = _pos_face_numpy(pos, face, "'mesh_report'")
    return _analyse(p, t, 0, area_tol)[0]


def clean_mesh(pos: Tensor, face: Tensor, area_tol: float = 1e-12
               ) -> Tuple[Tensor, Tensor, MeshReport]:
    r"""Merges exactly duplicate vertices, drops degenerate and duplicate
    triangles, orients the triangles consistently (closed components
    outwards), then drops unreferenced vertices. Surviving vertices and faces
    keep their relative order; a re-oriented triangle ``(a, b, c)`` becomes
    ``(c, b, a)`` (see :mod:`gdl_pyg.io.mesh`).

    Args:
        pos (torch.Tensor): vertex positions :math:`[N, 3]`.
        face (torch.Tensor): triangles :math:`[3, F]`.
        area_tol (float, optional): see :func:`mesh_report`. (default: :obj:`1e-12`)

    Returns:
        ``(pos [N', 3], face [3, F'], report)``, ``pos`` in the input's dtype,
        ``report`` describing the input.
    """
    p, t = _pos_face_numpy(pos, face, "'clean_mesh'")
    report, tri_m, keep, flip = _analyse(p, t, 0, area_tol)
    kept_vertices, new_tri = _clean(tri_m, keep, p.shape[0], flip)
    pos_t = torch.as_tensor(pos)
    index = torch.from_numpy(kept_vertices).to(pos_t.device)
    return (pos_t[index], torch.from_numpy(new_tri.T.copy()).to(pos_t.device), report)


# ---------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------

def _check_face(face: np.ndarray, n: int, what: str) -> np.ndarray:
    if face.ndim != 2 or face.shape[0] != 3:
        raise ValueError(f"{what} expected 'face' tensor with shape [3, num_faces] "
                         f"(got {list(face.shape)})")
    if not np.issubdtype(face.dtype, np.integer):
        raise TypeError(f"{what} expected an integer 'face' tensor (got dtype {face.dtype})")
    if face.shape[1] == 0:
        raise ValueError(f"{what} received a mesh without faces (face shape [3, 0])")
    lo, hi = int(face.min()), int(face.max())
    if lo < 0 or hi >= n:
        raise ValueError(f"{what} received face indices in [{lo}, {hi}] but the mesh has "
                         f"{n} vertices (expected indices in [0, {n - 1}])")
    return face.astype(np.int64)


def _triangulate(blocks: Sequence, path: str) -> Tuple[np.ndarray, int]:
    r"""Fan-triangulates faces given as a sequence of blocks, each either an int
    array ``[F_b, k_b]`` or a ragged list of index sequences. Returns
    ``(tri [T, 3], number of faces with more than 3 corners)``."""
    out: List[np.ndarray] = []
    num_poly = seen = 0
    for block in blocks:
        if isinstance(block, np.ndarray) and block.ndim == 2:
            groups = [(block, None)]
            lengths = np.full(block.shape[0], block.shape[1], dtype=np.int64)
        else:
            faces = list(block)
            lengths = np.fromiter((len(f) for f in faces), dtype=np.int64, count=len(faces))
            groups = []
            for k in np.unique(lengths):
                rows = np.nonzero(lengths == k)[0]
                try:
                    arr = np.asarray([faces[i] for i in rows]).astype(np.int64)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"'{path}': face indices are not integers ({exc})") from exc
                groups.append((arr, rows))
        if lengths.size and lengths.min() < 3:
            bad = int(np.nonzero(lengths < 3)[0][0])
            raise ValueError(f"'{path}': face {seen + bad} has {int(lengths[bad])} "
                             f"corner(s); faces need at least 3")
        seen += lengths.size
        num_poly += int((lengths > 3).sum())
        # number of triangles of each face, and where its fan starts in the output
        ntri = lengths - 2
        start = np.concatenate([[0], np.cumsum(ntri)[:-1]]) if ntri.size else ntri
        tri = np.empty((int(ntri.sum()), 3), dtype=np.int64)
        for arr, rows in groups:
            arr = np.asarray(arr)
            if not np.issubdtype(arr.dtype, np.integer):
                if np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)):
                    arr = arr.astype(np.int64)
                else:
                    raise ValueError(f"'{path}': face indices are not integers")
            arr = arr.astype(np.int64)
            k = arr.shape[1]
            fan = np.stack([np.repeat(arr[:, :1], k - 2, axis=1), arr[:, 1:k - 1], arr[:, 2:k]],
                           axis=-1)  # [F_k, k - 2, 3]
            s = start if rows is None else start[rows]
            dest = (s[:, None] + np.arange(k - 2)[None, :]).reshape(-1)
            tri[dest] = fan.reshape(-1, 3)
        out.append(tri)
    if not out:
        return np.zeros((0, 3), dtype=np.int64), 0
    return np.concatenate(out, axis=0), num_poly


def _wrap(path: str, fmt: str, exc: BaseException) -> ValueError:
    msg = str(exc).strip()
    msg = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return ValueError(f"'{path}' could not be read as {fmt.upper()}: {msg}")


# ---------------------------------------------------------------------------
# readers: each returns (vertices float64 [N, 3], tri [T, 3], num_polygons, attrs)
# ---------------------------------------------------------------------------

def _ply_vertex_attrs(vertex: np.ndarray) -> Dict[str, np.ndarray]:
    names = vertex.dtype.names
    attrs: Dict[str, np.ndarray] = {}
    if all(n in names for n in _PLY_NORMAL):
        attrs["normal"] = np.stack([vertex[n] for n in _PLY_NORMAL], axis=1)
    color = [n for n in _PLY_COLOR if n in names]
    if all(n in names for n in _PLY_COLOR[:3]):
        attrs["color"] = np.stack([vertex[n] for n in color], axis=1)
    fixed = set(_PLY_XYZ) | (set(_PLY_NORMAL) if "normal" in attrs else set()) | \
        (set(color) if "color" in attrs else set())
    for name in names:
        if name in fixed:
            continue
        col = vertex[name]
        if col.dtype == object or col.ndim != 1:  # list properties: not per-vertex scalars
            continue
        attrs[f"ply_{name}" if name in _RESERVED else name] = np.asarray(col)
    return attrs


_PLY_SIZES = {"char": 1, "int8": 1, "uchar": 1, "uint8": 1, "short": 2, "int16": 2,
              "ushort": 2, "uint16": 2, "int": 4, "int32": 4, "uint": 4, "uint32": 4,
              "float": 4, "float32": 4, "double": 8, "float64": 8}


def _check_ply_header(path: str) -> None:
    r"""Checks the element counts of a PLY header against the file size
    before :mod:`plyfile` allocates arrays of that many rows: in a binary file
    every element needs at least the bytes of its scalar properties and list
    counts, in an ASCII file at least two bytes (a digit and a separator) per
    property. An ASCII file must also end with a line break (see
    :func:`~gdl_pyg.io._utils.check_final_newline`). A header this check
    cannot follow is left to :mod:`plyfile`'s own errors."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(min(size, 1 << 20))
    end = head.find(b"end_header")
    nl = head.find(b"\n", end) if end >= 0 else -1
    if nl < 0:
        return
    body = size - (nl + 1)
    fmt, elements = None, []
    for line in head[:end].decode("ascii", "replace").splitlines():
        t = line.split()
        if not t:
            continue
        if t[0] == "format" and len(t) >= 2:
            fmt = t[1]
        elif t[0] == "element" and len(t) >= 3:
            try:
                elements.append([t[1], int(t[2]), 0])
            except ValueError:
                return
        elif t[0] == "property" and elements:
            size_of = _PLY_SIZES.get(t[2] if len(t) >= 5 and t[1] == "list" else
                                     (t[1] if len(t) >= 3 else ""))
            if size_of is None:
                return
            elements[-1][2] += size_of if fmt != "ascii" else 2
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        return
    need = 0
    for name, count, per in elements:
        need += count * per
        check_declared_size(path, "PLY", f"'{name}' elements", count,
                            need - (1 if fmt == "ascii" else 0), body)
    if fmt == "ascii":
        check_final_newline(path, "ply", comment=None)


def _read_plydata(path: str):
    from plyfile import PlyData
    _check_ply_header(path)
    try:
        ply = PlyData.read(path)
    except Exception as exc:
        raise _wrap(path, "ply", exc) from exc
    names = [el.name for el in ply.elements]
    if "vertex" not in names:
        raise ValueError(f"'{path}': PLY file has no 'vertex' element (elements: {names})")
    vertex = ply["vertex"].data
    missing = [c for c in _PLY_XYZ if c not in vertex.dtype.names]
    if missing:
        raise ValueError(f"'{path}': PLY 'vertex' element lacks properties {missing} "
                         f"(has {list(vertex.dtype.names)})")
    pos = np.stack([vertex[c] for c in _PLY_XYZ], axis=1).astype(np.float64)
    return ply, pos, _ply_vertex_attrs(vertex)


def _read_ply(path: str):
    ply, pos, attrs = _read_plydata(path)
    names = [el.name for el in ply.elements]
    if "face" not in names or len(ply["face"].data) == 0:
        raise ValueError(f"'{path}' contains no faces (a point cloud?); use "
                         f"gdl_pyg.io.read_points to read it")
    face_el = ply["face"].data
    prop = next((p for p in ("vertex_indices", "vertex_index") if p in face_el.dtype.names),
                None)
    if prop is None:
        raise ValueError(f"'{path}': PLY 'face' element has no 'vertex_indices' property "
                         f"(has {list(face_el.dtype.names)})")
    tri, num_poly = _triangulate([face_el[prop]], path)
    return pos, tri, num_poly, attrs


def _off_header(path: str) -> Tuple[Optional[int], Optional[int], int]:
    r"""The vertex and face counts in an OFF header (``None`` where the
    header has none) and the number of bytes the header lines take."""
    tokens: List[str] = []
    offset = 0
    with open(path, "rb") as f:
        for raw in f:
            offset += len(raw)
            line = raw.split(b"#", 1)[0].decode("utf-8", "replace").split()
            if not line:
                continue
            tokens.extend(line)
            if len(tokens) >= 3 or (len(tokens) >= 2 and tokens[0][-3:].upper() != "OFF"):
                break
    if tokens and tokens[0].upper().endswith("OFF"):
        tokens = tokens[1:]
    counts: List[Optional[int]] = []
    for k in range(2):
        try:
            counts.append(int(tokens[k]))
        except (IndexError, ValueError):
            counts.append(None)
    return counts[0], counts[1], offset


def _check_off_header(path: str) -> Optional[int]:
    r"""Checks the OFF header's counts against the file size (a vertex needs
    at least 6 bytes, ``"0 0 0\n"``, a face at least 8, ``"3 0 1 2\n"``)
    and that the file ends with a line break; returns the face count."""
    nv, nf, offset = _off_header(path)
    body = os.path.getsize(path) - offset
    if nv is not None:
        check_declared_size(path, "OFF", "vertices", nv, 6 * nv - 1, body)
        if nf is not None:
            check_declared_size(path, "OFF", f"vertices and {nf} faces", nf,
                                6 * nv + 8 * nf - 1, body)
    check_final_newline(path, "off")
    return nf


def _read_off(path: str):
    from trimesh.exchange import off as off_module

    captured: Dict[str, list] = {}

    def capture(faces, *args, **kwargs):
        # receive the raw (ragged) polygons and triangulate them ourselves, in file order
        captured["faces"] = list(faces)
        return np.zeros((0, 3), dtype=np.int64)

    expected = _check_off_header(path)
    with _OFF_LOCK:
        patch = (mock.patch.object(off_module, "triangulate_quads", capture)
                 if hasattr(off_module, "triangulate_quads") else contextlib.nullcontext())
        try:
            with patch, open(path, "rb") as f:
                kwargs = off_module.load_off(f)
        except Exception as exc:
            raise _wrap(path, "off", exc) from exc
    pos = np.asarray(kwargs["vertices"], dtype=np.float64).reshape(-1, 3)
    if "faces" not in captured:  # trimesh changed internals: use its triangulation
        tri = np.asarray(kwargs.get("faces", np.zeros((0, 3))), dtype=np.int64).reshape(-1, 3)
        return pos, tri, 0, {}
    faces = captured["faces"]
    if expected is not None and expected != len(faces):
        raise ValueError(f"'{path}': the OFF header declares {expected} faces but the file "
                         f"holds {len(faces)} (truncated file or wrong vertex/face count)")
    tri, num_poly = _triangulate([faces], path)
    return pos, tri, num_poly, {}


# Declared counts in the text headers of the meshio formats, and the fewest
# bytes each declared item needs in the file (ASCII: "0 0 0\n" per point;
# binary: 3 float32), checked before meshio allocates arrays from them.
_MESHIO_COUNTS = {
    "vtk": ((re.compile(rb"(?m)^POINTS[ \t]+(\d+)"), "points", 6),
            (re.compile(rb"(?m)^(?:CELLS|POLYGONS|TRIANGLE_STRIPS)[ \t]+\d+[ \t]+(\d+)"),
             "cell entries", 2)),
    "gmsh": ((re.compile(rb"\$Nodes\s*\r?\n\s*(\d+)\s*\r?\n"), "nodes", 8),
             (re.compile(rb"\$Nodes\s*\r?\n\s*\d+\s+(\d+)"), "nodes", 8),
             (re.compile(rb"\$Elements\s*\r?\n\s*(\d+)\s*\r?\n"), "elements", 8),
             (re.compile(rb"\$Elements\s*\r?\n\s*\d+\s+(\d+)"), "elements", 8)),
    "medit": ((re.compile(rb"(?mi)^\s*Vertices\s*\r?\n\s*(\d+)"), "vertices", 8),
              (re.compile(rb"(?mi)^\s*(?:Triangles|Quadrilaterals|Edges|Tetrahedra)\s*"
                          rb"\r?\n\s*(\d+)"), "cells", 6)),
}


def _gmsh_blocks(lines: List[bytes], start: int, end_key: bytes, what: str, path: str,
                 per_item: int) -> Tuple[int, int, int, List[int]]:
    r"""Walks one ``$Nodes`` / ``$Elements`` section of an ASCII Gmsh 4.1
    file: the header ``numBlocks numItems minTag maxTag``, then per block a
    header whose last number is its item count. Returns the header's
    ``(num_items, min_tag, max_tag)`` and the index of the end line; raises
    when the blocks do not add up (meshio would read past them and allocate
    from garbage)."""
    def ints(i: int) -> List[int]:
        try:
            return [int(t) for t in lines[i].split()]
        except (ValueError, IndexError):
            raise ValueError(f"'{path}': malformed Gmsh {what} section at line {i + 1}") \
                from None
    head = ints(start)
    if len(head) != 4 or min(head) < 0:
        raise ValueError(f"'{path}': malformed Gmsh {what} header at line {start + 1}")
    num_blocks, num_items, lo, hi = head
    i, total, refs = start + 1, 0, []
    for _ in range(num_blocks):
        block = ints(i)
        if len(block) != 4 or block[3] < 0:
            raise ValueError(f"'{path}': malformed Gmsh {what} block header at line {i + 1}")
        n = block[3]
        total += n
        i += 1 + per_item * n if per_item else 1 + n
        if i > len(lines):
            break
        if not per_item:  # element lines: tag followed by node tags
            for k in range(i - n, i):
                refs.extend(ints(k)[1:])
    if total != num_items or i >= len(lines) or lines[i].strip() != end_key:
        raise ValueError(f"'{path}': the Gmsh {what} header declares {num_items} items in "
                         f"{num_blocks} blocks, but the blocks hold {total} and do not end at "
                         f"{end_key.decode()} (truncated file or corrupt header)")
    return num_items, lo, hi, refs


def _check_gmsh_ascii(path: str, text: bytes) -> None:
    lines = text.splitlines()
    try:
        fmt_line = lines[lines.index(b"$MeshFormat") + 1].split()
    except (ValueError, IndexError):
        return
    if len(fmt_line) < 2 or fmt_line[0] != b"4.1" or fmt_line[1] != b"0":
        return  # binary or another version: meshio reads counts from the data
    if b"$Nodes" not in lines:
        return
    start = lines.index(b"$Nodes") + 1
    _, lo, hi, _ = _gmsh_blocks(lines, start, b"$EndNodes", "$Nodes", path, per_item=2)
    if b"$Elements" in lines:
        start = lines.index(b"$Elements") + 1
        _, _, _, refs = _gmsh_blocks(lines, start, b"$EndElements", "$Elements", path, 0)
        if refs and (min(refs) < lo or max(refs) > hi):
            bad = min(refs) if min(refs) < lo else max(refs)
            raise ValueError(f"'{path}': an element refers to node {bad}, outside the node "
                             f"tags {lo}..{hi} the $Nodes header declares")


def _check_meshio_counts(path: str, fmt: str) -> None:
    specs = _MESHIO_COUNTS.get(fmt)
    if not specs:
        return
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        text = f.read()
    if fmt == "gmsh":
        _check_gmsh_ascii(path, text)
    for pattern, what, per_item in specs:
        m = pattern.search(text)
        if m is None:
            continue
        count = int(m.group(1))
        check_declared_size(path, fmt.upper(), what, count, count * per_item,
                            size - m.end())


def _meshio_read(path: str, fmt: str):
    # the format's own reader: meshio.read() prints errors and calls sys.exit(1) on a
    # ReadError, so it is not used
    import importlib
    _check_meshio_counts(path, fmt)
    module = importlib.import_module(f"meshio.{fmt}")
    try:
        return module.read(path)
    except Exception as exc:
        raise _wrap(path, fmt, exc) from exc


_OBJ_FACE_KEYS = ("f", "fo")  # "fo" is the old spelling of "f"


def _obj_face_indices(tokens: List[str], path: str, lines: List[int]) -> np.ndarray:
    r"""The position indices (the part before the first ``/``) of OBJ face
    corners ``v``, ``v/vt``, ``v//vn`` or ``v/vt/vn``, as int64 (1-based or
    negative, as in the file)."""
    heads = [t.split("/", 1)[0] for t in tokens]
    try:
        return np.array(heads, dtype=np.int64) if heads else np.zeros(0, dtype=np.int64)
    except (TypeError, ValueError):
        for i, h in enumerate(heads):
            try:
                int(h)
            except ValueError:
                raise ValueError(f"'{path}' line {lines[i]}: OBJ face corner "
                                 f"{tokens[i]!r} does not start with an integer vertex "
                                 f"index") from None
        raise


_OBJ_FORMS = ("v", "v/vt", "v//vn", "v/vt/vn")


def _obj_corner_form(token: str) -> int:
    r"""0: ``v``, 1: ``v/vt``, 2: ``v//vn``, 3: ``v/vt/vn``; -1: malformed
    (an empty index, *e.g.* ``7/`` or ``7/2/``, or more than two slashes)."""
    parts = token.split("/")
    if len(parts) == 1:
        return 0
    if len(parts) == 2:
        return 1 if parts[1] else -1
    if len(parts) == 3 and parts[2]:
        return 3 if parts[1] else 2
    return -1


def _check_obj_corner_forms(tokens: List[str], sizes: np.ndarray, lines: np.ndarray,
                            path: str) -> None:
    r"""Every corner of a face must have the same form (``v``, ``v/vt``,
    ``v//vn`` or ``v/vt/vn``), as the OBJ specification requires; a line
    mixing them, or a corner with an empty index, is malformed (often a cut
    or a corrupted file)."""
    if not tokens:
        return
    form = np.fromiter((_obj_corner_form(t) for t in tokens), dtype=np.int64,
                       count=len(tokens))
    if (form < 0).any():
        bad = int(np.nonzero(form < 0)[0][0])
        raise ValueError(f"'{path}' line {int(lines[bad])}: malformed OBJ face corner "
                         f"{tokens[bad]!r} (expected one of the forms "
                         f"{', '.join(_OBJ_FORMS)})")
    first = np.repeat(form[np.cumsum(sizes) - sizes], sizes)
    if (form != first).any():
        bad = int(np.nonzero(form != first)[0][0])
        raise ValueError(f"'{path}' line {int(lines[bad])}: an OBJ face mixes corner forms "
                         f"({_OBJ_FORMS[int(first[bad])]!r} and {_OBJ_FORMS[int(form[bad])]!r}, "
                         f"corner {tokens[bad]!r}); all corners of a face must have the same "
                         f"form")


def _read_obj(path: str):
    r"""Positions from the ``v`` statements (in file order, all of them) and
    faces from the ``f`` statements, by position index only.

    Texture coordinates (``vt``), normals (``vn``), groups, objects,
    materials, smoothing groups, free-form geometry, lines and points are
    ignored: they carry no surface geometry and never change the vertex
    numbering. Relative (negative) indices count back from the last ``v``
    statement before the face, and a backslash at the end of a line continues
    it on the next (as in the OBJ specification).
    """
    # a file cut inside its last 'v' / 'f' line would still parse ('967' as '96')
    keys = (b"v",) + tuple(k.encode() for k in _OBJ_FACE_KEYS)
    check_final_newline(path, "obj", b"#", keys)
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", errors="replace")
    except OSError as exc:  # pragma: no cover - permissions and the like
        raise _wrap(path, "obj", exc) from exc
    v_rows: List[List[str]] = []
    v_lines: List[int] = []
    f_tokens: List[str] = []
    f_sizes: List[int] = []
    f_counts: List[int] = []  # number of vertices defined before the face
    f_lines: List[int] = []
    pending = ""
    pending_line = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0]
        stripped = line.rstrip()
        if stripped.endswith("\\"):  # continued on the next line
            if not pending:
                pending_line = lineno
            pending += stripped[:-1] + " "
            continue
        if pending:
            line, pending, lineno = pending + line, "", pending_line
        parts = line.split()
        if not parts:
            continue
        key = parts[0]
        if key == "v":
            v_rows.append(parts[1:])
            v_lines.append(lineno)
        elif key in _OBJ_FACE_KEYS:
            f_tokens.extend(parts[1:])
            f_sizes.append(len(parts) - 1)
            f_counts.append(len(v_rows))
            f_lines.append(lineno)
    if pending:
        raise ValueError(f"'{path}' line {pending_line}: the file ends inside a continued "
                         f"line (a trailing backslash; truncated file?)")

    # positions: the first three numbers of each 'v' (a 4th is the weight w, 4-6 more
    # are vertex colours, both ignored)
    widths = np.fromiter((len(r) for r in v_rows), dtype=np.int64, count=len(v_rows))
    if widths.size and widths.min() < 3:
        bad = int(np.nonzero(widths < 3)[0][0])
        raise ValueError(f"'{path}' line {v_lines[bad]}: an OBJ vertex needs 3 coordinates "
                         f"(got {int(widths[bad])}; truncated file?)")
    try:
        pos = np.array([r[:3] for r in v_rows], dtype=np.float64).reshape(-1, 3)
    except ValueError:
        for r, ln in zip(v_rows, v_lines):
            try:
                [float(c) for c in r[:3]]
            except ValueError:
                raise ValueError(f"'{path}' line {ln}: OBJ vertex coordinates {r[:3]} are "
                                 f"not numbers") from None
        raise

    sizes = np.asarray(f_sizes, dtype=np.int64)
    if sizes.size and sizes.min() < 3:
        bad = int(np.nonzero(sizes < 3)[0][0])
        raise ValueError(f"'{path}' line {f_lines[bad]}: face {bad} has {int(sizes[bad])} "
                         f"corner(s); faces need at least 3 (truncated file?)")
    corner_lines = np.repeat(np.asarray(f_lines, dtype=np.int64), sizes)
    _check_obj_corner_forms(f_tokens, sizes, corner_lines, path)
    idx = _obj_face_indices(f_tokens, path, corner_lines.tolist() if f_tokens else [])
    counts = np.repeat(np.asarray(f_counts, dtype=np.int64), sizes)
    if (idx == 0).any():
        bad = int(np.nonzero(idx == 0)[0][0])
        raise ValueError(f"'{path}' line {int(corner_lines[bad])}: OBJ face index 0 is "
                         f"invalid (indices start at 1; negative indices count back from "
                         f"the last vertex)")
    idx = np.where(idx > 0, idx - 1, counts + idx)
    if idx.size and idx.min() < 0:
        bad = int(np.nonzero(idx < 0)[0][0])
        raise ValueError(f"'{path}' line {int(corner_lines[bad])}: relative OBJ face index "
                         f"{f_tokens[bad].split('/', 1)[0]} points before the first vertex "
                         f"(only {int(counts[bad])} vertices are defined above this line)")
    if not sizes.size:
        return pos, np.zeros((0, 3), dtype=np.int64), 0, {}
    if (sizes == sizes[0]).all():  # the common case: one face size, one 2D block
        block = idx.reshape(-1, int(sizes[0]))
    else:
        block = np.split(idx, np.cumsum(sizes)[:-1])
    tri, num_poly = _triangulate([block], path)
    return pos, tri, num_poly, {}


def _read_stl(path: str):
    from trimesh.exchange.stl import load_stl
    try:
        with open(path, "rb") as f:
            kwargs = load_stl(f)
    except Exception as exc:
        raise _wrap(path, "stl", exc) from exc
    if "vertices" not in kwargs:
        solids = kwargs.get("geometry") or {}
        if not solids:
            raise ValueError(f"'{path}' could not be read as STL: neither a complete binary "
                             f"STL (truncated, or wrong triangle count in the header) nor a "
                             f"valid ASCII STL")
        raise ValueError(f"'{path}': STL with {len(solids)} solids is not supported "
                         f"(expected one)")
    soup = np.asarray(kwargs["vertices"], dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(kwargs["faces"], dtype=np.int64).reshape(-1, 3)
    if soup.shape[0] == 0:
        return soup, faces, 0, {}
    # merge exactly equal corners, numbering vertices by first appearance
    _, first, inverse = np.unique(soup, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    pos = soup[first[order]]
    return pos, rank[inverse][faces], 0, {}


def _read_meshio(path: str, fmt: str):
    mesh = _meshio_read(path, fmt)
    points = np.asarray(mesh.points, dtype=np.float64)
    if points.ndim == 2 and points.shape[1] == 2:
        points = np.concatenate([points, np.zeros((points.shape[0], 1))], axis=1)
    blocks, volume, unsupported = [], [], []
    for cell in mesh.cells:
        if cell.type in _SURFACE_CELLS or cell.type.startswith("polygon"):
            blocks.append(np.asarray(cell.data))
        elif cell.type.startswith(_VOLUME_PREFIXES):
            volume.append(cell.type)
        elif cell.type not in _IGNORED_CELLS:
            unsupported.append(cell.type)
    if unsupported:
        raise ValueError(f"'{path}': unsupported cell types {sorted(set(unsupported))} "
                         f"(supported surface cells: triangle, quad, polygon)")
    if not blocks and volume:
        raise ValueError(f"'{path}' holds only volume cells {sorted(set(volume))}; "
                         f"extract its boundary surface first")
    tri, num_poly = _triangulate(blocks, path)
    return points[:, :3] if points.size else np.zeros((0, 3)), tri, num_poly, {}


def _read_raw(path: str, fmt: str):
    if fmt == "ply":
        return _read_ply(path)
    if fmt == "off":
        return _read_off(path)
    if fmt == "obj":
        return _read_obj(path)
    if fmt == "stl":
        return _read_stl(path)
    return _read_meshio(path, fmt)


def read_mesh(path: PathLike, file_format: Optional[str] = None, clean: bool = False,
              require_manifold: bool = False, return_report: bool = False,
              area_tol: float = 1e-12, dtype: torch.dtype = torch.float32
              ) -> Union[Data, Tuple[Data, MeshReport]]:
    r"""Reads a triangle mesh file into a :class:`~torch_geometric.data.Data`
    with ``pos [N, 3]`` and ``face [3, F]``.

    Polygons are fan-triangulated (see :mod:`gdl_pyg.io.mesh`). The mesh is
    validated: an empty or truncated file, wrong vertex/face counts, face
    indices out of range, faces with fewer than three corners, NaN/infinite
    coordinates, a mesh without vertices or faces, or (with
    :obj:`require_manifold=True`) a non-manifold edge or vertex raise
    :class:`ValueError` naming the file. What was found is summarised in a
    :class:`MeshReport` (which also counts what :obj:`clean=True` would fix:
    duplicate / unreferenced vertices, degenerate / duplicate triangles,
    triangles wound against their neighbours, inward-facing closed parts):

    .. math::
        \text{report} = \big(\#\text{dup. vertices}, \#\text{unref. vertices},
        \#\text{degenerate}, \#\text{dup. faces}, \#\text{polygons},
        \#\{e : |\{f \ni e\}| > 2\}, \#\text{bow-ties}, \#\text{misoriented}, \dots\big)

    Args:
        path (str or os.PathLike): the file; its extension picks the format
            (:obj:`.off`, :obj:`.obj`, :obj:`.ply`, :obj:`.stl`, :obj:`.vtk`,
            :obj:`.vtu`, :obj:`.msh`, :obj:`.mesh`, :obj:`.inp`).
        file_format (str, optional): overrides the extension (an extension or
            meshio's format name). (default: :obj:`None`)
        clean (bool, optional): merge exactly duplicate vertices, drop
            degenerate and duplicate triangles, orient the triangles
            consistently and closed components outwards, then drop
            unreferenced vertices (see :func:`clean_mesh`); per-vertex
            attributes follow their vertex. The result of a manifold,
            orientable file is accepted by
            :func:`gdl_pyg.domains.mesh_to_data`. (default: :obj:`False`)
        require_manifold (bool, optional): raise if any edge is shared by more
            than two triangles or any vertex joins separate fans of triangles
            (a bow-tie). (default: :obj:`False`)
        return_report (bool, optional): also return the :class:`MeshReport`.
            (default: :obj:`False`)
        area_tol (float, optional): relative area below which a triangle is
            degenerate. (default: :obj:`1e-12`)
        dtype (torch.dtype, optional): dtype of ``pos`` and of float
            attributes. (default: :obj:`torch.float32`)

    Shapes:
        - **output:** ``pos`` :math:`(|\mathcal{V}|, 3)`, ``face``
          :math:`(3, |\mathcal{F}|)`; PLY files may add ``normal``
          :math:`(|\mathcal{V}|, 3)`, ``color`` :math:`(|\mathcal{V}|, 3 \text{ or } 4)`
          and scalar vertex properties :math:`(|\mathcal{V}|)`.
    """
    fmt = resolve_format(path, file_format, MESH_EXTENSIONS, "read mesh")
    path = check_readable(path)
    pos, tri, num_poly, attrs = _read_raw(path, fmt)
    pos = np.asarray(pos, dtype=np.float64).reshape(-1, 3)
    tri = np.asarray(tri, dtype=np.int64).reshape(-1, 3)
    n = pos.shape[0]
    if n == 0:
        raise ValueError(f"'{path}' is an empty mesh (0 vertices)")
    if not np.isfinite(pos).all():
        bad = np.nonzero(~np.isfinite(pos).all(axis=1))[0]
        raise ValueError(f"'{path}': {bad.size} vertex(es) have NaN or infinite coordinates "
                         f"(first: vertex {int(bad[0])})")
    if tri.shape[0] == 0:
        raise ValueError(f"'{path}' is an empty mesh (0 faces); use gdl_pyg.io.read_points "
                         f"for point clouds")
    lo, hi = int(tri.min()), int(tri.max())
    if lo < 0 or hi >= n:
        raise ValueError(f"'{path}': face indices span [{lo}, {hi}] but the file has {n} "
                         f"vertices (valid: [0, {n - 1}])")
    for name, value in attrs.items():
        if value.shape[0] != n:
            raise ValueError(f"'{path}': vertex attribute '{name}' has {value.shape[0]} rows "
                             f"for {n} vertices")

    report, tri_m, keep, flip = _analyse(pos, tri, num_poly, area_tol)
    if require_manifold and not report.is_manifold:
        what = []
        if report.non_manifold_edges:
            what.append(f"{report.non_manifold_edges} edge(s) are shared by more than two "
                        f"faces")
        if report.non_manifold_vertices:
            what.append(f"{report.non_manifold_vertices} vertex(es) join separate fans of "
                        f"faces (bow-ties)")
        raise ValueError(f"'{path}' is not manifold: {' and '.join(what)}; clean=True does "
                         f"not repair this (pass require_manifold=False to read it anyway)")
    if clean:
        kept_vertices, tri = _clean(tri_m, keep, n, flip)
        pos = pos[kept_vertices]
        attrs = {k: v[kept_vertices] for k, v in attrs.items()}

    # checked after the cast: a coordinate finite in float64 can overflow dtype
    data = Data(pos=float_tensor(pos, dtype, f"'{path}'", "vertex coordinate"),
                face=torch.from_numpy(np.ascontiguousarray(tri.T)))
    for name, value in attrs.items():
        data[name] = _attr_tensor(name, value, dtype, path)
    return (data, report) if return_report else data


def _attr_tensor(name: str, value: np.ndarray, dtype: torch.dtype, path: str) -> Tensor:
    value = np.ascontiguousarray(value)
    if name == "color" and value.dtype == np.uint8:
        return torch.from_numpy(value)
    if np.issubdtype(value.dtype, np.integer) or value.dtype == bool:
        return torch.from_numpy(value.astype(np.int64))
    return float_tensor(value, dtype, f"'{path}'", f"vertex attribute '{name}'")


# ---------------------------------------------------------------------------
# writers
# ---------------------------------------------------------------------------

_PLY_INT = {np.dtype(np.int8): "i1", np.dtype(np.uint8): "u1", np.dtype(np.int16): "i2",
            np.dtype(np.uint16): "u2", np.dtype(np.int32): "i4", np.dtype(np.uint32): "u4"}


def _ply_dtype(value: np.ndarray, name: str, what: str) -> str:
    if value.dtype == bool:
        return "u1"
    if value.dtype in _PLY_INT:
        return _PLY_INT[value.dtype]
    if np.issubdtype(value.dtype, np.integer):  # 64-bit ints: PLY has no 64-bit type
        lo, hi = (int(value.min()), int(value.max())) if value.size else (0, 0)
        if lo < -2 ** 31 or hi >= 2 ** 31:
            raise ValueError(f"{what}: attribute '{name}' has values outside int32, which "
                             f"PLY cannot store")
        return "i4"
    if value.dtype == np.float64:
        return "f8"
    if np.issubdtype(value.dtype, np.floating):
        return "f4"
    raise TypeError(f"{what}: attribute '{name}' has unsupported dtype {value.dtype}")


def vertex_table(pos: np.ndarray, attrs: Dict[str, np.ndarray], what: str) -> np.ndarray:
    r"""A structured array for PLY's 'vertex' element: ``x, y, z`` (float32, or
    float64 if ``pos`` is float64), then ``nx ny nz``, ``red green blue
    [alpha]`` and the other attributes in ``attrs`` (each ``[N]``)."""
    n = pos.shape[0]
    pos_t = "f8" if pos.dtype == np.float64 else "f4"
    fields: List[Tuple[str, str, np.ndarray]] = [(c, pos_t, pos[:, i]) for i, c in
                                                 enumerate(_PLY_XYZ)]
    for name, value in attrs.items():
        value = np.asarray(value)
        if value.shape[0] != n:
            raise ValueError(f"{what}: attribute '{name}' has {value.shape[0]} rows for "
                             f"{n} vertices")
        if name == "normal":
            if value.ndim != 2 or value.shape[1] != 3:
                raise ValueError(f"{what} expected 'normal' of shape [N, 3] "
                                 f"(got {list(value.shape)})")
            t = "f8" if value.dtype == np.float64 else "f4"
            fields += [(c, t, value[:, i]) for i, c in enumerate(_PLY_NORMAL)]
        elif name == "color":
            if value.ndim != 2 or value.shape[1] not in (3, 4):
                raise ValueError(f"{what} expected 'color' of shape [N, 3] or [N, 4] "
                                 f"(got {list(value.shape)})")
            t = "u1" if value.dtype == np.uint8 else _ply_dtype(value, name, what)
            fields += [(c, t, value[:, i]) for i, c in enumerate(_PLY_COLOR[:value.shape[1]])]
        else:
            if value.ndim != 1:
                raise ValueError(f"{what}: vertex attribute '{name}' must have shape [N] "
                                 f"(got {list(value.shape)})")
            ply_name = name[4:] if name.startswith("ply_") and name[4:] in _RESERVED else name
            fields.append((ply_name, _ply_dtype(value, name, what), value))
    table = np.empty(n, dtype=[(name, t) for name, t, _ in fields])
    for name, _, value in fields:
        table[name] = value
    return table


def _write_ply(tmp: str, pos: np.ndarray, tri: np.ndarray, attrs, binary: bool, what: str):
    from plyfile import PlyData, PlyElement
    vertex = PlyElement.describe(vertex_table(pos, attrs, what), "vertex")
    faces = np.empty(tri.shape[0], dtype=[("vertex_indices", "i4", (3,))])
    faces["vertex_indices"] = tri
    face = PlyElement.describe(faces, "face", len_types={"vertex_indices": "u1"})
    PlyData([vertex, face], text=not binary).write(tmp)


def _write_stl(tmp: str, pos: np.ndarray, tri: np.ndarray, binary: bool):
    import trimesh
    from trimesh.exchange.stl import export_stl, export_stl_ascii
    mesh = trimesh.Trimesh(vertices=pos, faces=tri, process=False, validate=False)
    if binary:
        with open(tmp, "wb") as f:
            f.write(export_stl(mesh))
    else:
        with open(tmp, "w") as f:
            f.write(export_stl_ascii(mesh))


def _write_meshio(tmp: str, pos: np.ndarray, tri: np.ndarray, fmt: str, binary: bool):
    import meshio
    if fmt not in ("off", "obj"):  # text formats keep float32 for its shortest decimals
        pos = pos.astype(np.float64)
    mesh = meshio.Mesh(pos, [("triangle", tri.astype(np.int64))])
    kwargs = {}
    if fmt in ("vtk", "vtu", "gmsh"):
        kwargs["binary"] = binary
    meshio.write(tmp, mesh, file_format=fmt, **kwargs)


def write_mesh(path: PathLike, data_or_pos: Union[Data, Tensor, np.ndarray],
               face: Optional[Union[Tensor, np.ndarray]] = None,
               file_format: Optional[str] = None, binary: bool = True,
               vertex_attrs: Sequence[str] = ()) -> None:
    r"""Writes a triangle mesh, atomically: the file is written to a temporary
    file in the same folder, then moved over ``path`` with :func:`os.replace`,
    so a failed write leaves an existing ``path`` untouched.

    Text formats (OFF, OBJ, ASCII PLY) store the shortest decimal that reads
    back to the same float32 value, so float32 meshes round-trip exactly.

    Args:
        path (str or os.PathLike): the file; the extension picks the format.
        data_or_pos (Data or torch.Tensor or numpy.ndarray): a ``Data`` with
            ``pos`` and ``face`` (and, for PLY, optional ``normal`` / ``color``),
            or the positions :math:`[N, 3]`.
        face (torch.Tensor or numpy.ndarray, optional): triangles :math:`[3, F]`;
            overrides ``data.face``. (default: :obj:`None`)
        file_format (str, optional): overrides the extension. (default: :obj:`None`)
        binary (bool, optional): binary PLY / STL / VTK / VTU / Gmsh rather than
            ASCII. (default: :obj:`True`)
        vertex_attrs (Sequence[str], optional): names of further per-vertex
            attributes of ``data`` (each :math:`[N]`) to store as PLY vertex
            properties. PLY only. (default: :obj:`()`)
    """
    what = f"write_mesh('{os.fspath(path)}')"
    fmt = resolve_format(path, file_format, MESH_EXTENSIONS, "write mesh")
    pos, attrs = split_data(data_or_pos, what)
    pos = check_pos(pos, what)
    if face is None:
        face = attrs.get("face")
        if face is None:
            raise ValueError(f"{what} needs faces: pass 'face' or a Data with 'face'")
    tri = _check_face(to_numpy(face, "face"), pos.shape[0], what).T.copy()
    pos = pos.astype(np.float64 if pos.dtype == np.float64 else np.float32)
    extra = {}
    for name in vertex_attrs:
        if name not in attrs:
            raise ValueError(f"{what}: vertex attribute '{name}' is not in the data "
                             f"(has {sorted(attrs)})")
        extra[name] = to_numpy(attrs[name], name)
    if extra and fmt != "ply":
        raise ValueError(f"{what}: vertex_attrs {sorted(extra)} can only be stored in PLY "
                         f"files (got format '{fmt}')")
    with atomic_path(path) as tmp:
        if fmt == "ply":
            ply_attrs = {k: to_numpy(attrs[k], k) for k in ("normal", "color") if
                         attrs.get(k) is not None}
            ply_attrs.update(extra)
            _write_ply(tmp, pos, tri, ply_attrs, binary, what)
        elif fmt == "stl":
            _write_stl(tmp, pos, tri, binary)
        else:
            _write_meshio(tmp, pos, tri, fmt, binary)
