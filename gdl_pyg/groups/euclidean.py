r"""Continuous rotation and rigid-motion groups acting on ``pos`` and features:
:class:`SO2`, :class:`SO3`, :class:`O3`, :class:`E3`.

Elements are float64 matrices (``[2, 2]`` / ``[3, 3]``), and for :class:`E3` a
pair ``(Q, t)`` of an orthogonal matrix and a translation ``[3]``.

Fibre representations:

* ``"trivial"`` (invariant scalars);
* ``"point"``: ``Q p + t`` (the default for ``pos``);
* ``"vector"``: ``Q v`` (normals, velocities, relative positions);
* ``"pseudovector"``: ``det(Q) Q v`` (cross products, angular velocities);
* an e3nn irreps string or :class:`e3nn.o3.Irreps` such as ``"8x0e + 4x1o"``:
  the Wigner-D block-diagonal matrix (parity included), for SO(3), O(3), E(3);
* for :class:`SO2`, an ``int`` ``n``: the 2-d frequency-``n`` irrep on each pair
  of the last dimension (``1`` equals ``"vector"``).
"""
import math
from typing import Any, Mapping, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import Data

from gdl_pyg.groups.base import TRIVIAL, Group, apply_matrix

__all__ = ["SO2", "SO3", "O3", "E3", "random_rotation", "wigner_D"]


def random_rotation(generator: Optional[torch.Generator] = None,
                    dtype=torch.float64) -> Tensor:
    r"""A Haar-random rotation in SO(3) (QR of a Gaussian matrix)."""
    A = torch.randn(3, 3, generator=generator, dtype=torch.float64)
    Q, R = torch.linalg.qr(A)
    Q = Q * torch.sign(torch.diagonal(R)).unsqueeze(0)
    if torch.det(Q) < 0:
        Q[:, 0] = -Q[:, 0]
    return Q.to(dtype)


def _fibonacci_sphere(n: int) -> Tensor:
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    phi = i * math.pi * (3 - math.sqrt(5))
    rho = torch.sqrt(1 - z * z)
    return torch.stack([rho * torch.cos(phi), rho * torch.sin(phi), z], dim=-1)


def wigner_D(irreps: Any, Q: Tensor) -> Tensor:
    r"""The block-diagonal matrix of an e3nn ``Irreps`` at ``Q`` in O(3), in float64.

    e3nn's ``Irreps.D_from_matrix`` goes through Euler angles and float32
    tables (errors around 1e-7), too coarse for float64 equivariance checks.
    Here each block :math:`D_l(R)` is solved from e3nn's (exact, polynomial)
    real spherical harmonics, :math:`Y_l(R x) = D_l(R) Y_l(x)`, on fixed
    probe directions, and multiplied by the parity :math:`p^{[\det Q < 0]}`.
    Agrees with e3nn's convention (tested) to round-off.
    """
    from e3nn import o3
    irreps = o3.Irreps(irreps)
    Q = torch.as_tensor(Q, dtype=torch.float64)
    det = float(torch.det(Q))
    R = Q * (1.0 if det > 0 else -1.0)
    blocks, cache = [], {}
    for mul, ir in irreps:
        if ir.l not in cache:
            if ir.l == 0:
                cache[0] = torch.ones(1, 1, dtype=torch.float64)
            else:
                probe = _fibonacci_sphere(4 * ir.l + 8)
                Y = o3.spherical_harmonics(ir.l, probe, normalize=True)          # [P, 2l+1]
                YR = o3.spherical_harmonics(ir.l, probe @ R.T, normalize=True)  # [P, 2l+1]
                cache[ir.l] = torch.linalg.lstsq(Y, YR).solution.T
        D = cache[ir.l] * (ir.p if det < 0 else 1)
        blocks.extend([D] * mul)
    if not blocks:
        return torch.zeros(0, 0, dtype=torch.float64)
    return torch.block_diag(*blocks)


def _rot2(angle: float) -> Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)


