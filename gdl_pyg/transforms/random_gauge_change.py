r"""The :class:`RandomGaugeChange` transform: random tangent-frame rotations
(gauge augmentation / testing)."""
import math
from typing import Any, Dict, Mapping, Optional

from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from gdl_pyg.groups.gauge import GaugeGroup

__all__ = ["RandomGaugeChange"]


class RandomGaugeChange(BaseTransform):
    r"""Rotates the tangent frame of every vertex by an independent random
    angle :math:`\theta_v \sim U[-\text{max\_angle}, \text{max\_angle}]`,
    through :class:`gdl_pyg.groups.GaugeGroup`:

    .. math::
        \phi_{ij}' = \phi_{ij} - \theta_i, \qquad
        c_{ji}' = c_{ji} + \theta_j - \theta_i, \qquad
        \mathbf{f}_v' = \rho(-\theta_v)\,\mathbf{f}_v

    (``frame``, ``edge_logmap``, ``edge_connection`` and the gauge feature
    fields named in :obj:`fields`). A gauge equivariant network's invariant
    outputs do not change.

    Args:
        max_angle (float, optional): the largest angle. (default: :math:`\pi`)
        fields (dict, optional): ``{attribute: gauge representation}``, e.g.
            ``{"x": "gauge:0,1"}``. (default: :obj:`None`)
    """
    def __init__(self, max_angle: float = math.pi,
                 fields: Optional[Mapping[str, Any]] = None):
        self.max_angle = max_angle
        self.fields: Dict[str, Any] = dict(fields or {})

    def forward(self, data: Data) -> Data:
        if "frame" not in data and "edge_logmap" not in data:
            raise ValueError(f"'{type(self).__name__}' expected a 'Data' with 'frame' or "
                             f"'edge_logmap' (made by 'mesh_to_data' / 'points_to_data')")
        group = GaugeGroup(self.max_angle)
        return group.act(group.sample(data), data, self.fields)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_angle={self.max_angle:.3g})"
