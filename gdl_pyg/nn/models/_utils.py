r"""Helpers shared by the ready models: argument checks, readouts, and the
node-level / graph-level output head (a mixin, so every model keeps its
``readout`` and ``head`` attributes and its checkpoints' keys)."""
from typing import Type

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data

from gdl_pyg.nn.pool.readout import AttentionReadout, MaxReadout, MeanReadout, SumReadout

LEVELS = ("node", "graph")
READOUTS = ("sum", "mean", "max", "attention")


def _check_int(cls: str, name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"'{cls}' expected '{name}' to be an integer >= {minimum} "
                         f"(got {value!r})")


def _check_choice(cls: str, name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"'{cls}' expected '{name}' in {choices} (got {value!r})")


def _check_dropout(cls: str, dropout) -> None:
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"'{cls}' expected dropout in [0, 1) (got {dropout!r})")


def _make_readout(kind: str, channels: int) -> torch.nn.Module:
    if kind == "sum":
        return SumReadout()
    if kind == "mean":
        return MeanReadout()
    if kind == "max":
        return MaxReadout()
    return AttentionReadout(channels)


def _check_data(cls: str, data, in_channels: int, need_edges: bool = True) -> None:
    if not isinstance(data, Data):
        raise TypeError(f"'{cls}' expected a torch_geometric 'Data' or 'Batch' (got "
                        f"{type(data).__name__})")
    x = data.get("x")
    if not isinstance(x, Tensor) or x.dim() != 2 or x.size(-1) != in_channels:
        shape = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"'{cls}' expected node features 'x' of shape [num_nodes, "
                         f"{in_channels}] (got {shape})")
    if need_edges and data.get("edge_index") is None:
        raise ValueError(f"'{cls}' needs 'edge_index' (got None)")


def _node_features(cls: str, data: Data, in_channels: int, like: Tensor,
                   what: str = "node features") -> Tensor:
    r"""``data.x`` checked to be ``[num_nodes, in_channels]``, or, without
    ``x``, a constant feature 1 ``[num_nodes, 1]`` (dtype and device of
    :obj:`like`), which needs ``in_channels == 1``."""
    x = data.get("x")
    if x is None:
        if in_channels != 1:
            raise ValueError(f"'{cls}' got no 'x', so it uses a constant feature 1, which "
                             f"needs in_channels=1 (got in_channels={in_channels})")
        x = like.new_ones(data.num_nodes, 1)
    if not isinstance(x, Tensor) or x.dim() != 2 or x.size(1) != in_channels:
        shape = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"'{cls}' expected {what} 'x' of shape [num_nodes, "
                         f"{in_channels}] (got {shape})")
    return x


def _graph_info(data: Data):
    r"""``(batch, num_graphs)`` of a ``Data`` / ``Batch`` (one graph without
    a batch vector)."""
    batch = data.get("batch")
    if batch is None:
        return None, 1
    num_graphs = getattr(data, "num_graphs", None)
    return batch, int(num_graphs) if num_graphs is not None else int(batch.max()) + 1


class ReadoutHeadMixin:
    r"""The tail of a model that embeds nodes: at ``level="node"`` a linear
    layer per node, at ``level="graph"`` a permutation-invariant readout
    (:obj:`readout`) per graph, then Linear - act - Linear; dropout on the
    embeddings in both cases. A model calls :meth:`_init_head` in
    ``__init__``, :meth:`_reset_head` in ``reset_parameters`` and returns
    :meth:`_readout_head` of its node embeddings."""

    def _init_head(self, level: str, readout: str, channels: int, out_channels: int,
                   act: Type[torch.nn.Module] = torch.nn.ReLU) -> None:
        if level == "graph":
            self.readout = _make_readout(readout, channels)
            self.head = torch.nn.Sequential(torch.nn.Linear(channels, channels), act(),
                                            torch.nn.Linear(channels, out_channels))
        else:
            self.readout = None
            self.head = torch.nn.Linear(channels, out_channels)

    def _reset_head(self) -> None:
        if self.readout is not None and hasattr(self.readout, "reset_parameters"):
            self.readout.reset_parameters()
        for module in self.head.modules():
            if isinstance(module, torch.nn.Linear):
                module.reset_parameters()

    def _readout_head(self, h: Tensor, data: Data) -> Tensor:
        if self.level == "graph":
            batch, num_graphs = _graph_info(data)
            h = self.readout(h, batch, num_graphs)
        h = F.dropout(h, p=self.dropout, training=self.training)
        return self.head(h)
