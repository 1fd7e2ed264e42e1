r"""Global permutation-invariant readouts: one vector per graph of a batch
(the last stage of the blueprint of Bronstein et al. 2021, sec. 4.6)."""
from typing import Optional

import torch
from torch import Tensor
from torch_geometric.nn.aggr import AttentionalAggregation
from torch_geometric.nn.pool import global_add_pool, global_max_pool, global_mean_pool
from torch_geometric.typing import OptTensor

from gdl_pyg.nn._checks import check_index
from gdl_pyg.utils import check_channels, check_features

__all__ = ["SumReadout", "MeanReadout", "MaxReadout", "AttentionReadout"]


def _check_x(cls: str, x: Tensor, batch: OptTensor = None,
             batch_size: Optional[int] = None) -> None:
    if not isinstance(x, Tensor) or x.dim() < 1:
        raise ValueError(f"'{cls}' expected node features of shape [num_nodes, *] (got "
                         f"{list(x.shape) if isinstance(x, Tensor) else type(x).__name__})")
    check_index(batch, x.size(0), cls, "batch", batch_size)


class _Readout(torch.nn.Module):
    #: The group the output is invariant to.
    group_name = "Permutations"

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SumReadout(_Readout):
    r"""Sum over the nodes of each graph, :math:`\mathbf{r}_b = \sum_{i \in
    \mathcal{V}_b} \mathbf{x}_i` (:func:`~torch_geometric.nn.pool.global_add_pool`),
    invariant to permutations of each graph's nodes (`"Geometric Deep
    Learning" <https://arxiv.org/abs/2104.13478>`_, sec. 4.6).

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F)`, batch vector
          :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** graph features :math:`(B, F)`
    """

    def forward(self, x: Tensor, batch: OptTensor = None,
                batch_size: Optional[int] = None) -> Tensor:
        _check_x(type(self).__name__, x, batch, batch_size)
        return global_add_pool(x, batch, batch_size)


class MeanReadout(_Readout):
    r"""Mean over the nodes of each graph, :math:`\mathbf{r}_b =
    \frac{1}{|\mathcal{V}_b|}\sum_{i \in \mathcal{V}_b} \mathbf{x}_i`
    (:func:`~torch_geometric.nn.pool.global_mean_pool`).

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F)`, batch vector
          :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** graph features :math:`(B, F)`
    """

    def forward(self, x: Tensor, batch: OptTensor = None,
                batch_size: Optional[int] = None) -> Tensor:
        _check_x(type(self).__name__, x, batch, batch_size)
        return global_mean_pool(x, batch, batch_size)


class MaxReadout(_Readout):
    r"""Channel-wise maximum over the nodes of each graph,
    :math:`\mathbf{r}_b = \max_{i \in \mathcal{V}_b} \mathbf{x}_i`
    (:func:`~torch_geometric.nn.pool.global_max_pool`).

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F)`, batch vector
          :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** graph features :math:`(B, F)`
    """

    def forward(self, x: Tensor, batch: OptTensor = None,
                batch_size: Optional[int] = None) -> Tensor:
        _check_x(type(self).__name__, x, batch, batch_size)
        return global_max_pool(x, batch, batch_size)


class AttentionReadout(_Readout):
    r"""Gated attention pooling from the `"Gated Graph Sequence Neural
    Networks" <https://arxiv.org/abs/1511.05493>`_ paper (a wrapper of
    :class:`~torch_geometric.nn.aggr.AttentionalAggregation`):

    .. math::
        \mathbf{r}_b = \sum_{i \in \mathcal{V}_b} \operatorname{softmax}_{i \in
        \mathcal{V}_b}\big(h_{\mathrm{gate}}(\mathbf{x}_i)\big) \odot
        h_{\mathbf{\Theta}}(\mathbf{x}_i).

    Args:
        in_channels (int): input width.
        out_channels (int, optional): output width; if given and :obj:`nn` is
            :obj:`None`, :math:`h_{\mathbf{\Theta}}` is a linear map.
            (default: :obj:`None`, the identity)
        gate_nn (torch.nn.Module, optional): maps :math:`(N, F)` to gates
            :math:`(N, 1)` (or :math:`(N, F_{out})` for per-channel gates).
            (default: :obj:`None`, a linear map to one gate)
        nn (torch.nn.Module, optional): :math:`h_{\mathbf{\Theta}}`.
            (default: :obj:`None`)

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F)`, batch vector
          :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** graph features :math:`(B, F_{out})`
    """

    def __init__(self, in_channels: int, out_channels: Optional[int] = None,
                 gate_nn: Optional[torch.nn.Module] = None,
                 nn: Optional[torch.nn.Module] = None):
        super().__init__()
        for name, mod in (("gate_nn", gate_nn), ("nn", nn)):
            if mod is not None and not isinstance(mod, torch.nn.Module):
                raise TypeError(f"'AttentionReadout' expected '{name}' to be a "
                                f"torch.nn.Module or None (got {type(mod).__name__})")
        self.in_channels = in_channels
        self.out_channels = in_channels if out_channels is None else out_channels
        if gate_nn is None:
            gate_nn = torch.nn.Linear(in_channels, 1)
        if nn is None and out_channels is not None:
            nn = torch.nn.Linear(in_channels, out_channels)
        self.aggr = AttentionalAggregation(gate_nn, nn)
        self.reset_parameters()

    def reset_parameters(self):
        self.aggr.reset_parameters()

    def forward(self, x: Tensor, batch: OptTensor = None,
                batch_size: Optional[int] = None) -> Tensor:
        check_features(x, type(self).__name__, "x", dims=(2,))
        _check_x(type(self).__name__, x, batch, batch_size)
        check_channels(x, self.in_channels, type(self).__name__)
        if batch is None:
            batch = x.new_zeros(x.size(0), dtype=torch.long)
            batch_size = 1
        return self.aggr(x, index=batch, dim_size=batch_size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels})"
