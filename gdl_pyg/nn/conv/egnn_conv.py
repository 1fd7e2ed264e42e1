r"""The E(n)-equivariant graph convolution of Satorras, Hoogeboom and Welling
(ICML 2021): invariant node features and equivariant coordinates updated
together, with messages that see the geometry only through squared distances.
"""
from typing import Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.resolver import activation_resolver
from torch_geometric.typing import OptTensor

from gdl_pyg.utils import check_edge_index

__all__ = ["EGNNConv"]

COORDS_AGGRS = ("mean", "sum")


def _shape(value) -> str:
    return str(list(value.shape)) if isinstance(value, Tensor) else type(value).__name__


class EGNNConv(MessagePassing):
    r"""The E(n)-equivariant graph convolutional layer from the `"E(n)
    Equivariant Graph Neural Networks" <https://arxiv.org/abs/2102.09844>`_
    paper (eqs. 3-6, and eq. 7 with :obj:`velocity=True`)

    .. math::
        \mathbf{m}_{ij} &= \phi_e\left(\mathbf{h}_i, \mathbf{h}_j,
        \|\mathbf{x}_i - \mathbf{x}_j\|^2, \mathbf{a}_{ij}\right)
        \cdot e_{ij}, \qquad e_{ij} = \sigma\left(\phi_{\inf}(\mathbf{m}_{ij})\right)
        \ \text{(with attention, else 1)},

        \mathbf{x}_i' &= \mathbf{x}_i + C \sum_{j \in \mathcal{N}(i)}
        \frac{\mathbf{x}_i - \mathbf{x}_j}{\|\mathbf{x}_i - \mathbf{x}_j\| + \epsilon}
        \, \phi_x(\mathbf{m}_{ij}),

        \mathbf{h}_i' &= \mathbf{h}_i + \phi_h\Big(\mathbf{h}_i,
        \sum_{j \in \mathcal{N}(i)} \mathbf{m}_{ij}\Big),

    where :math:`C = 1 / |\mathcal{N}(i)|` (:obj:`coords_agg="mean"`) or
    :math:`1` (:obj:`"sum"`), the denominator is present with
    :obj:`normalize=True` only, and the residual :math:`\mathbf{h}_i +` only
    when :obj:`residual=True` and the input and output widths agree. With
    :obj:`velocity=True` the coordinate update goes through a velocity
    (eq. 7 of the paper):

    .. math::
        \mathbf{v}_i' = \phi_v(\mathbf{h}_i)\, \mathbf{v}_i + C \sum_{j}
        \frac{\mathbf{x}_i - \mathbf{x}_j}{\|\mathbf{x}_i - \mathbf{x}_j\| + \epsilon}
        \, \phi_x(\mathbf{m}_{ij}), \qquad
        \mathbf{x}_i' = \mathbf{x}_i + \mathbf{v}_i'.

    As in the paper, :math:`\mathbf{v}_i` is the *input* velocity of the
    system (every layer of a stack receives the same one), so the layer
    returns the new features and coordinates only.

    :math:`\phi_e` and :math:`\phi_h` are two-layer MLPs,
    :math:`\phi_x` and :math:`\phi_v` two-layer MLPs with one output (the
    last layer of :math:`\phi_x` has no bias and starts tiny, so that a deep
    stack starts close to the identity on coordinates), and
    :math:`\phi_{\inf}` a linear map to one logit. The features
    :math:`\mathbf{h}`, the edge attributes :math:`\mathbf{a}_{ij}` and the
    outputs of all MLPs are invariant, so :math:`\mathbf{h}'` is invariant and
    :math:`\mathbf{x}'` equivariant under rotations, reflections and
    translations of :math:`\mathbf{x}` (and rotations and reflections of
    :math:`\mathbf{v}`) in any dimension :math:`n`, and the layer is
    permutation equivariant. The coordinate update uses the message after
    attention.

    Both endpoints of every edge are gathered once (the receiver's and the
    sender's share of the first layer of :math:`\phi_e` are computed per node
    first, then gathered together with the coordinates), and all per-node
    sums (messages, coordinate updates, neighbour counts) are one scatter.

    Args:
        in_channels (int): width of the input node features :math:`\mathbf{h}`.
        out_channels (int): width of the output node features.
        hidden_channels (int, optional): width of the messages and of the
            hidden layers of the MLPs. (default: :obj:`64`)
        edge_dim (int, optional): width of the edge attributes
            :math:`\mathbf{a}_{ij}` (:obj:`0` for none). (default: :obj:`0`)
        act (str or torch.nn.Module, optional): the nonlinearity of the MLPs.
            (default: :obj:`"silu"`)
        attention (bool, optional): gate every message by
            :math:`e_{ij}`. (default: :obj:`False`)
        normalize (bool, optional): divide the relative positions by
            :math:`\|\mathbf{x}_i - \mathbf{x}_j\| + \epsilon` in the
            coordinate update, for numerical stability. (default: :obj:`True`)
        eps (float, optional): :math:`\epsilon` of :obj:`normalize`.
            (default: :obj:`1e-8`)
        coords_agg (str, optional): :obj:`"mean"` or :obj:`"sum"`, the
            aggregation of the coordinate updates. (default: :obj:`"mean"`)
        tanh (bool, optional): squash :math:`\phi_x` into :math:`(-1, 1)`
            with a tanh (bounded coordinate steps). (default: :obj:`False`)
        update_coords (bool, optional): update the coordinates; if
            :obj:`False` they are returned unchanged (an E(n)-invariant GNN
            layer). (default: :obj:`True`)
        velocity (bool, optional): the velocity variant (eq. 7); then
            :meth:`forward` needs :obj:`vel`. (default: :obj:`False`)
        residual (bool, optional): add :math:`\mathbf{h}_i` to the feature
            update when :obj:`in_channels == out_channels`. (default: :obj:`True`)

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F_{in})`,
          coordinates :math:`(|\mathcal{V}|, n)`,
          edge indices :math:`(2, |\mathcal{E}|)` (sender :math:`j` in row 0,
          receiver :math:`i` in row 1),
          edge attributes :math:`(|\mathcal{E}|, D)` *(optional)*,
          velocities :math:`(|\mathcal{V}|, n)` *(with velocity=True)*
        - **output:** node features :math:`(|\mathcal{V}|, F_{out})` and
          coordinates :math:`(|\mathcal{V}|, n)`
    """
    #: The symmetry group of the layer (E(n) for coordinates of any dimension n).
    group_name = "E(3)"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int = 64,
        edge_dim: int = 0,
        act: Union[str, torch.nn.Module] = "silu",
        attention: bool = False,
        normalize: bool = True,
        eps: float = 1e-8,
        coords_agg: str = "mean",
        tanh: bool = False,
        update_coords: bool = True,
        velocity: bool = False,
        residual: bool = True,
        **kwargs,
    ):
        kwargs.setdefault("aggr", "sum")
        super().__init__(**kwargs)
        name = type(self).__name__
        for key, value, minimum in (("in_channels", in_channels, 1),
                                    ("out_channels", out_channels, 1),
                                    ("hidden_channels", hidden_channels, 1),
                                    ("edge_dim", edge_dim, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"'{name}' expected '{key}' to be an integer >= {minimum} "
                                 f"(got {value!r})")
        if coords_agg not in COORDS_AGGRS:
            raise ValueError(f"'{name}' expected 'coords_agg' to be one of "
                             f"{list(COORDS_AGGRS)} (got {coords_agg!r})")
        if not (isinstance(eps, (int, float)) and eps >= 0):
            raise ValueError(f"'{name}' expected a non-negative 'eps' (got {eps!r})")
        if velocity and not update_coords:
            raise ValueError(f"'{name}' with velocity=True updates the coordinates; "
                             f"set update_coords=True (got update_coords=False)")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.hidden_channels = hidden_channels
        self.edge_dim = edge_dim
        self.attention = attention
        self.normalize = normalize
        self.eps = float(eps)
        self.coords_agg = coords_agg
        self.tanh = tanh
        self.update_coords = update_coords
        self.velocity = velocity
        self.residual = residual and in_channels == out_channels
        self.act = activation_resolver(act) if isinstance(act, str) else act
        if not isinstance(self.act, torch.nn.Module):
            raise TypeError(f"'{name}' expected 'act' to be a name or a torch.nn.Module "
                            f"(got {type(act).__name__})")
        C, H, D = in_channels, hidden_channels, edge_dim
        Linear = torch.nn.Linear
        # phi_e on [h_i, h_j, |x_i - x_j|^2, a_ij] (the first layer is applied
        # in parts: see `forward`)
        self.edge_mlp = torch.nn.Sequential(Linear(2 * C + 1 + D, H), self.act, Linear(H, H),
                                            self.act)
        self.node_mlp = torch.nn.Sequential(Linear(C + H, H), self.act, Linear(H, out_channels))
        self.att_mlp = Linear(H, 1) if attention else None
        self.coord_mlp = torch.nn.Sequential(Linear(H, H), self.act, Linear(H, 1, bias=False)
                                             ) if update_coords else None
        self.vel_mlp = torch.nn.Sequential(Linear(C, H), self.act, Linear(H, 1)) \
            if velocity else None
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        for mlp in (self.edge_mlp, self.node_mlp, self.att_mlp, self.coord_mlp, self.vel_mlp):
            if mlp is None:
                continue
            for module in mlp.modules():
                if isinstance(module, torch.nn.Linear):
                    module.reset_parameters()
        if self.coord_mlp is not None:
            # a tiny last layer: coordinate steps start near zero (paper's code does the same)
            torch.nn.init.xavier_uniform_(self.coord_mlp[-1].weight, gain=0.001)

    # ------------------------------------------------------------ validation
    def _check(self, x: Tensor, pos: Tensor, edge_index: Tensor, edge_attr: OptTensor,
               vel: OptTensor) -> None:
        name = type(self).__name__
        for key, value in (("x", x), ("pos", pos), ("edge_index", edge_index)):
            if not isinstance(value, Tensor):
                raise TypeError(f"'{name}' expected '{key}' to be a Tensor "
                                f"(got {type(value).__name__})")
        if x.dim() != 2 or x.size(-1) != self.in_channels:
            raise ValueError(f"'{name}' expected node features 'x' of shape [num_nodes, "
                             f"{self.in_channels}] (got {_shape(x)})")
        N = x.size(0)
        if pos.dim() != 2 or pos.size(0) != N or pos.size(1) < 1:
            raise ValueError(f"'{name}' expected coordinates 'pos' of shape [num_nodes, n] = "
                             f"[{N}, n] like 'x' (got {_shape(pos)})")
        if not pos.is_floating_point() or not x.is_floating_point():
            raise TypeError(f"'{name}' expected floating-point 'x' and 'pos' (got {x.dtype} "
                            f"and {pos.dtype})")
        check_edge_index(edge_index, N, name)
        E = edge_index.size(1)
        if self.edge_dim > 0:
            if not isinstance(edge_attr, Tensor) or edge_attr.dim() != 2 \
                    or edge_attr.shape != (E, self.edge_dim):
                raise ValueError(f"'{name}' with edge_dim={self.edge_dim} expected 'edge_attr' "
                                 f"of shape [{E}, {self.edge_dim}] (got {_shape(edge_attr)})")
        elif edge_attr is not None:
            raise ValueError(f"'{name}' was built with edge_dim=0 but got 'edge_attr' of shape "
                             f"{_shape(edge_attr)}; set edge_dim={edge_attr.size(-1)}")
        if self.velocity:
            if not isinstance(vel, Tensor) or vel.shape != pos.shape:
                raise ValueError(f"'{name}' with velocity=True expected velocities 'vel' of "
                                 f"the shape of 'pos', {list(pos.shape)} (got {_shape(vel)})")
        elif vel is not None:
            raise ValueError(f"'{name}' was built with velocity=False but got 'vel'; set "
                             f"velocity=True to use velocities")
        for key, value in (("x", x), ("pos", pos), ("edge_attr", edge_attr), ("vel", vel)):
            if isinstance(value, Tensor) and value.is_floating_point() \
                    and not bool(torch.isfinite(value).all()):
                raise ValueError(f"'{name}' got non-finite values (NaN or inf) in '{key}'")

    # --------------------------------------------------------------- forward
    def forward(self, x: Tensor, pos: Tensor, edge_index: Tensor, edge_attr: OptTensor = None,
                vel: OptTensor = None) -> Tuple[Tensor, Tensor]:
        if not torch.compiler.is_compiling():
            self._check(x, pos, edge_index, edge_attr, vel)
        C = self.in_channels
        first = self.edge_mlp[0]
        W = first.weight  # [H, 2C + 1 + D]: columns [h_i | h_j | r_ij | a_ij]
        # The receiver's and sender's parts of phi_e's first layer, per node;
        # each is gathered once, together with the coordinates.
        dst_part = torch.cat([F.linear(x, W[:, :C], first.bias), pos], dim=-1)
        src_part = torch.cat([F.linear(x, W[:, C:2 * C]), pos], dim=-1)
        N = x.size(0)
        # [N, H + n (+ 1)]: sum of messages | sum of coordinate steps | count
        agg = self.propagate(edge_index, z=(src_part, dst_part), edge_attr=edge_attr,
                             size=(N, N))
        H = self.hidden_channels
        n = pos.size(-1)
        m = agg[:, :H]
        out = self.node_mlp(torch.cat([x, m], dim=-1))
        if self.residual:
            out = out + x
        if not self.update_coords:
            return out, pos
        step = agg[:, H:H + n]
        if self.coords_agg == "mean":
            step = step / agg[:, H + n:].clamp_min(1.0)
        if self.velocity:
            step = self.vel_mlp(x) * vel + step
        return out, pos + step

    def message(self, z_i: Tensor, z_j: Tensor, edge_attr: OptTensor) -> Tensor:
        H = self.hidden_channels
        W = self.edge_mlp[0].weight
        C = self.in_channels
        diff = z_i[:, H:] - z_j[:, H:]  # x_i - x_j, [E, n]
        radial = (diff * diff).sum(dim=-1, keepdim=True)
        pre = z_i[:, :H] + z_j[:, :H] + radial * W[:, 2 * C]
        if edge_attr is not None:
            pre = pre + F.linear(edge_attr, W[:, 2 * C + 1:])
        m = self.edge_mlp[1:](pre)
        if self.att_mlp is not None:
            m = m * torch.sigmoid(self.att_mlp(m))
        if self.coord_mlp is None:
            return m
        w = self.coord_mlp(m)
        if self.tanh:
            w = torch.tanh(w)
        if self.normalize:
            # vector_norm has a zero subgradient at 0 (self-loops stay finite)
            diff = diff / (torch.linalg.vector_norm(diff, dim=-1, keepdim=True) + self.eps)
        parts = [m, diff * w]
        if self.coords_agg == "mean":
            parts.append(torch.ones_like(radial))
        return torch.cat(parts, dim=-1)

    def __repr__(self) -> str:
        extra = []
        if self.edge_dim:
            extra.append(f"edge_dim={self.edge_dim}")
        for flag in ("attention", "velocity", "tanh"):
            if getattr(self, flag):
                extra.append(f"{flag}=True")
        if not self.update_coords:
            extra.append("update_coords=False")
        extra = "".join(", " + e for e in extra)
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"hidden_channels={self.hidden_channels}{extra}, "
                f"coords_agg={self.coords_agg!r})")
