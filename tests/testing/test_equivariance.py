import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.utils import scatter

from gdl_pyg.domains import grid_to_data
from gdl_pyg.groups import E3, SO3, CyclicGroup, Permutations
from gdl_pyg.testing import DEFAULT_TOLERANCE, assert_equivariant, equivariance_error


class SumNeighbours(torch.nn.Module):
    """Equivariant to permutations: x_i + sum_j x_j."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 4)

    def forward(self, x, edge_index):
        return self.lin(x + scatter(x[edge_index[0]], edge_index[1], 0, dim_size=x.size(0)))


class IndexLeak(SumNeighbours):
    """Broken: adds the node index, which a permutation changes."""

    def forward(self, x, edge_index):
        idx = torch.arange(x.size(0), dtype=x.dtype).view(-1, 1)
        return super().forward(x, edge_index) + 1e-6 * idx


class RadialVectors(torch.nn.Module):
    """E(3)-equivariant: maps points to (centred) vectors scaled by an invariant."""

    def forward(self, pos):
        rel = pos - pos.mean(0, keepdim=True)
        return rel * rel.norm(dim=-1, keepdim=True)


def _batch():
    gen = torch.Generator().manual_seed(0)
    graphs = [Data(x=torch.randn(n, 3, generator=gen), edge_index=torch.randint(0, n, (2, 2 * n),
                   generator=gen)) for n in (4, 6, 5)]
    return Batch.from_data_list(graphs)


def test_passes_on_equivariant_module_and_reports():
    res = assert_equivariant(SumNeighbours(), _batch(), Permutations())
    assert res.dtype == torch.float64
    assert res.error < 1e-12
    assert res.num_elements == 4


def test_fails_on_broken_module_with_informative_message():
    with pytest.raises(AssertionError) as info:
        assert_equivariant(IndexLeak(), _batch(), Permutations())
    msg = str(info.value)
    assert "IndexLeak" in msg and "S_n" in msg and "largest error" in msg
    assert "group element" in msg and "'out'" in msg
    # the error is tiny (1e-6 scale) but far above the float64 tolerance
    err = equivariance_error(IndexLeak(), _batch(), Permutations())
    assert DEFAULT_TOLERANCE[torch.float64] < err.error < 1e-4


def test_float32_uses_looser_tolerance():
    res = assert_equivariant(SumNeighbours(), _batch(), Permutations(), dtype=torch.float32)
    assert res.dtype == torch.float32
    # the same broken module passes a float32 check at 1e-4: tolerance is per dtype
    assert_equivariant(IndexLeak(), _batch(), Permutations(), dtype=torch.float32)


def test_vectors_and_points_under_e3():
    data = Data(pos=torch.randn(8, 3))
    assert_equivariant(RadialVectors(), data, E3(), out_fields={"out": "vector"})
    with pytest.raises(AssertionError, match="E\\(3\\)"):
        # declared as invariant, but it rotates
        assert_equivariant(RadialVectors(), data, E3())
    with pytest.raises(AssertionError):
        # uncentred: not translation equivariant
        assert_equivariant(lambda pos: pos * pos.norm(dim=-1, keepdim=True), data, E3(),
                           out_fields={"out": "vector"})


def test_tuple_outputs_and_data_outputs():
    data = Data(pos=torch.randn(6, 3), x=torch.randn(6, 2))

    def f(x, pos):  # (invariant features, moved points)
        c = pos.mean(0, keepdim=True)
        return x * (pos - c).norm(dim=-1, keepdim=True), pos + 0.1 * (pos - c)

    assert_equivariant(f, data, E3())  # default output keys ("out", "pos"): pos is a point
    assert_equivariant(f, data, SO3(), output_keys=["h", "pos"])

    def as_data(module, d):
        return Data(x=d.x.sum(-1, keepdim=True), pos=d.pos)

    assert_equivariant(torch.nn.Identity(), data, SO3(), forward=as_data, output_keys=["x"])


def test_exhaustive_for_finite_groups():
    img = torch.randn(2, 4, 4)
    conv = torch.nn.Conv2d(2, 2, 3, padding=1)

    def iso_conv(module, d):
        # a rotation-symmetric kernel makes Conv2d C4 equivariant
        w = module.weight
        w = (w + w.rot90(1, (2, 3)) + w.rot90(2, (2, 3)) + w.rot90(3, (2, 3))) / 4
        from gdl_pyg.domains import data_to_grid
        out = torch.nn.functional.conv2d(data_to_grid(d).unsqueeze(0), w, module.bias, padding=1)
        return out[0].flatten(1).T

    res = assert_equivariant(conv, grid_to_data(img), CyclicGroup(4), forward=iso_conv)
    assert res.num_elements == 4
    with pytest.raises(AssertionError, match="C4"):
        def plain(module, d):
            from gdl_pyg.domains import data_to_grid
            return module(data_to_grid(d).unsqueeze(0))[0].flatten(1).T
        assert_equivariant(conv, grid_to_data(img), CyclicGroup(4), forward=plain)


def test_bad_arguments():
    data = _batch()
    with pytest.raises(TypeError, match="Group"):
        assert_equivariant(SumNeighbours(), data, "S_n")
    with pytest.raises(TypeError, match="Data"):
        assert_equivariant(SumNeighbours(), {"x": 1}, Permutations())
    with pytest.raises(TypeError, match="no attribute"):
        assert_equivariant(lambda x, missing: x, data, Permutations())
    with pytest.raises(ValueError, match="rows"):
        assert_equivariant(lambda x: x[:2], data, Permutations())
    with pytest.raises(ValueError, match="output_keys|outputs"):
        assert_equivariant(lambda x: (x, x, x), data, Permutations())
