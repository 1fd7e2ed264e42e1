r"""The geodesic convolution of Masci et al. (2015): a patch operator in
geodesic polar coordinates, learned filters applied at every rotation, and
angular max pooling, made exactly gauge invariant by pooling over all
(continuous) rotations of a band-limited filter."""
import math
from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.typing import OptTensor
from torch_geometric.utils import scatter

from gdl_pyg.nn.conv.message_passing_conv import (ConstantProduct, _csr_tensor, _is_sorted,
                                                  index_argsort)
from gdl_pyg.utils import check_edge_index, check_features

__all__ = ["GeodesicConv"]

ROTATION_POOLS = ("continuous", "discrete")


def _check_positive_int(cls: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"'{cls}' expected '{name}' to be an integer >= 1 (got {value!r})")
    return value


def _check_positive_float(cls: str, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"'{cls}' expected '{name}' to be a positive finite number "
                         f"(got {value!r})")
    return float(value)


class GeodesicConv(MessagePassing):
    r"""The geodesic convolution operator from the `"Geodesic Convolutional
    Neural Networks on Riemannian Manifolds" <https://arxiv.org/abs/1501.06297>`_
    paper (Geodesic CNN, GCNN), in an exactly gauge invariant form.

    **Patch operator.** Every neighbour :math:`j` of vertex :math:`i` has
    geodesic polar coordinates :math:`(r_{ij}, \phi_{ij})` in the tangent
    plane of :math:`i` (``edge_logmap``, written by
    :class:`~gdl_pyg.transforms.MeshGeometry`). Gaussian radial bins
    :math:`w_\rho` and periodic angular bins :math:`v` extract a local
    polar "patch" of the signal, normalised per ring:

    .. math::
        D_i(\rho, \theta) = \frac{1}{Z_i(\rho)} \Big( \frac{w_\rho(0)}{T}
            \mathbf{x}_i + \sum_{j \in \mathcal{N}(i)} w_\rho(r_{ij})\,
            v(\phi_{ij} - \theta)\, \mathbf{x}_j \Big),
        \qquad Z_i(\rho) = w_\rho(0) + \sum_{j \in \mathcal{N}(i)} w_\rho(r_{ij}),

    .. math::
        w_\rho(r) = e^{-(r - \rho)^2 / 2\sigma_\rho^2}, \qquad
        v(\psi) = \frac{1}{T} \sum_{k=-K}^{K} e^{-k^2 \sigma_\theta^2 / 2}
            e^{\mathrm{i} k \psi},

    with :math:`T` = :obj:`num_theta` bin centres :math:`\theta_t = 2\pi t/T`,
    :obj:`num_rho` ring centres :math:`\rho_m = m\,R / M` (:math:`m = 1..M`,
    :math:`R` = :obj:`max_radius`) and :math:`K = \lfloor T/2 \rfloor`. The
    angular bin :math:`v` is a wrapped Gaussian truncated to the
    frequencies the :math:`T` filter taps can resolve (it is periodic and its
    :math:`T` shifts sum to one, :math:`\sum_t v(\psi - \theta_t) = 1`, so the
    per-ring normaliser is the one of the paper's per-bin normalisation
    summed over the ring's bins). The centre vertex has no angle and enters
    every angular bin equally.

    **Filters and angular pooling.** A filter :math:`a_{o c m t}` is
    correlated with the patch at every rotation :math:`\alpha` of the
    frame,

    .. math::
        (a \star D)_{io}(\alpha) = \sum_{c, m, t} a_{o c m t}\,
            D_{ic}(\rho_m, \theta_t + \alpha),
        \qquad
        \mathbf{y}_{io} = \max_{\alpha \in [0, 2\pi)} (a \star D)_{io}(\alpha)
            + b_o.

    A change of gauge (rotation of the frame of :math:`i` by
    :math:`\beta`, :math:`\phi' = \phi - \beta`) shifts the response,
    :math:`(a \star D)'(\alpha) = (a \star D)(\alpha + \beta)`, so the max
    over *all* rotations is exactly gauge invariant, and the layer is
    invariant under any change of the reference direction, e.g. the one a
    renumbering of the vertices causes in
    :func:`~gdl_pyg.domains.mesh_to_data`. Because :math:`v` is band-limited,
    the response is a trigonometric polynomial of degree :math:`K` in
    :math:`\alpha`; its maximum is found by sampling :math:`16K` rotations
    and five safeguarded Newton steps from the best sample, which converge to
    machine precision, with a certificate that no other rotation is higher
    (a concave arc around the result from Taylor bounds, and the samples
    plus an interpolation bound elsewhere); the few responses without one
    (near ties) are searched from the :math:`K` best local maxima of the
    samples (a degree-:math:`K` polynomial has at most :math:`K`). The patch
    operator is one sparse product (no per-edge patch tensor) and the
    filters act on each frequency separately (frequencies do not mix). The
    gradient is that of the response at the maximising rotation (Danskin's
    theorem). :obj:`rotation_pool="discrete"`
    takes the max over the :math:`T` rotations :math:`\alpha = 2\pi s / T`
    only, as in the paper: this is invariant to frame rotations by multiples
    of :math:`2\pi/T` only.

    With :obj:`oriented=True` the layer returns the :math:`T` responses
    :math:`\mathbf{y}_{ios} = (a \star D)_{io}(2\pi s/T) + b_o` unpooled; a
    frame rotation by :math:`2\pi m/T` at vertex :math:`i` cyclically shifts
    them, :math:`\mathbf{y}'_{ios} = \mathbf{y}_{i o (s + m)}`. For odd
    :math:`T` the :math:`T` responses are samples of a trigonometric polynomial
    of degree :math:`(T-1)/2` and determine it, so their discrete Fourier
    coefficients transform under every frame rotation (gauge representation
    of frequencies :math:`0..K`); for even :math:`T` the Nyquist sine is not
    sampled and only the rotations by multiples of :math:`2\pi/T` act exactly.

    Under :func:`torch.compile` the layer is one graph and computes what it
    computes in eager mode: the sparse patch product and the certified
    rotation maximiser, whose sizes and fallbacks depend on the data, run in
    it as the custom operators ``gdl_pyg::patch_product`` and
    ``gdl_pyg::rotation_argmax``. A geometry that requires grad takes the
    per-edge formulation, differentiable in ``edge_logmap``, in both modes.

    Args:
        in_channels (int): input feature width :math:`C`.
        out_channels (int): output feature width :math:`O`.
        num_rho (int, optional): number of radial bins :math:`M`.
            (default: :obj:`3`)
        num_theta (int, optional): number of angular bins (and filter
            rotations) :math:`T`. (default: :obj:`8`)
        max_radius (float, optional): the radius :math:`R` of the outermost
            ring, in the units of ``edge_logmap``. (default: :obj:`1.0`)
        rho_sigma (float, optional): width :math:`\sigma_\rho` of the radial
            bins. (default: :obj:`None`, the ring spacing :math:`R / M`)
        theta_sigma (float, optional): width :math:`\sigma_\theta` of the
            angular bins, in radians. (default: :obj:`None`, half the bin
            spacing :math:`\pi / T`)
        oriented (bool, optional): return the :math:`T` rotation responses
            instead of their maximum. (default: :obj:`False`)
        rotation_pool (str, optional): ``"continuous"`` (max over all
            rotations, exactly gauge invariant) or ``"discrete"`` (max over
            the :math:`T` rotations, the paper's construction).
            (default: :obj:`"continuous"`)
        bias (bool, optional): learn an additive bias. (default: :obj:`True`)
        **kwargs (optional): additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F_{in})`,
          edge indices :math:`(2, |\mathcal{E}|)`,
          edge log-map :math:`(|\mathcal{E}|, 2)`
        - **output:** node features :math:`(|\mathcal{V}|, F_{out})`, or
          :math:`(|\mathcal{V}|, F_{out}, T)` with :obj:`oriented=True`
    """
    #: The symmetry group of the layer (gauge transformations; the output of
    #: the continuous pooling is invariant).
    group_name = "SO(2)^N"

    def __init__(self, in_channels: int, out_channels: int, num_rho: int = 3,
                 num_theta: int = 8, max_radius: float = 1.0,
                 rho_sigma: Optional[float] = None, theta_sigma: Optional[float] = None,
                 oriented: bool = False, rotation_pool: str = "continuous",
                 bias: bool = True, **kwargs):
        kwargs.setdefault("aggr", "add")
        if kwargs["aggr"] != "add":
            raise ValueError(f"'{type(self).__name__}' sums its patch operator (aggr='add'); "
                             f"got aggr={kwargs['aggr']!r}")
        super().__init__(**kwargs)
        name = type(self).__name__
        self.in_channels = _check_positive_int(name, "in_channels", in_channels)
        self.out_channels = _check_positive_int(name, "out_channels", out_channels)
        self.num_rho = _check_positive_int(name, "num_rho", num_rho)
        self.num_theta = _check_positive_int(name, "num_theta", num_theta)
        self.max_radius = _check_positive_float(name, "max_radius", max_radius)
        self.rho_sigma = _check_positive_float(
            name, "rho_sigma", self.max_radius / num_rho if rho_sigma is None else rho_sigma)
        self.theta_sigma = _check_positive_float(
            name, "theta_sigma", math.pi / num_theta if theta_sigma is None else theta_sigma)
        self.oriented = bool(oriented)
        if rotation_pool not in ROTATION_POOLS:
            raise ValueError(f"'{name}' expected 'rotation_pool' to be one of "
                             f"{list(ROTATION_POOLS)} (got {rotation_pool!r})")
        self.rotation_pool = rotation_pool
        #: The highest angular frequency :math:`K`.
        self.max_freq = num_theta // 2
        T, K = num_theta, self.max_freq
        B = 2 * K + 1  # angular basis: 1, cos(k phi) (k = 1..K), sin(k phi) (k = 1..K)

        self.weight = torch.nn.Parameter(torch.empty(out_channels, in_channels, num_rho, T))
        if bias:
            self.bias = torch.nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)

        self.register_buffer("rho", torch.arange(1, num_rho + 1, dtype=torch.float64)
                             * (self.max_radius / num_rho), persistent=False)
        k = torch.arange(1, K + 1, dtype=torch.float64)
        self.register_buffer("freqs", k, persistent=False)
        g = torch.exp(-0.5 * (torch.arange(K + 1, dtype=torch.float64)
                              * self.theta_sigma) ** 2)
        # mix[t, b, b']: from the patch coefficients (basis b) and the filter
        # tap t to the coefficients of the response (a trig. polynomial in
        # alpha, basis b' = 1, cos(k alpha), sin(k alpha)).
        theta = 2 * math.pi * torch.arange(T, dtype=torch.float64) / T
        ct, st = torch.cos(theta[:, None] * k), torch.sin(theta[:, None] * k)  # [T, K]
        gk = 2 * g[1:] / T
        mix = torch.zeros(T, B, B, dtype=torch.float64)
        mix[:, 0, 0] = g[0] / T
        idx = torch.arange(K)
        mix[:, 1 + idx, 1 + idx] = gk * ct      # cos-coef -> cos(k alpha)
        mix[:, K + 1 + idx, 1 + idx] = gk * st  # sin-coef -> cos(k alpha)
        mix[:, 1 + idx, K + 1 + idx] = -gk * st  # cos-coef -> sin(k alpha)
        mix[:, K + 1 + idx, K + 1 + idx] = gk * ct  # sin-coef -> sin(k alpha)
        self.register_buffer("mix", mix, persistent=False)
        # mix3[t, g, s, e]: from the patch coefficient (cos / sin: s) of
        # frequency g and tap t to the response coefficient (cos / sin: e) of
        # the same frequency (frequencies do not mix; g = 0 has cos only)
        bidx = torch.tensor([[0, B]] + [[1 + j, K + 1 + j] for j in range(K)])  # [K+1, 2]
        mixp = torch.zeros(T, B + 1, B + 1, dtype=torch.float64)
        mixp[:, :B, :B] = mix
        mix3 = mixp[:, bidx][:, :, :, bidx]  # [T, K+1, 2, K+1, 2]
        mix3 = mix3.diagonal(dim1=1, dim2=3).permute(0, 3, 1, 2).contiguous()
        self.register_buffer("mix3", mix3, persistent=False)
        # rows of the [K+1, 2] response pairs: (p0, p_1..p_K, q_1..q_K), and of
        # the patch basis (with B: a zero row) in the order of the pairs
        self._coef_rows = [0] + [2 * j for j in range(1, K + 1)] + \
            [2 * j + 1 for j in range(1, K + 1)]
        self._patch_rows = bidx.flatten().tolist()
        # the T rotations alpha_s = 2 pi s / T in the response basis [B, T]
        self.register_buffer("rot_table", _trig_table(theta, k), persistent=False)
        table = self.rot_table
        self.register_buffer("rot_table_pairs", torch.cat(
            [table[:1], torch.zeros_like(table[:1]),
             torch.stack([table[1:K + 1], table[K + 1:]], 1).reshape(2 * K, T)]),
            persistent=False)  # [2K+2, T], rows as the response pairs
        # the sampling grid of the continuous max [B, G]
        G = max(16 * K, 1)
        self._grid_step = 2 * math.pi / G
        grid = 2 * math.pi * torch.arange(G, dtype=torch.float64) / G
        self.register_buffer("grid", grid, persistent=False)
        self.register_buffer("grid_table", _trig_table(grid, k), persistent=False)
        self.num_newton_steps = 5
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        # a smooth signal spreads over the T angular bins of a ring (each
        # about 1/T of it): this bound gives responses of unit variance
        bound = math.sqrt(3.0 * self.num_theta / (self.in_channels * self.num_rho))
        torch.nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            torch.nn.init.zeros_(self.bias)

    # ------------------------------------------------------------------
    # input checks
    # ------------------------------------------------------------------
    def _validate(self, x: Tensor, edge_index: Tensor, edge_logmap: OptTensor) -> None:
        name = type(self).__name__
        if not isinstance(x, Tensor):
            raise TypeError(f"'{name}' expected 'x' to be a Tensor (got {type(x).__name__})")
        if x.dim() != 2 or x.size(1) != self.in_channels:
            raise ValueError(f"'{name}' expected node features 'x' of shape [num_nodes, "
                             f"{self.in_channels}] (got {list(x.shape)})")
        check_features(x, name, "x", dims=(2,))
        check_edge_index(edge_index, x.size(0), name)
        if not isinstance(edge_index, Tensor) or edge_index.is_sparse \
                or edge_index.layout != torch.strided:
            raise TypeError(f"'{name}' expected 'edge_index' to be a dense [2, num_edges] "
                            f"Tensor matching 'edge_logmap' row by row (got "
                            f"{type(edge_index).__name__}); sparse adjacency is not supported")
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"'{name}' expected 'edge_index' of shape [2, num_edges] "
                             f"(got {list(edge_index.shape)})")
        if edge_logmap is None:
            raise ValueError(f"'{name}' needs 'edge_logmap' (the polar coordinates (r, phi) "
                             f"of every edge); add it with the 'MeshGeometry' transform "
                             f"(gdl_pyg.transforms.MeshGeometry) or 'mesh_to_data'")
        if not isinstance(edge_logmap, Tensor) or edge_logmap.dim() != 2 \
                or edge_logmap.size(1) != 2 or edge_logmap.size(0) != edge_index.size(1):
            shape = list(edge_logmap.shape) if isinstance(edge_logmap, Tensor) else \
                type(edge_logmap).__name__
            raise ValueError(f"'{name}' expected 'edge_logmap' of shape [num_edges, 2] = "
                             f"[{edge_index.size(1)}, 2] (got {shape})")
        if not torch.compiler.is_compiling():
            if not bool(torch.isfinite(x).all()):
                raise ValueError(f"'{name}' received node features 'x' with NaN or "
                                 f"infinite values")
            if not bool(torch.isfinite(edge_logmap).all()):
                raise ValueError(f"'{name}' received an 'edge_logmap' with NaN or infinite "
                                 f"values; recompute the geometry")

    # ------------------------------------------------------------------
    # the patch operator
    # ------------------------------------------------------------------
    def _patch_coefficients(self, x: Tensor, edge_index: Tensor,
                            edge_logmap: Tensor) -> Tensor:
        r"""The angular Fourier coefficients of the patch operator before
        the window, ``[N, M, 2K+1, C]``: ring-normalised sums of
        :math:`w_\rho(r)\,(1, \cos k\phi, \sin k\phi)\,\mathbf{x}_j`."""
        N, C = x.size(0), x.size(1)
        M, K = self.num_rho, self.max_freq
        rho = self.rho.to(x.dtype)
        r, phi = edge_logmap[:, 0], edge_logmap[:, 1]
        w = torch.exp(-0.5 * ((r.unsqueeze(-1) - rho) / self.rho_sigma) ** 2)  # [E, M]
        kphi = phi.unsqueeze(-1) * self.freqs.to(x.dtype)  # [E, K]
        ang = torch.cat([torch.ones_like(phi).unsqueeze(-1), torch.cos(kphi),
                         torch.sin(kphi)], dim=-1)  # [E, B]
        basis = (w.unsqueeze(-1) * ang.unsqueeze(1)).reshape(-1, M * (2 * K + 1))  # [E, M*B]
        out = self.propagate(edge_index, x=x, basis=basis, size=(N, N))
        out = out.view(N, M, 2 * K + 1, C)
        w0 = torch.exp(-0.5 * (rho / self.rho_sigma) ** 2)  # [M], the centre vertex
        Z = scatter(w, edge_index[1], dim=0, dim_size=N, reduce="sum") + w0  # [N, M]
        centre = torch.zeros_like(out)
        centre[:, :, 0, :] = w0.view(1, M, 1) * x.unsqueeze(1)
        # Z >= w0 > 0 unless w0 underflows (max_radius >> rho_sigma)
        return (out + centre) / Z.clamp_min(torch.finfo(x.dtype).tiny).view(N, M, 1, 1)

    def message(self, x_j: Tensor, basis: Tensor) -> Tensor:
        # [E, M*B, 1] * [E, 1, C] -> [E, M*B*C]
        return (basis.unsqueeze(-1) * x_j.unsqueeze(1)).flatten(1)

    def patch(self, x: Tensor, edge_index: Tensor, edge_logmap: OptTensor = None) -> Tensor:
        r"""The patch operator :math:`D_i(\rho_m, \theta_t)` sampled at the
        ring and bin centres, ``[N, C, num_rho, num_theta]``."""
        self._validate(x, edge_index, edge_logmap)
        F = self._patch_coefficients(x, edge_index, edge_logmap)  # [N, M, B, C]
        T, K = self.num_theta, self.max_freq
        theta = 2 * math.pi * torch.arange(T, dtype=torch.float64) / T
        k = torch.arange(1, K + 1, dtype=torch.float64)
        g = torch.exp(-0.5 * (torch.arange(K + 1, dtype=torch.float64)
                              * self.theta_sigma) ** 2)
        # v(phi - theta) = (1/T) [g0 + 2 sum_k g_k (cos k phi cos k theta + sin k phi sin k theta)]
        table = torch.cat([torch.full((1, T), g[0].item()),
                           2 * g[1:, None] * torch.cos(k[:, None] * theta),
                           2 * g[1:, None] * torch.sin(k[:, None] * theta)], dim=0) / T
        # n: node, m: ring, b: angular basis, c: channel, t: bin
        return torch.einsum("nmbc,bt->ncmt", F, table.to(F.dtype).to(F.device))

    # ------------------------------------------------------------------
    # forward
    # ------------------------------------------------------------------
    def response_coefficients(self, x: Tensor, edge_index: Tensor,
                              edge_logmap: OptTensor = None) -> Tensor:
        r"""The rotation response :math:`(a \star D)_{io}(\alpha) = p_0 +
        \sum_{k=1}^K p_k \cos k\alpha + q_k \sin k\alpha` as its
        coefficients :math:`(p_0, p_1..p_K, q_1..q_K)`, ``[N, O, 2K+1]``
        (without the bias)."""
        self._validate(x, edge_index, edge_logmap)
        R = self._response(x, edge_index, edge_logmap)
        return R.permute(1, 3, 0, 2).reshape(R.size(1), R.size(3), -1)[..., self._coef_rows]

    def _response(self, x: Tensor, edge_index: Tensor, edge_logmap: Tensor) -> Tensor:
        r"""The response coefficients by frequency, ``[K+1, N, 2, O]``: ``[k,
        :, 0]`` multiplies :math:`\cos k\alpha` and ``[k, :, 1]``
        :math:`\sin k\alpha` (zero for :math:`k = 0`)."""
        N, C = x.size(0), x.size(1)
        M, K, Co = self.num_rho, self.max_freq, self.out_channels
        # g: frequency, s: patch cos / sin, m: ring, c: in, e: response cos /
        # sin, o: out; frequencies do not mix, so the contraction is one
        # [N, 2 M C] x [2 M C, 2 O] product per frequency
        W = torch.einsum("ocmt,tgse->gsmceo", self.weight, self.mix3.to(self.weight.dtype))
        W = W.reshape(K + 1, 2 * M * C, 2 * Co)
        if not edge_logmap.requires_grad:
            F, centre = self._patch_sparse(x, edge_index, edge_logmap)  # [K+1, N, 2MC]
            R = torch.bmm(F, W)  # [K+1, N, 2 O]
            R[0] += centre @ W[0, :M * C]
        else:  # differentiable in the geometry
            F = self._patch_coefficients(x, edge_index, edge_logmap)  # [N, M, B, C]
            F = torch.cat([F, torch.zeros_like(F[:, :, :1])], 2)[:, :, self._patch_rows]
            F = F.view(N, M, K + 1, 2, C)
            F = F.permute(2, 0, 3, 1, 4).reshape(K + 1, N, 2 * M * C)
            R = torch.bmm(F, W)
        return R.view(K + 1, N, 2, Co)

    def _patch_sparse(self, x: Tensor, edge_index: Tensor,
                      edge_logmap: Tensor) -> Tuple[Tensor, Tensor]:
        r"""The patch coefficients of :meth:`_patch_coefficients` without the
        centre vertex, ``[K+1, N, 2*M*C]`` (frequency, node, (cos / sin,
        ring, channel)), as one sparse product (no per-edge ``[E, M, 2K+1,
        C]`` tensor), and the centre term ``[N, M*C]``."""
        N, C = x.size(0), x.size(1)
        M, K = self.num_rho, self.max_freq
        rho = self.rho.to(x.dtype)
        src, dst = edge_index[0], edge_index[1]
        compiling = torch.compiler.is_compiling()
        if not compiling and not _is_sorted(dst):
            perm = index_argsort(dst, N)
            src, dst, edge_logmap = src[perm], dst[perm], edge_logmap[perm]
        r, phi = edge_logmap[:, 0], edge_logmap[:, 1]
        w = torch.exp(-0.5 * ((r.unsqueeze(0) - rho.unsqueeze(-1)) / self.rho_sigma) ** 2)
        w0 = torch.exp(-0.5 * (rho / self.rho_sigma) ** 2)  # [M], the centre vertex
        Z = x.new_zeros(M, N).index_add_(1, dst, w) + w0.unsqueeze(-1)  # [M, N]
        Zinv = 1.0 / Z.clamp_min(torch.finfo(x.dtype).tiny)
        wn = w * Zinv[:, dst]  # [M, E], normalised radial weights
        kphi = self.freqs.to(x.dtype).unsqueeze(-1) * phi  # [K, E]
        ang = torch.stack([torch.cos(kphi), torch.sin(kphi)], 1).reshape(2 * K, phi.numel())
        ang = torch.cat([torch.ones_like(phi).unsqueeze(0), ang])  # [1 + 2K, E]: 1, cos, sin, ..
        vals = ang.unsqueeze(1) * wn.unsqueeze(0)  # [2K+1, M, E]
        if compiling:  # the same product, as one operator (it sorts and builds the CSR)
            F = _patch_product(x, src, dst, vals, K, M, False)
        else:
            A, AT = _patch_matrices(src, dst, N, K, M, vals,
                                    torch.is_grad_enabled() and x.requires_grad)
            F = ConstantProduct.apply(x, A, AT)
        F = F.view(K + 1, N, 2 * M * C)
        centre = (w0.unsqueeze(-1) * Zinv).t().unsqueeze(-1) * x.unsqueeze(1)
        return F, centre.reshape(N, M * C)

    def forward(self, x: Tensor, edge_index: Tensor, edge_logmap: OptTensor = None) -> Tensor:
        self._validate(x, edge_index, edge_logmap)
        R = self._response(x, edge_index, edge_logmap)  # [K+1, N, 2, O]
        K, N, Co = self.max_freq, R.size(1), R.size(3)
        if self.oriented or self.rotation_pool == "discrete" or K == 0:
            table = self.rot_table_pairs.to(R.dtype)  # [2K+2, T]
            out = R.permute(1, 3, 0, 2).reshape(N, Co, 2 * K + 2) @ table  # [N, Co, T]
            if self.oriented:
                return out if self.bias is None else out + self.bias.view(1, -1, 1)
            out = out.amax(dim=-1)
        else:
            with torch.no_grad():
                coef = R.detach().permute(1, 3, 0, 2).reshape(N * Co, 2 * K + 2)
                coef = coef[:, self._coef_rows]
                alpha = self._argmax_rotation(coef).view(N, Co)
                ka = self.freqs.to(R.dtype).view(K, 1, 1) * alpha  # [K, N, O]
                one = torch.ones_like(alpha).unsqueeze(0)
                basis = torch.stack([torch.cat([one, torch.cos(ka)]),
                                     torch.cat([torch.zeros_like(one), torch.sin(ka)])], 2)
            # Danskin: the gradient of the max is the one of the response at alpha
            out = (R * basis).sum((0, 2))
        return out if self.bias is None else out + self.bias

    def _sampling(self, dtype: torch.dtype) -> "_Sampling":
        return _Sampling(self.freqs.to(dtype), self.grid.to(dtype), self.grid_table.to(dtype),
                         self._grid_step, self.num_newton_steps)

    def _argmax_rotation(self, coef: Tensor) -> Tensor:
        r"""A maximiser :math:`\alpha^*` ``[...]`` of the trigonometric
        polynomials ``coef [..., 2K+1]`` (under no_grad).

        Newton steps from the best of :math:`16K` samples, with a certificate
        that no other rotation is higher (a concave arc around the result,
        and the sampled values plus an interpolation bound elsewhere); the
        polynomials without one go through :meth:`_argmax_rotation_search`.
        Under :func:`torch.compile` the same runs as one opaque operator
        (``gdl_pyg::rotation_argmax``: its fallback has a data-dependent
        size)."""
        shape = coef.shape[:-1]
        c = coef.reshape(-1, coef.size(-1))
        if torch.compiler.is_compiling():
            s = self._sampling(c.dtype)
            return _rotation_argmax(c.contiguous(), s.freqs, s.grid, s.table, s.step,
                                    s.newton_steps).view(shape)
        if c.size(0) == 0:
            return self._argmax_rotation_search(c).view(shape)
        alpha, ok = self._argmax_certified(c.contiguous())
        if not bool(ok.all()):
            bad = (~ok).nonzero().squeeze(1)
            alpha[bad] = self._argmax_rotation_search(c[bad])
        return alpha.view(shape)

    def _argmax_certified(self, c: Tensor, chunk: int = 8192) -> Tuple[Tensor, Tensor]:
        r"""``c [P, 2K+1]`` -> ``(alpha [P], certified [P])``
        (:func:`_certified_argmax`)."""
        return _certified_argmax(c, self._sampling(c.dtype), chunk)

    def _argmax_rotation_search(self, coef: Tensor) -> Tensor:
        r"""A maximiser of every polynomial of ``coef [..., 2K+1]``
        (:func:`_searched_argmax`)."""
        return _searched_argmax(coef, self._sampling(coef.dtype))

    def __repr__(self) -> str:
        extra = ", oriented=True" if self.oriented else \
            (", rotation_pool='discrete'" if self.rotation_pool == "discrete" else "")
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"num_rho={self.num_rho}, num_theta={self.num_theta}, "
                f"max_radius={self.max_radius:g}{extra})")


