r"""The sphere :math:`S^2` as a graph: icosphere meshes, their symmetry (the 60
rotations of the icosahedron, which permute the vertices exactly), and the
projection of planar images and of spherical signals onto them.

* :func:`icosphere` builds the subdivided icosahedron in float64, vertex
  order deterministic (the 12 icosahedron vertices first, then the midpoints
  of each subdivision level), with ``pos [N, 3]`` on the unit sphere,
  ``face [3, F]`` (counter-clockwise seen from outside), ``edge_index`` (both
  directions, sorted by target then source) and ``mass [N]`` (the vertex
  areas, normalised to sum to :math:`4\pi`: quadrature weights).
* :func:`icosahedral_rotations` returns the 60 rotations ``[60, 3, 3]``;
  :func:`rotation_permutation` the vertex permutation a rotation induces.
* :func:`project_image` samples a planar image on the sphere (a gnomonic
  chart around the north pole); :func:`project_grid` samples a signal given
  on an equiangular latitude-longitude grid; :func:`sphere_to_image` reads a
  spherical signal back into the planar chart.
"""
import math
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

__all__ = ["icosphere", "icosahedral_rotations", "rotation_permutation", "project_image",
           "project_grid", "sphere_to_image"]

_PHI = (1.0 + math.sqrt(5.0)) / 2.0


def _icosahedron() -> Tuple[np.ndarray, np.ndarray]:
    v = np.array([[-1, _PHI, 0], [1, _PHI, 0], [-1, -_PHI, 0], [1, -_PHI, 0],
                  [0, -1, _PHI], [0, 1, _PHI], [0, -1, -_PHI], [0, 1, -_PHI],
                  [_PHI, 0, -1], [_PHI, 0, 1], [-_PHI, 0, -1], [-_PHI, 0, 1]],
                 dtype=np.float64)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    f = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11],
                  [1, 5, 9], [5, 11, 4], [11, 10, 2], [10, 7, 6], [7, 1, 8],
                  [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9],
                  [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]], dtype=np.int64)
    return v, f


def _subdivide(v: np.ndarray, f: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    r"""One loop of midpoint subdivision, midpoints projected on the sphere and
    numbered in the order of the sorted unique edges."""
    n = v.shape[0]
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], axis=0)
    key = np.minimum(e[:, 0], e[:, 1]) * n + np.maximum(e[:, 0], e[:, 1])
    uniq, inv = np.unique(key, return_inverse=True)
    a, b = uniq // n, uniq % n
    mid = v[a] + v[b]
    mid /= np.linalg.norm(mid, axis=1, keepdims=True)
    m = inv.reshape(3, -1).T + n  # midpoints of edges (0,1), (1,2), (2,0) per face
    f0, f1, f2 = f[:, 0], f[:, 1], f[:, 2]
    m01, m12, m20 = m[:, 0], m[:, 1], m[:, 2]
    faces = np.concatenate([np.stack([f0, m01, m20], 1), np.stack([f1, m12, m01], 1),
                            np.stack([f2, m20, m12], 1), np.stack([m01, m12, m20], 1)])
    return np.concatenate([v, mid]), faces


