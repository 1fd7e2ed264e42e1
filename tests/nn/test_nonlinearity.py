import math

import pytest
import torch
import trimesh
from torch_geometric.data import Data

from gdl_pyg.domains import mesh_to_data
from gdl_pyg.groups import GaugeGroup, gauge_matrix
from gdl_pyg.nn import RegularNonlinearity
from gdl_pyg.nn.nonlinearity import fourier_matrices
from gdl_pyg.testing import assert_equivariant, equivariance_error

DT = torch.float64


def node_data(num_nodes=30, channels=4, order=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return Data(x=torch.randn(num_nodes, channels, 2 * order + 1, generator=gen, dtype=DT),
                num_nodes=num_nodes)


def run(module, data):
    return module(data.x)


def test_repr_shapes_and_defaults():
    nl = RegularNonlinearity(2)
    assert nl.num_samples == 17
    assert str(nl) == "RegularNonlinearity(order=2, num_samples=17, nonlinearity=ReLU())"
    assert str(RegularNonlinearity(1, exact=True)) == "RegularNonlinearity(order=1, exact=True)"
    assert RegularNonlinearity.group_name == "SO(2)^N"
    x = torch.randn(5, 3, 5)
    assert nl(x).shape == (5, 3, 5) and nl(x).dtype == torch.float32
    # order 0 is the plain pointwise nonlinearity
    s = torch.randn(7, 3, 1, dtype=DT)
    assert torch.equal(RegularNonlinearity(0)(s), s.relu())
    assert torch.equal(RegularNonlinearity(0, exact=True)(s), s.relu())


def test_fourier_roundtrip_and_constant_functions():
    synth, analysis = fourier_matrices(3, 11)
    assert (analysis @ synth - torch.eye(7, dtype=DT)).abs().max() < 1e-13
    # a positive function passes through ReLU unchanged
    x = torch.zeros(4, 2, 7, dtype=DT)
    x[..., 0] = 10.0
    x[..., 1:] = 0.5 * torch.randn(4, 2, 6, dtype=DT)
    for nl in (RegularNonlinearity(3), RegularNonlinearity(3, exact=True)):
        assert (nl(x) - x).abs().max() < 1e-12
        assert nl(-x).abs().max() < 1e-12


def test_bad_input():
    with pytest.raises(ValueError, match="odd and at least 2\\*order\\+1=5"):
        RegularNonlinearity(2, num_samples=3)
    with pytest.raises(ValueError, match="odd"):
        RegularNonlinearity(2, num_samples=10)
    with pytest.raises(ValueError, match="'order' to be an integer"):
        RegularNonlinearity(-1)
    with pytest.raises(TypeError, match="callable"):
        RegularNonlinearity(1, nonlinearity=3)
    with pytest.raises(ValueError, match="exact=True"):
        RegularNonlinearity(1, nonlinearity=torch.tanh, exact=True)
    with pytest.raises(ValueError, match=r"\[\.\.\., 5\].*order=2.*\[3, 4, 3\]"):
        RegularNonlinearity(2)(torch.randn(3, 4, 3))


@pytest.mark.parametrize("S", [5, 7, 15])
@pytest.mark.parametrize("act", [None, torch.tanh, torch.nn.functional.gelu])
def test_exact_for_discrete_gauge(S, act):
    data = node_data()
    nl = RegularNonlinearity(2, num_samples=S, nonlinearity=act)
    res = assert_equivariant(nl, data, GaugeGroup(num_angles=S), fields={"x": (0, 1, 2)},
                             out_fields={"out": (0, 1, 2)}, forward=run, num_samples=6)
    assert res.error < 1e-9


def test_checker_fails_on_broken_variant():
    class Broken(RegularNonlinearity):
        def forward(self, x):  # forgets the second half of the samples
            samples = x @ self.synthesis.to(x.dtype).t()
            samples[..., self.num_samples // 2:] = 0
            return self.nonlinearity(samples) @ self.analysis.to(x.dtype).t()

    data = node_data()
    kw = dict(fields={"x": (0, 1, 2)}, out_fields={"out": (0, 1, 2)}, forward=run)
    assert_equivariant(RegularNonlinearity(2, num_samples=7), data, GaugeGroup(num_angles=7),
                       **kw)
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(Broken(2, num_samples=7), data, GaugeGroup(num_angles=7), **kw)


def test_continuous_gauge_error_decreases_with_samples():
    r"""Equivariance error (relative, max over 4 random continuous gauges) of
    the sampled ReLU, order 2; recorded values on this machine:
    7: 0.136, 15: 0.027, 31: 0.0072, 63: 0.0014."""
    data = node_data(num_nodes=100, channels=8)
    kw = dict(fields={"x": (0, 1, 2)}, out_fields={"out": (0, 1, 2)}, forward=run)
    errors = [equivariance_error(RegularNonlinearity(2, num_samples=S), data, GaugeGroup(),
                                 **kw).error for S in (7, 15, 31, 63)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[0] > 1e-2 and errors[-1] < 1e-2


def test_exact_relu_matches_dense_quadrature_and_is_equivariant():
    gen = torch.Generator().manual_seed(1)
    for order in (1, 2, 3):
        x = torch.randn(50, 3, 2 * order + 1, generator=gen, dtype=DT)
        exact = RegularNonlinearity(order, exact=True)(x)
        dense = RegularNonlinearity(order, num_samples=20001)(x)  # rectangle rule, O(1/S^2)
        assert (exact - dense).abs().max() < 1e-6
        data = Data(x=x, num_nodes=50)
        res = assert_equivariant(RegularNonlinearity(order, exact=True), data, GaugeGroup(),
                                 fields={"x": tuple(range(order + 1))},
                                 out_fields={"out": tuple(range(order + 1))}, forward=run)
        assert res.error < 1e-10


def test_exact_relu_edge_cases_and_gradient():
    # zero leading coefficient (a lower-degree polynomial) and the zero function
    x = torch.randn(6, 2, 5, dtype=DT)
    x[:3, :, 3:] = 0
    x[5] = 0
    exact = RegularNonlinearity(2, exact=True)(x)
    dense = RegularNonlinearity(2, num_samples=20001)(x)
    assert (exact - dense).abs().max() < 1e-6
    assert exact[5].abs().max() == 0
    # autograd through the arc integrals (roots detached) is the true gradient
    v = torch.randn(4, 2, 5, dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(RegularNonlinearity(2, exact=True), (v,))


def test_gradient_sampled():
    v = torch.randn(4, 2, 5, dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(RegularNonlinearity(2, nonlinearity=torch.tanh), (v,))


# ---------------------------------------------------------------------------
# GaugeGroup(num_angles=...)
def test_gauge_group_num_angles():
    m = trimesh.creation.icosphere(1)
    data = mesh_to_data(torch.tensor(m.vertices), torch.tensor(m.faces.T.copy()))
    g = GaugeGroup(num_angles=5)
    assert repr(g) == "GaugeGroup(num_angles=5)"
    assert repr(GaugeGroup()) == "GaugeGroup(max_angle=3.14)"
    assert GaugeGroup().num_angles is None
    gen = torch.Generator().manual_seed(0)
    theta = torch.cat([g.sample(data, generator=gen) for _ in range(20)])
    k = theta / (2 * math.pi / 5)
    assert (k - k.round()).abs().max() < 1e-12
    assert set(k.round().long().tolist()) == {0, 1, 2, 3, 4}
    # acts like any gauge: rotating by 2 pi (k = 5 steps) is the identity on features
    x = torch.randn(data.num_nodes, 2, 5, dtype=DT)
    R = gauge_matrix(-theta[:data.num_nodes] * 5, (0, 1, 2))
    assert (torch.einsum("nij,ncj->nci", R, x) - x).abs().max() < 1e-12
    with pytest.raises(ValueError, match="num_angles"):
        GaugeGroup(num_angles=0)