class _Sampling(NamedTuple):
    r"""The sampling of the rotation maximisation: the frequencies ``[K]``,
    the ``G`` sampled angles, their trigonometric table ``[2K+1, G]``, the
    sampling step and the number of Newton steps."""
    freqs: Tensor
    grid: Tensor
    table: Tensor
    step: float
    newton_steps: int


def _certified_argmax(c: Tensor, s: _Sampling, chunk: int = 8192) -> Tuple[Tensor, Tensor]:
    r"""``c [P, 2K+1]`` -> ``(alpha [P], certified [P])``: safeguarded
    Newton steps from the best of the :math:`16K` samples, and a
    certificate that no rotation is higher. The samples are made and
    reduced ``chunk`` polynomials at a time (in cache), twice: for the
    start, then for the certificate."""
    k, grid, table, h = s.freqs, s.grid, s.table, s.step  # table: [B, G]
    K = k.numel()
    P = c.size(0)
    start = grid[torch.cat([(c[i:i + chunk] @ table).max(-1).indices
                            for i in range(0, P, chunk)])]  # [P]
    cT = c.t()
    p, q = cT[1:K + 1].contiguous(), cT[K + 1:].contiguous()  # [K, P]
    k2 = k * k
    lo, hi = start - h, start + h
    alpha = start
    for _ in range(s.newton_steps):
        ka = k.unsqueeze(-1) * alpha  # [K, P]
        cs, sn = torch.cos(ka), torch.sin(ka)
        d1 = k @ (q * cs - p * sn)
        d2 = k2 @ (p * cs + q * sn)  # minus the second derivative
        step = torch.where(d2 > 0, d1 / d2, torch.sign(d1).mul_(0.5 * h))
        alpha = torch.clamp(alpha + step.clamp_(-h, h), lo, hi)
    ka = k.unsqueeze(-1) * alpha
    cs, sn = torch.cos(ka), torch.sin(ka)
    f = cT[0] + (p * cs + q * sn).sum(0)
    qp = q * cs - p * sn
    d1 = k @ qp
    d2 = -(k2 @ (p * cs + q * sn))
    d3 = -((k2 * k) @ qp)
    # with A2 >= |f''| and A4 >= |f''''| everywhere, on |t| <= delta, where
    # |f'''| delta / 6 + A4 delta^2 / 24 = |f''| / 4:
    # f(alpha + t) <= f + |f'| |t| - |f''| t^2 / 4 <= f + f'^2 / |f''|
    amp = torch.sqrt(p * p + q * q)
    A2, A4 = k2 @ amp, (k2 * k2) @ amp
    tiny = torch.finfo(c.dtype).tiny
    b, c0 = d3.abs() / 6, (-d2).clamp_min(0) / 4
    delta = (2 * c0 / (b + torch.sqrt(b * b + A4 * c0 / 6)).clamp_min(tiny))
    delta = delta.clamp(max=math.pi)
    # the samples whose two cells lie inside the arc (|g - alpha| + h <=
    # delta) are left out; elsewhere f <= the larger end of its cell +
    # h^2 / 8 max |f''|
    eps = torch.finfo(c.dtype).eps
    thr = torch.where(delta > h, torch.cos(delta - h) + 16 * eps,
                      torch.full_like(delta, 2.0))
    # a penalty > 0 only where cos(g - alpha) > thr pushes those samples
    # down (no boolean masks: they are slow)
    big = torch.finfo(c.dtype).max ** 0.5
    rot = torch.stack([torch.cos(alpha), torch.sin(alpha), -thr], -1)  # [P, 3]
    dirs = torch.stack([torch.cos(grid), torch.sin(grid), torch.ones_like(grid)])
    outside = []
    for i in range(0, P, chunk):
        vals = c[i:i + chunk] @ table
        pen = (rot[i:i + chunk] @ dirs).clamp_min_(0)
        outside.append(vals.add_(pen, alpha=-big).amax(-1))
    scale = c.abs().sum(-1)
    bound = torch.cat(outside) + (h * h / 8) * A2 + 16 * eps * scale
    err = d1 * d1 / (-d2).clamp_min(tiny)
    ok = (d2 < 0) & (bound <= f) & (err <= 4 * eps * scale)
    return alpha, ok


