r"""Converters from domains (grids, lifted grids, meshes, point clouds, sets,
sequences) to :class:`~torch_geometric.data.Data` and back."""
from gdl_pyg.domains.grid import data_to_grid, grid_graph, grid_shape_of, grid_to_data

__all__ = ["grid_to_data", "data_to_grid", "grid_graph", "grid_shape_of"]
