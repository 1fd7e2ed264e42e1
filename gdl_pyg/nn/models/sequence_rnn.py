r"""Sequence classification with gated recurrences on path graphs."""
from typing import Literal, Optional

import torch
from torch import Tensor
from torch_geometric.data import Data

from gdl_pyg.domains.sequence import sequence_layout, warp_step_sizes
from gdl_pyg.nn.conv.gated_lstm_conv import GatedLSTMConv
from gdl_pyg.nn.conv.gated_recurrent_conv import GatedRecurrentConv

__all__ = ["SequenceClassifier"]

CELLS = ("gated", "leaky", "lstm", "rnn")


class SequenceClassifier(torch.nn.Module):
    r"""A stack of recurrent layers over the path graph of each sequence,
    read out at the last time step of every sequence, followed by a linear
    classifier (section 5.8 of the `"Geometric Deep Learning"
    <https://arxiv.org/abs/2104.13478>`_ book):

    .. math::
        \mathbf{y} = \mathbf{W}_{out}\, \mathbf{h}^{(L)}_{T} + \mathbf{b}_{out},
        \qquad \mathbf{h}^{(\ell)}_t = \mathrm{cell}^{(\ell)}
        (\mathbf{h}^{(\ell-1)}_t, \mathbf{h}^{(\ell)}_{t-1}),
        \quad \mathbf{h}^{(0)}_t = \mathbf{x}_t.

    Args:
        in_channels (int): Size of each input sample.
        hidden_channels (int): Size of the recurrent states.
        num_classes (int): Number of classes.
        cell (str, optional): ``"gated"`` (the GRU,
            :class:`~gdl_pyg.nn.conv.gated_recurrent_conv.GatedRecurrentConv`),
            ``"leaky"`` (the gated RNN without reset gate), ``"lstm"``
            (:class:`~gdl_pyg.nn.conv.gated_lstm_conv.GatedLSTMConv`) or
            ``"rnn"`` (the plain tanh RNN, no gate). (default: :obj:`"gated"`)
        num_layers (int, optional): Number of stacked recurrent layers.
            (default: :obj:`1`)
        time_aware (bool, optional): feed the gates the local warp rate of
            every step, computed from the time stamps ``data.t`` by
            :func:`gdl_pyg.domains.warp_step_sizes` (gated cells only).
            (default: :obj:`False`)
        chrono_init (int, optional): chrono initialisation of the gates with
            this maximal time scale (gated cells only). (default: :obj:`None`)
        dropout (float, optional): dropout between layers and before the
            classifier. (default: :obj:`0.0`)

    Shapes:
        - **input:** a sequence ``Data`` / ``Batch`` with ``x`` :math:`(|\mathcal{V}|,
          F_{in})`, path ``edge_index``, and ``t`` :math:`(|\mathcal{V}|)` if
          :obj:`time_aware`
        - **output:** logits :math:`(S, \text{num\_classes})`, one row per sequence
    """

    def __init__(self, in_channels: int, hidden_channels: int, num_classes: int,
                 cell: Literal["gated", "leaky", "lstm", "rnn"] = "gated",
                 num_layers: int = 1, time_aware: bool = False,
                 chrono_init: Optional[int] = None, dropout: float = 0.0):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"'SequenceClassifier' expected cell in {CELLS} (got {cell!r})")
        if num_layers < 1 or num_classes < 1:
            raise ValueError(f"Expected num_layers >= 1 and num_classes >= 1 (got "
                             f"num_layers={num_layers}, num_classes={num_classes})")
        if cell == "rnn" and (time_aware or chrono_init is not None):
            raise ValueError("The plain 'rnn' cell has no gate, so it takes neither "
                             "'time_aware' nor 'chrono_init'; use cell='gated'")
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.num_classes = num_classes
        self.cell = cell
        self.time_aware = time_aware
        self.dropout = dropout
        self.convs = torch.nn.ModuleList()
        for layer in range(num_layers):
            c_in = in_channels if layer == 0 else hidden_channels
            if cell == "lstm":
                conv = GatedLSTMConv(c_in, hidden_channels, chrono_init=chrono_init)
            else:
                conv = GatedRecurrentConv(c_in, hidden_channels,
                                          update_gate=cell != "rnn",
                                          reset_gate=cell == "gated", chrono_init=chrono_init)
            self.convs.append(conv)
        self.lin = torch.nn.Linear(hidden_channels, num_classes)

    def reset_parameters(self):
        for conv in self.convs:
            conv.reset_parameters()
        self.lin.reset_parameters()

    def embed(self, data: Data) -> Tensor:
        r"""The final state of the last layer, one row ``[S, F_hid]`` per sequence."""
        if not isinstance(data, Data):
            raise TypeError(f"'SequenceClassifier' expected a sequence 'Data' (got "
                            f"{type(data).__name__})")
        x, edge_index = data.x, data.edge_index
        if x.dim() == 1:
            x = x.unsqueeze(-1)
        lay = sequence_layout(edge_index, x.size(0))
        dt = None
        if self.time_aware:
            if "t" not in data:
                raise ValueError("'SequenceClassifier(time_aware=True)' expected time stamps "
                                 "'data.t' (made by 'gdl_pyg.domains.sequence_to_data')")
            dt = warp_step_sizes(data.t, edge_index, x.size(0), layout=lay, dtype=x.dtype)
        for i, conv in enumerate(self.convs):
            if i > 0:
                x = torch.nn.functional.dropout(x, self.dropout, self.training)
            x = conv(x, edge_index, dt=dt, layout=lay)
        return x[lay.last]

    def forward(self, data: Data) -> Tensor:
        h = torch.nn.functional.dropout(self.embed(data), self.dropout, self.training)
        return self.lin(h)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.hidden_channels}, "
                f"num_classes={self.num_classes}, cell='{self.cell}', "
                f"num_layers={len(self.convs)}, time_aware={self.time_aware})")
