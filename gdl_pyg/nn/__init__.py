r"""Layers (:mod:`gdl_pyg.nn.conv`), pooling (:mod:`gdl_pyg.nn.pool`) and
ready models (:mod:`gdl_pyg.nn.models`)."""
from gdl_pyg.nn import conv, models, pool  # noqa: F401
from gdl_pyg.nn.conv import *  # noqa: F401,F403
from gdl_pyg.nn.conv import __all__ as _conv_all
from gdl_pyg.nn.pool import *  # noqa: F401,F403
from gdl_pyg.nn.pool import __all__ as _pool_all

from gdl_pyg.nn.nonlinearity import RegularNonlinearity

__all__ = list(_conv_all) + list(_pool_all) + ["RegularNonlinearity"]
