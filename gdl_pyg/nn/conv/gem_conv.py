r"""Gauge equivariant mesh convolution (GEM-CNN, de Haan et al. 2021).

Features are fields of SO(2) representations on the vertices of a mesh,
``x [N, C, 2M+1]``: component ``0`` is order 0 (a scalar), then one
``(cos, sin)`` pair per order ``1..M``; the layout
:func:`gdl_pyg.groups.gauge_matrix` acts on with frequencies ``(0, 1, ..., M)``.
A gauge change (rotating the tangent frame of vertex :math:`v` by
:math:`\theta_v`) multiplies :math:`\mathbf{x}_v` by :math:`\rho(-\theta_v)`.

This module also holds :func:`gem_kernel_basis`, the complete basis of the
kernel constraint, and :func:`transport`, parallel transport of such fields.
"""
import math
from typing import List, Tuple

import torch
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.typing import Adj, OptTensor

from gdl_pyg.utils import check_edge_index, check_features

__all__ = ["GEMConv", "gem_kernel_basis", "self_interaction_basis", "transport"]

_AGGRS = ("add", "sum", "mean")


def _rep_dim(order: int) -> int:
    return 2 * order + 1


def _block(order: int) -> slice:
    r"""The components of order ``order`` in a ``[..., 2M+1]`` feature."""
    return slice(0, 1) if order == 0 else slice(2 * order - 1, 2 * order + 1)


_J = torch.tensor([[0., -1.], [1., 0.]], dtype=torch.float64)  # rotation by pi/2
_F = torch.tensor([[1., 0.], [0., -1.]], dtype=torch.float64)  # reflection


def gem_kernel_basis(in_order: int, out_order: int) -> Tuple[Tensor, List[Tuple[int, int, int]]]:
    r"""The complete basis of the GEM-CNN kernel constraint

    .. math::
        K(\phi - \theta) = \rho_{out}(-\theta)\, K(\phi)\, \rho_{in}(\theta)
        \qquad \text{for all } \phi, \theta,

    with :math:`\rho_{in} = \bigoplus_{m=0}^{M} \rho_m` and
    :math:`\rho_{out} = \bigoplus_{n=0}^{N} \rho_n`. Setting :math:`\theta =
    \phi` gives :math:`K(\phi) = \rho_{out}(\phi) K(0) \rho_{in}(-\phi)` with
    :math:`K(0)` arbitrary, so the space has dimension
    :math:`(2M+1)(2N+1)`. Per block (input order :math:`m`, output order
    :math:`n`), with :math:`R(a)` the rotation by :math:`a`,
    :math:`J = R(\pi/2)` and :math:`F = \mathrm{diag}(1, -1)`:

    * :math:`m = n = 0`: :math:`1`;
    * :math:`m = 0 < n`: :math:`R(n\phi) e_1`, :math:`R(n\phi) e_2`;
    * :math:`n = 0 < m`: :math:`e_1^\top R(-m\phi)`, :math:`e_2^\top R(-m\phi)`;
    * :math:`m, n > 0`: :math:`R((n-m)\phi)`, :math:`R((n-m)\phi) J`,
      :math:`R((n+m)\phi) F`, :math:`R((n+m)\phi) F J`

    (angular frequencies :math:`|n - m|` and :math:`n + m`).

    Every basis function is :math:`\cos(f\phi) P + \sin(f\phi) Q` with a
    frequency :math:`f \geq 0`; the result is returned as a tensor ``C``
    ``[B, T, 2N+1, 2M+1]`` over the ``T = 2(M+N)+1`` angular functions
    :math:`(1, \cos\phi, \sin\phi, \cos 2\phi, \sin 2\phi, \dots)`, so that
    :math:`K_b(\phi) = \sum_t \mathrm{trig}_t(\phi)\, C_{b,t}`.

    Returns:
        (Tensor, list): ``C`` in float64 and, per basis element, its
        ``(in order m, out order n, frequency f)``.
    """
    d_in, d_out = _rep_dim(in_order), _rep_dim(out_order)
    fmax = in_order + out_order
    T = 2 * fmax + 1
    mats, info = [], []

    def add(m: int, n: int, q: int, P: Tensor, left: bool) -> None:
        r"""Adds :math:`R(q\phi) P` (``left``) or :math:`P R(q\phi)` (``not
        left``) placed in block ``(n, m)``: :math:`\cos(q\phi) P + \sin(q\phi)
        JP` (resp. :math:`PJ`)."""
        f = abs(q)
        sign = 1.0 if q >= 0 else -1.0
        C = torch.zeros(T, d_out, d_in, dtype=torch.float64)
        bo, bi = _block(n), _block(m)
        C[0 if f == 0 else 2 * f - 1, bo, bi] = P
        if f > 0:
            C[2 * f, bo, bi] = sign * ((_J @ P) if left else (P @ _J))
        mats.append(C)
        info.append((m, n, f))

    I2 = torch.eye(2, dtype=torch.float64)
    e1, e2 = I2[:, :1], I2[:, 1:]
    for n in range(out_order + 1):
        for m in range(in_order + 1):
            if m == 0 and n == 0:
                add(0, 0, 0, torch.ones(1, 1, dtype=torch.float64), True)
            elif m == 0:
                add(m, n, n, e1, True)
                add(m, n, n, e2, True)
            elif n == 0:
                add(m, n, -m, e1.t(), False)
                add(m, n, -m, e2.t(), False)
            else:
                add(m, n, n - m, I2, True)
                add(m, n, n - m, _J, True)
                add(m, n, n + m, _F, True)
                add(m, n, n + m, _F @ _J, True)
    return torch.stack(mats), info


