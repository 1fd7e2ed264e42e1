r"""Coarsening operators and global invariant readouts."""
from gdl_pyg.nn.pool.coarsening import GraclusPooling, coarsen, heavy_edge_matching
from gdl_pyg.nn.pool.grid_pool import GridPool
from gdl_pyg.nn.pool.group_pool import GroupPool, group_pool
from gdl_pyg.nn.pool.parallel_transport_pool import ParallelTransportPool, ParallelTransportUnpool
from gdl_pyg.nn.pool.readout import AttentionReadout, MaxReadout, MeanReadout, SumReadout
from gdl_pyg.nn.pool.sphere_pool import SpherePool, icosphere_level

__all__ = [
    "GridPool",
    "GroupPool",
    "group_pool",
    "SumReadout",
    "MeanReadout",
    "MaxReadout",
    "AttentionReadout",
    "GraclusPooling",
    "coarsen",
    "heavy_edge_matching",
    "ParallelTransportPool",
    "ParallelTransportUnpool",
    "SpherePool",
    "icosphere_level",
]