def _searched_argmax(coef: Tensor, s: _Sampling) -> Tensor:
    r"""A maximiser :math:`\alpha^*` ``[...]`` of the trigonometric
    polynomials ``coef [..., 2K+1]``: the :math:`K` best local maxima of
    the samples refined by safeguarded Newton steps (all under no_grad)."""
    k, grid, h = s.freqs, s.grid, s.step
    K = k.numel()
    vals = coef @ s.table  # [..., G]
    is_max = (vals >= vals.roll(1, -1)) & (vals >= vals.roll(-1, -1))
    masked = torch.where(is_max, vals, torch.full_like(vals, -math.inf))
    _, idx = masked.topk(min(K, vals.size(-1)), dim=-1)  # [..., S]
    start = grid[idx]
    alpha = start
    p, q = coef[..., 1:K + 1].unsqueeze(-2), coef[..., K + 1:].unsqueeze(-2)
    # d1 = sum_k k (q_k cos - p_k sin), d2 = -sum_k k^2 (p_k cos + q_k sin)
    for _ in range(s.newton_steps):
        ka = alpha.unsqueeze(-1) * k  # [..., S, K]
        c, s = torch.cos(ka), torch.sin(ka)
        d1 = (q * c - p * s) @ k
        d2 = -((p * c + q * s) @ (k * k))
        concave = d2 < 0
        newton = -d1 / torch.where(concave, d2, -torch.ones_like(d2))
        step = torch.where(concave, newton, torch.sign(d1) * (0.5 * h))
        alpha = alpha + step.clamp(-h, h)
        alpha = torch.minimum(torch.maximum(alpha, start - h), start + h)
    cand = torch.cat([alpha, grid[vals.argmax(-1, keepdim=True)]], -1)
    value = _evaluate(coef, cand, k)[0]
    best = value.argmax(dim=-1, keepdim=True)
    return cand.gather(-1, best).squeeze(-1)


