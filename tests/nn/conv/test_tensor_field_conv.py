import contextlib
import importlib.util

import pytest
import torch
from e3nn import o3
from e3nn.math import soft_one_hot_linspace
from e3nn.nn.models.v2106.points_convolution import Convolution
from torch_geometric.data import Batch, Data

from gdl_pyg.groups import E3, O3, Permutations
from gdl_pyg.nn.conv.tensor_field_conv import TensorFieldConv
from gdl_pyg.testing import assert_equivariant, equivariance_error, with_package

WITH_CUE = importlib.util.find_spec("cuequivariance_torch") is not None

IRREPS = "4x0e + 2x1o + 1x2e + 1x1e"


@contextlib.contextmanager
def default_dtype(dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def random_graph(irreps=IRREPS, num_nodes=14, radius=1.6, seed=0, dtype=torch.float64,
                 edge_dim=0):
    gen = torch.Generator().manual_seed(seed)
    pos = torch.randn(num_nodes, 3, generator=gen, dtype=dtype)
    dist = torch.cdist(pos, pos)
    edge_index = ((dist < radius) & (dist > 0)).nonzero().t().flip(0).contiguous()
    x = torch.randn(num_nodes, o3.Irreps(irreps).dim, generator=gen, dtype=dtype)
    data = Data(x=x, pos=pos, edge_index=edge_index)
    if edge_dim:
        data.edge_attr = torch.randn(edge_index.size(1), edge_dim, generator=gen, dtype=dtype)
    return data


def test_shapes_repr_and_state_dict():
    conv = TensorFieldConv("8x0e + 4x1o", "8x0e + 4x1o", irreps_sh=2, max_radius=2.0)
    num = sum(p.numel() for p in conv.parameters())
    assert str(conv) == f"TensorFieldConv(8x0e+4x1o -> 8x0e+4x1o | sh=1x0e+1x1o+1x2e | " \
                        f"{num} weights)"
    assert isinstance(conv.irreps_in, o3.Irreps) and isinstance(conv.irreps_out, o3.Irreps)
    assert TensorFieldConv.group_name == "E(3)"
    data = random_graph("8x0e + 4x1o", dtype=torch.float32)
    out = conv(data.x, data.pos, data.edge_index)
    assert out.shape == (14, 20) and out.dtype == torch.float32
    # only learned weights are saved: checkpoints do not depend on the backend
    assert sorted(conv.state_dict()) == ["lin1.weight", "lin2.weight", "radial.layer0.weight",
                                         "radial.layer1.weight", "sc.weight"]
    before = conv.lin1.weight.clone()
    conv.reset_parameters()
    assert not torch.equal(before, conv.lin1.weight)
    # gate, edge features, alpha, bessel basis, no self-connection
    conv = TensorFieldConv(IRREPS, "6x0e + 3x1o + 2x2e", irreps_sh=2, edge_dim=2, gate=True,
                           alpha=True, radial_basis="bessel", radial_layers=2, max_radius=2.0)
    data = random_graph(edge_dim=2, dtype=torch.float32)
    assert conv(data.x, data.pos, data.edge_index, data.edge_attr).shape == (14, 6 + 9 + 10)
    assert TensorFieldConv(IRREPS, "3x1o", self_connection=False)(
        data.x.double().float(), data.pos, data.edge_index).shape == (14, 9)


def test_alpha_starts_at_self_connection():
    data = random_graph(dtype=torch.float32)
    conv = TensorFieldConv(IRREPS, IRREPS, alpha=True, max_radius=2.0)
    expected = conv.sc(data.x)
    assert torch.allclose(conv(data.x, data.pos, data.edge_index), expected)
    with torch.no_grad():
        conv.alpha.weight.normal_()
    assert not torch.allclose(conv(data.x, data.pos, data.edge_index), expected)


@pytest.mark.parametrize("basis", ["smooth_finite", "bessel", "gaussian"])
def test_messages_vanish_smoothly_at_cutoff(basis):
    conv = TensorFieldConv("2x0e", "2x0e", radial_basis=basis, max_radius=1.0,
                           num_radial_basis=6).double()
    r = torch.tensor([0.0, 0.5, 0.999999, 1.0, 1.5], dtype=torch.float64, requires_grad=True)
    emb = conv.radial_embedding(r)
    assert torch.isfinite(emb).all()
    assert emb[3:].abs().max() == 0
    assert emb[2].abs().max() < 1e-6
    grad, = torch.autograd.grad(emb.sum(), r)
    assert torch.isfinite(grad).all() and grad[2:].abs().max() < 1e-4


def test_batching_equals_separate_graphs():
    conv = TensorFieldConv(IRREPS, IRREPS, gate=True, max_radius=1.6).double()
    graphs = [random_graph(num_nodes=n, seed=n) for n in (6, 11, 9)]
    batch = Batch.from_data_list(graphs)
    out = conv(batch.x, batch.pos, batch.edge_index)
    ref = torch.cat([conv(g.x, g.pos, g.edge_index) for g in graphs])
    assert torch.allclose(out, ref, atol=1e-12)


# --------------------------------------------------------------------------
# equality with e3nn's reference point convolution (weights copied)
# --------------------------------------------------------------------------
def _key(tp, ins):
    return ins.i_in1, ins.i_in2, tp.irreps_out[ins.i_out].ir


def _linear_from_fctp(linear, fctp, in_map=None):
    r"""Copies the weights of ``FullyConnectedTensorProduct(a, "0e", b)`` into
    ``Linear(a', b)``, where ``a'`` reorders ``a`` by ``in_map``."""
    in_map = in_map or {i: i for i in range(len(fctp.irreps_in1))}
    src = {(in_map[ins.i_in1], ins.i_out): w[:, 0, :]
           for _, ins, w in fctp.weight_views(yield_instruction=True)}
    with torch.no_grad():
        for _, ins, w in linear.weight_views(yield_instruction=True):
            w.copy_(src.pop((ins.i_in, ins.i_out)))
    assert not src


def copy_from_reference(conv, ref):
    # tensor-product paths match by (input, sh, output irrep); the two sort the
    # intermediate irreps differently, so map indices and permute MLP outputs
    ref_ins = {_key(ref.tp, ins): ins for ins in ref.tp.instructions}
    mid_map = {ref_ins[_key(conv.tp, ins)].i_out: ins.i_out for ins in conv.tp.instructions}
    idx = torch.arange(ref.tp.weight_numel, dtype=torch.float64).unsqueeze(0)
    ref_blocks = {_key(ref.tp, ins): w.flatten() for _, ins, w in
                  ref.tp.weight_views(idx, yield_instruction=True)}
    perm = torch.cat([ref_blocks[_key(conv.tp, ins)] for ins in conv.tp.instructions]).long()
    with torch.no_grad():
        for mine, theirs in zip(conv.radial, ref.fc):
            mine.weight.copy_(theirs.weight)
        conv.radial[-1].weight.copy_(ref.fc[-1].weight[:, perm])
    _linear_from_fctp(conv.lin1, ref.lin1)
    _linear_from_fctp(conv.sc, ref.sc)
    _linear_from_fctp(conv.lin2, ref.lin2, mid_map)
    _linear_from_fctp(conv.alpha, ref.alpha, mid_map)


def reference_forward(ref, data, max_radius, num_basis, lmax):
    src, dst = data.edge_index
    vec = data.pos[src] - data.pos[dst]
    sh = o3.spherical_harmonics(list(range(lmax + 1)), vec, True, normalization="component")
    emb = soft_one_hot_linspace(vec.norm(dim=1), 0.0, max_radius, num_basis,
                                basis="smooth_finite", cutoff=True).mul(num_basis ** 0.5)
    node_attr = data.x.new_ones(data.num_nodes, 1)
    return ref(data.x, node_attr, src, dst, sh, emb)


@pytest.mark.parametrize("irreps_in,irreps_out,gate", [
    (IRREPS, "3x0e + 2x1o + 2x1e + 1x2e + 1x0o", False),
    ("5x0e + 3x1o", "2x0e + 4x1o + 1x2e", False),
    (IRREPS, "4x0e + 2x1o + 1x2e", True),
])
def test_equals_e3nn_reference_convolution(irreps_in, irreps_out, gate):
    lmax, nb, hidden, r_max, n = 2, 7, 16, 1.6, 3.5
    with default_dtype(torch.float64):
        torch.manual_seed(0)
        conv = TensorFieldConv(irreps_in, irreps_out, irreps_sh=lmax, num_radial_basis=nb,
                               radial_hidden=hidden, radial_layers=1, max_radius=r_max,
                               num_neighbors=n, alpha=True, gate=gate, backend="e3nn")
        irreps_ref_out = conv.gate.irreps_in if gate else irreps_out
        ref = Convolution(irreps_in, "0e", o3.Irreps.spherical_harmonics(lmax),
                          irreps_ref_out, [nb, hidden], n)
        with torch.no_grad():  # alpha starts at zero in both; make it matter
            ref.alpha.weight.normal_()
    copy_from_reference(conv, ref)
    data = random_graph(irreps_in)
    assert data.num_edges > 30
    expected = reference_forward(ref, data, r_max, nb, lmax)
    if gate:
        expected = conv.gate(expected)
    out = conv(data.x, data.pos, data.edge_index)
    assert expected.abs().max() > 0.1
    assert (out - expected).abs().max() < 1e-10


# --------------------------------------------------------------------------
# cuequivariance backend
# --------------------------------------------------------------------------
@with_package("cuequivariance_torch")
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_cuequivariance_backend_equals_e3nn(dtype, tol):
    conv = TensorFieldConv(IRREPS, "3x0e + 2x1o + 2x1e + 1x2e + 1x0o", irreps_sh=2,
                           max_radius=1.6, alpha=True, gate=False, backend="cuequivariance")
    with torch.no_grad():
        conv.alpha.weight.normal_()
    other = TensorFieldConv(IRREPS, "3x0e + 2x1o + 2x1e + 1x2e + 1x0o", irreps_sh=2,
                            max_radius=1.6, alpha=True, gate=False, backend="e3nn")
    other.load_state_dict(conv.state_dict())  # the same parameters
    assert other.cue_tp is None and conv.cue_tp is not None
    conv, other = conv.to(dtype), other.to(dtype)
    data = random_graph(dtype=dtype)
    x = data.x.requires_grad_()
    a = conv(x, data.pos, data.edge_index)
    b = other(x, data.pos, data.edge_index)
    assert a.abs().max() > 0.1
    assert (a - b).abs().max() < tol
    ga, = torch.autograd.grad(a.square().sum(), x)
    gb, = torch.autograd.grad(b.square().sum(), x)
    assert (ga - gb).abs().max() < tol * 10


@with_package("cuequivariance_torch")
def test_auto_backend_dispatch():
    conv = TensorFieldConv(IRREPS, IRREPS, backend="auto")
    x = torch.randn(3, conv.irreps_in.dim)
    if not torch.cuda.is_available():
        assert conv.cue_tp is None and not conv._use_cue(x)  # e3nn on CPU
    assert TensorFieldConv(IRREPS, IRREPS, backend="cuequivariance")._use_cue(x)
    assert TensorFieldConv(IRREPS, IRREPS, backend="e3nn").cue_tp is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="requires CUDA")
