r"""The geodesic convolution of Masci et al. (2015): a patch operator in
geodesic polar coordinates, learned filters applied at every rotation, and
angular max pooling, made exactly gauge invariant by pooling over all
(continuous) rotations of a band-limited filter."""
import math
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.typing import OptTensor
from torch_geometric.utils import scatter

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
    :math:`\alpha`; its maximum is found by sampling :math:`16K` rotations,
    then five Newton steps from the :math:`K` best local maxima of the samples
    (a degree-:math:`K` polynomial has at most :math:`K`), which converges
    to machine precision. The gradient is that of the response at the
    maximising rotation (Danskin's theorem). :obj:`rotation_pool="discrete"`
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
        # the T rotations alpha_s = 2 pi s / T in the response basis [B, T]
        self.register_buffer("rot_table", _trig_table(theta, k), persistent=False)
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
        F = self._patch_coefficients(x, edge_index, edge_logmap)  # [N, M, B, C]
        N, M, B, C = F.shape
        # o: out, c: in, m: ring, t: tap, b: patch basis, d: response basis
        W = torch.einsum("ocmt,tbd->mbcod", self.weight, self.mix.to(self.weight.dtype))
        return (F.reshape(N, M * B * C) @ W.reshape(M * B * C, -1)).view(
            N, self.out_channels, B)

    def forward(self, x: Tensor, edge_index: Tensor, edge_logmap: OptTensor = None) -> Tensor:
        coef = self.response_coefficients(x, edge_index, edge_logmap)  # [N, O, B]
        if self.oriented:
            out = coef @ self.rot_table.to(coef.dtype)  # [N, O, T]
            return out if self.bias is None else out + self.bias.view(1, -1, 1)
        if self.rotation_pool == "discrete" or self.max_freq == 0:
            out = (coef @ self.rot_table.to(coef.dtype)).amax(dim=-1)
        else:
            with torch.no_grad():
                alpha = self._argmax_rotation(coef.detach())
            out = _evaluate(coef, alpha.unsqueeze(-1), self.freqs.to(coef.dtype))[0]
            out = out.squeeze(-1)
        return out if self.bias is None else out + self.bias

    def _argmax_rotation(self, coef: Tensor) -> Tensor:
        r"""A maximiser :math:`\alpha^*` ``[N, O]`` of the trigonometric
        polynomials ``coef [N, O, 2K+1]``: the :math:`K` best local maxima of
        the grid refined by safeguarded Newton steps (all under no_grad)."""
        K = self.max_freq
        k = self.freqs.to(coef.dtype)
        h = self._grid_step
        grid = self.grid.to(coef.dtype)
        vals = coef @ self.grid_table.to(coef.dtype)  # [N, O, G]
        is_max = (vals >= vals.roll(1, -1)) & (vals >= vals.roll(-1, -1))
        masked = torch.where(is_max, vals, torch.full_like(vals, -math.inf))
        _, idx = masked.topk(min(K, vals.size(-1)), dim=-1)  # [N, O, S]
        start = grid[idx]
        alpha = start
        p, q = coef[..., 1:K + 1].unsqueeze(-2), coef[..., K + 1:].unsqueeze(-2)
        # d1 = sum_k k (q_k cos - p_k sin), d2 = -sum_k k^2 (p_k cos + q_k sin)
        for _ in range(self.num_newton_steps):
            ka = alpha.unsqueeze(-1) * k  # [N, O, S, K]
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

    def __repr__(self) -> str:
        extra = ", oriented=True" if self.oriented else \
            (", rotation_pool='discrete'" if self.rotation_pool == "discrete" else "")
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"num_rho={self.num_rho}, num_theta={self.num_theta}, "
                f"max_radius={self.max_radius:g}{extra})")


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
