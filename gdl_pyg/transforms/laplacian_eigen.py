r"""Spectral and differential preprocessing of surfaces (meshes and point
clouds) for diffusion layers (`"DiffusionNet: Discretization Agnostic
Learning on Surfaces" <https://arxiv.org/abs/2012.00888>`_):

* :class:`PointCloudLaplacian`: a Laplacian and mass for point clouds
  (:func:`gdl_pyg.domains.point_cloud_laplacian`);
* :class:`LaplacianEigenbasis`: the first :math:`k` generalised eigenpairs
  :math:`L \phi = \lambda M \phi`;
* :class:`HeatKernelSignature`: heat kernel signatures as node features;
* :class:`SpatialGradient`: a per-vertex gradient operator in the tangent
  frames.

All are computed once in float64 and meant as ``pre_transform`` of a dataset
(cached). The results batch correctly: ``evecs [N, k]``, ``grad_weight
[nnz, 2]`` concatenate along their first dimension, ``grad_index`` is shifted
like ``edge_index``, and ``evals [1, k]`` becomes ``[B, k]``.
"""
import math
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from gdl_pyg.domains.mesh import _to_out
from gdl_pyg.domains.point_laplacian import point_cloud_laplacian
from gdl_pyg.utils import check_edge_index

__all__ = ["PointCloudLaplacian", "LaplacianEigenbasis", "HeatKernelSignature",
           "SpatialGradient", "laplacian_eigenbasis", "heat_kernel_signature",
           "spatial_gradient"]


def _check_positive_int(cls: str, name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"'{cls}' expected '{name}' to be an integer >= {minimum} "
                         f"(got {value!r})")
    return int(value)


def _require(cls: str, data: Data, keys: Sequence[str], hint: str) -> None:
    missing = [k for k in keys if data.get(k) is None]
    if missing:
        raise ValueError(f"'{cls}' needs the attribute(s) {missing}, which {hint} computes "
                         f"(got attributes {sorted(data.keys())})")


def _dtype_of(data: Data) -> torch.dtype:
    pos = data.get("pos")
    if isinstance(pos, Tensor) and pos.is_floating_point():
        return pos.dtype
    return torch.get_default_dtype()


# --------------------------------------------------------------------------
# point-cloud Laplacian
# --------------------------------------------------------------------------
class PointCloudLaplacian(BaseTransform):
    r"""Adds ``laplacian_index [2, nnz]``, ``laplacian_weight [nnz]`` and
    ``mass [N]`` to a point cloud ``Data`` (with ``pos``), by
    :func:`gdl_pyg.domains.point_cloud_laplacian` (the tufted cover of
    local tangent Delaunay triangulations, after Sharp and Crane 2020), so
    that :class:`LaplacianEigenbasis` and
    :class:`~gdl_pyg.nn.conv.DiffusionConv` run on point clouds as on meshes.

    Args:
        k (int, optional): neighbours per point. (default: :obj:`30`)
        mollify (float, optional): intrinsic mollification, relative to the
            mean edge length. (default: :obj:`1e-5`)
        use_normal (bool, optional): use ``data.normal`` for the tangent
            planes when present (PCA normals otherwise). (default: :obj:`True`)
    """

    def __init__(self, k: int = 30, mollify: float = 1e-5, use_normal: bool = True):
        self.k = _check_positive_int("PointCloudLaplacian", "k", k, 3)
        self.mollify = mollify
        self.use_normal = use_normal

    def forward(self, data: Data) -> Data:
        _require(type(self).__name__, data, ["pos"], "the dataset")
        normal = data.get("normal") if self.use_normal else None
        index, weight, mass = point_cloud_laplacian(data.pos, k=self.k, normal=normal,
                                                    mollify=self.mollify)
        data.laplacian_index, data.laplacian_weight, data.mass = index, weight, mass
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k})"