def icosphere(subdivisions: int = 3, dtype: torch.dtype = torch.float64) -> Data:
    r"""The icosphere: an icosahedron subdivided :obj:`subdivisions` times,
    vertices on the unit sphere (exactly normalised in float64), with
    :math:`10 \cdot 4^s + 2` vertices.

    Args:
        subdivisions (int, optional): levels of midpoint subdivision.
            (default: :obj:`3`)
        dtype (torch.dtype, optional): the dtype of ``pos`` and ``mass``.
            (default: :obj:`torch.float64`)

    Shapes:
        - **output:** ``Data(pos [N, 3], face [3, F], edge_index [2, E],
          mass [N])`` with :math:`N = 10 \cdot 4^s + 2`, :math:`F = 20 \cdot 4^s`,
          :math:`E = 60 \cdot 4^s`.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"'icosphere' expected a floating-point dtype for 'pos' and 'mass' "
                        f"(got {dtype})")
    if isinstance(subdivisions, bool) or not isinstance(subdivisions, int) \
            or not 0 <= subdivisions <= 8:
        raise ValueError(f"'icosphere' expected an integer 'subdivisions' in [0, 8] "
                         f"(got {subdivisions!r})")
    v, f = _icosahedron()
    for _ in range(subdivisions):
        v, f = _subdivide(v, f)
    n = v.shape[0]
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], axis=0)
    e = np.concatenate([e, e[:, ::-1]], axis=0)
    key = np.unique(e[:, 1] * n + e[:, 0])
    edge_index = np.stack([key % n, key // n])
    # vertex areas: a third of the spherical-triangle-free flat face areas, rescaled to 4 pi
    area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]),
                                axis=1)
    mass = np.bincount(f.reshape(-1), np.repeat(area / 3.0, 3), minlength=n)
    mass *= 4.0 * math.pi / mass.sum()
    return Data(pos=torch.from_numpy(v).to(dtype), face=torch.from_numpy(f.T.copy()),
                edge_index=torch.from_numpy(edge_index), mass=torch.from_numpy(mass).to(dtype))


def icosahedral_rotations() -> Tensor:
    r"""The 60 rotations ``[60, 3, 3]`` (float64) of the icosahedron of
    :func:`icosphere`: the identity first, then the rest sorted. They map
    the 12 base vertices onto each other, and so (midpoint subdivision being
    symmetric) every icosphere's vertex set onto itself."""
    v, f = _icosahedron()
    # a rotation is fixed by the images of two adjacent vertices (0 -> a, 11 -> b)
    a_dirs, b_dirs = v[0], v[11]
    src = np.stack([a_dirs, b_dirs, np.cross(a_dirs, b_dirs)])
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], axis=0)
    out = []
    for a, b in edges:  # directed edges of the icosahedron: 60 of them
        dst = np.stack([v[a], v[b], np.cross(v[a], v[b])])
        R = np.linalg.solve(src, dst).T
        if np.allclose(R @ R.T, np.eye(3), atol=1e-12) and np.linalg.det(R) > 0:
            out.append(R)
    R = np.stack(out)
    order = np.lexsort(np.round(R.reshape(len(R), -1), 9).T[::-1])
    R = R[order]
    ident = int(np.argmin(np.abs(R - np.eye(3)).reshape(len(R), -1).sum(1)))
    R = np.concatenate([np.eye(3)[None], np.delete(R, ident, axis=0)])
    return torch.from_numpy(R)


def rotation_permutation(pos: Tensor, rotation: Tensor, tol: float = 1e-6) -> Tensor:
    r"""The permutation ``perm [N]`` of a vertex set that ``rotation`` maps onto
    itself: ``rotation @ pos[i] == pos[perm[i]]``. Raises :class:`ValueError`
    if the rotation does not map the vertices onto themselves (within
    :obj:`tol`)."""
    from scipy.spatial import cKDTree
    P = pos.detach().cpu().to(torch.float64).numpy()
    R = torch.as_tensor(rotation, dtype=torch.float64).cpu().numpy()
    dist, idx = cKDTree(P).query(P @ R.T)
    if dist.max() > tol or np.unique(idx).size != idx.size:
        raise ValueError(f"'rotation_permutation': the rotation does not map the vertices onto "
                         f"themselves (largest mismatch {dist.max():.2e} > {tol:.0e})")
    return torch.from_numpy(idx).to(pos.device)


def _check_image(image: Tensor, fn: str) -> Tensor:
    if not isinstance(image, Tensor):
        raise TypeError(f"'{fn}' expected a torch.Tensor image (got {type(image).__name__})")
    if image.dim() == 2:
        image = image.unsqueeze(0)
    if image.dim() != 3 or min(image.shape[-2:]) < 2:
        raise ValueError(f"'{fn}' expected an image of shape [C, H, W] (H, W >= 2) "
                         f"(got {list(image.shape)})")
    if not image.is_floating_point():
        image = image.to(torch.get_default_dtype())
    return image


def _bilinear(image: Tensor, u: Tensor, v: Tensor, mode: str = "zeros") -> Tensor:
    r"""Samples ``image [C, H, W]`` at pixel coordinates ``u`` (columns) and
    ``v`` (rows), ``[N]`` each; returns ``[N, C]``."""
    C, H, W = image.shape
    gx = 2.0 * (u + 0.5) / W - 1.0
    gy = 2.0 * (v + 0.5) / H - 1.0
    grid = torch.stack([gx, gy], dim=-1).to(image.dtype).view(1, 1, -1, 2)
    out = torch.nn.functional.grid_sample(image.unsqueeze(0), grid, mode="bilinear",
                                          padding_mode=mode, align_corners=False)
    return out.view(C, -1).t()


def _check_sphere_points(pos, fn: str) -> Tensor:
    if not isinstance(pos, Tensor):
        raise TypeError(f"'{fn}' expected 'pos' to be a torch.Tensor of shape [N, 3] "
                        f"(got {type(pos).__name__})")
    if pos.dim() != 2 or pos.size(-1) != 3:
        raise ValueError(f"'{fn}' expected 'pos' of shape [N, 3] (got {list(pos.shape)})")
    p = pos.to(torch.float64)
    if not bool(torch.isfinite(p).all()):
        raise ValueError(f"'{fn}' found NaN or inf in 'pos'; expected finite unit vectors")
    return p


