r"""Transforms (:class:`~torch_geometric.transforms.BaseTransform`) wrapping the
domain converters and geometry preprocessing: mesh geometry, point-cloud
graphs, surface sampling, random rotations / gauge changes, and graph
positional encodings."""
from torch_geometric.transforms import NormalizeScale

from gdl_pyg.transforms.laplacian_eigen import (HeatKernelSignature, LaplacianEigenbasis,
                                                PointCloudLaplacian, SpatialGradient)
from gdl_pyg.transforms.mesh_geometry import MeshGeometry
from gdl_pyg.transforms.mesh_hierarchy import MeshHierarchy, MeshHierarchyData
from gdl_pyg.transforms.point_cloud_graph import PointCloudGraph
from gdl_pyg.transforms.polar_pseudo_coords import PolarPseudoCoords
from gdl_pyg.transforms.positional_encoding import LaplacianPE, RandomWalkPE
from gdl_pyg.transforms.random_gauge_change import RandomGaugeChange
from gdl_pyg.transforms.random_rotation_3d import RandomRotation3D
from gdl_pyg.transforms.sample_surface import SampleSurface

__all__ = [
    "PointCloudLaplacian",
    "LaplacianEigenbasis",
    "HeatKernelSignature",
    "SpatialGradient",
    "MeshGeometry",
    "MeshHierarchy",
    "MeshHierarchyData",
    "PointCloudGraph",
    "PolarPseudoCoords",
    "SampleSurface",
    "NormalizeScale",
    "RandomRotation3D",
    "RandomGaugeChange",
    "LaplacianPE",
    "RandomWalkPE",
]
