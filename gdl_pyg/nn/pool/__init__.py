r"""Coarsening operators and global invariant readouts."""
from gdl_pyg.nn.pool.grid_pool import GridPool
from gdl_pyg.nn.pool.group_pool import GroupPool, group_pool

__all__ = [
    "GridPool",
    "GroupPool",
    "group_pool",
]
