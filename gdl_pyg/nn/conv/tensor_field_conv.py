r"""Tensor field convolution on e3nn irreps (Tensor Field Networks / NequIP)."""
import contextlib
import functools
import math
from typing import Any, Dict, Iterator, Tuple, Union

import torch
import torch.nn.functional as F
from e3nn import o3
from e3nn.math import soft_one_hot_linspace
from e3nn.nn import FullyConnectedNet, Gate
from torch import Tensor
from torch_geometric.nn import MessagePassing
from torch_geometric.typing import OptTensor

from gdl_pyg import typing as _typing
from gdl_pyg.utils import check_edge_index, check_features

__all__ = ["TensorFieldConv"]


@functools.lru_cache(maxsize=None)
def _cuequivariance() -> Tuple[Any, Any, bool]:
    r"""``(cuequivariance, cuequivariance_torch, has CUDA kernels)``, probed on
    first use (importing them takes seconds; an optional extra, ``[cue]``)."""
    cuet = _typing._probe("cuequivariance_torch")
    cue = _typing._probe("cuequivariance") if cuet is not None else None
    if cue is None:
        return None, None, False
    return cue, cuet, _typing._probe("cuequivariance_ops_torch") is not None


_BASES = ("smooth_finite", "gaussian", "cosine", "fourier", "bessel")
_BACKENDS = ("auto", "e3nn", "cuequivariance")

# activations of e3nn's gated point networks: even scalars / gates get silu /
# sigmoid, odd ones tanh (an odd function keeps an odd scalar odd).
_ACT = {1: F.silu, -1: torch.tanh}
_ACT_GATE = {1: torch.sigmoid, -1: torch.tanh}


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _sort_key(ir: o3.Irrep) -> Tuple[int, bool]:
    # cuequivariance's order of O(3) irreps: by l, the parity (-1)^l first
    # (0e, 0o, 1o, 1e, 2e, 2o, ...); both backends use it, so their weights
    # and outputs share one layout.
    return ir.l, ir.p != (-1) ** ir.l


def _polynomial_envelope(d: Tensor, p: int = 6) -> Tensor:
    # the smooth cutoff of DimeNet / NequIP: 1 at d = 0, zero with its first
    # p - 1 derivatives at d = 1; d is clamped, so it is exactly 0 beyond.
    d = d.clamp(max=1.0)
    return (1.0 - (p + 1) * (p + 2) / 2.0 * d.pow(p) + p * (p + 2) * d.pow(p + 1)
            - p * (p + 1) / 2.0 * d.pow(p + 2))