@with_package("cuequivariance_torch")
def test_auto_backend_on_cuda_equals_e3nn():
    conv = TensorFieldConv(IRREPS, IRREPS, backend="auto", max_radius=1.6).cuda()
    other = TensorFieldConv(IRREPS, IRREPS, backend="e3nn", max_radius=1.6).cuda()
    other.load_state_dict(conv.state_dict())
    data = random_graph(dtype=torch.float32).cuda()
    a = conv(data.x, data.pos, data.edge_index)
    b = other(data.x, data.pos, data.edge_index)
    assert (a - b).abs().max() < 1e-4


# --------------------------------------------------------------------------
# equivariance
# --------------------------------------------------------------------------
@pytest.mark.parametrize("irreps_out,gate,backend", [
    ("3x0e + 2x1o + 2x1e + 1x2e + 1x0o", False, "e3nn"),
    ("4x0e + 2x1o + 1x2e + 1x1e", True, "e3nn"),
    ("3x0e + 2x1o + 2x1e + 1x2e + 1x0o", False, "cuequivariance"),
])
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_equivariance_e3(irreps_out, gate, backend):
    if backend == "cuequivariance" and not WITH_CUE:
        pytest.skip("requires cuequivariance-torch")
    conv = TensorFieldConv(IRREPS, irreps_out, irreps_sh=2, edge_dim=1, gate=gate,
                           max_radius=1.6, backend=backend)
    data = random_graph(edge_dim=1)
    res = assert_equivariant(conv, data, E3(), fields={"x": IRREPS},
                             out_fields={"out": irreps_out}, num_samples=6)
    assert res.error < 1e-9
    assert_equivariant(conv, data, O3(), fields={"x": IRREPS}, out_fields={"out": irreps_out})
    assert_equivariant(conv, data, Permutations())


