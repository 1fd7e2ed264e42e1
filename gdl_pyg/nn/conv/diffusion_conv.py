r"""Learned heat diffusion on surfaces (DiffusionNet's diffusion layer)."""
import math
import warnings
from typing import Optional

import torch
from torch import Tensor
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.typing import OptTensor
from torch_geometric.utils import scatter, to_dense_batch

from gdl_pyg.nn._checks import check_index
from gdl_pyg.nn.conv.message_passing_conv import (ConstantProduct, _csr_tensor,
                                                  csr_adjacency, eager_cpu_product,
                                                  edge_aggregate)
from gdl_pyg.utils import check_edge_index, check_features

__all__ = ["DiffusionConv"]

METHODS = ("spectral", "chebyshev")


def _shape(v) -> str:
    return str(list(v.shape)) if isinstance(v, Tensor) else type(v).__name__


class DiffusionConv(MessagePassing):
    r"""The learned diffusion operator from the `"DiffusionNet: Discretization
    Agnostic Learning on Surfaces" <https://arxiv.org/abs/2012.00888>`_ paper:
    every channel :math:`c` of a signal on a surface is diffused by the heat
    equation for its own learned time :math:`t_c \ge 0`,

    .. math::
        \mathbf{h}_{:, c} = \exp\left(-t_c\, M^{-1} L\right) \mathbf{x}_{:, c}
        \approx \Phi \operatorname{diag}\left(e^{-\lambda_1 t_c}, \dots,
        e^{-\lambda_k t_c}\right) \Phi^\top M\, \mathbf{x}_{:, c},

    with :math:`L` the (cotangent or point-cloud) Laplacian, :math:`M` the
    lumped mass and :math:`(\lambda_i, \phi_i)` the first :math:`k`
    generalised eigenpairs (:math:`L \phi = \lambda M \phi`,
    :math:`\Phi^\top M \Phi = I`). Heat flow depends only on the intrinsic
    geometry, so the layer is invariant under rigid motions (and all
    isometries) and equivariant under vertex renumbering, and it converges
    under refinement of the discretisation.

    Two paths compute it:

    * :obj:`method="spectral"` (the paper's): the truncated eigenbasis, from
      ``evecs [N, k]`` and ``evals [B, k]`` of
      :class:`~gdl_pyg.transforms.LaplacianEigenbasis` (exact for functions
      in the span of :math:`\Phi`, a low-pass approximation otherwise).
    * :obj:`method="chebyshev"`: no eigenbasis; the Chebyshev expansion of
      :math:`e^{-t x}` on the spectral interval :math:`[0, b]` of
      :math:`M^{-1}L` (:math:`b` a Gershgorin bound per graph),

      .. math::
          \mathbf{h}_{:, c} = \sum_{m=0}^{K-1} a_m(t_c b)\,
          T_m\left(\tfrac{2}{b} M^{-1} L - I\right) \mathbf{x}_{:, c},

      each product with :math:`L` a message passing over ``laplacian_index``
      / ``laplacian_weight`` (:math:`(L\mathbf{x})_i = \sum_j L_{ij}
      \mathbf{x}_j`); on the CPU, from ``PRODUCT_MIN_MESSAGE_ELEMENTS``
      (:math:`2^{17}`) message elements on, a sparse CSR product whose
      matrices (:math:`L` and, for the backward, :math:`L^\top`) are built
      once per call (the sums are PyG's scatter's bit for bit). The
      coefficients :math:`a_m` are Chebyshev interpolants, differentiable in :math:`t`. With
      :obj:`num_terms=None`, :math:`K` is chosen per call so the
      coefficients left out are below :obj:`tol` (it grows like
      :math:`\sqrt{t\, b}`); it approximates the full matrix exponential,
      not its truncation to :math:`k` eigenpairs.

    Args:
        channels (int): the number of channels :math:`C` (each has its time).
        method (str, optional): ``"spectral"`` or ``"chebyshev"``.
            (default: :obj:`"spectral"`)
        init_time (float, optional): the initial diffusion time of every
            channel. (default: :obj:`0.0`, as in the paper)
        num_terms (int, optional): a fixed number :math:`K` of Chebyshev
            terms (no data-dependent choice, so no host synchronisation, and
            one graph without breaks under :func:`torch.compile`; the
            adaptive :math:`K` reads the spectral bound, a graph break).
            (default: :obj:`None`)
        max_terms (int, optional): the cap of the adaptive :math:`K`; a
            warning is raised when it is reached. (default: :obj:`512`)
        tol (float, optional): the coefficient tolerance of the adaptive
            :math:`K`. (default: :obj:`1e-12`)
        **kwargs (optional): additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, C)`,
          mass :math:`(|\mathcal{V}|)`,
          eigenvalues :math:`(B, k)` and eigenvectors :math:`(|\mathcal{V}|, k)`
          *(spectral)*,
          Laplacian indices :math:`(2, \mathrm{nnz})` and weights
          :math:`(\mathrm{nnz})` *(chebyshev)*,
          batch vector :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, C)`
    """
    #: The symmetry group of the layer (with the geometry recomputed from
    #: the transformed surface): rigid motions, in fact all isometries.
    group_name = "E(3)"

    def __init__(self, channels: int, method: str = "spectral", init_time: float = 0.0,
                 num_terms: Optional[int] = None, max_terms: int = 512, tol: float = 1e-12,
                 **kwargs):
        kwargs.setdefault("aggr", "add")
        super().__init__(**kwargs)
        name = type(self).__name__
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"'{name}' expected 'channels' to be a positive integer "
                             f"(got {channels!r})")
        if method not in METHODS:
            raise ValueError(f"'{name}' expected 'method' to be one of {list(METHODS)} "
                             f"(got {method!r})")
        if not isinstance(init_time, (int, float)) or not init_time >= 0 \
                or not math.isfinite(init_time):
            raise ValueError(f"'{name}' expected a non-negative, finite 'init_time' "
                             f"(got {init_time!r})")
        for key, value in (("num_terms", num_terms), ("max_terms", max_terms)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"'{name}' expected '{key}' to be a positive integer "
                                 f"(got {value!r})")
        if not isinstance(tol, (int, float)) or not 0 < tol < 1:
            raise ValueError(f"'{name}' expected 'tol' in (0, 1) (got {tol!r})")
        self.channels = channels
        self.method = method
        self.init_time = float(init_time)
        self.num_terms = num_terms
        self.max_terms = max_terms
        self.tol = float(tol)
        self.diffusion_time = torch.nn.Parameter(torch.empty(channels))
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        with torch.no_grad():
            self.diffusion_time.fill_(self.init_time)

    def time(self) -> Tensor:
        r"""The diffusion times :math:`t_c \geq 0` ``[C]``: the parameter
        clamped at zero in value, with an identity gradient (so a time pushed
        below zero can come back)."""
        p = self.diffusion_time
        return p + (p.clamp(min=0.0) - p).detach()

    # ------------------------------------------------------------------
    def forward(self, x: Tensor, mass: Tensor, evals: OptTensor = None,
                evecs: OptTensor = None, laplacian_index: OptTensor = None,
                laplacian_weight: OptTensor = None, batch: OptTensor = None) -> Tensor:
        name = type(self).__name__
        if not isinstance(x, Tensor) or x.dim() != 2 or x.size(1) != self.channels:
            raise ValueError(f"'{name}' expected node features 'x' of shape [num_nodes, "
                             f"{self.channels}] (got {_shape(x)})")
        check_features(x, name, "x", dims=(2,))  # integer x would give NaN
        N = x.size(0)
        if not isinstance(mass, Tensor) or mass.dim() != 1 or mass.numel() != N:
            raise ValueError(f"'{name}' expected 'mass' of shape [{N}] (got {_shape(mass)}); "
                             f"it is computed by 'MeshGeometry' (meshes) or "
                             f"'PointCloudLaplacian' (point clouds)")
        check_index(batch, N, name, "batch")
        t = self.time().to(x.dtype)
        if self.method == "spectral":
            return self._spectral(x, mass, evals, evecs, batch, t)
        return self._chebyshev(x, mass, laplacian_index, laplacian_weight, batch, t)

    # spectral path -----------------------------------------------------
    def _spectral(self, x, mass, evals, evecs, batch, t):
        name = type(self).__name__
        if evals is None or evecs is None:
            raise ValueError(f"'{name}(method=\"spectral\")' needs 'evals' and 'evecs' "
                             f"(got evals={_shape(evals)}, evecs={_shape(evecs)}); compute "
                             f"them with the 'LaplacianEigenbasis' transform, or use "
                             f"method=\"chebyshev\" with the Laplacian of 'MeshGeometry'")
        N = x.size(0)
        if evecs.dim() != 2 or evecs.size(0) != N:
            raise ValueError(f"'{name}' expected 'evecs' of shape [{N}, k] "
                             f"(got {_shape(evecs)})")
        k = evecs.size(1)
        if evals.dim() == 1:
            evals = evals.view(1, -1)
        if evals.dim() != 2 or evals.size(1) != k:
            raise ValueError(f"'{name}' expected 'evals' of shape [num_graphs, {k}] "
                             f"(got {_shape(evals)})")
        mx = x * mass.view(-1, 1)
        # decay: [B, k, C], b: graph, i: eigenpair, c: channel
        decay = torch.exp(-evals.unsqueeze(-1) * t.view(1, 1, -1))
        if batch is None:
            if evals.size(0) != 1:
                raise ValueError(f"'{name}' received evals of {evals.size(0)} graphs but no "
                                 f"'batch' vector")
            coef = evecs.t() @ mx  # [k, C]
            return evecs @ (coef * decay[0])
        B = evals.size(0)
        ev, mask = to_dense_batch(evecs, batch, batch_size=B)  # [B, Nmax, k]
        mxd, _ = to_dense_batch(mx, batch, batch_size=B)  # [B, Nmax, C]
        coef = ev.transpose(1, 2) @ mxd  # [B, k, C]
        return (ev @ (coef * decay))[mask]

    # Chebyshev path ----------------------------------------------------
    def _chebyshev(self, x, mass, laplacian_index, laplacian_weight, batch, t):
        name = type(self).__name__
        if laplacian_index is None or laplacian_weight is None:
            raise ValueError(f"'{name}(method=\"chebyshev\")' needs 'laplacian_index' and "
                             f"'laplacian_weight' (got {_shape(laplacian_index)} and "
                             f"{_shape(laplacian_weight)}); compute them with the "
                             f"'MeshGeometry' transform (meshes) or 'PointCloudLaplacian' "
                             f"(point clouds)")
        check_edge_index(laplacian_index, x.size(0), name, name="laplacian_index")
        if not isinstance(laplacian_weight, Tensor) or \
                laplacian_weight.shape != (laplacian_index.size(1),):
            raise ValueError(f"'{name}' expected 'laplacian_index' [2, nnz] and "
                             f"'laplacian_weight' [nnz] (got {_shape(laplacian_index)} and "
                             f"{_shape(laplacian_weight)})")
        N = x.size(0)
        if N == 0:  # an empty graph: nothing to diffuse (and no spectral bound to take)
            return x.clone()
        w = laplacian_weight.to(x.dtype)
        inv_mass = 1.0 / mass.to(x.dtype)
        # Gershgorin bound of the spectrum of M^-1 L, per graph (per node)
        radius = scatter(w.abs(), laplacian_index[0], 0, dim_size=N, reduce="sum") * inv_mass
        if batch is None:
            bound = radius.max().clamp_min(1e-30).view(1)
            node_graph = torch.zeros(N, dtype=torch.long, device=x.device)
        else:
            bound = scatter(radius, batch, 0, reduce="max").clamp_min(1e-30)
            node_graph = batch
        bound = bound.detach()
        tau = bound.view(-1, 1) * t.view(1, -1)  # [G, C]
        K = self.num_terms if self.num_terms is not None else \
            self._adaptive_terms(float(tau.detach().max()))
        coef = _chebyshev_coefficients(tau, K)  # [K, G, C]
        scale = (2.0 / bound)[node_graph].view(-1, 1) * inv_mass.view(-1, 1)  # [N, 1]

        # on the CPU, L v as one sparse product rather than a gather into
        # [nnz, C] and a scatter-add, where that pays (see eager_cpu_product):
        # in eager mode over the CSR of L and of its transpose (the backward),
        # built once for the K - 1 products; under torch.compile as the
        # gdl_pyg::edge_sum operator
        product = eager_cpu_product(self, laplacian_index, x, (N, N), w)
        A = AT = None
        if product and not torch.compiler.is_compiling():
            back = "target_to_source" if self.flow == "source_to_target" else "source_to_target"
            A = _int32(csr_adjacency(laplacian_index, N, N, self.flow, x.dtype, w))
            AT = _int32(csr_adjacency(laplacian_index, N, N, back, x.dtype, w)) \
                if torch.is_grad_enabled() and x.requires_grad else None

        def op(v):  # (2/b M^-1 L - I) v
            if not product:
                Lv = self.propagate(laplacian_index, x=v, edge_weight=w)
            elif torch.compiler.is_compiling():
                Lv = edge_aggregate(laplacian_index, v, N, self.flow, "sum", 0, w)
            else:
                Lv = ConstantProduct.apply(v, A, AT)
            return scale * Lv - v

        # one graph: each term's coefficients [1, C] broadcast over the nodes
        # (no gather into [N, C], and no scatter back in the backward)
        per_node = (lambda c: c[node_graph]) if batch is not None else (lambda c: c)
        t_prev, t_cur = x, op(x)
        out = per_node(coef[0]) * t_prev
        if K > 1:
            out = out + per_node(coef[1]) * t_cur
        for m in range(2, K):
            t_prev, t_cur = t_cur, 2.0 * op(t_cur) - t_prev
            out = out + per_node(coef[m]) * t_cur
        return out

    def _adaptive_terms(self, tau_max: float) -> int:
        # coefficients of the worst case (largest t * b) on a fine grid
        K = self.max_terms
        c = _chebyshev_coefficients(torch.tensor([[tau_max]], dtype=torch.float64),
                                    K).abs().view(-1)
        big = torch.nonzero(c > self.tol).view(-1)
        need = int(big.max()) + 2 if big.numel() else 1
        if need > K:
            warnings.warn(f"'{type(self).__name__}': the Chebyshev expansion needs more than "
                          f"max_terms={K} terms for t * b = {tau_max:.3g}; the result is "
                          f"approximate (raise 'max_terms' or use method=\"spectral\")")
        return min(need, K)

    def message(self, x_j: Tensor, edge_weight: Tensor) -> Tensor:
        return edge_weight.view(-1, 1) * x_j

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.channels}, method={self.method!r})"


