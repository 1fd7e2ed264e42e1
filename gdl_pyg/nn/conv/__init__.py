r"""Local equivariant maps, one :class:`~torch_geometric.nn.MessagePassing`
layer per file; each names its symmetry group in ``group_name``."""
from gdl_pyg.nn.conv.gated_lstm_conv import GatedLSTMConv
from gdl_pyg.nn.conv.gated_recurrent_conv import GatedRecurrentConv
from gdl_pyg.nn.conv.grid_conv import GridConv
from gdl_pyg.nn.conv.group_conv import GroupConv
from gdl_pyg.nn.conv.lifting_conv import LiftingConv

__all__ = [
    "GridConv",
    "LiftingConv",
    "GroupConv",
    "GatedRecurrentConv",
    "GatedLSTMConv",
]