@torch.library.custom_op("gdl_pyg::rotation_argmax", mutates_args=())
def _rotation_argmax(c: Tensor, freqs: Tensor, grid: Tensor, table: Tensor, step: float,
                     newton_steps: int) -> Tensor:
    # GeodesicConv._argmax_rotation of c [P, 2K+1] as one operator, opaque to
    # torch.compile: the certified maximiser, and the search where it fails
    s = _Sampling(freqs, grid, table, step, newton_steps)
    if c.size(0) == 0:
        return _searched_argmax(c, s)
    alpha, ok = _certified_argmax(c, s)
    if not bool(ok.all()):
        bad = (~ok).nonzero().squeeze(1)
        alpha[bad] = _searched_argmax(c[bad], s)
    return alpha


@_rotation_argmax.register_fake
def _(c, freqs, grid, table, step, newton_steps):
    return c.new_empty(c.shape[:-1])


def _trig_table(angle: Tensor, k: Tensor) -> Tensor:
    r"""``[2K+1, A]``: rows :math:`1, \cos k\alpha, \sin k\alpha` at the
    angles :math:`\alpha`."""
    ka = k[:, None] * angle[None, :]
    return torch.cat([torch.ones(1, angle.numel(), dtype=angle.dtype), torch.cos(ka),
                      torch.sin(ka)], dim=0)


