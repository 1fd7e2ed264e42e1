r"""Pooling and unpooling of gauge equivariant features between mesh levels,
with parallel transport into the coarse frames (GEM-CNN)."""
from typing import Optional

import torch
from torch import Tensor
from torch_geometric.utils import scatter

from gdl_pyg.nn._checks import check_index

__all__ = ["ParallelTransportPool", "ParallelTransportUnpool"]


def _rotate(x: Tensor, angle: Tensor) -> Tensor:
    r"""Multiplies the last dimension of ``x [N, ..., 2M+1]`` (order 0, then a
    ``(cos, sin)`` pair per order ``1..M``) by :math:`\rho(\alpha_v)`: the pair
    of order :math:`m` is rotated by :math:`m \alpha_v`."""
    M = (x.size(-1) - 1) // 2
    if M == 0:
        return x
    shape = x.shape
    m = torch.arange(1, M + 1, dtype=x.dtype, device=x.device)
    a = angle.to(x.dtype).view(-1, *([1] * (x.dim() - 2)), 1) * m  # [N, 1.., M]
    cos, sin = torch.cos(a), torch.sin(a)
    v = x[..., 1:].reshape(*shape[:-1], M, 2)
    u, w = v[..., 0], v[..., 1]
    rot = torch.stack([cos * u - sin * w, sin * u + cos * w], dim=-1)
    return torch.cat([x[..., :1], rot.reshape(*shape[:-1], 2 * M)], dim=-1)


def _check(name: str, x: Tensor, cluster: Tensor, transport: Tensor, n: int,
           what: str) -> None:
    if not isinstance(x, Tensor) or x.dim() < 2 or x.size(-1) % 2 != 1:
        shape = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"'{name}' expected {what} features of shape [num_nodes, C, 2M+1] "
                         f"(order 0, then a (cos, sin) pair per order; an odd last "
                         f"dimension) (got {shape})")
    for key, val in (("cluster", cluster), ("transport", transport)):
        if not isinstance(val, Tensor) or val.dim() != 1 or val.numel() != n:
            shape = list(val.shape) if isinstance(val, Tensor) else type(val).__name__
            raise ValueError(f"'{name}' expected '{key}' of shape [{n}] (one entry per fine "
                             f"vertex, e.g. data.pool_{key}_1 written by 'MeshHierarchy') "
                             f"(got {shape})")
    if cluster.is_floating_point():
        raise TypeError(f"'{name}' expected an integer 'cluster' (got {cluster.dtype})")


class ParallelTransportPool(torch.nn.Module):
    r"""The parallel transport pooling from the `"Gauge Equivariant Mesh
    CNNs: Anisotropic convolutions on geometric graphs"
    <https://arxiv.org/abs/2003.05425>`_ paper: the features of the vertices
    of a cluster are parallel transported into the frame of the coarse
    vertex :math:`p` and averaged,

    .. math::
        \mathbf{x}'_p = \frac{1}{|\mathcal{C}_p|} \sum_{v \in \mathcal{C}_p}
        \rho(t_v)\, \mathbf{x}_v,

    with :math:`t_v` the transport angle from :math:`v` to its parent along
    the shortest path (``pool_transport_l`` of
    :class:`~gdl_pyg.transforms.MeshHierarchy`) and :math:`\rho =
    \bigoplus_{m=0}^{M} \rho_m`. As :math:`t_v` becomes :math:`t_v +
    \theta_v - \theta_p` under a gauge change, the pooled features transform
    with :math:`\rho(-\theta_p)`: the layer is gauge equivariant.

    Shapes:
        - **input:** features :math:`(|\mathcal{V}|, C, 2M+1)` (or any
          ``[|V|, ..., 2M+1]``), cluster :math:`(|\mathcal{V}|)`, transport
          :math:`(|\mathcal{V}|)`
        - **output:** :math:`(|\mathcal{V}'|, C, 2M+1)`
    """
    #: The symmetry group of the layer.
    group_name = "SO(2)^N"

    def forward(self, x: Tensor, cluster: Tensor, transport: Tensor,
                num_coarse: Optional[int] = None) -> Tensor:
        r"""
        Args:
            x (torch.Tensor): fine features.
            cluster (torch.Tensor): the coarse vertex of every fine vertex.
            transport (torch.Tensor): transport angles to the parents.
            num_coarse (int, optional): the number of coarse vertices
                (default: ``cluster.max() + 1``).
        """
        _check(type(self).__name__, x, cluster, transport, x.size(0) if isinstance(x, Tensor)
               else -1, "fine")
        check_index(cluster, None, type(self).__name__, "cluster", num_coarse)
        if num_coarse is None:
            num_coarse = int(cluster.max()) + 1 if cluster.numel() else 0
        return scatter(_rotate(x, transport), cluster, dim=0, dim_size=num_coarse,
                       reduce="mean")

    def reset_parameters(self):
        r"""No parameters (kept for a uniform interface)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ParallelTransportUnpool(torch.nn.Module):
    r"""The unpooling that undoes :class:`ParallelTransportPool`: every fine
    vertex receives the feature of its coarse parent, parallel transported
    back into its own frame,

    .. math::
        \mathbf{x}'_v = \rho(-t_v)\, \mathbf{x}_{p(v)},

    which is gauge equivariant for the same reason (:math:`\rho(-t_v')
    \rho(-\theta_p) = \rho(-\theta_v) \rho(-t_v)`).

    Shapes:
        - **input:** coarse features :math:`(|\mathcal{V}'|, C, 2M+1)`,
          cluster :math:`(|\mathcal{V}|)`, transport :math:`(|\mathcal{V}|)`
        - **output:** :math:`(|\mathcal{V}|, C, 2M+1)`
    """
    #: The symmetry group of the layer.
    group_name = "SO(2)^N"

    def forward(self, x: Tensor, cluster: Tensor, transport: Tensor) -> Tensor:
        r"""
        Args:
            x (torch.Tensor): coarse features.
            cluster (torch.Tensor): the coarse vertex of every fine vertex.
            transport (torch.Tensor): transport angles to the parents.
        """
        _check(type(self).__name__, x, cluster, transport,
               cluster.numel() if isinstance(cluster, Tensor) else -1, "coarse")
        check_index(cluster, None, type(self).__name__, "cluster", x.size(0))
        return _rotate(x.index_select(0, cluster), -transport)

    def reset_parameters(self):
        r"""No parameters (kept for a uniform interface)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