# --------------------------------------------------------------------------
# eigenbasis
# --------------------------------------------------------------------------
def laplacian_eigenbasis(laplacian_index: Tensor, laplacian_weight: Tensor, mass: Tensor,
                         k: int, dense_threshold: int = 400):
    r"""The :obj:`k` smallest generalised eigenpairs of :math:`L \phi =
    \lambda M \phi` (:math:`M = \operatorname{diag}(\text{mass})`), with
    :math:`\Phi^\top M \Phi = I`, as float64 numpy arrays ``(evals [k],
    evecs [N, k])``. Uses :func:`scipy.sparse.linalg.eigsh` in shift-invert
    mode around a small negative shift (so :math:`L - \sigma M` is positive
    definite), or a dense solver for graphs of at most
    :obj:`dense_threshold` nodes. When :math:`k \geq N`, the missing columns
    are zero (eigenvalue 0): they do not contribute to a spectral filter
    :math:`\Phi g(\Lambda) \Phi^\top M`."""
    import scipy.sparse as sp
    N = mass.numel()
    idx = laplacian_index.detach().cpu().numpy()
    L = sp.coo_matrix((laplacian_weight.detach().cpu().to(torch.float64).numpy(),
                       (idx[0], idx[1])), shape=(N, N)).tocsr()
    L = 0.5 * (L + L.T)
    m = mass.detach().cpu().to(torch.float64).numpy()
    if not (np.isfinite(m).all() and (m > 0).all()):
        raise ValueError("'laplacian_eigenbasis' expected a positive, finite 'mass'")
    kk = min(k, N)
    if N <= dense_threshold or kk >= N - 1:
        from scipy.linalg import eigh
        # symmetric form M^-1/2 L M^-1/2
        s = 1.0 / np.sqrt(m)
        A = (L.toarray() * s[:, None]) * s[None, :]
        evals, V = eigh(A, subset_by_index=[0, kk - 1])
        evecs = V * s[:, None]
    else:
        from scipy.sparse.linalg import eigsh
        scale = float(np.median(L.diagonal() / m))
        sigma = -1e-8 * max(scale, 1e-300)
        evals, evecs = eigsh(L, k=kk, M=sp.diags(m), sigma=sigma, which="LM")
        order = np.argsort(evals)
        evals, evecs = evals[order], evecs[:, order]
    evals = np.maximum(evals, 0.0)
    if kk < k:
        evals = np.concatenate([evals, np.zeros(k - kk)])
        evecs = np.concatenate([evecs, np.zeros((N, k - kk))], axis=1)
    return evals, evecs


class LaplacianEigenbasis(BaseTransform):
    r"""Adds the first :obj:`k` eigenpairs of the generalised eigenproblem
    :math:`L \phi_i = \lambda_i M \phi_i` of the cotangent (or point-cloud)
    Laplacian :math:`L` and the lumped mass :math:`M` of a surface, as used
    by the spectral path of :class:`~gdl_pyg.nn.conv.DiffusionConv`:

    .. math::
        \Phi^\top M \Phi = I, \qquad 0 \le \lambda_1 \le \dots \le \lambda_k.

    Writes ``evals [1, k]`` (a graph-level row: a batch holds ``[B, k]``)
    and ``evecs [N, k]`` in the dtype of ``pos``. Eigenvectors are defined up
    to sign (and up to rotations within repeated eigenvalues): every quantity
    computed from them in this library (spectral diffusion, heat kernel
    signatures) does not depend on that choice, provided :obj:`k` does not
    split a repeated eigenvalue. Needs ``laplacian_index``,
    ``laplacian_weight`` and ``mass`` (from
    :class:`~gdl_pyg.transforms.MeshGeometry` or
    :class:`PointCloudLaplacian`). Slow for large :obj:`k`; use it as a
    ``pre_transform``.

    Args:
        k (int, optional): the number of eigenpairs. (default: :obj:`128`)
        dense_threshold (int, optional): surfaces with at most this many
            vertices use a dense solver. (default: :obj:`400`)
    """

    def __init__(self, k: int = 128, dense_threshold: int = 400):
        self.k = _check_positive_int("LaplacianEigenbasis", "k", k)
        self.dense_threshold = dense_threshold

    def forward(self, data: Data) -> Data:
        name = type(self).__name__
        _require(name, data, ["laplacian_index", "laplacian_weight", "mass"],
                 "'MeshGeometry' (meshes) or 'PointCloudLaplacian' (point clouds)")
        if data.get("batch") is not None:
            raise ValueError(f"'{name}' works on a single surface, not a batch (got a "
                             f"'batch' vector); apply it before batching")
        evals, evecs = laplacian_eigenbasis(data.laplacian_index, data.laplacian_weight,
                                            data.mass, self.k, self.dense_threshold)
        like = torch.empty(0, dtype=_dtype_of(data), device=data.mass.device)
        # checked after the cast: eigenvalues grow as 1 / area (overflow in float32 for
        # surfaces scaled by 1e-20)
        data.evals = _to_out(evals, like, name, "evals").view(1, -1)
        data.evecs = _to_out(evecs, like, name, "evecs")
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k})"