def _evaluate(coef: Tensor, alpha: Tensor, k: Tensor,
              derivatives: bool = False) -> Tuple[Tensor, ...]:
    r"""The trigonometric polynomials ``coef [N, O, 2K+1]`` (and their first
    two derivatives) at the angles ``alpha [N, O, S]``."""
    K = k.numel()
    p0, p, q = coef[..., :1], coef[..., 1:K + 1], coef[..., K + 1:]
    ka = alpha.unsqueeze(-1) * k  # [N, O, S, K]
    c, s = torch.cos(ka), torch.sin(ka)
    p, q = p.unsqueeze(-2), q.unsqueeze(-2)  # [N, O, 1, K]
    value = p0 + (p * c + q * s).sum(-1)
    if not derivatives:
        return (value,)
    d1 = (k * (q * c - p * s)).sum(-1)
    d2 = -(k * k * (p * c + q * s)).sum(-1)
    return value, d1, d2


def _patch_matrices(src: Tensor, dst: Tensor, N: int, K: int, M: int, vals: Tensor,
                    transpose: bool) -> Tuple[Tensor, Optional[Tensor]]:
    r"""The patch operator as a sparse CSR matrix ``[(K+1)*N*2M, N]``: row
    ``(g, i, s, m)``, column ``j``, value ``vals[b, m, e]`` of the edge ``e =
    (j, i)`` and the angular basis ``b = 0`` (``g = s = 0``; ``g = 0, s = 1``
    is empty) or ``b = 2g - 1 + s`` (``cos, sin`` of frequency ``g``); and
    its transpose ``[N, (K+1)*N*2M]`` when ``transpose``. The edges must be
    sorted by target ``dst``; ``vals [2K+1, M, E]``."""
    return (_patch_csr(src, dst, N, K, M, vals),
            _patch_csr_t(src, dst, N, K, M, vals) if transpose else None)


