r"""Gauge equivariant nonlinearities for fields of SO(2) representations.

A feature ``x [..., 2M+1]`` (order 0, then a ``(cos, sin)`` pair per order
``1..M``, the layout of :class:`gdl_pyg.nn.GEMConv`) is the band-limited
function on the circle

.. math::
    f(\alpha) = x_0 + \sum_{m=1}^{M} x_{2m-1} \cos(m\alpha) + x_{2m} \sin(m\alpha).

A gauge change by :math:`\theta` (``x -> rho(-theta) x``) turns :math:`f`
into :math:`f(\cdot + \theta)`, so any pointwise function of :math:`f`,
band-limited back to orders ``0..M``, is gauge equivariant.
"""
import math
from typing import Callable, Optional

import torch
from torch import Tensor

__all__ = ["RegularNonlinearity", "fourier_matrices"]


def fourier_matrices(order: int, num_samples: int, dtype: torch.dtype = torch.float64):
    r"""The synthesis ``[S, 2M+1]`` and analysis ``[2M+1, S]`` matrices of the
    band-limited functions of order :math:`M` at the :math:`S` angles
    :math:`\alpha_s = 2\pi s / S`. For odd :math:`S \geq 2M+1` the analysis
    is the exact inverse (discrete Fourier transform) of the synthesis on
    band-limited functions and the least-squares projection otherwise."""
    alpha = torch.arange(num_samples, dtype=torch.float64) * (2 * math.pi / num_samples)
    cols = [torch.ones_like(alpha)]
    for m in range(1, order + 1):
        cols += [torch.cos(m * alpha), torch.sin(m * alpha)]
    synth = torch.stack(cols, dim=-1)  # [S, D]
    scale = torch.full((2 * order + 1,), 2.0 / num_samples, dtype=torch.float64)
    scale[0] = 1.0 / num_samples
    analysis = synth.t() * scale.view(-1, 1)  # [D, S]
    return synth.to(dtype), analysis.to(dtype)


def _relu_projection(x: Tensor, order: int, rtol: float = 1e-6) -> Tensor:
    r"""The exact band-limited projection of :math:`\mathrm{relu}(f)`.

    With :math:`z = e^{i\alpha}`, :math:`z^M f` is a polynomial of degree
    :math:`2M` whose roots on the unit circle (eigenvalues of its companion
    matrix) are the zeros of :math:`f`. Between consecutive zeros :math:`f`
    has a sign, and the Fourier coefficients of :math:`f` restricted to the
    positive arcs are integrals of exponentials, computed in closed form.
    The roots are detached: :math:`f` vanishes at the arc ends, so the
    derivative of the integrals with respect to them is zero.
    """
    M = order
    shape = x.shape
    x = x.reshape(-1, 2 * M + 1)
    B = x.size(0)
    cdtype = torch.complex128 if x.dtype == torch.float64 else torch.complex64
    # complex coefficients c_m, m = -M..M: f = sum_m c_m e^{i m alpha}
    a, b = x[:, 1::2], x[:, 2::2]  # [B, M]
    c_pos = torch.complex(a, -b) / 2
    c = torch.cat([torch.conj(c_pos).flip(-1), x[:, :1].to(cdtype), c_pos], dim=-1)  # [B, 2M+1]
    with torch.no_grad():
        cd = c.detach()
        norm = cd.abs().amax(-1, keepdim=True)
        # f = 0: any polynomial without roots on the circle (f_mid below uses cd)
        dummy = torch.zeros_like(cd)
        dummy[:, -1] = 1
        cn = torch.where(norm > 0, cd / norm.clamp_min(torch.finfo(x.dtype).tiny), dummy)
        # a (nearly) vanishing leading coefficient sends roots to infinity; nudge
        # it: the roots on the circle move by O(delta), the arc integrals by
        # O(delta^2) (f vanishes at the arc ends)
        delta = math.sqrt(torch.finfo(x.dtype).eps)
        lead = cn[:, -1:]
        lead = torch.where(lead.abs() < delta, torch.full_like(lead, delta), lead)
        # companion matrix of z^{2M} + sum_k (c_k / c_lead) z^k, k = 0..2M-1
        comp = torch.zeros(B, 2 * M, 2 * M, dtype=cdtype, device=x.device)
        comp[:, 1:, :-1] = torch.eye(2 * M - 1, dtype=cdtype, device=x.device)
        comp[:, :, -1] = -cn[:, :-1] / lead
        roots = torch.linalg.eigvals(comp)  # [B, 2M]
        on_circle = (roots.abs() - 1).abs() < rtol
        ang = torch.remainder(torch.angle(roots).real, 2 * math.pi)
        ang = torch.where(on_circle, ang, torch.zeros_like(ang))
        zero = ang.new_zeros(B, 1)
        brk = torch.cat([zero, torch.sort(ang, dim=-1).values, zero + 2 * math.pi], dim=-1)
        lo, hi = brk[:, :-1], brk[:, 1:]  # [B, 2M+1] arcs
        mid = (lo + hi) / 2
        m = torch.arange(-M, M + 1, dtype=x.dtype, device=x.device)
        f_mid = (cd.unsqueeze(1) * torch.exp(1j * mid.unsqueeze(-1) * m)).sum(-1).real
        positive = (f_mid > 0) & (hi > lo)
    # gamma_k = 1/(2 pi) sum_m c_m int_{positive arcs} e^{i (m - k) alpha}, k = 0..M
    # q = m - k over m in -M..M, k in 0..M
    k = torch.arange(0, M + 1, dtype=x.dtype, device=x.device)
    q = m.view(-1, 1) - k.view(1, -1)  # [2M+1 (m), M+1 (k)]
    lo_, hi_ = lo.unsqueeze(-1).unsqueeze(-1), hi.unsqueeze(-1).unsqueeze(-1)  # [B, A, 1, 1]
    qn = torch.where(q == 0, torch.ones_like(q), q)
    integral = torch.where(q == 0, (hi_ - lo_).to(cdtype),
                           (torch.exp(1j * qn * hi_) - torch.exp(1j * qn * lo_)) / (1j * qn))
    integral = (integral * positive.view(B, -1, 1, 1)).sum(1)  # [B, m, k]
    gamma = torch.einsum("bm,bmk->bk", c, integral) / (2 * math.pi)  # [B, M+1]
    out = [gamma[:, :1].real]
    for kk in range(1, M + 1):
        out += [2 * gamma[:, kk:kk + 1].real, -2 * gamma[:, kk:kk + 1].imag]
    return torch.cat(out, dim=-1).reshape(shape)


