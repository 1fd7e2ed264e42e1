r"""DiffusionNet (`"DiffusionNet: Discretization Agnostic Learning on Surfaces"
<https://arxiv.org/abs/2012.00888>`_, Sharp et al. 2022): learned heat
diffusion, spatial gradient features and per-vertex MLPs on meshes and point
clouds, invariant to rigid motions, to the choice of tangent frames and to
vertex renumbering, and robust to the discretisation.
"""
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import scatter

from gdl_pyg.nn.conv.diffusion_conv import METHODS, DiffusionConv
from gdl_pyg.utils import _is_compiling

__all__ = ["DiffusionNet", "DiffusionNetBlock", "SpatialGradientFeatures"]

LEVELS = ("node", "graph")


def _check_int(cls: str, name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"'{cls}' expected '{name}' to be an integer >= {minimum} "
                         f"(got {value!r})")


def _check_dropout(cls: str, dropout) -> None:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
            or not 0.0 <= dropout < 1.0:
        raise ValueError(f"'{cls}' expected dropout in [0, 1) (got {dropout!r})")


def apply_gradient(h: Tensor, grad_index: Tensor, grad_weight: Tensor) -> Tensor:
    r"""Tangent gradients ``[N, 2, C]`` of ``h [N, C]`` with the operator of
    :class:`~gdl_pyg.transforms.SpatialGradient` (``grad_index [2, nnz]``,
    ``grad_weight [nnz, 2]``)."""
    row, col = grad_index
    # e: non-zero, d: tangent component, c: channel
    msg = grad_weight.to(h.dtype).unsqueeze(-1) * h.index_select(0, col).unsqueeze(1)
    return scatter(msg, row, 0, dim_size=h.size(0), reduce="sum")


