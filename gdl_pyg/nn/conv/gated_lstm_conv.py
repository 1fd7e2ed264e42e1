r"""The LSTM recurrence over path graphs: time-warping invariance with two gates."""
import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn import MessagePassing

from gdl_pyg.domains.sequence import SequenceLayout
from gdl_pyg.nn.conv.gated_recurrent_conv import (_check_dt, _check_state, _check_x,
                                                  _get_layout, _pad)

__all__ = ["GatedLSTMConv"]


class GatedLSTMConv(MessagePassing):
    r"""The LSTM recurrence as derived from time-warping invariance in the
    `"Can Recurrent Neural Networks Warp Time?"
    <https://arxiv.org/abs/1804.11188>`_ paper (Tallec and Ollivier; see
    section 5.8 of the `"Geometric Deep Learning" <https://arxiv.org/abs/2104.13478>`_
    book), running over the path graph of a sequence (edges :math:`t \to t + 1`,
    see :func:`gdl_pyg.domains.sequence_to_data`).

    The warped leaky recurrence of :class:`GatedRecurrentConv`,
    :math:`c_t = \frac{d\tau}{dt} g_t + (1 - \frac{d\tau}{dt}) c_{t-1}`,
    with its two coefficients learned as two separate gates (forget
    :math:`\mathbf{f} \approx 1 - \frac{d\tau}{dt}`, input
    :math:`\mathbf{i} \approx \frac{d\tau}{dt}`) and a gated read-out, is the
    LSTM cell (:class:`torch.nn.LSTM`, same parameter layout):

    .. math::
        \mathbf{a}_t &= \mathbf{W} \mathbf{x}_t + \mathbf{b}
        + \mathbf{U} \mathbf{h}_{t-1} + \mathbf{c}
        = [\mathbf{a}^i_t, \mathbf{a}^f_t, \mathbf{a}^g_t, \mathbf{a}^o_t]

        \mathbf{c}_t &= \sigma(\mathbf{a}^f_t) \odot \mathbf{c}_{t-1}
        + \sigma(\mathbf{a}^i_t) \odot \tanh(\mathbf{a}^g_t)

        \mathbf{h}_t &= \sigma(\mathbf{a}^o_t) \odot \tanh(\mathbf{c}_t).

    **Known step sizes.** With step sizes :math:`\Delta_t` (:obj:`dt`), the
    cell update is the exact solution over a duration :math:`\Delta_t` of
    :math:`\frac{dc}{dt} = \log(f)\, c + \frac{-\log f}{1 - f}\, i\, g`
    (which gives the LSTM update for :math:`\Delta = 1`):

    .. math::
        \mathbf{c}_t = \mathbf{f}_t^{\Delta_t} \odot \mathbf{c}_{t-1}
        + \frac{1 - \mathbf{f}_t^{\Delta_t}}{1 - \mathbf{f}_t} \odot
        \mathbf{i}_t \odot \mathbf{g}_t,

    so a step repeated :math:`k` times with :math:`\Delta = 1/k` composes to
    one step when the gates depend on the input only (:math:`\mathbf{U} = 0`);
    the final state is then exactly invariant to
    :class:`~gdl_pyg.groups.TimeWarping`.

    As in :class:`GatedRecurrentConv`, the message along :math:`t - 1 \to t`
    is the state :math:`(\mathbf{h}_{t-1}, \mathbf{c}_{t-1})`, and
    :meth:`forward` runs all sequences at once, one time step at a time.

    Args:
        in_channels (int): Size of each input sample.
        hidden_channels (int): Size of the states :math:`\mathbf{h},
            \mathbf{c}`.
        bias (bool, optional): learn the biases :math:`\mathbf{b}, \mathbf{c}`.
            (default: :obj:`True`)
        chrono_init (int, optional): if set to :math:`T_{\max}`, the *chrono
            initialisation* of Tallec and Ollivier: forget bias
            :math:`\log(\mathcal{U}[1, T_{\max} - 1])` and input bias its
            negative. (default: :obj:`None`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F_{in})`,
          path edges :math:`(2, |\mathcal{E}|)`,
          initial states :math:`(S, F_{hid})` or a pair of them
          *(optional, one per sequence)*,
          step sizes :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** :math:`\mathbf{h}` after every step
          :math:`(|\mathcal{V}|, F_{hid})`, and :math:`\mathbf{c}` as well if
          :obj:`return_cell=True`
    """
    #: The symmetry the layer is built around.
    group_name = "TimeWarping"

    def __init__(self, in_channels: int, hidden_channels: int, bias: bool = True,
                 chrono_init: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        if in_channels < 1 or hidden_channels < 1:
            raise ValueError(f"'{type(self).__name__}' expected positive channel sizes "
                             f"(got in_channels={in_channels}, "
                             f"hidden_channels={hidden_channels})")
        if chrono_init is not None and chrono_init < 2:
            raise ValueError(f"'chrono_init' expected a maximal time scale >= 2 "
                             f"(got {chrono_init})")
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.chrono_init = chrono_init
        # rows: [input | forget | candidate | output], as in torch.nn.LSTM
        self.weight_ih = Parameter(torch.empty(4 * hidden_channels, in_channels))
        self.weight_hh = Parameter(torch.empty(4 * hidden_channels, hidden_channels))
        if bias:
            self.bias_ih = Parameter(torch.empty(4 * hidden_channels))
            self.bias_hh = Parameter(torch.empty(4 * hidden_channels))
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
            with torch.no_grad():
                b_f = torch.log(torch.empty(H).uniform_(1.0, float(self.chrono_init - 1)))
                self.bias_ih[H:2 * H] = b_f
                self.bias_ih[:H] = -b_f
                self.bias_hh[:2 * H] = 0.0

    @classmethod
    def from_torch(cls, module: torch.nn.LSTM) -> "GatedLSTMConv":
        r"""The layer computing the same as a one-layer, one-directional
        :class:`torch.nn.LSTM` without projection, with its weights."""
        if not isinstance(module, torch.nn.LSTM):
            raise TypeError(f"'from_torch' expected a torch.nn.LSTM "
                            f"(got {type(module).__name__})")
        if module.num_layers != 1 or module.bidirectional or module.proj_size != 0:
            raise ValueError(f"'from_torch' expected a one-layer, one-directional LSTM "
                             f"without projection (got num_layers={module.num_layers}, "
                             f"bidirectional={module.bidirectional}, "
                             f"proj_size={module.proj_size})")
        ref = module.weight_ih_l0
        conv = cls(module.input_size, module.hidden_size, bias=module.bias).to(
            ref.device, ref.dtype)
        names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if module.bias else [])
        with torch.no_grad():
            for name in names:
                getattr(conv, name).copy_(getattr(module, f"{name}_l0"))
        return conv

    def cell(self, gx: Tensor, h: Tensor, c: Tensor,
             dt: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        r"""One step for a batch of sequences: ``gx [S, 4 * F_hid]`` are the
        input projections, ``(h, c)`` the previous states ``[S, F_hid]``,
        ``dt`` optional step sizes ``[S]``."""
        a = gx + F.linear(h, self.weight_hh, self.bias_hh)
        a_i, a_f, a_g, a_o = a.chunk(4, dim=-1)
        i = torch.sigmoid(a_i)
        g = torch.tanh(a_g)
        if dt is None:
            c = torch.sigmoid(a_f) * c + i * g
        else:
            log_f = dt.unsqueeze(-1) * F.logsigmoid(a_f)  # log f^dt
            # (1 - f^dt) / (1 - f), with 1 - f = sigma(-a_f), stable as f -> 1
            ratio = -torch.expm1(log_f) / torch.sigmoid(-a_f)
            c = torch.exp(log_f) * c + ratio * i * g
        return torch.sigmoid(a_o) * torch.tanh(c), c

    def forward(self, x: Tensor, edge_index: Tensor,
                h0: Optional[Union[Tensor, Tuple[Tensor, Tensor]]] = None,
                dt: Optional[Tensor] = None,
                layout: Optional[SequenceLayout] = None,
                return_cell: bool = False) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        r"""Runs the recurrence along every sequence of the path graph.

        Args:
            x (torch.Tensor): node features ``[N, F_in]``.
            edge_index (torch.Tensor): path edges ``t -> t + 1``.
            h0 (torch.Tensor or (torch.Tensor, torch.Tensor), optional): the
                initial :math:`\mathbf{h}` ``[S, F_hid]`` (with
                :math:`\mathbf{c} = 0`), or the pair ``(h0, c0)``, one row per
                sequence (default: zeros).
            dt (torch.Tensor, optional): step sizes ``[N]`` (default: ones).
            layout (SequenceLayout, optional): the sequences of
                :obj:`edge_index`, precomputed by
                :func:`gdl_pyg.domains.sequence_layout` (reused across layers;
                with it, :meth:`forward` has no data-dependent shapes and
                ``torch.compile`` captures it in one graph per layout).
            return_cell (bool, optional): also return :math:`\mathbf{c}` of
                every node. (default: :obj:`False`)
        """
        name = type(self).__name__
        _check_x(name, x, self.in_channels)
        lay = _get_layout(name, edge_index, x.size(0), layout)
        zeros = x.new_zeros(lay.num_sequences, self.hidden_channels)
        if h0 is None:
            h, c = zeros, zeros
        elif isinstance(h0, (tuple, list)):
            if len(h0) != 2:
                raise ValueError(f"'{name}' expected 'h0' to be a tensor or a pair "
                                 f"(h0, c0) (got {len(h0)} values)")
            h, c = h0
            _check_state(name, h, lay, self.hidden_channels, "h0")
            _check_state(name, c, lay, self.hidden_channels, "c0")
        else:
            _check_state(name, h0, lay, self.hidden_channels)
            h, c = h0, zeros
        if lay.max_length == 0:  # no nodes: empty outputs of the right width
            empty = x.new_zeros(0, self.hidden_channels)
            return (empty, empty.clone()) if return_cell else empty
        gx = _pad(F.linear(x, self.weight_ih, self.bias_ih), lay)  # [T, S, 4 * H]
        if dt is not None:
            _check_dt(name, dt, x.size(0))
            dt = _pad(dt.to(x.dtype), lay, fill=1.0)  # [T, S]
        hs, cs = [], []
        for step in range(lay.max_length):
            h, c = self.cell(gx[step], h, c, None if dt is None else dt[step])
            hs.append(h)
            cs.append(c)
        h_out = torch.stack(hs, dim=0)[lay.pos, lay.seq]
        if return_cell:
            return h_out, torch.stack(cs, dim=0)[lay.pos, lay.seq]
        return h_out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.hidden_channels})"