def project_image(image: Tensor, pos: Tensor, fov: float = 90.0,
                  rotation: Optional[Tensor] = None) -> Tensor:
    r"""Projects a planar image onto the sphere: the image lies on the plane
    tangent at the north pole :math:`(0, 0, 1)` (a gnomonic chart), spanning
    a field of view of :obj:`fov` degrees, and each vertex on the northern
    hemisphere takes the bilinearly interpolated value where the ray through
    it meets the plane (zero outside the image and in the south):

    .. math::
        (u, v) = \Big(\frac{p_x}{p_z}, -\frac{p_y}{p_z}\Big) \Big/
            \tan\frac{\mathrm{fov}}{2}.

    With :obj:`rotation` ``R``, the signal is rotated on the sphere: the value
    at :math:`p` is the one of the upright projection at :math:`R^\top p`.

    Args:
        image (torch.Tensor): ``[C, H, W]`` (or ``[H, W]``).
        pos (torch.Tensor): unit vectors ``[N, 3]``.
        fov (float, optional): field of view in degrees, in (0, 180).
            (default: :obj:`90.0`)
        rotation (torch.Tensor, optional): ``[3, 3]``. (default: :obj:`None`)

    Returns:
        ``x [N, C]`` in the dtype of ``image``.
    """
    image = _check_image(image, "project_image")
    if not 0.0 < float(fov) < 180.0:
        raise ValueError(f"'project_image' expected 'fov' in (0, 180) degrees (got {fov})")
    p = _check_sphere_points(pos, "project_image")
    if rotation is not None:
        p = p @ torch.as_tensor(rotation, dtype=torch.float64)  # R^T p as rows
    C, H, W = image.shape
    t = math.tan(math.radians(float(fov)) / 2.0)
    z = p[:, 2]
    north = z > 1e-9
    zs = torch.where(north, z, torch.ones_like(z))
    x = p[:, 0] / zs / t  # in [-1, 1] inside the image
    y = -p[:, 1] / zs / t
    u = (x + 1.0) / 2.0 * W - 0.5
    v = (y + 1.0) / 2.0 * H - 0.5
    out = _bilinear(image.to(torch.float64), u, v)
    out[~north] = 0.0
    return out.to(image.dtype)


def sphere_to_image(x: Tensor, pos: Tensor, size: Tuple[int, int], fov: float = 90.0,
                    k: int = 3) -> Tensor:
    r"""Reads a spherical signal ``x [N, C]`` back into the gnomonic chart of
    :func:`project_image`: each pixel takes the inverse-distance average of
    the :obj:`k` vertices nearest to the point of the sphere it sees. Returns
    ``[C, H, W]``."""
    from scipy.spatial import cKDTree
    H, W = size
    t = math.tan(math.radians(float(fov)) / 2.0)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64),
                            torch.arange(W, dtype=torch.float64), indexing="ij")
    px = ((xs + 0.5) / W * 2.0 - 1.0) * t
    py = -((ys + 0.5) / H * 2.0 - 1.0) * t
    d = torch.stack([px, py, torch.ones_like(px)], dim=-1).view(-1, 3)
    d = d / d.norm(dim=-1, keepdim=True)
    pos = _check_sphere_points(pos, "sphere_to_image")
    dist, idx = cKDTree(pos.detach().cpu().numpy()).query(d.numpy(), k=k)
    w = 1.0 / np.maximum(dist, 1e-12)
    w = torch.from_numpy(w / w.sum(1, keepdims=True)).to(x.dtype)
    vals = (x[torch.from_numpy(idx)] * w.unsqueeze(-1)).sum(1)
    return vals.t().reshape(x.size(1), H, W)


def project_grid(signal: Tensor, pos: Tensor) -> Tensor:
    r"""Samples a spherical signal given on an equiangular grid ``[C, H, W]``
    (rows: colatitude :math:`\theta \in [0, \pi]` from the north pole, pixel
    centres at :math:`(i + 1/2)\pi/H`; columns: longitude
    :math:`\varphi \in [0, 2\pi)`, periodic) at the vertices ``pos [N, 3]`` by
    bilinear interpolation (periodic in longitude). Returns ``[N, C]``."""
    signal = _check_image(signal, "project_grid")
    C, H, W = signal.shape
    p = pos.to(torch.float64)
    theta = torch.arccos(p[:, 2].clamp(-1.0, 1.0))
    phi = torch.remainder(torch.atan2(p[:, 1], p[:, 0]), 2 * math.pi)
    v = theta / math.pi * H - 0.5
    u = phi / (2 * math.pi) * W - 0.5
    # periodic in longitude: pad one column on each side
    padded = torch.cat([signal[..., -1:], signal, signal[..., :1]], dim=-1).to(torch.float64)
    out = _bilinear(padded, u + 1.0, v, mode="border")
    return out.to(signal.dtype)