def self_interaction_basis(in_order: int, out_order: int) -> Tensor:
    r"""The equivariant linear maps :math:`\rho_{in} \to \rho_{out}` (the
    kernel at :math:`r = 0`, where :math:`\phi` is undefined): order :math:`n`
    to order :math:`n` only, :math:`1` for :math:`n = 0` and
    :math:`I, J` (i.e. :math:`\begin{pmatrix} a & -b \\ b & a \end{pmatrix}`)
    for :math:`n > 0`. Returns ``[B, 2N+1, 2M+1]`` in float64."""
    d_in, d_out = _rep_dim(in_order), _rep_dim(out_order)
    mats = []
    for n in range(min(in_order, out_order) + 1):
        for P in ([torch.ones(1, 1, dtype=torch.float64)] if n == 0 else
                  [torch.eye(2, dtype=torch.float64), _J]):
            S = torch.zeros(d_out, d_in, dtype=torch.float64)
            S[_block(n), _block(n)] = P
            mats.append(S)
    return torch.stack(mats)


def transport(x: Tensor, angle: Tensor) -> Tensor:
    r"""Parallel transport of fields ``x [E, C, 2M+1]`` (orders ``0..M``) by
    ``angle [E]``: every order-:math:`m` pair is rotated by :math:`m\,\alpha`,
    i.e. multiplied by :math:`\rho_m(\alpha)`."""
    M = (x.size(-1) - 1) // 2
    if M == 0:
        return x
    E, C = x.size(0), x.size(1)
    m = torch.arange(1, M + 1, dtype=x.dtype, device=x.device)
    a = angle.to(x.dtype).view(-1, 1) * m  # [E, M]
    cos, sin = torch.cos(a).unsqueeze(1), torch.sin(a).unsqueeze(1)  # [E, 1, M]
    v = x[..., 1:].reshape(E, C, M, 2)
    u, w = v[..., 0], v[..., 1]
    rot = torch.stack([cos * u - sin * w, sin * u + cos * w], dim=-1)
    return torch.cat([x[..., :1], rot.reshape(E, C, 2 * M)], dim=-1)