class RegularNonlinearity(torch.nn.Module):
    r"""The regular nonlinearity from the `"Gauge Equivariant Mesh CNNs:
    Anisotropic convolutions on geometric graphs"
    <https://arxiv.org/abs/2003.05425>`_ paper: each channel's coefficients
    ``[2M+1]`` are read as a band-limited function :math:`f` on the circle
    (see :mod:`gdl_pyg.nn.nonlinearity`), sampled at :math:`S` equispaced
    angles, passed through a pointwise nonlinearity :math:`\sigma`, and
    projected back onto orders ``0..M`` by the discrete Fourier transform:

    .. math::
        \mathbf{x}' = A^{+}\, \sigma(A\, \mathbf{x}), \qquad
        A_{s,\cdot} = (1, \cos\alpha_s, \sin\alpha_s, \dots,
        \cos M\alpha_s, \sin M\alpha_s), \quad \alpha_s = 2\pi s / S.

    A gauge rotation by a multiple of :math:`2\pi/S` permutes the samples,
    so the layer is exactly equivariant to the discrete gauge group
    :math:`C_S` per vertex and approximately to SO(2) (the error falls as
    :math:`S` grows). With :obj:`exact=True` (ReLU only) the projection of
    :math:`\mathrm{relu}(f)` is computed in closed form from the zeros of
    :math:`f`, which is equivariant to continuous rotations up to round-off.

    Args:
        order (int): the largest order :math:`M` of the features.
        num_samples (int, optional): the number :math:`S` of angles, odd and
            at least :math:`2M+1`. (default: :obj:`8 * order + 1`)
        nonlinearity (callable, optional): the pointwise :math:`\sigma`.
            (default: :class:`torch.nn.ReLU`)
        exact (bool, optional): the analytic ReLU projection (no sampling;
            needs :obj:`nonlinearity=None`). (default: :obj:`False`)

    Shapes:
        - **input:** :math:`(*, 2M+1)`, e.g. :math:`(|\mathcal{V}|, C, 2M+1)`
        - **output:** the same shape
    """
    #: The symmetry group of the layer.
    group_name = "SO(2)^N"

    def __init__(self, order: int, num_samples: Optional[int] = None,
                 nonlinearity: Optional[Callable[[Tensor], Tensor]] = None,
                 exact: bool = False):
        super().__init__()
        name = type(self).__name__
        if not isinstance(order, int) or isinstance(order, bool) or order < 0:
            raise ValueError(f"'{name}' expected 'order' to be an integer >= 0 (got {order!r})")
        if num_samples is None:
            num_samples = 8 * order + 1
        if (not isinstance(num_samples, int) or isinstance(num_samples, bool)
                or num_samples < 2 * order + 1 or num_samples % 2 == 0):
            raise ValueError(f"'{name}' expected 'num_samples' to be odd and at least "
                             f"2*order+1={2 * order + 1} for order={order} (got {num_samples!r})")
        if nonlinearity is not None and not callable(nonlinearity):
            raise TypeError(f"'{name}' expected 'nonlinearity' to be callable "
                            f"(got {type(nonlinearity).__name__})")
        if exact and nonlinearity is not None:
            raise ValueError(f"'{name}' with exact=True computes ReLU analytically; "
                             f"leave 'nonlinearity' as None (got {nonlinearity!r})")
        self.order, self.num_samples, self.exact = order, num_samples, exact
        self.nonlinearity = torch.nn.ReLU() if nonlinearity is None else nonlinearity
        # kept in float64 (cast in forward): rounding them to float32 would
        # break the exact C_S equivariance of float64 inputs
        synth, analysis = fourier_matrices(order, num_samples, torch.float64)
        self.register_buffer("synthesis", synth, persistent=False)  # [S, D]
        self.register_buffer("analysis", analysis, persistent=False)  # [D, S]

    def forward(self, x: Tensor) -> Tensor:
        d = 2 * self.order + 1
        if not isinstance(x, Tensor) or x.dim() < 1 or x.size(-1) != d:
            shape = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"'{type(self).__name__}' expected features of shape [..., {d}] "
                             f"(order={self.order} implies 2*{self.order}+1={d} components) "
                             f"(got {shape})")
        if self.order == 0:
            return self.nonlinearity(x)
        if self.exact:
            return _relu_projection(x, self.order)
        samples = x @ self.synthesis.to(x.dtype).t()  # [..., S]
        return self.nonlinearity(samples) @ self.analysis.to(x.dtype).t()

    def __repr__(self) -> str:
        if self.exact:
            return f"{type(self).__name__}(order={self.order}, exact=True)"
        return (f"{type(self).__name__}(order={self.order}, num_samples={self.num_samples}, "
                f"nonlinearity={self.nonlinearity})")