# --------------------------------------------------------------------------
# heat kernel signature
# --------------------------------------------------------------------------
def heat_kernel_signature(evals: Tensor, evecs: Tensor, times: Tensor) -> Tensor:
    r"""Heat kernel signatures ``[N, T]``: :math:`h(x, t) = \sum_i
    e^{-\lambda_i t} \phi_i(x)^2` for ``evals [k]`` (or ``[1, k]``),
    ``evecs [N, k]`` and ``times [T]``."""
    evals = evals.reshape(-1)
    # n: vertex, i: eigenpair, t: time
    return torch.einsum("ni,ti->nt", evecs**2, torch.exp(-times[:, None] * evals[None, :]))


class HeatKernelSignature(BaseTransform):
    r"""Writes the heat kernel signature of `"A Concise and Provably
    Informative Multi-Scale Signature Based on Heat Diffusion"
    <https://doi.org/10.1111/j.1467-8659.2009.01515.x>`_ (Sun et al. 2009),
    the input features of DiffusionNet, from the eigenbasis of
    :class:`LaplacianEigenbasis`:

    .. math::
        h(x, t) = \sum_{i=1}^{k} e^{-\lambda_i t}\, \phi_i(x)^2,

    at :obj:`num_times` times log-spaced between :math:`4 \ln 10 /
    \lambda_k` and :math:`4 \ln 10 / \lambda_2` (the first non-zero
    eigenvalue), as in the paper, unless :obj:`times` are given. Invariant
    under isometries and under the sign/basis choice of the eigenvectors.

    Args:
        num_times (int, optional): the number of times. (default: :obj:`16`)
        times (sequence of float, optional): explicit times (overrides
            :obj:`num_times`). (default: :obj:`None`)
        attr_name (str, optional): the attribute to write. (default: :obj:`"x"`)
        cat (bool, optional): concatenate to an existing ``attr_name``
            instead of replacing it. (default: :obj:`False`)
    """

    def __init__(self, num_times: int = 16, times: Optional[Sequence[float]] = None,
                 attr_name: str = "x", cat: bool = False):
        self.num_times = _check_positive_int("HeatKernelSignature", "num_times", num_times)
        if times is not None:
            times = [float(t) for t in times]
            if not times or any(not (t > 0) or not math.isfinite(t) for t in times):
                raise ValueError(f"'HeatKernelSignature' expected positive, finite 'times' "
                                 f"(got {times!r})")
            self.num_times = len(times)
        self.times = times
        self.attr_name = attr_name
        self.cat = cat

    def forward(self, data: Data) -> Data:
        _require(type(self).__name__, data, ["evals", "evecs"], "'LaplacianEigenbasis'")
        evals, evecs = data.evals.reshape(-1), data.evecs
        if self.times is not None:
            times = torch.tensor(self.times, dtype=evecs.dtype, device=evecs.device)
        else:
            ev = evals.detach().to(torch.float64)
            # the zero eigenvalues (one per connected component) come out as round-off
            # of the dtype the geometry was stored in (~1e-6 relative in float32): a
            # threshold at 1e-8 would take one of them for lambda_2
            rel = max(1e-8, 1e3 * torch.finfo(evals.dtype).eps) if evals.is_floating_point() \
                else 1e-8
            pos = ev[ev > rel * ev.max().clamp_min(1e-300)]
            if pos.numel() == 0:
                raise ValueError("'HeatKernelSignature' found no positive eigenvalue; pass "
                                 "explicit 'times'")
            t_min, t_max = 4 * math.log(10) / float(pos.max()), \
                4 * math.log(10) / float(pos.min())
            times = torch.logspace(math.log10(t_min), math.log10(t_max), self.num_times,
                                   dtype=torch.float64).to(evecs.dtype).to(evecs.device)
        hks = heat_kernel_signature(evals.to(evecs.dtype), evecs, times)
        old = data.get(self.attr_name)
        if self.cat and isinstance(old, Tensor):
            hks = torch.cat([old.view(old.size(0), -1), hks.to(old.dtype)], dim=-1)
        data[self.attr_name] = hks
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_times={self.num_times})"