def test_float32_built_layer_is_exact_in_float64():
    # e3nn's Clebsch-Gordan tables are rounded when built in float32; the layer
    # restores its exact float64 tables on .double()
    conv = TensorFieldConv(IRREPS, "3x0e + 2x1o + 2x1e + 1x2e", irreps_sh=2, max_radius=1.6)
    assert conv.tp._compiled_main_left_right._w3j_1_1_1.dtype == torch.float32
    conv = conv.double()
    exact = o3.wigner_3j(1, 1, 1, dtype=torch.float64)
    assert torch.equal(conv.tp._compiled_main_left_right._w3j_1_1_1, exact)
    assert_equivariant(conv, random_graph(), O3(), fields={"x": IRREPS},
                       out_fields={"out": "3x0e + 2x1o + 2x1e + 1x2e"})


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(irreps_out="6x0e + 3x1o + 2x2e", irreps_sh=2, gate=True),
    dict(alpha=True, edge_dim=2, radial_basis="bessel"),
])
def test_compile_no_graph_breaks_and_equal_to_eager(kwargs, compile_one_graph):
    kwargs = dict(kwargs)
    irreps_out = kwargs.pop("irreps_out", IRREPS)
    data = random_graph(edge_dim=kwargs.get("edge_dim", 0))
    conv = TensorFieldConv(IRREPS, irreps_out, max_radius=2.0, **kwargs).double()
    if conv.alpha is not None:  # not the zero of its initialisation
        torch.nn.init.normal_(conv.alpha.weight, generator=torch.Generator().manual_seed(1))
    x = data.x.clone().requires_grad_()
    args = (x, data.pos, data.edge_index) + \
        ((data.edge_attr,) if kwargs.get("edge_dim") else ())
    out = compile_one_graph(conv, *args)  # forward once read e3nn's Irreps (no guard)
    ref = conv(*args)
    grad, = torch.autograd.grad(out.square().sum(), x)
    grad_ref, = torch.autograd.grad(ref.square().sum(), x)
    assert (out - ref).abs().max() < 1e-12 * ref.abs().max()
    assert (grad - grad_ref).abs().max() < 1e-12 * grad_ref.abs().max()