class SpatialGradientFeatures(torch.nn.Module):
    r"""DiffusionNet's spatial gradient features: with the per-channel
    tangent gradients :math:`g_c \in \mathbb{C}` (a tangent vector written
    as a complex number in the vertex frame) and a learned complex matrix
    :math:`A = A_{re} + i A_{im}`,

    .. math::
        f_c = \tanh\left(\operatorname{Re}\left(\overline{g_c}\, (A g)_c
        \right)\right),

    the inner products of the gradients with a learned rotation-commuting
    linear map of them. Rotating a frame multiplies every :math:`g_c` there
    by the same :math:`e^{-i\theta}`, which :math:`A` commutes with and the
    product cancels: the features do not depend on the frames.

    Args:
        channels (int): the number of channels :math:`C`.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.lin_re = torch.nn.Linear(channels, channels, bias=False)
        self.lin_im = torch.nn.Linear(channels, channels, bias=False)
        self.reset_parameters()

    def reset_parameters(self):
        self.lin_re.reset_parameters()
        self.lin_im.reset_parameters()

    def forward(self, grad: Tensor) -> Tensor:
        gx, gy = grad[:, 0], grad[:, 1]  # [N, C] each
        # (A_re + i A_im)(gx + i gy)
        bx = self.lin_re(gx) - self.lin_im(gy)
        by = self.lin_re(gy) + self.lin_im(gx)
        return torch.tanh(gx * bx + gy * by)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.channels})"


class DiffusionNetBlock(torch.nn.Module):
    r"""One DiffusionNet block: learned diffusion
    (:class:`~gdl_pyg.nn.conv.DiffusionConv`), spatial gradient features
    (:class:`SpatialGradientFeatures`), a per-vertex MLP on the concatenation
    :math:`[\mathbf{x} \Vert \mathbf{h} \Vert \mathbf{f}]`, and a residual
    connection:

    .. math::
        \mathbf{x}' = \mathbf{x} + \mathrm{MLP}\left(\left[\mathbf{x} \,\Vert\,
        \mathbf{h} \,\Vert\, \mathbf{f}(\nabla \mathbf{h})\right]\right), \qquad
        \mathbf{h} = \exp(-t\, M^{-1} L)\, \mathbf{x}.

    Args:
        channels (int): the width :math:`C`.
        method (str, optional): the :class:`DiffusionConv` method.
            (default: :obj:`"spectral"`)
        with_gradient_features (bool, optional): use the gradient features.
            (default: :obj:`True`)
        mlp_layers (int, optional): linear layers of the MLP. (default: :obj:`2`)
        dropout (float, optional): dropout between the MLP layers.
            (default: :obj:`0.0`)
        **kwargs (optional): additional arguments of :class:`DiffusionConv`.
    """

    def __init__(self, channels: int, method: str = "spectral",
                 with_gradient_features: bool = True, mlp_layers: int = 2,
                 dropout: float = 0.0, **kwargs):
        super().__init__()
        self.channels = channels
        self.with_gradient_features = with_gradient_features
        self.dropout = dropout
        self.diffusion = DiffusionConv(channels, method=method, **kwargs)
        self.gradient_features = SpatialGradientFeatures(channels) \
            if with_gradient_features else None
        width = (3 if with_gradient_features else 2) * channels
        self.mlp = torch.nn.ModuleList(
            [torch.nn.Linear(width if i == 0 else channels, channels)
             for i in range(mlp_layers)])
        self.reset_parameters()

    def reset_parameters(self):
        self.diffusion.reset_parameters()
        if self.gradient_features is not None:
            self.gradient_features.reset_parameters()
        for lin in self.mlp:
            lin.reset_parameters()

    def forward(self, x: Tensor, mass: Tensor, evals: Optional[Tensor] = None,
                evecs: Optional[Tensor] = None, laplacian_index: Optional[Tensor] = None,
                laplacian_weight: Optional[Tensor] = None, grad_index: Optional[Tensor] = None,
                grad_weight: Optional[Tensor] = None, batch: Optional[Tensor] = None) -> Tensor:
        h = self.diffusion(x, mass, evals, evecs, laplacian_index, laplacian_weight, batch)
        parts = [x, h]
        if self.gradient_features is not None:
            parts.append(self.gradient_features(apply_gradient(h, grad_index, grad_weight)))
        z = torch.cat(parts, dim=-1)
        for i, lin in enumerate(self.mlp):
            if i > 0:
                z = F.dropout(z.relu(), p=self.dropout, training=self.training)
            z = lin(z)
        return x + z


class DiffusionNet(torch.nn.Module):
    r"""DiffusionNet from the `"DiffusionNet: Discretization Agnostic Learning
    on Surfaces" <https://arxiv.org/abs/2012.00888>`_ paper: a linear map to
    :obj:`hidden_channels`, :obj:`num_blocks` :class:`DiffusionNetBlock`
    (learned diffusion, spatial gradient features, per-vertex MLP, residual)
    and a linear head,

    .. math::
        \mathbf{X}^{(0)} = \mathbf{X}\mathbf{W}_{in}, \quad
        \mathbf{X}^{(\ell)} = \mathrm{Block}^{(\ell)}(\mathbf{X}^{(\ell-1)}),
        \quad \mathbf{Y} = \mathbf{X}^{(L)} \mathbf{W}_{out},

    per vertex (:obj:`level="node"`) or averaged over each surface with the
    vertex areas (:obj:`level="graph"`, :math:`\mathbf{y}_b = \sum_{i \in b}
    m_i \mathbf{y}_i / \sum_{i \in b} m_i`, an integral mean that does not
    depend on the sampling density). Every ingredient depends only on the
    intrinsic geometry or is frame independent, so the output is invariant
    under rigid motions, tangent-frame changes and vertex renumbering, and
    changes little between different meshings (or a point cloud) of the
    same surface.

    The input ``Data`` needs ``x`` (e.g. heat kernel signatures from
    :class:`~gdl_pyg.transforms.HeatKernelSignature`, or coordinates),
    ``mass``, and ``evals``/``evecs``
    (:class:`~gdl_pyg.transforms.LaplacianEigenbasis`) for
    :obj:`method="spectral"` or ``laplacian_index``/``laplacian_weight``
    (:class:`~gdl_pyg.transforms.MeshGeometry`,
    :class:`~gdl_pyg.transforms.PointCloudLaplacian`) for
    :obj:`method="chebyshev"`, and ``grad_index``/``grad_weight``
    (:class:`~gdl_pyg.transforms.SpatialGradient`) for the gradient features.

    Args:
        in_channels (int): input feature width.
        hidden_channels (int): the width of the blocks.
        out_channels (int): outputs (classes) per vertex or surface.
        num_blocks (int, optional): the number of blocks. (default: :obj:`4`)
        method (str, optional): ``"spectral"`` or ``"chebyshev"`` (see
            :class:`~gdl_pyg.nn.conv.DiffusionConv`). (default: :obj:`"spectral"`)
        with_gradient_features (bool, optional): use spatial gradient
            features. (default: :obj:`True`)
        level (str, optional): ``"node"`` or ``"graph"``. (default: :obj:`"node"`)
        dropout (float, optional): dropout inside the block MLPs.
            (default: :obj:`0.0`)
        mlp_layers (int, optional): linear layers per block MLP.
            (default: :obj:`2`)
        init_time (float, optional): initial diffusion times.
            (default: :obj:`0.0`)
        num_terms (int, optional): fixed number of Chebyshev terms
            (:obj:`method="chebyshev"`). (default: :obj:`None`, adaptive)

    Shapes:
        - **input:** a ``Data`` / ``Batch`` with ``x`` :math:`(|\mathcal{V}|,
          F_{in})` and the geometry above
        - **output:** :math:`(|\mathcal{V}|, F_{out})` (node level) or
          :math:`(B, F_{out})` (graph level)
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int,
                 num_blocks: int = 4, method: Literal["spectral", "chebyshev"] = "spectral",
                 with_gradient_features: bool = True,
                 level: Literal["node", "graph"] = "node", dropout: float = 0.0,
                 mlp_layers: int = 2, init_time: float = 0.0,
                 num_terms: Optional[int] = None):
        super().__init__()
        name = type(self).__name__
        for key, value in (("in_channels", in_channels), ("hidden_channels", hidden_channels),
                           ("out_channels", out_channels), ("num_blocks", num_blocks),
                           ("mlp_layers", mlp_layers)):
            _check_int(name, key, value)
        if method not in METHODS:
            raise ValueError(f"'{name}' expected 'method' in {METHODS} (got {method!r})")
        if level not in LEVELS:
            raise ValueError(f"'{name}' expected 'level' in {LEVELS} (got {level!r})")
        _check_dropout(name, dropout)
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        #: The number of classes (read by the classification tasks).
        self.num_classes = out_channels
        self.num_blocks = num_blocks
        self.method = method
        self.with_gradient_features = bool(with_gradient_features)
        self.level = level
        self.dropout = dropout
        self.lin_in = torch.nn.Linear(in_channels, hidden_channels)
        self.blocks = torch.nn.ModuleList([
            DiffusionNetBlock(hidden_channels, method=method,
                              with_gradient_features=with_gradient_features,
                              mlp_layers=mlp_layers, dropout=dropout, init_time=init_time,
                              num_terms=num_terms) for _ in range(num_blocks)])
        self.lin_out = torch.nn.Linear(hidden_channels, out_channels)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters."""
        self.lin_in.reset_parameters()
        for block in self.blocks:
            block.reset_parameters()
        self.lin_out.reset_parameters()

    def _check(self, data: Data) -> None:
        name = type(self).__name__
        if not isinstance(data, Data):
            raise TypeError(f"'{name}' expected a torch_geometric 'Data' or 'Batch' (got "
                            f"{type(data).__name__})")
        x = data.get("x")
        if not isinstance(x, Tensor) or x.dim() != 2 or x.size(-1) != self.in_channels:
            shape = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"'{name}' expected node features 'x' of shape [num_nodes, "
                             f"{self.in_channels}] (got {shape}); e.g. the "
                             f"'HeatKernelSignature' transform writes them")
        if not _is_compiling() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"'{name}' received node features 'x' with NaN or infinite "
                             f"values")
        need = {"mass": "'MeshGeometry' or 'PointCloudLaplacian'"}
        if self.method == "spectral":
            need.update(evals="'LaplacianEigenbasis'", evecs="'LaplacianEigenbasis'")
        else:
            need.update(laplacian_index="'MeshGeometry' or 'PointCloudLaplacian'",
                        laplacian_weight="'MeshGeometry' or 'PointCloudLaplacian'")
        if self.with_gradient_features:
            need.update(grad_index="'SpatialGradient'", grad_weight="'SpatialGradient'")
        missing = [key for key in need if data.get(key) is None]
        if missing:
            hints = sorted({need[key] for key in missing})
            raise ValueError(f"'{name}(method={self.method!r}, with_gradient_features="
                             f"{self.with_gradient_features})' needs the attribute(s) "
                             f"{missing}; compute them with {', '.join(hints)}")

    def embed(self, data: Data) -> Tensor:
        r"""The vertex embeddings :math:`\mathbf{X}^{(L)}` :math:`(|\mathcal{V}|,
        F_{hid})`."""
        self._check(data)
        h = self.lin_in(data.x)
        for block in self.blocks:
            h = block(h, data.mass, data.get("evals"), data.get("evecs"),
                      data.get("laplacian_index"), data.get("laplacian_weight"),
                      data.get("grad_index"), data.get("grad_weight"), data.get("batch"))
        return h

    def forward(self, data: Data) -> Tensor:
        out = self.lin_out(self.embed(data))
        if self.level == "node":
            return out
        mass = data.mass.to(out.dtype).view(-1, 1)
        batch = data.get("batch")
        if batch is None:
            return (mass * out).sum(0, keepdim=True) / mass.sum()
        num_graphs = getattr(data, "num_graphs", None) or int(batch.max()) + 1
        num = scatter(mass * out, batch, 0, dim_size=num_graphs, reduce="sum")
        den = scatter(mass, batch, 0, dim_size=num_graphs, reduce="sum")
        return num / den

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.hidden_channels}, "
                f"{self.out_channels}, num_blocks={self.num_blocks}, method={self.method!r}, "
                f"level={self.level!r})")
