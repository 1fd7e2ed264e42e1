r"""Rotation-equivariant convolution of signals on the sphere :math:`S^2`."""
import math
from typing import Literal, Optional, Tuple

import torch
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter

from gdl_pyg.nn._checks import check_index
from gdl_pyg.nn.conv.message_passing_conv import eager_cpu_product, edge_aggregate
from gdl_pyg.utils import _is_compiling, check_edge_index, check_features

__all__ = ["SphereConv"]


def _graphs(batch: Optional[Tensor], batch_size: Optional[int], x: Tensor
            ) -> Tuple[Tensor, int]:
    r"""The batch vector of the vertices :obj:`x` (zeros for one graph) and
    the number of graphs: 1 for one graph, :obj:`batch_size` when given, else
    read from :obj:`batch` (a device synchronisation, and a graph break under
    :func:`torch.compile`); 0 without vertices."""
    N = x.size(0)
    if batch is None:
        return torch.zeros(N, dtype=torch.long, device=x.device), 1 if N else 0
    if batch_size is not None:
        return batch, batch_size
    return batch, int(batch.max()) + 1 if N else 0


def _uniform_mass(batch: Tensor, num_graphs: int, x: Tensor) -> Tensor:
    r"""The area :math:`4\pi / n_b` of every vertex of a graph :math:`b` with
    :math:`n_b` vertices, counted into :obj:`num_graphs` rows (a static size,
    where :func:`torch.bincount`'s reads the data)."""
    counts = x.new_zeros(num_graphs).index_add_(0, batch, x.new_ones(x.size(0)))
    return (4.0 * math.pi / counts)[batch]


def _sh_degrees(lmax: int) -> Tensor:
    r"""The degree :math:`l` of each of the :math:`(l_{max}+1)^2` real
    spherical harmonics, in e3nn's order."""
    return torch.tensor([l for l in range(lmax + 1) for _ in range(2 * l + 1)],
                        dtype=torch.long)