class TensorFieldConv(MessagePassing):
    r"""The tensor field convolution from the `"Tensor field networks:
    Rotation- and translation-equivariant neural networks for 3D point clouds"
    <https://arxiv.org/abs/1802.08219>`_ paper, in the interaction-block form
    of the `"E(3)-Equivariant Graph Neural Networks for Data-Efficient and
    Accurate Interatomic Potentials" <https://arxiv.org/abs/2101.03164>`_
    paper (NequIP) and of e3nn's gated point convolution
    (:class:`e3nn.nn.models.v2106.points_convolution.Convolution`):

    .. math::
        \mathbf{m}_i &= \frac{1}{\sqrt{n}} \sum_{j \in \mathcal{N}(i)}
            \left(W_1 \mathbf{x}_j\right) \otimes_{R(\|\mathbf{r}_{ij}\|,
            \mathbf{e}_{ij})} Y\!\left(\frac{\mathbf{r}_{ij}}
            {\|\mathbf{r}_{ij}\|}\right),
            \qquad \mathbf{r}_{ij} = \mathbf{p}_j - \mathbf{p}_i

        \mathbf{x}'_i &= \sigma\left(W_{\mathrm{sc}} \mathbf{x}_i
            + \alpha_i \, W_2 \mathbf{m}_i\right)

    where :math:`Y` are the real spherical harmonics (``"component"``
    normalisation) of the edge direction, :math:`\otimes_R` a channel-wise
    (``"uvu"``) tensor product whose path weights :math:`R` are produced per
    edge by an MLP of a smooth radial basis of :math:`\|\mathbf{r}_{ij}\|`
    (and optional invariant edge features :math:`\mathbf{e}_{ij}`),
    :math:`W_1, W_2, W_{\mathrm{sc}}` equivariant linear maps
    (:class:`e3nn.o3.Linear`), :math:`n` the typical number of neighbours,
    :math:`\alpha_i` an optional learned invariant (a zero-initialised linear
    map of :math:`\mathbf{m}_i` to a scalar, see :obj:`alpha`) and
    :math:`\sigma` an optional gate nonlinearity (:class:`e3nn.nn.Gate`).
    Only position differences enter, so the layer is equivariant under
    :math:`E(3)`, reflections included: features transform by their irreps'
    Wigner-D matrices, parity included.

    The edge vector follows e3nn's reference and PyG's flow:
    ``edge_index[0] = j`` is the source, ``edge_index[1] = i`` the target,
    and :math:`\mathbf{r}_{ij} = \mathbf{p}_j - \mathbf{p}_i` points from the
    receiving node to the sender.

    With ``alpha=True``, ``gate=False``, ``radial_basis="smooth_finite"`` and
    ``radial_layers=1`` the layer computes exactly e3nn's
    :class:`~e3nn.nn.models.v2106.points_convolution.Convolution` with
    constant node attributes ``"0e"`` (tested to :math:`10^{-10}`).

    Args:
        irreps_in (str or e3nn.o3.Irreps): irreps of the input features.
        irreps_out (str or e3nn.o3.Irreps): irreps of the output features.
        irreps_sh (str, e3nn.o3.Irreps or int, optional): irreps of the edge
            spherical harmonics, or their maximal degree :math:`l`. Each irrep
            must have the parity :math:`(-1)^l` of a spherical harmonic.
            (default: :obj:`"0e + 1o + 2e"`)
        edge_dim (int, optional): number of invariant edge features
            ``edge_attr`` fed to the radial MLP next to the radial basis.
            (default: :obj:`0`)
        num_radial_basis (int, optional): size of the radial basis.
            (default: :obj:`10`)
        max_radius (float, optional): the cutoff radius; the radial basis and
            so all messages vanish smoothly beyond it. (default: :obj:`1.0`)
        radial_hidden (int, optional): width of the radial MLP's hidden
            layers. (default: :obj:`100`)
        radial_layers (int, optional): number of hidden layers of the radial
            MLP. (default: :obj:`1`)
        radial_basis (str, optional): ``"smooth_finite"`` (e3nn's, already
            smooth at the cutoff), ``"bessel"`` (NequIP's
            :math:`\sqrt{2/c}\,\sin(n\pi r/c)/r`), ``"gaussian"``,
            ``"cosine"`` or ``"fourier"``; all but ``"smooth_finite"`` are
            multiplied by the polynomial envelope of DimeNet (:math:`p = 6`).
            The basis is scaled by :math:`\sqrt{\text{num\_radial\_basis}}`.
            (default: :obj:`"smooth_finite"`)
        num_neighbors (float, optional): the typical number of neighbours
            :math:`n`; the aggregated messages are divided by
            :math:`\sqrt{n}`. (default: :obj:`1.0`)
        self_connection (bool, optional): add :math:`W_{\mathrm{sc}}
            \mathbf{x}_i`. (default: :obj:`True`)
        alpha (bool, optional): weight the convolution by the learned
            invariant :math:`\alpha_i` wherever the self-connection reaches
            (e3nn's v2106 convolution, after arXiv 2002.10444); it starts at
            zero, so the layer starts as its self-connection. Requires
            :obj:`self_connection`. (default: :obj:`False`)
        gate (bool, optional): apply a gate: the scalars of
            :obj:`irreps_out` go through SiLU (even) / tanh (odd), and every
            :math:`l > 0` field is multiplied by a sigmoid (tanh) of an extra
            even scalar the layer computes (which must be reachable from
            :obj:`irreps_in`); the scalars come first in :obj:`irreps_out`.
            (default: :obj:`False`)
        backend (str, optional): ``"e3nn"``, ``"cuequivariance"``
            (``cuequivariance_torch.ChannelWiseTensorProduct`` with a fused
            gather / scatter; needs the ``[cue]`` extra) or ``"auto"``
            (cuequivariance for CUDA inputs when it and its CUDA kernels,
            ``cuequivariance-ops-torch``, are installed, e3nn otherwise). Both
            compute the same function with the same parameters.
            (default: :obj:`"auto"`)
        **kwargs (optional): additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, \dim(\text{irreps\_in}))`,
          positions :math:`(|\mathcal{V}|, 3)`,
          edge indices :math:`(2, |\mathcal{E}|)`,
          edge features :math:`(|\mathcal{E}|, D)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|,
          \dim(\text{irreps\_out}))`
    """
    group_name = "E(3)"

    def __init__(
        self,
        irreps_in: Union[str, o3.Irreps],
        irreps_out: Union[str, o3.Irreps],
        irreps_sh: Union[str, o3.Irreps, int] = "0e + 1o + 2e",
        edge_dim: int = 0,
        num_radial_basis: int = 10,
        max_radius: float = 1.0,
        radial_hidden: int = 100,
        radial_layers: int = 1,
        radial_basis: str = "smooth_finite",
        num_neighbors: float = 1.0,
        self_connection: bool = True,
        alpha: bool = False,
        gate: bool = False,
        backend: str = "auto",
        **kwargs,
    ):
        kwargs.setdefault("aggr", "add")
        super().__init__(**kwargs)
        name = type(self).__name__
        self.irreps_in = _irreps(name, "irreps_in", irreps_in)
        # a plain int for forward: torch.compile cannot guard on e3nn's Irreps
        self._in_dim = self.irreps_in.dim
        self.irreps_out = _irreps(name, "irreps_out", irreps_out)
        if isinstance(irreps_sh, int) and not isinstance(irreps_sh, bool):
            if irreps_sh < 0:
                raise ValueError(f"'{name}' expected a maximal degree 'irreps_sh' >= 0 "
                                 f"(got {irreps_sh})")
            irreps_sh = o3.Irreps.spherical_harmonics(irreps_sh)
        self.irreps_sh = _irreps(name, "irreps_sh", irreps_sh)
        bad = [str(ir) for _, ir in self.irreps_sh if ir.p != (-1) ** ir.l]
        if bad:
            raise ValueError(f"'{name}' expected spherical-harmonic irreps with parity "
                             f"(-1)^l in 'irreps_sh' (got {bad}); use e.g. '0e + 1o + 2e' or "
                             f"an int lmax")
        for arg, value in (("edge_dim", edge_dim), ("num_radial_basis", num_radial_basis),
                           ("radial_hidden", radial_hidden), ("radial_layers", radial_layers)):
            low = 0 if arg in ("edge_dim", "radial_layers") else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"'{name}' expected an int '{arg}' >= {low} (got {value!r})")
        if not max_radius > 0 or not num_neighbors > 0:
            raise ValueError(f"'{name}' expected positive 'max_radius' and 'num_neighbors' "
                             f"(got {max_radius!r} and {num_neighbors!r})")
        if radial_basis not in _BASES:
            raise ValueError(f"'{name}' expected 'radial_basis' to be one of {_BASES} "
                             f"(got {radial_basis!r})")
        if backend not in _BACKENDS:
            raise ValueError(f"'{name}' expected 'backend' to be one of {_BACKENDS} "
                             f"(got {backend!r})")
        if backend == "cuequivariance" and _cuequivariance()[0] is None:
            raise ImportError(f"'{name}(backend=\"cuequivariance\")' requires "
                              f"'cuequivariance-torch' (pip install 'gdl_pyg[cue]')")
        if alpha and not self_connection:
            raise ValueError(f"'{name}' got alpha=True with self_connection=False; 'alpha' "
                             f"weights the convolution against the self-connection")
        self.edge_dim = edge_dim
        self.num_radial_basis = num_radial_basis
        self.max_radius = float(max_radius)
        self.radial_hidden = radial_hidden
        self.radial_layers = radial_layers
        self.radial_basis = radial_basis
        self.num_neighbors = float(num_neighbors)
        self.self_connection = self_connection
        self.use_alpha = alpha
        self.use_gate = gate
        self.backend = backend

        # the irreps the linear maps produce: irreps_out, or the gate's input
        # (e3nn's Gate sorts and merges scalars, gates and gated fields)
        dtype = torch.get_default_dtype()
        gate_parts = self._gate_irreps() if gate else None
        self.gate = None
        irreps_conv_out = self.irreps_out
        if gate:
            with _default_dtype(torch.float64):
                self.gate = Gate(gate_parts[0], [_ACT[ir.p] for _, ir in gate_parts[0]],
                                 gate_parts[1], [_ACT_GATE[ir.p] for _, ir in gate_parts[1]],
                                 gate_parts[2])
            if self.gate.irreps_out.simplify() != self.irreps_out.simplify():
                raise ValueError(f"'{name}' with gate=True outputs the scalars first; expected "
                                 f"irreps_out={self.gate.irreps_out} (got {self.irreps_out})")
            irreps_conv_out = self.gate.irreps_in

        # channel-wise ("uvu") paths of irreps_in x irreps_sh that reach the output
        keep = {ir for _, ir in irreps_conv_out}
        if alpha:
            keep.add(o3.Irrep("0e"))
        mid, paths = [], []
        for i, (mul, ir_in) in enumerate(self.irreps_in):
            for j, (_, ir_sh) in enumerate(self.irreps_sh):
                for ir in ir_in * ir_sh:
                    if ir in keep:
                        paths.append((i, j, len(mid)))
                        mid.append((mul, ir))
        if not mid:
            raise ValueError(f"'{name}': irreps_in={self.irreps_in} times irreps_sh="
                             f"{self.irreps_sh} produces nothing in irreps_out="
                             f"{self.irreps_out}; add higher 'irreps_sh' or matching irreps")
        order = sorted(range(len(mid)), key=lambda k: _sort_key(mid[k][1]))  # stable
        rank = {k: n for n, k in enumerate(order)}
        self.irreps_mid = o3.Irreps([mid[k] for k in order])
        instructions = sorted([(i, j, rank[k], "uvu", True) for i, j, k in paths],
                              key=lambda t: t[2])
        if gate:
            # the gates must be reachable from the convolution or the self-connection
            reach = {ir for _, ir in self.irreps_mid}
            if self_connection:
                reach |= {ir for _, ir in self.irreps_in}
            for _, ir in gate_parts[1]:
                if ir not in reach:
                    raise ValueError(f"'{name}' cannot compute the gate scalars {ir} for "
                                     f"the l > 0 fields of irreps_out={self.irreps_out} "
                                     f"(reachable: {sorted(reach)}); use gate=False or add "
                                     f"scalars to irreps_in / irreps_sh")

        # Build in float64, so that the constant tables (Clebsch-Gordan
        # coefficients, masks) are exact in float64; they are kept and
        # restored whenever the layer is cast to float64 (see _apply).
        with _default_dtype(torch.float64):
            self.sh = o3.SphericalHarmonics(self.irreps_sh, normalize=True,
                                            normalization="component")
            self.lin1 = o3.Linear(self.irreps_in, self.irreps_in)
            self.tp = o3.TensorProduct(self.irreps_in, self.irreps_sh, self.irreps_mid,
                                       instructions, internal_weights=False,
                                       shared_weights=False)
            self.radial = FullyConnectedNet(
                [num_radial_basis + edge_dim] + [radial_hidden] * radial_layers
                + [self.tp.weight_numel], F.silu)
            self.lin2 = o3.Linear(self.irreps_mid, irreps_conv_out)
            self.sc = o3.Linear(self.irreps_in, irreps_conv_out) if self_connection else None
            self.alpha = o3.Linear(self.irreps_mid, "0e") if alpha else None
            # "auto" only uses cuequivariance's CUDA kernels
            self.cue_tp = None
            if backend == "cuequivariance" or (backend == "auto" and torch.cuda.is_available()
                                               and _cuequivariance()[2]):
                self.cue_tp = self._build_cue()
        self._exact: Dict[str, Tensor] = {}
        for mod_name, mod in self.named_modules():
            for buf_name, buf in list(mod.named_buffers(recurse=False)):
                # constants only: keep them out of the state dict, so that
                # checkpoints do not depend on the backend or the e3nn version
                mod.register_buffer(buf_name, buf, persistent=False)
                if buf.is_floating_point():
                    self._exact[f"{mod_name}.{buf_name}" if mod_name else buf_name] = \
                        buf.detach().clone()
        self.to(dtype)
        self.reset_parameters()

    def _gate_irreps(self) -> Tuple[o3.Irreps, o3.Irreps, o3.Irreps]:
        scalars = o3.Irreps([(mul, ir) for mul, ir in self.irreps_out if ir.l == 0])
        gated = o3.Irreps([(mul, ir) for mul, ir in self.irreps_out if ir.l > 0])
        if gated.dim == 0:
            return scalars, o3.Irreps(""), gated
        # even gates (an odd gate would flip the parity of the gated field)
        gates = o3.Irreps([(mul, "0e") for mul, _ in gated]).simplify()
        return scalars, gates, gated

    def _build_cue(self):
        cue, cuet, kernels = _cuequivariance()
        filt = sorted({ir for _, ir in self.irreps_mid}, key=_sort_key)
        method = None if kernels else "naive"  # None: cuequivariance picks its kernel
        module = cuet.ChannelWiseTensorProduct(
            cue.Irreps("O3", str(self.irreps_in)), cue.Irreps("O3", str(self.irreps_sh)),
            [cue.O3(ir.l, ir.p) for ir in filt], layout=cue.mul_ir, shared_weights=False,
            internal_weights=False, dtype=torch.float64, method=method)
        if module.irreps_out.dim != self.irreps_mid.dim or \
                module.weight_numel != self.tp.weight_numel:
            raise RuntimeError(f"cuequivariance's channel-wise product ({module.irreps_out}, "
                               f"{module.weight_numel} weights) does not match e3nn's "
                               f"({self.irreps_mid}, {self.tp.weight_numel} weights)")
        return module

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        # casting to float64 restores the exact constant tables
        for key, value in getattr(self, "_exact", {}).items():
            buf = self.get_buffer(key)
            if buf.dtype == torch.float64 and buf.shape == value.shape:
                buf.copy_(value.to(buf.device))
        return self

    def reset_parameters(self):
        super().reset_parameters()
        with torch.no_grad():
            for lin in (self.lin1, self.lin2, self.sc):
                if lin is not None:
                    lin.weight.normal_()
            for layer in self.radial:
                layer.weight.normal_()
            if self.alpha is not None:
                self.alpha.weight.zero_()

    def forward(self, x: Tensor, pos: Tensor, edge_index: Tensor,
                edge_attr: OptTensor = None) -> Tensor:
        self._check(x, pos, edge_index, edge_attr)
        if edge_index.dtype != torch.long:  # int32 like PyG; the scatters need int64
            edge_index = edge_index.long()
        src, dst = edge_index[0], edge_index[1]
        vec = pos.index_select(0, src) - pos.index_select(0, dst)  # r_ij = p_j - p_i [E, 3]
        sh = self.sh(vec)                                          # [E, irreps_sh.dim]
        emb = self.radial_embedding(vec.norm(dim=-1))              # [E, num_radial_basis]
        if edge_attr is not None:
            emb = torch.cat([emb, edge_attr.to(emb.dtype)], dim=-1)
        weight = self.radial(emb)                                  # [E, tp.weight_numel]
        h = self.lin1(x)
        if self._use_cue(x):
            m = self.cue_tp(h, sh, weight, indices_1=src, indices_out=dst,
                            size_out=x.size(0))
        else:
            m = self.propagate(edge_index, h=h, sh=sh, weight=weight,
                               size=(x.size(0), x.size(0)))
        m = m * (self.num_neighbors ** -0.5)                       # [N, irreps_mid.dim]
        out = self.lin2(m)
        if self.sc is not None:
            if self.alpha is not None:
                mask = self.sc.output_mask
                out = self.sc(x) + ((1.0 - mask) + self.alpha(m) * mask) * out
            else:
                out = self.sc(x) + out
        if self.gate is not None:
            out = self.gate(out)
        return out

    def message(self, h_j: Tensor, sh: Tensor, weight: Tensor) -> Tensor:
        return self.tp(h_j, sh, weight)

    def radial_embedding(self, r: Tensor) -> Tensor:
        r"""The radial basis of edge lengths ``r [E]``: ``[E, num_radial_basis]``."""
        n, c = self.num_radial_basis, self.max_radius
        if self.radial_basis == "smooth_finite":
            emb = soft_one_hot_linspace(r, 0.0, c, n, basis="smooth_finite", cutoff=True)
        elif self.radial_basis == "bessel":
            k = torch.arange(1, n + 1, dtype=r.dtype, device=r.device)
            # sin(k pi r / c) / r = (k pi / c) sinc(k r / c), finite at r = 0
            emb = math.sqrt(2.0 / c) * (k * math.pi / c) * torch.sinc(r.unsqueeze(-1) * k / c)
        else:
            emb = soft_one_hot_linspace(r, 0.0, c, n, basis=self.radial_basis, cutoff=True)
        if self.radial_basis != "smooth_finite":
            emb = emb * _polynomial_envelope(r / c).unsqueeze(-1)
        return emb * math.sqrt(n)

    def _use_cue(self, x: Tensor) -> bool:
        if self.cue_tp is None:
            return False
        return self.backend == "cuequivariance" or x.is_cuda

    def _check(self, x, pos, edge_index, edge_attr) -> None:
        name = type(self).__name__
        if not isinstance(x, Tensor) or not isinstance(pos, Tensor):
            raise TypeError(f"'{name}' expected tensors 'x' and 'pos' (got "
                            f"{type(x).__name__} and {type(pos).__name__})")
        check_edge_index(edge_index, x.size(0) if x.dim() else None, name)
        if not isinstance(edge_index, Tensor):
            raise TypeError(f"'{name}' needs an 'edge_index' tensor [2, num_edges] to read "
                            f"edge vectors (got {type(edge_index).__name__})")
        if x.dim() != 2 or x.size(-1) != self._in_dim:
            raise ValueError(f"'{name}' expected 'x' of shape [num_nodes, {self.irreps_in.dim}] "
                             f"for irreps_in={self.irreps_in} (got {list(x.shape)})")
        check_features(x, name, "x", dims=(2,))
        if pos.dim() != 2 or pos.size(-1) != 3 or pos.size(0) != x.size(0):
            raise ValueError(f"'{name}' expected 'pos' of shape [{x.size(0)}, 3] "
                             f"(got {list(pos.shape)})")
        if not pos.is_floating_point():
            raise TypeError(f"'{name}' expected a floating-point 'pos' (got {pos.dtype})")
        if edge_index.dim() != 2 or edge_index.size(0) != 2 or edge_index.is_floating_point():
            raise ValueError(f"'{name}' expected an integer 'edge_index' of shape "
                             f"[2, num_edges] (got {list(edge_index.shape)}, {edge_index.dtype})")
        if self.edge_dim > 0:
            if edge_attr is None or edge_attr.dim() != 2 or edge_attr.size(-1) != self.edge_dim \
                    or edge_attr.size(0) != edge_index.size(1):
                got = None if edge_attr is None else list(edge_attr.shape)
                raise ValueError(f"'{name}' expected 'edge_attr' of shape "
                                 f"[{edge_index.size(1)}, {self.edge_dim}] (got {got})")
        elif edge_attr is not None:
            raise ValueError(f"'{name}' got 'edge_attr' of shape {list(edge_attr.shape)} but "
                             f"was built with edge_dim=0; pass edge_dim={edge_attr.size(-1)}")
        if not torch.compiler.is_compiling() and not bool(torch.isfinite(pos).all()):
            raise ValueError(f"'{name}' received a 'pos' with NaN or infinite values")

    def __repr__(self) -> str:
        num = sum(p.numel() for p in self.parameters())
        return (f"{type(self).__name__}({self.irreps_in} -> {self.irreps_out} | "
                f"sh={self.irreps_sh} | {num} weights)")


def _irreps(cls: str, arg: str, value) -> o3.Irreps:
    try:
        return o3.Irreps(value)
    except Exception as e:
        raise ValueError(f"'{cls}' expected e3nn irreps for '{arg}' such as '8x0e + 4x1o' "
                         f"(got {value!r})") from e