def test_e3nn_checker_agrees():
    from e3nn.util.test import assert_equivariant as e3nn_assert_equivariant
    irreps_out = "3x0e + 2x1o + 2x1e + 1x2e + 1x0o"
    with default_dtype(torch.float64):
        conv = TensorFieldConv(IRREPS, irreps_out, irreps_sh=2, max_radius=1.6)
        data = random_graph()

        def f(x, pos):
            return conv(x, pos, data.edge_index)

        errors = e3nn_assert_equivariant(
            f, args_in=[data.x, data.pos], irreps_in=[conv.irreps_in, "cartesian_points"],
            irreps_out=[conv.irreps_out], tolerance=1e-9)
    assert max(float(e.abs().max()) for e in errors.values()) < 1e-9


class DirectionalWeights(TensorFieldConv):
    # broken on purpose: the path weights depend on the edge direction
    def message(self, h_j, sh, weight):
        return self.tp(h_j, sh, weight * (1.0 + sh[:, 1:2]))


def test_checker_fails_on_broken_layers():
    irreps_out = "3x0e + 2x1o + 1x2e"
    data = random_graph()
    broken = DirectionalWeights(IRREPS, irreps_out, max_radius=1.6)
    assert_equivariant(broken, data, Permutations())  # still permutation-equivariant
    res = equivariance_error(broken, data, E3(), fields={"x": IRREPS},
                             out_fields={"out": irreps_out})
    assert res.error > 1e-3
    with pytest.raises(AssertionError):
        assert_equivariant(broken, data, E3(), fields={"x": IRREPS},
                           out_fields={"out": irreps_out})
    # a correct layer with a wrongly declared parity fails under reflections only
    conv = TensorFieldConv(IRREPS, irreps_out, max_radius=1.6)
    wrong = "3x0e + 2x1e + 1x2e"
    assert equivariance_error(conv, data, E3(), fields={"x": IRREPS},
                              out_fields={"out": wrong}, num_samples=8).error > 1e-3
    from gdl_pyg.groups import SO3
    assert_equivariant(conv, data, SO3(), fields={"x": IRREPS}, out_fields={"out": wrong})


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------
def test_bad_arguments():
    with pytest.raises(ValueError, match="'TensorFieldConv' expected e3nn irreps for "
                                         "'irreps_in'"):
        TensorFieldConv("8xfoo", "1x0e")
    with pytest.raises(ValueError, match="parity"):
        TensorFieldConv("1x0e", "1x1o", irreps_sh="0e + 1e")
    with pytest.raises(ValueError, match="produces nothing"):
        TensorFieldConv("1x0e", "1x2e", irreps_sh=1)
    with pytest.raises(ValueError, match="'backend' to be one of"):
        TensorFieldConv("1x0e", "1x0e", backend="cuda")
    with pytest.raises(ValueError, match="'radial_basis' to be one of"):
        TensorFieldConv("1x0e", "1x0e", radial_basis="spline")
    with pytest.raises(ValueError, match="alpha=True with self_connection=False"):
        TensorFieldConv("1x0e", "1x0e", alpha=True, self_connection=False)
    with pytest.raises(ValueError, match="gate scalars"):
        TensorFieldConv("1x2e", "1x1o", irreps_sh="1o", gate=True, self_connection=False)
    with pytest.raises(ValueError, match="scalars first; expected irreps_out=1x0e\\+1x1o"):
        TensorFieldConv("1x0e + 1x1o", "1x1o + 1x0e", gate=True)


