r"""Ready models assembled from the blueprint, one per domain."""
from gdl_pyg.nn.models.diffusion_net import DiffusionNet
from gdl_pyg.nn.models.egnn import EGNN, NBodyGNN
from gdl_pyg.nn.models.gcnn import GCNN
from gdl_pyg.nn.models.gem_cnn import GEMCNN
from gdl_pyg.nn.models.geodesic_cnn import GeodesicCNN
from gdl_pyg.nn.models.gnn import GNN, DeepSets, GraphTransformer
from gdl_pyg.nn.models.tensor_field_network import TensorFieldNetwork
from gdl_pyg.nn.models.grid_cnn import GridCNN
from gdl_pyg.nn.models.monet import MoNet
from gdl_pyg.nn.models.sequence_rnn import SequenceClassifier
from gdl_pyg.nn.models.potential import InteratomicPotential
from gdl_pyg.nn.models.spherical_cnn import SphericalCNN

__all__ = [
    "DiffusionNet",
    "EGNN",
    "NBodyGNN",
    "GridCNN",
    "GCNN",
    "GEMCNN",
    "GeodesicCNN",
    "MoNet",
    "SequenceClassifier",
    "SphericalCNN",
    "GNN",
    "GraphTransformer",
    "DeepSets",
    "TensorFieldNetwork",
    "InteratomicPotential",
]