def _int32(adj: Tensor) -> Tensor:
    r"""A CSR matrix with 32-bit indices where they fit: the sparse product
    (MKL) converts 64-bit ones in every call."""
    if adj.col_indices().numel() >= 2 ** 31 - 1:
        return adj
    return _csr_tensor(adj.crow_indices().int(), adj.col_indices().int(), adj.values(),
                       tuple(adj.shape))


def _chebyshev_coefficients(tau: Tensor, K: int) -> Tensor:
    r"""Chebyshev coefficients ``[K, G, C]`` of :math:`y \mapsto
    e^{-\tau (y + 1) / 2}` on :math:`[-1, 1]` for every entry of ``tau [G,
    C]``, by interpolation at :math:`2K` Chebyshev nodes (differentiable in
    :math:`\tau`)."""
    Q = max(2 * K, 8)
    theta = (torch.arange(Q, dtype=tau.dtype, device=tau.device) + 0.5) * (math.pi / Q)
    f = torch.exp(-tau.unsqueeze(-1) * (torch.cos(theta) + 1.0) * 0.5)  # [G, C, Q]
    m = torch.arange(K, dtype=tau.dtype, device=tau.device)
    basis = torch.cos(m.view(-1, 1) * theta.view(1, -1)) * (2.0 / Q)  # [K, Q]
    basis[0] = basis[0] * 0.5
    return torch.einsum("kq,gcq->kgc", basis, f)