def test_bad_input():
    conv = TensorFieldConv(IRREPS, IRREPS, max_radius=1.6)
    data = random_graph(dtype=torch.float32)
    with pytest.raises(ValueError, match=r"'TensorFieldConv' expected 'x' of shape "
                                         r"\[num_nodes, 18\] .* \(got \[14, 17\]\)"):
        conv(data.x[:, :-1], data.pos, data.edge_index)
    with pytest.raises(ValueError, match=r"expected 'pos' of shape \[14, 3\] \(got \[14, 2\]\)"):
        conv(data.x, data.pos[:, :2], data.edge_index)
    pos = data.pos.clone()
    pos[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        conv(data.x, pos, data.edge_index)
    # an empty graph is a valid input (an empty batch): an empty output
    out = conv(data.x[:0], data.pos[:0], data.edge_index[:, :0])
    assert out.shape == (0, conv.irreps_out.dim) and out.dtype == data.x.dtype
    with pytest.raises(TypeError, match="'TensorFieldConv' expected 'x' to be floating point"):
        conv(data.x.long(), data.pos, data.edge_index)
    torch.testing.assert_close(conv(data.x, data.pos, data.edge_index.int()),
                               conv(data.x, data.pos, data.edge_index))
    with pytest.raises(ValueError, match=r"'TensorFieldConv' expected 'edge_index' "
                       r".*shape \[2, num_edges\].*transposed"):
        conv(data.x, data.pos, data.edge_index.t())
    with pytest.raises(TypeError,
                       match="'TensorFieldConv' expected 'edge_index' to be a torch.Tensor"):
        conv(data.x, data.pos, None)
    with pytest.raises(ValueError, match="edge_dim=0; pass edge_dim=2"):
        conv(data.x, data.pos, data.edge_index, torch.randn(data.num_edges, 2))
    conv = TensorFieldConv(IRREPS, IRREPS, edge_dim=2)
    with pytest.raises(ValueError, match=r"'edge_attr' of shape \[\d+, 2\] \(got None\)"):
        conv(data.x, data.pos, data.edge_index)
    # a graph without edges is valid: only the self-connection remains
    out = conv(data.x, data.pos, data.edge_index[:, :0], torch.zeros(0, 2))
    assert torch.allclose(out, conv.sc(data.x))