class GEMConv(MessagePassing):
    r"""The gauge equivariant mesh convolution operator from the
    `"Gauge Equivariant Mesh CNNs: Anisotropic convolutions on geometric
    graphs" <https://arxiv.org/abs/2003.05425>`_ paper

    .. math::
        \mathbf{x}'_i = K_{self}\, \mathbf{x}_i + \bigoplus_{j \in \mathcal{N}(i)}
        K(r_{ij}, \phi_{ij})\, \rho_{in}(c_{ji})\, \mathbf{x}_j + \mathbf{b},

    with features ``[N, C, 2M+1]`` (order 0, then a ``(cos, sin)`` pair per
    order ``1..M``), :math:`(r_{ij}, \phi_{ij})` the polar coordinates of
    :math:`j` in the tangent plane of :math:`i` (``edge_logmap``),
    :math:`c_{ji}` the Levi-Civita connection (``edge_connection``) that
    parallel transports :math:`\mathbf{x}_j` into :math:`i`'s frame, and

    .. math::
        K(r, \phi) = \sum_{k=1}^{R} \sum_{b} w_{k b}\, g_k(r)\, K_b(\phi),

    :math:`K_b` the complete basis of the gauge-equivariance constraint
    :math:`K(\phi - \theta) = \rho_{out}(-\theta) K(\phi) \rho_{in}(\theta)`
    (angular frequencies :math:`|n-m|` and :math:`n+m` for input order
    :math:`m` and output order :math:`n`, see :func:`gem_kernel_basis`), one
    weight per channel pair. :math:`K_{self}` (the kernel at :math:`r = 0`)
    only has the equivariant maps :math:`\rho_n \to \rho_n`, and the bias
    :math:`\mathbf{b}` only acts on order 0. The layer is exactly equivariant
    to gauge transformations (any angle per vertex), and, as the geometry
    depends on edge lengths and angles only, its output is invariant under
    rigid motions of the mesh.

    **Radii.** Ring :math:`k = 0, \dots, R-1` is the Gaussian bump
    :math:`g_k(r) = \exp(-((r - \mu_k)/h)^2 / 2)`, :math:`h =
    \mathrm{max\_radius} / R`, :math:`\mu_k = (k + \tfrac{1}{2})\, h`: the
    rings tile :math:`[0, \mathrm{max\_radius}]`; radii are used as given,
    so set :obj:`max_radius` to the neighbourhood size of the mesh (e.g. a
    few mean edge lengths, or normalise meshes to a fixed scale).

    **Computation.** Every kernel of the basis satisfies
    :math:`K(r, \phi) = \rho_{out}(\phi)\, K(r, 0)\, \rho_{in}(-\phi)`, so
    the message is computed in the frame of the edge: :math:`\mathbf{x}_j`
    is rotated by :math:`\rho_{in}(c_{ji} - \phi_{ij})` (elementwise),
    multiplied by the ring values :math:`g_k(r_{ij})`, mapped by the
    angle-free :math:`K(\cdot, 0)` (the weights expanded on the basis, one
    ``[R C_{in} (2M+1), C_{out} (2N+1)]`` matrix product for all edges) and
    rotated back by :math:`\rho_{out}(\phi_{ij})`. No per-edge
    ``[C_out, C_in]`` kernel is ever formed. The aggregation must be linear
    (:obj:`"add"` or :obj:`"mean"`) for the layer to be equivariant.

    Args:
        in_channels (int): input channels :math:`C_{in}`.
        out_channels (int): output channels :math:`C_{out}`.
        in_order (int): the largest input order :math:`M`.
        out_order (int): the largest output order :math:`N`.
        num_rings (int, optional): radial basis size :math:`R`. (default: :obj:`2`)
        max_radius (float, optional): the radius the rings cover.
            (default: :obj:`1.0`)
        self_interaction (bool, optional): adds :math:`K_{self} \mathbf{x}_i`.
            (default: :obj:`True`)
        bias (bool, optional): adds a learnable bias to order 0.
            (default: :obj:`True`)
        aggr (str, optional): :obj:`"add"` or :obj:`"mean"`. (default: :obj:`"add"`)
        **kwargs (optional): additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, C_{in}, 2M+1)`,
          edge indices :math:`(2, |\mathcal{E}|)`,
          edge log-map :math:`(|\mathcal{E}|, 2)`,
          edge connection :math:`(|\mathcal{E}|)`
        - **output:** node features :math:`(|\mathcal{V}|, C_{out}, 2N+1)`
    """
    #: The symmetry group of the layer.
    group_name = "SO(2)^N"

    def __init__(self, in_channels: int, out_channels: int, in_order: int, out_order: int,
                 num_rings: int = 2, max_radius: float = 1.0, self_interaction: bool = True,
                 bias: bool = True, aggr: str = "add", **kwargs):
        name = type(self).__name__
        if aggr not in _AGGRS:
            raise ValueError(f"'{name}' expected 'aggr' to be 'add' or 'mean' (got {aggr!r}); "
                             f"the fused computation needs a linear aggregation")
        for key, val, lo in (("in_channels", in_channels, 1), ("out_channels", out_channels, 1),
                             ("in_order", in_order, 0), ("out_order", out_order, 0),
                             ("num_rings", num_rings, 1)):
            if not isinstance(val, int) or isinstance(val, bool) or val < lo:
                raise ValueError(f"'{name}' expected '{key}' to be an integer >= {lo} "
                                 f"(got {val!r})")
        if not (isinstance(max_radius, (int, float)) and math.isfinite(max_radius)
                and max_radius > 0):
            raise ValueError(f"'{name}' expected a positive finite 'max_radius' "
                             f"(got {max_radius!r})")
        kwargs.setdefault("node_dim", 0)
        super().__init__(aggr=aggr, **kwargs)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.in_order, self.out_order = in_order, out_order
        self.num_rings, self.max_radius = num_rings, float(max_radius)
        basis, _ = gem_kernel_basis(in_order, out_order)
        # basis [B, T, P, I]: basis element, angular function, out/in component
        self.register_buffer("basis", basis.to(torch.get_default_dtype()), persistent=False)
        # the basis at phi = 0 [B, P, I]: the constant (t = 0) and cosine (odd t) parts
        basis_at_zero = basis[:, 0] + basis[:, 1::2].sum(1)
        self.register_buffer("basis_at_zero", basis_at_zero.to(torch.get_default_dtype()),
                             persistent=False)
        self.num_basis = basis.size(0)
        self.weight = Parameter(torch.empty(out_channels, in_channels, self.num_basis, num_rings))
        if self_interaction:
            self_basis = self_interaction_basis(in_order, out_order)
            self.register_buffer("self_basis", self_basis.to(torch.get_default_dtype()),
                                 persistent=False)
            self.self_weight = Parameter(torch.empty(out_channels, in_channels,
                                                     self_basis.size(0)))
        else:
            self.register_buffer("self_basis", None)
            self.register_parameter("self_weight", None)
        if bias:
            self.bias = Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    @property
    def num_self_basis(self) -> int:
        return 0 if self.self_basis is None else self.self_basis.size(0)

    def reset_parameters(self):
        super().reset_parameters()
        # variance ~ 1 / (number of summed terms): channels x basis x rings
        fan_in = self.in_channels * (self.num_basis * self.num_rings / _rep_dim(self.out_order)
                                     + self.num_self_basis)
        std = 1.0 / math.sqrt(max(fan_in, 1.0))
        torch.nn.init.normal_(self.weight, std=std)
        if self.self_weight is not None:
            torch.nn.init.normal_(self.self_weight, std=std)
        if self.bias is not None:
            torch.nn.init.zeros_(self.bias)

    # ------------------------------------------------------------------
    def radial(self, r: Tensor) -> Tensor:
        r"""The ring values :math:`g_k(r)` ``[E, R]`` of radii ``r [E]``."""
        h = self.max_radius / self.num_rings
        mu = (torch.arange(self.num_rings, dtype=r.dtype, device=r.device) + 0.5) * h
        return torch.exp(-0.5 * ((r.view(-1, 1) - mu) / h) ** 2)

    def kernel_weight(self) -> Tensor:
        r"""The weights expanded on the basis at :math:`\phi = 0`: the matrix
        ``[R*C_in*(2M+1), C_out*(2N+1)]`` of :math:`K(\cdot, 0)`."""
        basis = self.basis_at_zero.to(self.weight.dtype)
        # o: out channel, c: in channel, b: basis element, k: ring,
        # p: out component, i: in component
        w = torch.einsum("ocbk,bpi->kciop", self.weight, basis)
        return w.reshape(-1, self.out_channels * _rep_dim(self.out_order))

    def _check(self, x: Tensor, edge_index: Adj, edge_logmap: OptTensor,
               edge_connection: OptTensor) -> None:
        name = type(self).__name__
        d = _rep_dim(self.in_order)
        if not isinstance(x, Tensor):
            raise TypeError(f"'{name}' expected 'x' to be a torch.Tensor "
                            f"(got {type(x).__name__})")
        if x.dim() != 3 or x.size(1) != self.in_channels or x.size(2) != d:
            raise ValueError(
                f"'{name}' expected 'x' of shape [num_nodes, {self.in_channels}, {d}] "
                f"(in_channels={self.in_channels}; in_order={self.in_order} implies "
                f"2*{self.in_order}+1={d} components: order 0, then a (cos, sin) pair per "
                f"order) (got {list(x.shape)})")
        check_features(x, name, "x", dims=(3,))
        # (a data-dependent check: skipped while torch.compile traces the layer)
        if not torch.compiler.is_compiling() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"'{name}' received an 'x' with NaN or infinite values")
        check_edge_index(edge_index, x.size(0), name)
        for key, val in (("edge_logmap", edge_logmap), ("edge_connection", edge_connection)):
            if val is None:
                raise ValueError(
                    f"'{name}' needs '{key}' (got None); compute the mesh geometry with "
                    f"'gdl_pyg.domains.mesh_to_data(pos, face)' or the "
                    f"'gdl_pyg.transforms.MeshGeometry' (pre-)transform and pass "
                    f"data.edge_logmap and data.edge_connection")
        if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or \
                edge_index.size(0) != 2:
            shape = list(edge_index.shape) if isinstance(edge_index, Tensor) else \
                type(edge_index).__name__
            raise ValueError(f"'{name}' expected 'edge_index' of shape [2, num_edges] "
                             f"(got {shape})")
        E = edge_index.size(1)
        if edge_logmap.dim() != 2 or edge_logmap.shape != (E, 2):
            raise ValueError(f"'{name}' expected 'edge_logmap' of shape [{E}, 2] (r, phi) "
                             f"(got {list(edge_logmap.shape)})")
        if edge_connection.shape != (E,):
            raise ValueError(f"'{name}' expected 'edge_connection' of shape [{E}] "
                             f"(got {list(edge_connection.shape)})")

    def forward(self, x: Tensor, edge_index: Adj, edge_logmap: OptTensor = None,
                edge_connection: OptTensor = None) -> Tensor:
        self._check(x, edge_index, edge_logmap, edge_connection)
        N = x.size(0)
        logmap = edge_logmap.to(x.dtype)
        radial = self.radial(logmap[:, 0])  # [E, R]
        phi = logmap[:, 1]
        out = self.propagate(edge_index, x=x, radial=radial, phi=phi,
                             edge_connection=edge_connection.to(x.dtype),
                             weight=self.kernel_weight(), size=(N, N))
        if self.self_weight is not None:
            # o: out channel, c: in channel, b: basis element, p/i: out/in component
            k_self = torch.einsum("ocb,bpi->ocpi", self.self_weight,
                                  self.self_basis.to(x.dtype))
            out = out + torch.einsum("ocpi,nci->nop", k_self, x)
        if self.bias is not None:
            out = torch.cat([out[..., :1] + self.bias.view(1, -1, 1), out[..., 1:]], dim=-1)
        return out

    def message(self, x_j: Tensor, radial: Tensor, phi: Tensor, edge_connection: Tensor,
                weight: Tensor) -> Tensor:
        E = x_j.size(0)
        # parallel transport to i (c), then into the edge's frame (-phi)
        xt = transport(x_j, edge_connection - phi)  # [E, C_in, 2M+1]
        # e: edge, k: ring, c: in channel, i: in component
        u = torch.einsum("ek,eci->ekci", radial, xt).flatten(1)  # [E, R * C_in * (2M+1)]
        y = (u @ weight).view(E, self.out_channels, _rep_dim(self.out_order))
        return transport(y, phi)  # back to i's frame: rho_out(phi)

    def __repr__(self) -> str:
        nb = self.num_basis * self.num_rings
        basis = f"{nb}+{self.num_self_basis}" if self.self_weight is not None else f"{nb}"
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"in_order={self.in_order}, out_order={self.out_order}, "
                f"num_rings={self.num_rings}, basis={basis})")