# --------------------------------------------------------------------------
# spatial gradient
# --------------------------------------------------------------------------
def spatial_gradient(pos: Tensor, frame: Tensor, edge_index: Tensor,
                     regularization: float = 1e-12):
    r"""The per-vertex gradient operator in the tangent frames, as
    ``(grad_index [2, nnz], grad_weight [nnz, 2])``: for a function
    :math:`f` on the vertices, the tangent gradient at :math:`i` in the frame
    :math:`(e_{1,i}, e_{2,i})` is

    .. math::
        (\nabla f)_i = \sum_{(i, j) \in \text{grad\_index}} w_{ij} f_j
        \in \mathbb{R}^2,

    the weighted least-squares fit :math:`\min_g \sum_{j \to i} (\langle g,
    u_{ij} \rangle - (f_j - f_i))^2` over the neighbours :math:`j` of
    :math:`i` in ``edge_index`` (``edge_index[1] = i``), with
    :math:`u_{ij} = (\langle x_j - x_i, e_{1,i}\rangle, \langle x_j - x_i,
    e_{2,i}\rangle)`. ``grad_index[0]`` is the vertex :math:`i`,
    ``grad_index[1]`` the vertex :math:`j` (self entries included), sorted.
    """
    check_edge_index(edge_index, pos.size(0), "spatial_gradient")
    P = pos.detach().cpu().to(torch.float64).numpy()
    Fr = frame.detach().cpu().to(torch.float64).numpy()
    src, dst = edge_index.detach().cpu().numpy()
    keep = src != dst
    src, dst = src[keep], dst[keep]
    N = P.shape[0]
    D = P[src] - P[dst]
    # u: [E, 2] coordinates of x_j - x_i in i's frame
    u = np.einsum("ec,edc->ed", D, Fr[dst])
    G = np.zeros((N, 2, 2))
    np.add.at(G, dst, u[:, :, None] * u[:, None, :])
    tr = np.trace(G, axis1=1, axis2=2)
    scale = np.where(tr > 0, tr, 1.0)
    G = G + (regularization * scale)[:, None, None] * np.eye(2)[None]
    Ginv = np.linalg.inv(G)
    A = np.einsum("eab,eb->ea", Ginv[dst], u)  # [E, 2]
    diag = np.zeros((N, 2))
    np.add.at(diag, dst, -A)
    rows = np.concatenate([dst, np.arange(N)])
    cols = np.concatenate([src, np.arange(N)])
    w = np.concatenate([A, diag], 0)
    order = np.lexsort((cols, rows))
    index = torch.from_numpy(np.stack([rows[order], cols[order]]).astype(np.int64))
    return index.to(pos.device), _to_out(w[order], pos, "spatial_gradient", "grad_weight")


class SpatialGradient(BaseTransform):
    r"""Writes the tangent gradient operator of :func:`spatial_gradient` as
    ``grad_index [2, nnz]`` (target vertex, source vertex) and ``grad_weight
    [nnz, 2]`` (the two components in the vertex's ``frame``): the operator
    DiffusionNet's spatial gradient features read, fitted by least squares
    over the neighbours in ``edge_index`` (the 1-ring of a mesh from
    :class:`~gdl_pyg.transforms.MeshGeometry`, the :math:`k`-NN of a point
    cloud from :func:`gdl_pyg.domains.points_to_data`). Rotating a vertex
    frame by :math:`\theta` rotates its gradients by :math:`-\theta`.

    Args:
        regularization (float, optional): Tikhonov term added to each local
            normal matrix, relative to its trace. (default: :obj:`1e-12`)
    """

    def __init__(self, regularization: float = 1e-12):
        self.regularization = regularization

    def forward(self, data: Data) -> Data:
        _require(type(self).__name__, data, ["pos", "frame", "edge_index"],
                 "'MeshGeometry' (meshes) or 'points_to_data' (point clouds)")
        index, weight = spatial_gradient(data.pos, data.frame, data.edge_index,
                                         self.regularization)
        data.grad_index, data.grad_weight = index, weight
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
