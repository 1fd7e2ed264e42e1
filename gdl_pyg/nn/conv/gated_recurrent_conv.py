r"""A gated recurrence over path graphs, derived from time-warping invariance."""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn import MessagePassing

from gdl_pyg.domains.sequence import SequenceLayout, sequence_layout
from gdl_pyg.utils import check_edge_index, check_features

__all__ = ["GatedRecurrentConv"]


def _check_x(name: str, x: Tensor, in_channels: int) -> None:
    if not isinstance(x, Tensor) or x.dim() != 2 or x.size(-1) != in_channels:
        got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"'{name}' expected node features 'x' of shape [num_nodes, "
                         f"{in_channels}] (got {got})")
    check_features(x, name, "x", dims=(2,))


def _pad(value: Tensor, lay: SequenceLayout, fill: float = 0.0) -> Tensor:
    r"""Scatters node rows ``[N, ...]`` into a time-major table ``[T, S, ...]``."""
    out = value.new_full((lay.max_length, lay.num_sequences, *value.shape[1:]), fill)
    out[lay.pos, lay.seq] = value
    return out


def _get_layout(name: str, edge_index: Tensor, num_nodes: int,
                layout: Optional[SequenceLayout]) -> SequenceLayout:
    if layout is None or edge_index is not None:  # (a layout alone needs no edges)
        check_edge_index(edge_index, num_nodes, name)
    if layout is None:
        if num_nodes == 0:  # an empty batch: no sequences ('sequence_layout' needs a node)
            empty = torch.zeros(0, dtype=torch.long, device=edge_index.device)
            return SequenceLayout(empty, empty, empty, empty, empty, 0, 0)
        return sequence_layout(edge_index, num_nodes)
    if not isinstance(layout, SequenceLayout):
        raise TypeError(f"'{name}' expected 'layout' to be a SequenceLayout made by "
                        f"'gdl_pyg.domains.sequence_layout' (got {type(layout).__name__})")
    if layout.seq.numel() != num_nodes:
        raise ValueError(f"'{name}' received a layout of {layout.seq.numel()} nodes for "
                         f"{num_nodes} nodes")
    return layout


def _check_state(name: str, h0: Tensor, lay: SequenceLayout, hidden: int,
                 what: str = "h0") -> None:
    if not isinstance(h0, Tensor) or tuple(h0.shape) != (lay.num_sequences, hidden):
        got = list(h0.shape) if isinstance(h0, Tensor) else type(h0).__name__
        raise ValueError(f"'{name}' expected an initial state '{what}' of shape "
                         f"[num_sequences, hidden_channels] = [{lay.num_sequences}, {hidden}] "
                         f"(got {got})")


def _check_dt(name: str, dt: Tensor, num_nodes: int) -> None:
    if not isinstance(dt, Tensor) or dt.dim() != 1 or dt.numel() != num_nodes:
        got = list(dt.shape) if isinstance(dt, Tensor) else type(dt).__name__
        raise ValueError(f"'{name}' expected step sizes 'dt' of shape [num_nodes] = "
                         f"[{num_nodes}] (got {got})")