class _MatrixGroup(Group):
    dim = 3

    def __init__(self):
        self.default_fields = {"pos": "point"}

    def _split(self, g: Any) -> Tuple[Tensor, Optional[Tensor]]:
        return torch.as_tensor(g, dtype=torch.float64), None

    def fiber_matrix(self, Q: Tensor, rep: Any, dim: int) -> Optional[Tensor]:
        if rep in TRIVIAL:
            return None
        if rep == "vector":
            return Q
        if rep == "pseudovector":
            return torch.det(Q) * Q
        if self.dim == 3:
            try:
                from e3nn.o3 import Irreps
                irreps = Irreps(rep)
            except Exception as e:  # not an irreps string either
                raise ValueError(
                    f"'{self.name}' does not know the representation {rep!r}; expected "
                    f"'trivial', 'point', 'vector', 'pseudovector' or e3nn irreps") from e
            if irreps.dim != dim:
                raise ValueError(f"Representation {rep!r} has dimension {irreps.dim}, but the "
                                 f"feature's last dimension is {dim}")
            return wigner_D(irreps, Q)
        raise ValueError(f"'{self.name}' does not know the representation {rep!r}")

    def act(self, g: Any, data: Data, fields: Optional[Mapping[str, Any]] = None) -> Data:
        Q, t = self._split(g)
        out = data.clone()
        for key, rep in self._fields(fields).items():
            if key not in data or rep in TRIVIAL:
                continue
            value = data[key]
            if not isinstance(value, Tensor) or not value.is_floating_point():
                raise TypeError(f"'{self.name}' expected '{key}' to be a floating-point tensor")
            if rep == "point":
                if value.size(-1) != self.dim:
                    raise ValueError(f"'{self.name}' acts on {self.dim}-d points; '{key}' has "
                                     f"shape {list(value.shape)}")
                value = apply_matrix(value, Q)
                if t is not None:
                    value = value + t.to(value.dtype).to(value.device)
                out[key] = value
            else:
                M = self.fiber_matrix(Q, rep, value.size(-1))
                if M is not None:
                    out[key] = apply_matrix(value, M)
        return out

    def identity(self, data: Optional[Data] = None) -> Tensor:
        return torch.eye(self.dim, dtype=torch.float64)


class SO2(_MatrixGroup):
    r"""Planar rotations :math:`SO(2)` acting on ``pos [N, 2]``. Feature
    representations: ``"vector"`` or an ``int`` frequency ``n`` (the last
    dimension is a sequence of 2-d components rotated by :math:`n\theta`)."""
    name = "SO(2)"
    dim = 2

    def sample(self, data: Optional[Data] = None,
               generator: Optional[torch.Generator] = None) -> Tensor:
        return _rot2(float(torch.rand(1, generator=generator, dtype=torch.float64)) * 2 * math.pi)

    def fiber_matrix(self, Q: Tensor, rep: Any, dim: int) -> Optional[Tensor]:
        if isinstance(rep, int) and not isinstance(rep, bool):
            if dim % 2:
                raise ValueError(f"An SO(2) frequency-{rep} field needs an even last dimension "
                                 f"(got {dim})")
            angle = math.atan2(float(Q[1, 0]), float(Q[0, 0]))
            return torch.block_diag(*[_rot2(rep * angle)] * (dim // 2))
        return super().fiber_matrix(Q, rep, dim)


class SO3(_MatrixGroup):
    r"""Rotations :math:`SO(3)` acting on ``pos [N, 3]`` and on features with
    e3nn irreps."""
    name = "SO(3)"

    def sample(self, data: Optional[Data] = None,
               generator: Optional[torch.Generator] = None) -> Tensor:
        return random_rotation(generator)


class O3(_MatrixGroup):
    r"""Rotations and reflections :math:`O(3)`; half of the samples are
    improper (determinant -1)."""
    name = "O(3)"

    def sample(self, data: Optional[Data] = None,
               generator: Optional[torch.Generator] = None) -> Tensor:
        Q = random_rotation(generator)
        if bool(torch.rand(1, generator=generator) < 0.5):
            Q = -Q
        return Q


class E3(_MatrixGroup):
    r"""Rigid motions :math:`E(3)`: ``(Q, t)`` with ``Q`` in O(3) and a
    translation ``t``; ``"point"`` fields move by ``Q p + t``, vectors and
    irreps only feel ``Q``.

    Args:
        translation_scale (float, optional): the standard deviation of sampled
            translations. (default: :obj:`1.0`)
    """
    name = "E(3)"

    def __init__(self, translation_scale: float = 1.0):
        super().__init__()
        self.translation_scale = translation_scale

    def __repr__(self) -> str:
        return f"E3(translation_scale={self.translation_scale})"

    def sample(self, data: Optional[Data] = None,
               generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
        Q = O3().sample(generator=generator)
        t = torch.randn(3, generator=generator, dtype=torch.float64) * self.translation_scale
        return Q, t

    def identity(self, data: Optional[Data] = None):
        return torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)

    def _split(self, g: Any) -> Tuple[Tensor, Optional[Tensor]]:
        if not (isinstance(g, (tuple, list)) and len(g) == 2):
            raise TypeError(f"An 'E3' element is a pair (Q, t) (got {type(g).__name__})")
        return torch.as_tensor(g[0], dtype=torch.float64), torch.as_tensor(g[1],
                                                                           dtype=torch.float64)
