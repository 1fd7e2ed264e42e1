r"""Converters from domains (grids, lifted grids, meshes, point clouds, sets,
sequences) to :class:`~torch_geometric.data.Data` and back."""
from gdl_pyg.domains.grid import data_to_grid, grid_graph, grid_shape_of, grid_to_data
from gdl_pyg.domains.lifted_grid import (group_index_table, kernel_index_table, lift_grid,
                                         resolve_grid_group, wallpaper_name)
from gdl_pyg.domains.mesh import laplacian_matrix, mesh_to_data
from gdl_pyg.domains.point_laplacian import point_cloud_laplacian, tufted_triangles
from gdl_pyg.domains.points import estimate_normals, points_to_data
from gdl_pyg.domains.sphere import (icosahedral_rotations, icosphere, project_grid,
                                    project_image, rotation_permutation, sphere_to_image)
from gdl_pyg.domains.sequence import (SequenceLayout, data_to_sequence, sequence_layout,
                                      sequence_to_data, warp_step_sizes)

__all__ = [
    "point_cloud_laplacian",
    "tufted_triangles",
    "grid_to_data",
    "data_to_grid",
    "grid_graph",
    "grid_shape_of",
    "lift_grid",
    "resolve_grid_group",
    "wallpaper_name",
    "kernel_index_table",
    "group_index_table",
    "mesh_to_data",
    "laplacian_matrix",
    "points_to_data",
    "estimate_normals",
    "icosphere",
    "icosahedral_rotations",
    "rotation_permutation",
    "project_image",
    "project_grid",
    "sphere_to_image",
    "sequence_to_data",
    "data_to_sequence",
    "sequence_layout",
    "SequenceLayout",
    "warp_step_sizes",
]
