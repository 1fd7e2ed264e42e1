r"""Testing utilities shipped with the library, usable on users' own models."""
from gdl_pyg.testing.equivariance import (DEFAULT_TOLERANCE, EquivarianceResult,
                                          assert_equivariant, equivariance_error)
from gdl_pyg.testing.decorators import with_package

__all__ = ["assert_equivariant", "equivariance_error", "EquivarianceResult",
           "DEFAULT_TOLERANCE", "with_package"]
