r"""Gauge transformations: an independent SO(2) rotation of the tangent frame
at every vertex of a mesh or point cloud (the symmetry of GEM-CNN)."""
import math
from typing import Any, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch_geometric.data import Data

from gdl_pyg.groups.base import TRIVIAL, Group, apply_matrix

__all__ = ["GaugeGroup", "gauge_matrix"]


def _parse_freqs(rep: Any) -> Tuple[int, ...]:
    if isinstance(rep, str):
        body = rep[len("gauge:"):] if rep.startswith("gauge:") else rep
        try:
            return tuple(int(f) for f in body.split(","))
        except ValueError as e:
            raise ValueError(f"Expected a gauge representation like 'gauge:0,1,2' "
                             f"(got {rep!r})") from e
    if isinstance(rep, int):
        return (rep,)
    return tuple(int(f) for f in rep)


def gauge_matrix(angle: Tensor, freqs: Sequence[int]) -> Tensor:
    r"""Block-diagonal ``[N, d, d]`` matrices :math:`\bigoplus_n \rho_n(\alpha_i)`,
    with :math:`\rho_0 = 1` (one component) and :math:`\rho_n` the 2x2
    rotation by :math:`n\alpha` (two components, ``(cos, sin)`` order)."""
    N = angle.numel()
    dims = [1 if n == 0 else 2 for n in freqs]
    d = sum(dims)
    M = angle.new_zeros(N, d, d)
    o = 0
    for n, k in zip(freqs, dims):
        if n == 0:
            M[:, o, o] = 1
        else:
            c, s = torch.cos(n * angle), torch.sin(n * angle)
            M[:, o, o], M[:, o, o + 1] = c, -s
            M[:, o + 1, o], M[:, o + 1, o + 1] = s, c
        o += k
    return M


class GaugeGroup(Group):
    r"""Per-vertex frame rotations :math:`\prod_v SO(2)`.

    An element is a tensor of angles :math:`\theta_v` ``[N]``. Rotating the
    frame at ``v`` by :math:`\theta_v` changes, on a ``Data`` made by
    :func:`gdl_pyg.domains.mesh_to_data`:

    * ``frame [N, 2, 3]`` (the tangent basis :math:`e_1, e_2` as rows):
      :math:`e_1' = \cos\theta\, e_1 + \sin\theta\, e_2`,
      :math:`e_2' = -\sin\theta\, e_1 + \cos\theta\, e_2`;
    * ``edge_logmap [E, 2]`` (polar coordinates ``(r, phi)`` of the source
      in the tangent plane of the target ``i``): :math:`\phi' = \phi - \theta_i`;
    * ``edge_connection [E]`` (the angle by which parallel transport from
      ``j`` to ``i`` rotates coordinates): :math:`c' = c + \theta_j - \theta_i`;
    * a feature field with gauge representation ``"gauge:n1,n2,..."`` (or a
      tuple of ints): its coordinates at ``v`` are multiplied by
      :math:`\rho(-\theta_v)` (a vector does not move, its frame does).

    Args:
        max_angle (float, optional): samples angles uniformly in
            ``[-max_angle, max_angle]``. (default: :math:`\pi`)
        num_angles (int, optional): if set, samples each vertex's angle
            uniformly from the multiples :math:`2\pi k / \mathrm{num\_angles}`
            (the discrete gauge group :math:`C_{num\_angles}` per vertex,
            under which sampled nonlinearities are exact); :obj:`max_angle`
            is then ignored. (default: :obj:`None`)
        frame_key, logmap_key, connection_key (str, optional): attribute names.
    """
    name = "SO(2)^N"

    def __init__(self, max_angle: float = math.pi, frame_key: str = "frame",
                 logmap_key: str = "edge_logmap", connection_key: str = "edge_connection",
                 num_angles: Optional[int] = None):
        if num_angles is not None and (not isinstance(num_angles, int)
                                       or isinstance(num_angles, bool) or num_angles < 1):
            raise ValueError(f"'GaugeGroup' expected 'num_angles' to be a positive integer or "
                             f"None (got {num_angles!r})")
        self.max_angle = max_angle
        self.num_angles = num_angles
        self.frame_key, self.logmap_key, self.connection_key = frame_key, logmap_key, \
            connection_key
        self.default_fields = {}

    def __repr__(self) -> str:
        if self.num_angles is not None:
            return f"GaugeGroup(num_angles={self.num_angles})"
        return f"GaugeGroup(max_angle={self.max_angle:.3g})"

    def sample(self, data: Optional[Data] = None,
               generator: Optional[torch.Generator] = None) -> Tensor:
        if data is None:
            raise ValueError("'GaugeGroup.sample' needs the 'data' whose frames it rotates")
        if self.num_angles is not None:
            k = torch.randint(0, self.num_angles, (data.num_nodes,), generator=generator)
            return k.to(torch.float64) * (2 * math.pi / self.num_angles)
        u = torch.rand(data.num_nodes, generator=generator, dtype=torch.float64)
        return (2 * u - 1) * self.max_angle

    def identity(self, data: Optional[Data] = None) -> Tensor:
        return torch.zeros(data.num_nodes, dtype=torch.float64)

    def act(self, g: Tensor, data: Data, fields: Optional[Mapping[str, Any]] = None) -> Data:
        theta = torch.as_tensor(g, dtype=torch.float64)
        if theta.numel() != data.num_nodes:
            raise ValueError(f"Expected one gauge angle per node ({data.num_nodes}), "
                             f"got {theta.numel()}")
        out = data.clone()
        src, dst = data.edge_index if "edge_index" in data else (None, None)
        if self.frame_key in data:
            f = data[self.frame_key]
            th = theta.to(f.dtype).to(f.device).view(-1, 1)
            c, s = torch.cos(th), torch.sin(th)
            out[self.frame_key] = torch.stack([c * f[:, 0] + s * f[:, 1],
                                               -s * f[:, 0] + c * f[:, 1]], dim=1)
        if self.logmap_key in data:
            lm = data[self.logmap_key].clone()
            lm[:, 1] = lm[:, 1] - theta.to(lm.dtype).to(lm.device)[dst]
            out[self.logmap_key] = lm
        if self.connection_key in data:
            con = data[self.connection_key]
            th = theta.to(con.dtype).to(con.device)
            out[self.connection_key] = con + th[src] - th[dst]
        for key, rep in self._fields(fields).items():
            if key not in data or rep in TRIVIAL:
                continue
            value = data[key]
            M = gauge_matrix(-theta.to(value.dtype).to(value.device), _parse_freqs(rep))
            out[key] = apply_matrix(value, M)
        return out
