import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.utils import scatter

from gdl_pyg.domains import grid_to_data
from gdl_pyg.groups import E3, O3, SO3, CyclicGroup, Permutations
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


# ---------------------------------------------------------------------------
# `fields`: how the group acts on the inputs. Each module below is equivariant
# only when its input field is transformed by the right representation, so a
# checker that ignored `fields` (or applied the wrong representation) fails.
# ---------------------------------------------------------------------------

class VectorAlongPosition(torch.nn.Module):
    """Invariant: <v_i, pos_i - centroid> and |v_i|, for a vector field v (1o)."""

    def forward(self, v, pos):
        rel = pos - pos.mean(0, keepdim=True)
        return torch.stack([(v * rel).sum(-1), v.norm(dim=-1)], -1)


def test_fields_rotate_input_vectors():
    gen = torch.Generator().manual_seed(0)
    data = Data(v=torch.randn(7, 3, generator=gen), pos=torch.randn(7, 3, generator=gen))
    for rep in ("1x1o", "vector"):
        res = assert_equivariant(VectorAlongPosition(), data, E3(), fields={"v": rep})
        assert res.error < 1e-12
    # without the declaration (v left unrotated) or with a wrong one, it is not
    for fields in (None, {"v": "trivial"}, {"v": "3x0e"}):
        with pytest.raises(AssertionError, match="not equivariant"):
            assert_equivariant(VectorAlongPosition(), data, E3(), fields=fields)
    # with improper rotations, a pseudovector field is a different representation
    with pytest.raises(AssertionError):
        assert_equivariant(VectorAlongPosition(), data, O3(), fields={"v": "1x1e"})
    assert_equivariant(VectorAlongPosition(), data, O3(), fields={"v": "1x1o"})


class RegularToInvariant(torch.nn.Module):
    """C_N invariant: sum_g x_i[g] <R_g e_1, pos_i - centroid>, x regular."""

    def __init__(self, N):
        super().__init__()
        G = CyclicGroup(N)
        self.register_buffer("dirs", torch.stack([G.matrix(g)[:, 0] for g in G.elements()]))

    def forward(self, x, pos):
        rel = pos - pos.mean(0, keepdim=True)
        return ((x * (rel @ self.dirs.T)).sum(-1, keepdim=True))


def test_fields_permute_regular_features():
    gen = torch.Generator().manual_seed(1)
    G = CyclicGroup(5)
    data = Data(x=torch.randn(6, 5, generator=gen), pos=torch.randn(6, 2, generator=gen))
    res = assert_equivariant(RegularToInvariant(5), data, G, fields={"x": "regular"})
    assert res.num_elements == 5 and res.error < 1e-12
    for fields in (None, {"x": "trivial"}):
        with pytest.raises(AssertionError, match="C5"):
            assert_equivariant(RegularToInvariant(5), data, G, fields=fields)


class GaugeFeaturesToTangent(torch.nn.Module):
    """Gauge invariant: features of orders (0, 1, 2) expressed in 3-D through
    the frame (a scalar, a tangent vector, a symmetric traceless tensor)."""

    def forward(self, x, frame):
        e1, e2 = frame[:, 0], frame[:, 1]
        vec = x[:, 1:2] * e1 + x[:, 2:3] * e2
        outer = lambda a, b: a.unsqueeze(-1) * b.unsqueeze(-2)  # noqa: E731
        ten = (x[:, 3, None, None] * (outer(e1, e1) - outer(e2, e2))
               + x[:, 4, None, None] * (outer(e1, e2) + outer(e2, e1)))
        return torch.cat([x[:, :1], vec, ten.flatten(1)], -1)


def test_fields_rotate_gauge_features():
    from gdl_pyg.groups import GaugeGroup
    gen = torch.Generator().manual_seed(2)
    n = 8
    e1 = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=-1)
    e2 = torch.nn.functional.normalize(torch.cross(e1, torch.randn(n, 3, generator=gen),
                                                   dim=-1), dim=-1)
    data = Data(x=torch.randn(n, 5, generator=gen), frame=torch.stack([e1, e2], 1))
    res = assert_equivariant(GaugeFeaturesToTangent(), data, GaugeGroup(),
                             fields={"x": "gauge:0,1,2"})
    assert res.error < 1e-12
    assert_equivariant(GaugeFeaturesToTangent(), data, GaugeGroup(), fields={"x": (0, 1, 2)})
    for fields in (None, {"x": "gauge:0,1,1"}, {"x": "gauge:0,2,1"}):
        with pytest.raises(AssertionError, match="SO\\(2\\)"):
            assert_equivariant(GaugeFeaturesToTangent(), data, GaugeGroup(), fields=fields)
