r"""Local equivariant maps, one :class:`~torch_geometric.nn.MessagePassing`
layer per file; each names its symmetry group in ``group_name``."""
from gdl_pyg.nn.conv.attentional_conv import AttentionalConv
from gdl_pyg.nn.conv.convolutional_conv import ConvolutionalConv, gcn_adjacency
from gdl_pyg.nn.conv.deep_sets_conv import DeepSetsConv
from gdl_pyg.nn.conv.diffusion_conv import DiffusionConv
from gdl_pyg.nn.conv.egnn_conv import EGNNConv
from gdl_pyg.nn.conv.gated_lstm_conv import GatedLSTMConv
from gdl_pyg.nn.conv.gated_recurrent_conv import GatedRecurrentConv
from gdl_pyg.nn.conv.graph_transformer_conv import GraphTransformerConv, complete_edge_index
from gdl_pyg.nn.conv.grid_conv import GridConv
from gdl_pyg.nn.conv.group_conv import GroupConv
from gdl_pyg.nn.conv.lifting_conv import LiftingConv
from gdl_pyg.nn.conv.message_passing_conv import MessagePassingConv
from gdl_pyg.nn.conv.sphere_conv import SphereConv
from gdl_pyg.nn.conv.gem_conv import GEMConv
from gdl_pyg.nn.conv.tensor_field_conv import TensorFieldConv
from gdl_pyg.nn.conv.geodesic_conv import GeodesicConv

__all__ = [
    "DiffusionConv",
    "EGNNConv",
    "GEMConv",
    "TensorFieldConv",
    "GeodesicConv",
    "GridConv",
    "SphereConv",
    "LiftingConv",
    "GroupConv",
    "GatedRecurrentConv",
    "GatedLSTMConv",
    "DeepSetsConv",
    "ConvolutionalConv",
    "AttentionalConv",
    "MessagePassingConv",
    "GraphTransformerConv",
    "gcn_adjacency",
    "complete_edge_index",
]