def _index_dtype(vals: Tensor, N: int, K: int, M: int) -> torch.dtype:
    return torch.int32 if max(vals.numel(), (K + 1) * N * 2 * M) < 2 ** 31 - 1 else torch.long


def _patch_csr(src: Tensor, dst: Tensor, N: int, K: int, M: int, vals: Tensor) -> Tensor:
    r"""The matrix of :func:`_patch_matrices`."""
    E = src.numel()
    device = src.device
    deg = torch.bincount(dst, minlength=N)
    ptr = torch.zeros(N + 1, dtype=torch.long, device=device)
    ptr[1:] = deg.cumsum(0)
    ar = torch.arange(E, device=device)
    v = vals.reshape((2 * K + 1) * M, E)  # rows (b, m)

    def places(S):
        # row (i, r) of a block of S rows per node starts at S ptr[i] + r deg[i];
        # e is the (e - ptr[i])-th edge of i: the inverse of that placement
        r = torch.arange(S, device=device).unsqueeze(-1)
        where = ((S - 1) * ptr[:-1])[dst] + ar + r * deg[dst]  # [S, E]
        inv = torch.empty(S * E, dtype=torch.long, device=device)
        inv[where.flatten()] = torch.arange(S * E, device=device)
        return inv

    itype = _index_dtype(v, N, K, M)
    src_i = src.to(itype)
    inv = places(M)
    values, col = [v[:M].reshape(-1)[inv]], [src_i.repeat(M)[inv]]
    r = torch.arange(2 * M, device=device)
    crow = [(M * ptr[:-1]).unsqueeze(-1) + r.clamp(max=M) * deg.unsqueeze(-1)]  # [N, 2M]
    if K > 0:
        inv = places(2 * M)
        values.append(v[M:].reshape(K, 2 * M * E)[:, inv].reshape(-1))
        col.append(src_i.repeat(2 * M)[inv].repeat(K))
        g = torch.arange(K, device=device).view(K, 1, 1)
        crow.append((M * E + g * (2 * M * E) + (2 * M * ptr[:-1]).unsqueeze(-1)
                     + r * deg.unsqueeze(-1)).flatten(0, 1))
    crow = torch.cat([torch.cat(crow).flatten(), ptr.new_full((1,), v.numel())])
    return _csr_tensor(crow.to(itype), torch.cat(col), torch.cat(values),
                       ((K + 1) * N * 2 * M, N))


