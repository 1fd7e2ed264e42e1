r"""Datasets over folders of mesh and point-cloud files
(:class:`~torch_geometric.data.InMemoryDataset` subclasses)."""
from gdl_pyg.datasets.folder import MeshFolderDataset, PointCloudFolderDataset

__all__ = ["MeshFolderDataset", "PointCloudFolderDataset"]