class GatedRecurrentConv(MessagePassing):
    r"""The gated recurrence derived from time-warping invariance in the
    `"Can Recurrent Neural Networks Warp Time?"
    <https://arxiv.org/abs/1804.11188>`_ paper (Tallec and Ollivier), as
    presented in section 5.8 of the `"Geometric Deep Learning: Grids, Groups,
    Graphs, Geodesics, and Gauges" <https://arxiv.org/abs/2104.13478>`_ book,
    running over the path graph of a sequence (nodes are time steps, edges
    :math:`t \to t + 1`, see :func:`gdl_pyg.domains.sequence_to_data`).

    A continuous-time recurrence :math:`\frac{dh}{dt} = f(x(t), h(t)) - h(t)`
    read on a warped clock :math:`\tau(t)` becomes
    :math:`\frac{dh}{dt} = \frac{d\tau}{dt}\left(f(x, h) - h\right)`; one Euler
    step of size one gives the *gated* update whose gate is the local warp
    rate :math:`\Gamma_t \approx \frac{d\tau}{dt}`, learned from the input
    and the state:

    .. math::
        \mathbf{r}_t &= \sigma(\mathbf{W}_r \mathbf{x}_t + \mathbf{b}_r
        + \mathbf{U}_r \mathbf{h}_{t-1} + \mathbf{c}_r)

        \mathbf{\Gamma}_t &= \sigma(\mathbf{W}_\Gamma \mathbf{x}_t
        + \mathbf{b}_\Gamma + \mathbf{U}_\Gamma \mathbf{h}_{t-1}
        + \mathbf{c}_\Gamma)

        \mathbf{n}_t &= \tanh(\mathbf{W}_n \mathbf{x}_t + \mathbf{b}_n
        + \mathbf{r}_t \odot (\mathbf{U}_n \mathbf{h}_{t-1} + \mathbf{c}_n))

        \mathbf{h}_t &= \mathbf{h}_{t-1} + \mathbf{\Gamma}_t \odot
        (\mathbf{n}_t - \mathbf{h}_{t-1})
        = \mathbf{\Gamma}_t \odot \mathbf{n}_t
        + (1 - \mathbf{\Gamma}_t) \odot \mathbf{h}_{t-1}.

    This is the GRU cell (:class:`torch.nn.GRU`, whose update gate is
    :math:`\mathbf{z}_t = 1 - \mathbf{\Gamma}_t`; :meth:`from_torch` copies
    its weights). With :obj:`reset_gate=False` (:math:`\mathbf{r}_t = 1`) it
    is the leaky / gated RNN of Tallec and Ollivier; with
    :obj:`update_gate=False` as well (:math:`\mathbf{\Gamma}_t = 1`, the
    warp rate fixed to one) it is the plain tanh RNN
    (:class:`torch.nn.RNN`), which cannot adapt to a warp.

    **Known step sizes.** When the warp rate of every step is known, e.g.
    from time stamps that a warp repeats (:func:`gdl_pyg.domains.warp_step_sizes`),
    pass it as :obj:`dt`; the gate is then applied for a duration
    :math:`\Delta_t`, the exact solution of
    :math:`\frac{dh}{dt} = \lambda (n - h)` with
    :math:`\Gamma = 1 - e^{-\lambda}`:

    .. math::
        \mathbf{h}_t = \mathbf{h}_{t-1} + \left(1 - (1 - \mathbf{\Gamma}_t)
        ^{\Delta_t}\right) \odot (\mathbf{n}_t - \mathbf{h}_{t-1}).

    A step repeated :math:`k` times with :math:`\Delta = 1/k` then composes to
    one step, :math:`\left((1 - \Gamma)^{1/k}\right)^k = 1 - \Gamma`,
    *provided* :math:`\Gamma_t` and :math:`\mathbf{n}_t` do not change
    between the copies, i.e. they depend on :math:`\mathbf{x}_t` only
    (:math:`\mathbf{U} = 0`, no reset gate: a gated linear recurrence, as in
    selective state-space models). For that layer the state at the end of
    every original step, hence the final state, is exactly invariant to
    :class:`~gdl_pyg.groups.TimeWarping`; with recurrent weights the
    invariance holds to first order in :math:`\Delta`, and the plain RNN
    (:obj:`update_gate=False`, which ignores :obj:`dt`) is not invariant.

    The message along an edge :math:`t - 1 \to t` is the state
    :math:`\mathbf{h}_{t-1}`; every node has one predecessor, so aggregation
    is the identity, and as each update needs the previous one, the messages
    are computed in time order: :meth:`forward` aligns all sequences in a
    ``[T, S]`` table (:func:`gdl_pyg.domains.sequence_layout`) and updates all
    ``S`` sequences at once, one time step at a time, with the input
    projections of all nodes computed in one matrix product beforehand.

    Args:
        in_channels (int): Size of each input sample.
        hidden_channels (int): Size of the state :math:`\mathbf{h}`.
        update_gate (bool, optional): learn the warp rate
            :math:`\mathbf{\Gamma}` (otherwise :math:`\mathbf{\Gamma} = 1`).
            (default: :obj:`True`)
        reset_gate (bool, optional): use the reset gate :math:`\mathbf{r}`
            inside the candidate (otherwise :math:`\mathbf{r} = 1`).
            (default: :obj:`True`)
        bias (bool, optional): learn the biases :math:`\mathbf{b}, \mathbf{c}`.
            (default: :obj:`True`)
        chrono_init (int, optional): if set to :math:`T_{\max}`, initialise
            the gate bias by the *chrono initialisation* of Tallec and
            Ollivier, :math:`\mathbf{b}_\Gamma = -\log(\mathcal{U}[1,
            T_{\max} - 1])`, so that the initial characteristic times
            :math:`1 / \Gamma` spread over :math:`[2, T_{\max}]`.
            (default: :obj:`None`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F_{in})`,
          path edges :math:`(2, |\mathcal{E}|)`,
          initial states :math:`(S, F_{hid})` *(optional, one per sequence)*,
          step sizes :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** the state after every step :math:`(|\mathcal{V}|, F_{hid})`
    """
    #: The symmetry the layer is built around (invariance of the final state
    #: holds exactly only in the setting described above).
    group_name = "TimeWarping"

    def __init__(self, in_channels: int, hidden_channels: int, update_gate: bool = True,
                 reset_gate: bool = True, bias: bool = True,
                 chrono_init: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        if in_channels < 1 or hidden_channels < 1:
            raise ValueError(f"'{type(self).__name__}' expected positive channel sizes "
                             f"(got in_channels={in_channels}, "
                             f"hidden_channels={hidden_channels})")
        if chrono_init is not None and (not update_gate or chrono_init < 2):
            raise ValueError(f"'chrono_init' needs an update gate and a maximal time "
                             f"scale >= 2 (got chrono_init={chrono_init}, "
                             f"update_gate={update_gate})")
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.update_gate = update_gate
        self.reset_gate = reset_gate
        self.chrono_init = chrono_init
        k = 1 + int(update_gate) + int(reset_gate)
        # rows: [reset | gate | candidate], like torch.nn.GRU's [r | z | n]
        self.weight_ih = Parameter(torch.empty(k * hidden_channels, in_channels))
        self.weight_hh = Parameter(torch.empty(k * hidden_channels, hidden_channels))
        if bias:
            self.bias_ih = Parameter(torch.empty(k * hidden_channels))
            self.bias_hh = Parameter(torch.empty(k * hidden_channels))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        bound = 1.0 / math.sqrt(self.hidden_channels)
        for p in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh):
            if p is not None:
                torch.nn.init.uniform_(p, -bound, bound)
        if self.chrono_init is not None and self.bias_ih is not None:
            H = self.hidden_channels
            g = slice(H, 2 * H) if self.reset_gate else slice(0, H)
            with torch.no_grad():
                u = torch.empty(H).uniform_(1.0, float(self.chrono_init - 1))
                self.bias_ih[g] = -torch.log(u)
                self.bias_hh[g] = 0.0

    @classmethod
    def from_torch(cls, module: torch.nn.Module) -> "GatedRecurrentConv":
        r"""The layer computing the same as a one-layer, one-directional
        :class:`torch.nn.GRU` (:obj:`update_gate=True, reset_gate=True`,
        :math:`\Gamma = 1 - z`) or tanh :class:`torch.nn.RNN`
        (:obj:`update_gate=False, reset_gate=False`), with its weights."""
        if isinstance(module, (torch.nn.GRU, torch.nn.RNN)):
            if module.num_layers != 1 or module.bidirectional:
                raise ValueError(f"'from_torch' expected a one-layer, one-directional "
                                 f"{type(module).__name__} (got num_layers="
                                 f"{module.num_layers}, bidirectional={module.bidirectional})")
            is_gru = isinstance(module, torch.nn.GRU)
            if not is_gru and module.nonlinearity != "tanh":
                raise ValueError(f"'from_torch' expected a tanh RNN (got nonlinearity="
                                 f"'{module.nonlinearity}')")
        else:
            raise TypeError(f"'from_torch' expected a torch.nn.GRU or torch.nn.RNN "
                            f"(got {type(module).__name__})")
        ref = module.weight_ih_l0
        conv = cls(module.input_size, module.hidden_size, update_gate=is_gru,
                   reset_gate=is_gru, bias=module.bias).to(ref.device, ref.dtype)
        H = module.hidden_size
        names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if module.bias else [])
        with torch.no_grad():
            for name in names:
                value = getattr(module, f"{name}_l0").detach().clone()
                if is_gru:
                    value[H:2 * H] = -value[H:2 * H]  # sigma(-a) = 1 - sigma(a)
                getattr(conv, name).copy_(value)
        return conv

    def _gate(self, a: Tensor, dt: Optional[Tensor]) -> Tensor:
        if dt is None:
            return torch.sigmoid(a)
        # 1 - (1 - sigma(a))^dt, with 1 - sigma(a) = sigma(-a)
        return -torch.expm1(dt.unsqueeze(-1) * F.logsigmoid(-a))

    def cell(self, gx: Tensor, h: Tensor, dt: Optional[Tensor] = None) -> Tensor:
        r"""One step for a batch of sequences: ``gx [S, k * F_hid]`` are the
        input projections :math:`\mathbf{W}\mathbf{x}_t + \mathbf{b}`, ``h``
        the previous states ``[S, F_hid]``, ``dt`` optional step sizes ``[S]``."""
        H = self.hidden_channels
        gh = F.linear(h, self.weight_hh, self.bias_hh)
        i = 0
        if self.reset_gate:
            r = torch.sigmoid(gx[:, :H] + gh[:, :H])
            i = H
        if self.update_gate:
            gamma = self._gate(gx[:, i:i + H] + gh[:, i:i + H], dt)
            i += H
        rec = r * gh[:, i:] if self.reset_gate else gh[:, i:]
        n = torch.tanh(gx[:, i:] + rec)
        if not self.update_gate:
            return n
        return h + gamma * (n - h)

    def forward(self, x: Tensor, edge_index: Tensor, h0: Optional[Tensor] = None,
                dt: Optional[Tensor] = None,
                layout: Optional[SequenceLayout] = None) -> Tensor:
        r"""Runs the recurrence along every sequence of the path graph.

        Args:
            x (torch.Tensor): node features ``[N, F_in]``.
            edge_index (torch.Tensor): path edges ``t -> t + 1``.
            h0 (torch.Tensor, optional): initial states ``[S, F_hid]``, one per
                sequence, in node order (default: zeros).
            dt (torch.Tensor, optional): step sizes ``[N]`` (default: ones).
            layout (SequenceLayout, optional): the sequences of
                :obj:`edge_index`, precomputed by
                :func:`gdl_pyg.domains.sequence_layout` (reused across layers;
                with it, :meth:`forward` has no data-dependent shapes and
                ``torch.compile`` captures it in one graph per layout).
        """
        name = type(self).__name__
        _check_x(name, x, self.in_channels)
        lay = _get_layout(name, edge_index, x.size(0), layout)
        if h0 is None:
            h = x.new_zeros(lay.num_sequences, self.hidden_channels)
        else:
            _check_state(name, h0, lay, self.hidden_channels)
            h = h0
        if lay.max_length == 0:  # no nodes: an empty output of the right width
            return x.new_zeros(0, self.hidden_channels)
        gx = _pad(F.linear(x, self.weight_ih, self.bias_ih), lay)  # [T, S, k * H]
        if dt is not None:
            _check_dt(name, dt, x.size(0))
            dt = _pad(dt.to(x.dtype), lay, fill=1.0)  # [T, S]
        out = []
        for step in range(lay.max_length):
            h = self.cell(gx[step], h, None if dt is None else dt[step])
            out.append(h)
        return torch.stack(out, dim=0)[lay.pos, lay.seq]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.hidden_channels}, "
                f"update_gate={self.update_gate}, reset_gate={self.reset_gate})")
