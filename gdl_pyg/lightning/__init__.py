r"""Training with Lightning: graph-level tasks, data modules of PyG graphs,
callbacks, and the ``gdl-pyg`` command (:func:`gdl_pyg.lightning.cli.main`)."""
from gdl_pyg.lightning.callbacks import (LastCheckpoint, LearningCurvePlot, PredictionWriter,
                                         ResultsPrinter, ResumeState)
from gdl_pyg.lightning.checkpoint import CheckpointError, SafeCheckpointIO, load_checkpoint
from gdl_pyg.lightning.equivariance_report import (EquivarianceReport, SymmetryCheck,
                                                   measure_equivariance, model_symmetries)
from gdl_pyg.lightning.data import GraphDataModule, RotatedDigitsDataModule, rotate_images
from gdl_pyg.lightning.graph_data import (KarateClubDataModule, SetsDataModule,
                                          SyntheticGraphsDataModule)
from gdl_pyg.lightning.mesh_data import MeshDataModule, PositionFeatures, rotate_shape
from gdl_pyg.lightning.nbody_data import NBodyDataModule, simulate_charged_particles
from gdl_pyg.lightning.node_data import (NodeDataModule, PyGDatasetDataModule, SBMDataModule,
                                         stochastic_block_model)
from gdl_pyg.lightning.node_task import NodeClassificationTask, NodeRegressionTask
from gdl_pyg.lightning.potential import AtomsDataModule, EnergyForceTask
from gdl_pyg.lightning.sequence_data import TimeWarpDataModule, make_event_sequences, warp_sequences
from gdl_pyg.lightning.sphere_data import SphericalDigitsDataModule, random_rotations
from gdl_pyg.lightning.task import GraphClassificationTask, GraphLevelTask, GraphRegressionTask

__all__ = [
    "GraphLevelTask",
    "GraphClassificationTask",
    "GraphRegressionTask",
    "NodeClassificationTask",
    "NodeRegressionTask",
    "NodeDataModule",
    "PyGDatasetDataModule",
    "SBMDataModule",
    "stochastic_block_model",
    "KarateClubDataModule",
    "SyntheticGraphsDataModule",
    "SetsDataModule",
    "GraphDataModule",
    "MeshDataModule",
    "NBodyDataModule",
    "EnergyForceTask",
    "AtomsDataModule",
    "simulate_charged_particles",
    "PositionFeatures",
    "rotate_shape",
    "RotatedDigitsDataModule",
    "rotate_images",
    "SphericalDigitsDataModule",
    "random_rotations",
    "TimeWarpDataModule",
    "make_event_sequences",
    "warp_sequences",
    "LearningCurvePlot",
    "ResultsPrinter",
    "PredictionWriter",
    "ResumeState",
    "LastCheckpoint",
    "EquivarianceReport",
    "SymmetryCheck",
    "measure_equivariance",
    "model_symmetries",
    "CheckpointError",
    "SafeCheckpointIO",
    "load_checkpoint",
]
