r"""Reading and writing mesh and point-cloud files as
:class:`~torch_geometric.data.Data`, through :mod:`trimesh`, :mod:`meshio` and
:mod:`plyfile` (no hand-written format parsers). Every writer is atomic."""
from gdl_pyg.io.atoms import read_xyz, write_xyz
from gdl_pyg.io.mesh import (
    MESH_EXTENSIONS,
    MeshReport,
    clean_mesh,
    mesh_report,
    read_mesh,
    write_mesh,
)
from gdl_pyg.io.points import POINT_EXTENSIONS, read_points, write_points

__all__ = [
    "read_xyz",
    "write_xyz",
    "read_mesh",
    "write_mesh",
    "read_points",
    "write_points",
    "MeshReport",
    "mesh_report",
    "clean_mesh",
    "MESH_EXTENSIONS",
    "POINT_EXTENSIONS",
]