def _patch_csr_t(src: Tensor, dst: Tensor, N: int, K: int, M: int, vals: Tensor) -> Tensor:
    r"""The transpose of the matrix of :func:`_patch_matrices`."""
    device = src.device
    v = vals.reshape((2 * K + 1) * M, src.numel())  # rows (b, m)
    itype = _index_dtype(v, N, K, M)
    perm = index_argsort(src, N)
    ptr_t = torch.zeros(N + 1, dtype=torch.long, device=device)
    ptr_t[1:] = torch.bincount(src, minlength=N).cumsum(0)
    # row j: its edges e (by source), then (b, m): column (g N + i) 2M + s M + m
    b = torch.arange(v.size(0) // M, device=device)
    g, s = (b + 1) // 2, (b + 1) % 2 * (b > 0)
    m = torch.arange(M, device=device)
    off = (g * (N * 2 * M) + s * M).unsqueeze(-1) + m  # [2K+1, M]
    col_t = (dst[perm].unsqueeze(-1) * (2 * M)).to(itype) + off.flatten().to(itype)
    return _csr_tensor((ptr_t * v.size(0)).to(itype), col_t.flatten(), v.t()[perm].flatten(),
                       (N, (K + 1) * N * 2 * M))


@torch.library.custom_op("gdl_pyg::patch_product", mutates_args=())
def _patch_product(x: Tensor, src: Tensor, dst: Tensor, vals: Tensor, K: int, M: int,
                   transpose: bool) -> Tensor:
    # The product with the patch matrix A of _patch_matrices of the edges
    # (src, dst) in any order, A @ x (or A^T @ x with transpose), as one
    # operator: GeodesicConv's patch under torch.compile, whose sort check
    # and CSR build read the data. vals [2K+1, M, E] follows the edges.
    N = x.size(0) // ((K + 1) * 2 * M) if transpose else x.size(0)
    if not _is_sorted(dst):
        perm = index_argsort(dst, N)
        src, dst, vals = src[perm], dst[perm], vals[..., perm]
    if transpose:
        A = _patch_csr_t(src, dst, N, K, M, vals)
    else:
        A = _patch_csr(src, dst, N, K, M, vals)
    return torch.addmm(x.new_empty(A.size(0), x.size(1)), A, x, beta=0)


@_patch_product.register_fake
def _(x, src, dst, vals, K, M, transpose):
    rows = x.size(0) // ((K + 1) * 2 * M) if transpose else x.size(0) * (K + 1) * 2 * M
    return x.new_empty(rows, x.size(1))


def _patch_product_setup(ctx, inputs, output) -> None:
    x, src, dst, vals, K, M, transpose = inputs
    ctx.save_for_backward(src, dst, vals)
    ctx.K, ctx.M, ctx.transpose = K, M, transpose


def _patch_product_backward(ctx, grad: Tensor):
    # linear in x, constant in the geometry (the caller's vals carry no
    # gradient): the gradient is the product with the transpose
    src, dst, vals = ctx.saved_tensors
    grad_x = None
    if ctx.needs_input_grad[0]:
        grad_x = _patch_product(grad.contiguous(), src, dst, vals, ctx.K, ctx.M,
                                not ctx.transpose)
    return grad_x, None, None, None, None, None, None


_patch_product.register_autograd(_patch_product_backward, setup_context=_patch_product_setup)