class SphereConv(MessagePassing):
    r"""A rotation-equivariant convolution of signals on the sphere, with
    isotropic (zonal) filters, in two discretisations.

    ``kernel="isotropic"``: message passing on a graph of the sphere (e.g.
    the radius graph of an :func:`~gdl_pyg.domains.icosphere`), with a filter
    that depends only on the geodesic angle :math:`\theta_{ij} =
    \arccos\langle p_i, p_j\rangle` through :obj:`num_rings` Gaussian rings
    :math:`b_k` (as the spherical CNN of `"DeepSphere"
    <https://arxiv.org/abs/1810.12186>`_, with a learned radial profile):

    .. math::
        \mathbf{x}'_i = \mathbf{\Theta}_0 \mathbf{x}_i + \sum_{k=1}^{K}
        \mathbf{\Theta}_k \frac{\sum_{j \in \mathcal{N}(i)} b_k(\theta_{ij})
        \mathbf{x}_j}{\sum_{j \in \mathcal{N}(i)} b_k(\theta_{ij})} + \mathbf{b},
        \qquad b_k(\theta) = \exp\Big(-\frac{(\theta - k\Delta)^2}{2 (\Delta/2)^2}\Big),

    with :math:`\Delta = \theta_{max}/K`. Any rotation that maps the vertex
    set onto itself (the 60 rotations of the icosahedron on an icosphere)
    commutes with it exactly. On the CPU, for large enough graphs, the ring
    sums are one sparse product per ring over the CSR of the edges (as in
    the graph layers, ``eager_cpu_product``), not a gather and scatter.

    ``kernel="harmonic"``: the convolution theorem on :math:`S^2` (`"Learning
    SO(3) Equivariant Representations with Spherical CNNs"
    <https://arxiv.org/abs/1711.06721>`_): the signal is expanded in real
    spherical harmonics :math:`Y_{lm}` (e3nn's, ``normalization="integral"``)
    by quadrature with the vertex areas ``mass``, each degree is filtered by
    a learned channel mixing :math:`\mathbf{W}_l` (the spectrum of a zonal
    filter), and the result is synthesised back at the vertices:

    .. math::
        \hat{\mathbf{x}}_{lm} = \sum_i m_i Y_{lm}(p_i)\, \mathbf{x}_i, \qquad
        \mathbf{x}'_i = \sum_{l \le L} \sum_{m} Y_{lm}(p_i)\,
        \mathbf{W}_l \hat{\mathbf{x}}_{lm} + \mathbf{b}.

    The filter commutes with every rotation in the band-limited subspace
    (:math:`Y(Rp) = D(R) Y(p)` and :math:`\mathbf{W}_l` acts on channels
    only); on a mesh, exactly with the rotations that permute its vertices and
    keep their areas, and approximately with the others (aliasing of the
    quadrature, which shrinks as the mesh is refined).

    Args:
        in_channels (int): input features per vertex.
        out_channels (int): output features per vertex.
        kernel (str, optional): ``"isotropic"`` or ``"harmonic"``.
            (default: :obj:`"isotropic"`)
        num_rings (int, optional): rings :math:`K` of the isotropic filter.
            (default: :obj:`2`)
        max_angle (float, optional): :math:`\theta_{max}` in radians, the
            angle of the outermost ring; :obj:`None` takes the largest edge
            angle of the input graph. (default: :obj:`None`)
        lmax (int, optional): band limit :math:`L` of the harmonic filter.
            (default: :obj:`4`)
        bias (bool, optional): (default: :obj:`True`)

    Shapes:
        - **input:** ``x`` :math:`(|\mathcal{V}|, F_{in})`, ``pos``
          :math:`(|\mathcal{V}|, 3)` unit vectors, ``edge_index``
          :math:`(2, |\mathcal{E}|)` (isotropic), ``mass``
          :math:`(|\mathcal{V}|)` (harmonic; uniform :math:`4\pi/|\mathcal{V}|`
          per graph if omitted), ``batch`` :math:`(|\mathcal{V}|)` optional,
          ``batch_size`` (int, optional: the number of graphs; pass it with
          ``batch`` to the harmonic kernel to avoid a device synchronisation
          and a graph break under :func:`torch.compile`), ``equal_graphs``
          (bool, optional: the graphs have one vertex count and contiguous
          nodes, as a :class:`~torch_geometric.data.Batch` of one icosphere
          level; the harmonic kernel then takes batched matrix products.
          Without it, that layout is detected in eager mode; under
          :func:`torch.compile`, where detecting it would read the data, the
          kernel takes the general path, which inductor ran 4-5x slower on
          64 icospheres. Checked in eager mode. (default: :obj:`False`))
        - **output:** :math:`(|\mathcal{V}|, F_{out})`
    """
    group_name = "SO(3)"

    def __init__(self, in_channels: int, out_channels: int,
                 kernel: Literal["isotropic", "harmonic"] = "isotropic", num_rings: int = 2,
                 max_angle: Optional[float] = None, lmax: int = 4, bias: bool = True):
        super().__init__(aggr="add")
        name = type(self).__name__
        for key, value in (("in_channels", in_channels), ("out_channels", out_channels),
                           ("num_rings", num_rings)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"'{name}' expected a positive integer '{key}' (got {value!r})")
        if isinstance(lmax, bool) or not isinstance(lmax, int) or lmax < 0:
            raise ValueError(f"'{name}' expected a non-negative integer 'lmax' (got {lmax!r})")
        if kernel not in ("isotropic", "harmonic"):
            raise ValueError(f"'{name}' expected kernel 'isotropic' or 'harmonic' "
                             f"(got {kernel!r})")
        if max_angle is not None and not 0.0 < float(max_angle) <= math.pi:
            raise ValueError(f"'{name}' expected 'max_angle' in (0, pi] (got {max_angle!r})")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel, self.num_rings, self.max_angle, self.lmax = kernel, num_rings, max_angle, lmax
        if kernel == "isotropic":
            # [K + 1, F_out, F_in]: the centre tap, then one per ring
            self.weight = Parameter(torch.empty(num_rings + 1, out_channels, in_channels))
        else:
            self.weight = Parameter(torch.empty(lmax + 1, out_channels, in_channels))
            # the degree of each harmonic, indexing the weight per degree: a
            # buffer (moved with the layer, not in the state dict), so that
            # forward copies nothing from the host
            self.register_buffer("_degrees", _sh_degrees(lmax), persistent=False)
        self.bias = Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        bound = 1.0 / math.sqrt(self.in_channels * self.weight.size(0))
        torch.nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            torch.nn.init.zeros_(self.bias)

    def _check(self, x: Tensor, pos: Tensor, mass: Optional[Tensor] = None,
               batch: Optional[Tensor] = None, batch_size: Optional[int] = None) -> None:
        name = type(self).__name__
        if not isinstance(x, Tensor) or x.dim() != 2 or x.size(-1) != self.in_channels:
            shape = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"'{name}' expected 'x' of shape [num_nodes, {self.in_channels}] "
                             f"(got {shape})")
        if not isinstance(pos, Tensor) or pos.dim() != 2 or pos.size(-1) != 3 \
                or pos.size(0) != x.size(0):
            shape = list(pos.shape) if isinstance(pos, Tensor) else type(pos).__name__
            raise ValueError(f"'{name}' expected 'pos' of shape [{x.size(0)}, 3] (points on the "
                             f"unit sphere, e.g. from 'gdl_pyg.domains.icosphere') (got {shape})")
        check_features(x, name, "x", dims=(2,))
        check_features(pos, name, "pos", dims=(2,))
        if not _is_compiling() and \
                (not bool(torch.isfinite(x).all()) or not bool(torch.isfinite(pos).all())):
            raise ValueError(f"'{name}' received NaN or infinite values in 'x' or 'pos'")
        # checked for both kernels, so that a wrong 'mass' is never silently ignored
        if mass is not None:
            check_features(mass, name, "mass", dims=(1,))
            if mass.size(0) != x.size(0):
                raise ValueError(f"'{name}' expected 'mass' of shape [{x.size(0)}], one area "
                                 f"per vertex (got {list(mass.shape)}); pass the 'mass' of "
                                 f"these vertices (e.g. data.mass of 'icosphere')")
        check_index(batch, x.size(0), name, "batch", batch_size)

    def forward(self, x: Tensor, pos: Tensor, edge_index: Optional[Tensor] = None,
                mass: Optional[Tensor] = None, batch: Optional[Tensor] = None,
                batch_size: Optional[int] = None, equal_graphs: bool = False) -> Tensor:
        self._check(x, pos, mass, batch, batch_size)
        if self.kernel == "isotropic":
            out = self._isotropic(x, pos, edge_index)
        else:
            out = self._harmonic(x, pos, mass, batch, batch_size, equal_graphs)
        if self.bias is not None:
            out = out + self.bias
        return out

    # ------------------------------------------------------------- isotropic
    def _isotropic(self, x: Tensor, pos: Tensor, edge_index: Optional[Tensor]) -> Tensor:
        name = type(self).__name__
        if edge_index is None:
            raise ValueError(f"'{name}' with kernel='isotropic' needs 'edge_index' (e.g. "
                             f"'gdl_pyg.ops.radius_graph(pos, r)' on an icosphere)")
        check_edge_index(edge_index, x.size(0), name)
        if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 \
                or edge_index.size(0) != 2 or edge_index.is_floating_point():
            shape = list(edge_index.shape) if isinstance(edge_index, Tensor) else \
                type(edge_index).__name__
            raise ValueError(f"'{name}' expected an integer 'edge_index' of shape [2, num_edges] "
                             f"(got {shape})")
        src, dst = edge_index
        u = pos / pos.norm(dim=-1, keepdim=True)
        cos = (u[src] * u[dst]).sum(-1).clamp(-1.0, 1.0)
        theta = torch.arccos(cos)  # [E]
        if self.max_angle is not None:
            theta_max = torch.as_tensor(float(self.max_angle), dtype=x.dtype, device=x.device)
        elif theta.numel():
            theta_max = theta.max().detach()
        else:
            theta_max = torch.ones((), dtype=x.dtype, device=x.device)
        K = self.num_rings
        delta = theta_max / K
        centres = torch.arange(1, K + 1, dtype=x.dtype, device=x.device) * delta
        basis = torch.exp(-0.5 * ((theta.unsqueeze(-1) - centres) / (0.5 * delta)) ** 2)  # [E, K]
        norm = scatter(basis, dst, 0, dim_size=x.size(0), reduce="sum")  # [N, K]
        # m_ik = sum_j b_k(theta_ij) x_j / sum_j b_k(theta_ij)  -> [N, K, F_in]
        N = x.size(0)
        if not basis.requires_grad and eager_cpu_product(self, edge_index, x, (N, N),
                                                         weighted=True):
            # on the CPU, one sparse product per ring over the CSR of the edges
            # (the weights b_k as its values) instead of a gather into [E, K F]
            # and a scatter-add; the same sums, bit for bit
            agg = edge_aggregate(edge_index, x.unsqueeze(1).expand(N, K, x.size(1)), N,
                                 self.flow, "sum", 0, basis)
        else:
            agg = self.propagate(edge_index, x=x, basis=basis, size=(N, N))
        agg = agg.view(N, K, self.in_channels) / norm.clamp_min(1e-12).unsqueeze(-1)
        out = x @ self.weight[0].t()
        # n: vertex, k: ring, o: output channel, c: input channel
        return out + torch.einsum("nkc,koc->no", agg, self.weight[1:])

    def message(self, x_j: Tensor, basis: Tensor) -> Tensor:
        return (basis.unsqueeze(-1) * x_j.unsqueeze(1)).flatten(1)  # [E, K * F_in]

    # ------------------------------------------------------------- harmonic
    def _harmonic(self, x: Tensor, pos: Tensor, mass: Optional[Tensor],
                  batch: Optional[Tensor], batch_size: Optional[int],
                  equal_graphs: bool = False) -> Tensor:
        from e3nn import o3
        N = x.size(0)
        one_graph = batch is None
        batch, B = _graphs(batch, batch_size, x)
        if mass is None:
            mass = _uniform_mass(batch, B, x)
        elif mass.shape != (N,):
            raise ValueError(f"'{type(self).__name__}' expected 'mass' of shape [{N}] "
                             f"(got {list(mass.shape)})")
        Y = o3.spherical_harmonics(list(range(self.lmax + 1)), pos.to(x.dtype), normalize=True,
                                   normalization="integral")  # [N, (L+1)^2]
        W = self.weight[self._degrees]  # [S, F_out, F_in]
        mx = mass.to(x.dtype).unsqueeze(-1) * x
        n = N // B if B else 0
        # graphs of one size with contiguous nodes: one graph, or what
        # 'equal_graphs' says when compiling (the layout test reads the data)
        fits = bool(B) and n * B == N
        if one_graph or (equal_graphs and _is_compiling()):
            batched = fits
        else:
            batched = fits and not _is_compiling() and torch.equal(
                batch, torch.arange(B, device=x.device).repeat_interleave(n))
        if equal_graphs and not batched:
            raise ValueError(f"'{type(self).__name__}' was told 'equal_graphs=True', but its "
                             f"{B} graph(s) of {N} vertices in all are not of one size with "
                             f"contiguous nodes; leave 'equal_graphs' False")
        if batched:
            # graphs of one size, contiguous: batched matrix products, no [N, S, F] temporary
            Yb = Y.view(B, n, -1)
            coeff = torch.bmm(Yb.transpose(1, 2), mx.view(B, n, -1))  # [B, S, F_in]
            filtered = torch.einsum("bsc,soc->bso", coeff, W)
            return torch.bmm(Yb, filtered).reshape(N, self.out_channels)
        # n: vertex, s: harmonic (l, m), c / o: channels, b: graph
        coeff = scatter(Y.unsqueeze(-1) * mx.unsqueeze(1), batch, 0, dim_size=B,
                        reduce="sum")  # [B, S, F_in]
        filtered = torch.einsum("bsc,soc->bso", coeff, W)
        return torch.einsum("ns,nso->no", Y, filtered[batch])

    def __repr__(self) -> str:
        extra = f"num_rings={self.num_rings}" if self.kernel == "isotropic" else \
            f"lmax={self.lmax}"
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"kernel={self.kernel!r}, {extra})")
