import numpy as np
import pytest
import scipy.linalg as sl
import torch
import trimesh
from torch_geometric.data import Batch, Data

from gdl_pyg.domains import mesh_to_data
from gdl_pyg.groups import E3, Permutations
from gdl_pyg.nn.conv import DiffusionConv
from gdl_pyg.testing import assert_equivariant, equivariance_error
from gdl_pyg.transforms import LaplacianEigenbasis

GEOMETRY = ("mass", "evals", "evecs", "laplacian_index", "laplacian_weight")


def bumpy_mesh(subdivisions=2, seed=0, amplitude=0.05):
    m = trimesh.creation.icosphere(subdivisions)
    V = np.asarray(m.vertices)
    rng = np.random.default_rng(seed)
    V = V * (1 + amplitude * rng.uniform(-1, 1, size=(len(V), 1)))
    return torch.from_numpy(V), torch.from_numpy(np.asarray(m.faces).T.copy())


def geometry(pos, face, k):
    return LaplacianEigenbasis(k=k)(mesh_to_data(pos, face))


def expm_reference(data, x, times):
    N = data.num_nodes
    L = torch.sparse_coo_tensor(data.laplacian_index, data.laplacian_weight, (N, N),
                                check_invariants=True).to_dense().numpy()
    m = data.mass.numpy()
    return np.stack([sl.expm(-t * L / m[:, None]) @ x[:, c].numpy()
                     for c, t in enumerate(times)], 1)


def make_conv(method, times):
    conv = DiffusionConv(len(times), method=method).double()
    conv.diffusion_time.data = torch.tensor(times, dtype=torch.float64)
    return conv


def run(conv, data, x=None):
    return conv(data.x if x is None else x, **{k: data.get(k) for k in GEOMETRY},
                batch=data.get("batch"))


def test_shapes_repr_and_time():
    pos, face = bumpy_mesh(1)
    data = geometry(pos.float(), face, 16)
    conv = DiffusionConv(8, init_time=0.1)
    assert str(conv) == "DiffusionConv(8, method='spectral')"
    assert DiffusionConv.group_name == "E(3)"
    x = torch.randn(42, 8)
    assert run(conv, data, x).shape == (42, 8)
    conv.diffusion_time.data.fill_(-1.0)  # clamped to 0 in value ...
    assert torch.all(conv.time() == 0)
    run(conv, data, x).sum().backward()  # ... but gradients still flow
    assert conv.diffusion_time.grad.abs().sum() > 0
    conv.reset_parameters()
    assert torch.all(conv.diffusion_time == 0.1)


@pytest.mark.parametrize("method", ["spectral", "chebyshev"])
def test_matches_matrix_exponential(method):
    pos, face = bumpy_mesh(2)
    data = geometry(pos, face, 162)  # the full basis: spectral is exact
    times = [0.0, 1e-3, 0.02, 0.3, 2.0]
    x = torch.randn(162, len(times), dtype=torch.float64, generator=torch.Generator()
                    .manual_seed(0))
    ref = expm_reference(data, x, times)
    out = run(make_conv(method, times), data, x).detach().numpy()
    err = np.abs(out - ref).max() / np.abs(ref).max()
    print(f"{method} vs scipy expm: {err:.2e}")
    assert err < 1e-9


@pytest.mark.parametrize("method,num_terms", [("spectral", None), ("chebyshev", 12)])
def test_compile_no_graph_breaks(method, num_terms, compile_one_graph):
    # a fixed number of Chebyshev terms: nothing in forward reads the data
    data = geometry(*bumpy_mesh(1), k=12)
    conv = DiffusionConv(3, method=method, num_terms=num_terms, init_time=0.05).double()
    x = torch.randn(data.num_nodes, 3, dtype=torch.float64)
    kwargs = {k: data.get(k) for k in GEOMETRY}
    assert (compile_one_graph(conv, x, **kwargs) - conv(x, **kwargs)).abs().max() < 1e-12


def test_adaptive_chebyshev_compiles_with_breaks():
    # the adaptive number of terms reads the spectral bound: graph breaks, same result
    data = geometry(*bumpy_mesh(1), k=12)
    conv = DiffusionConv(3, method="chebyshev", init_time=0.05).double()
    x = torch.randn(data.num_nodes, 3, dtype=torch.float64)
    kwargs = {k: data.get(k) for k in GEOMETRY}
    torch._dynamo.reset()
    assert torch._dynamo.explain(conv)(x, **kwargs).graph_break_count >= 1
    compiled = torch.compile(conv, backend="aot_eager")
    assert (compiled(x, **kwargs) - conv(x, **kwargs)).abs().max() < 1e-12


def test_chebyshev_vs_truncated_spectral():
    pos, face = bumpy_mesh(3)
    data = geometry(pos, face, 64)
    times = [0.01, 0.05, 0.2]
    x = (pos[:, 2:3] * pos[:, 0:1] + pos[:, 1:2]).repeat(1, 3)  # a smooth input
    cheb = run(make_conv("chebyshev", times), data, x)
    spec = run(make_conv("spectral", times), data, x)
    err = ((cheb - spec).norm(dim=0) / cheb.norm(dim=0)).max().item()
    print(f"chebyshev vs spectral (k=64 of 642): {err:.2e}")
    assert err < 1e-2
    fixed = DiffusionConv(3, method="chebyshev", num_terms=4).double()
    fixed.diffusion_time.data = torch.tensor(times, dtype=torch.float64)
    assert (run(fixed, data, x) - cheb).abs().max() > 1e-3  # too few terms: differs


@pytest.mark.parametrize("method", ["spectral", "chebyshev"])
def test_gradients(method):
    pos, face = bumpy_mesh(0)
    data = geometry(pos, face, 12)
    x = torch.randn(12, 2, dtype=torch.float64, requires_grad=True)
    conv = make_conv(method, [0.05, 0.4])
    assert torch.autograd.gradcheck(lambda x_, t_: DiffusionConv.forward(
        _with_time(conv, t_), x_, **{k: data[k] for k in GEOMETRY}),
        (x, conv.diffusion_time.detach().clone().requires_grad_()))


def _with_time(conv, t):
    conv.time = lambda: t
    return conv


def test_batching_equals_separate_calls():
    (p1, f1), (p2, f2) = bumpy_mesh(1, seed=1), bumpy_mesh(2, seed=2)
    a, b = geometry(p1, f1, 30), geometry(p2, f2, 30)
    a.x = torch.randn(42, 3, dtype=torch.float64)
    b.x = torch.randn(162, 3, dtype=torch.float64)
    batch = Batch.from_data_list([a, b])
    for method in ("spectral", "chebyshev"):
        conv = make_conv(method, [0.01, 0.1, 0.5])
        out = run(conv, batch)
        sep = torch.cat([run(conv, a), run(conv, b)])
        assert (out - sep).abs().max() < 1e-10


def _recomputed(method, k, conv_cls=DiffusionConv):
    r"""A forward that recomputes all geometry from pos and face."""
    def forward(module, data):
        geo = geometry(data.pos, data.face, k)
        geo.x = data.x
        return run(module, geo)
    return forward


@pytest.mark.parametrize("method", ["spectral", "chebyshev"])
def test_invariant_under_rigid_motions_and_renumbering(method):
    pos, face = bumpy_mesh(2)
    # k = 16 ends on a spectral gap (spherical harmonics of degree <= 3)
    data = Data(pos=pos, face=face, x=torch.randn(162, 4, dtype=torch.float64))
    conv = make_conv(method, [0.01, 0.05, 0.1, 0.5])
    res = equivariance_error(conv, data, E3(), forward=_recomputed(method, 16))
    print(f"{method}: E(3) error with recomputed geometry {res.error:.2e}")
    assert res.error < 1e-9
    assert_equivariant(conv, data, Permutations(), forward=_recomputed(method, 16))
    # and with the geometry permuted by the group (no recomputation)
    geo = geometry(pos, face, 16)
    geo.x = data.x
    assert_equivariant(conv, geo, Permutations())


class PositionalDiffusion(DiffusionConv):
    r"""Broken: the diffusion time depends on the height of the vertex."""
    def forward(self, x, mass, evals=None, evecs=None, laplacian_index=None,
                laplacian_weight=None, batch=None, pos=None):
        out = super().forward(x, mass, evals, evecs, laplacian_index, laplacian_weight, batch)
        return out * (1 + 0.1 * pos[:, 2:3])


class UnweightedDiffusion(DiffusionConv):
    r"""Broken: projects with Phi^T x instead of Phi^T M x."""
    def forward(self, x, mass, evals=None, evecs=None, laplacian_index=None,
                laplacian_weight=None, batch=None):
        return super().forward(x, torch.ones_like(mass), evals, evecs, laplacian_index,
                               laplacian_weight, batch)


def test_checker_fails_on_broken_layers():
    pos, face = bumpy_mesh(2)
    data = Data(pos=pos, face=face, x=torch.randn(162, 2, dtype=torch.float64))
    conv = PositionalDiffusion(2, init_time=0.1).double()

    def forward(module, d):
        geo = geometry(d.pos, d.face, 16)
        return module(d.x, **{k: geo[k] for k in GEOMETRY}, pos=d.pos)
    with pytest.raises(AssertionError):
        assert_equivariant(conv, data, E3(), forward=forward)
    # the unweighted projection is still rigid-motion invariant, but it is not
    # the heat flow, so it depends on the meshing: compare a refined mesh
    m3 = trimesh.creation.icosphere(3)
    m2 = trimesh.creation.icosphere(2)
    fine = geometry(torch.from_numpy(np.asarray(m3.vertices)),
                    torch.from_numpy(np.asarray(m3.faces).T.copy()), 16)
    coarse = geometry(torch.from_numpy(np.asarray(m2.vertices)),
                      torch.from_numpy(np.asarray(m2.faces).T.copy()), 16)
    for d in (fine, coarse):
        d.x = d.pos[:, 2:3] + d.pos[:, 0:1] ** 2
    diffs = []
    for cls in (DiffusionConv, UnweightedDiffusion):
        conv = cls(1, init_time=0.05).double()
        a, b = run(conv, fine)[:162], run(conv, coarse)  # icospheres nest
        diffs.append(((a - b).norm() / b.norm()).item())
    print(f"coarse vs fine mesh: weighted {diffs[0]:.2e}, unweighted {diffs[1]:.2e}")
    assert diffs[0] < 0.01 and diffs[1] > 0.5


def test_bad_input():
    pos, face = bumpy_mesh(1)
    data = mesh_to_data(pos, face)
    x = torch.randn(42, 2, dtype=torch.float64)
    conv = DiffusionConv(2).double()
    with pytest.raises(ValueError, match="'LaplacianEigenbasis'"):
        conv(x, data.mass)
    with pytest.raises(ValueError, match="'MeshGeometry'"):
        DiffusionConv(2, method="chebyshev").double()(x, data.mass)
    with pytest.raises(ValueError, match=r"'x' of shape \[num_nodes, 2\]"):
        conv(x[:, :1], data.mass)
    with pytest.raises(ValueError, match=r"'mass' of shape \[42\]"):
        conv(x, data.mass[:5])
    with pytest.raises(ValueError, match="'method' to be one of"):
        DiffusionConv(2, method="implicit_dense")
    with pytest.raises(ValueError, match="non-negative"):
        DiffusionConv(2, init_time=-1.0)
    geo = LaplacianEigenbasis(k=8)(data)
    with pytest.raises(ValueError, match=r"'evals' of shape \[num_graphs, 8\]"):
        conv(x, geo.mass, geo.evals[:, :3], geo.evecs)
    with pytest.warns(UserWarning, match="max_terms"):
        c = DiffusionConv(2, method="chebyshev", max_terms=8, init_time=1.0).double()
        c(x, data.mass, laplacian_index=data.laplacian_index,
          laplacian_weight=data.laplacian_weight)


# --------------------------------------------------------------------------
# Chebyshev: L v as a sparse product (CPU, large enough inputs)
# --------------------------------------------------------------------------
def _cheb_inputs(batched):
    if batched:
        (p1, f1), (p2, f2) = bumpy_mesh(1, seed=1), bumpy_mesh(2, seed=2)
        data = Batch.from_data_list([mesh_to_data(p1, f1), mesh_to_data(p2, f2)])
    else:
        data = mesh_to_data(*bumpy_mesh(2))
    x = torch.randn(data.num_nodes, 3, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(4))
    return x, (data.mass, None, None, data.laplacian_index, data.laplacian_weight,
               data.get("batch"))


@pytest.mark.parametrize("batched", [False, True])
def test_chebyshev_product_equals_gather_scatter(batched, monkeypatch, csr_builds,
                                                 product_at_any_size, output_and_grads):
    import gdl_pyg.nn.conv.diffusion_conv as module
    x, args = _cheb_inputs(batched)
    conv = make_conv("chebyshev", [0.01, 0.1, 0.5])
    conv.num_terms = 12
    out, grads = output_and_grads(conv, x, *args)
    # the CSR of L and of its transpose, once per forward, not once per term
    assert csr_builds == ["source_to_target", "target_to_source"]
    with torch.no_grad():
        conv(x, *args)
    assert csr_builds[2:] == ["source_to_target"]
    monkeypatch.setattr(module, "eager_cpu_product", lambda *a, **k: False)
    ref, ref_grads = output_and_grads(conv, x, *args)
    assert len(csr_builds) == 3
    assert torch.equal(out, ref)  # the product sums in the scatter's order
    for a, b in zip(grads, ref_grads):
        assert (a - b).abs().max() < 1e-12


def test_chebyshev_small_inputs_gather_and_scatter(csr_builds):
    x, args = _cheb_inputs(False)  # 162 nodes, 3 channels: below the threshold
    make_conv("chebyshev", [0.01, 0.1, 0.5])(x, *args)
    assert csr_builds == []


def test_chebyshev_compiled_on_two_threads_calls_the_product(compile_one_graph, threads,
                                                             product_at_any_size):
    x, args = _cheb_inputs(False)
    x = x.float()
    args = tuple(a.float() if a is not None and a.is_floating_point() else a for a in args)
    conv = DiffusionConv(3, method="chebyshev", init_time=0.1, num_terms=8)
    eager = conv(x, *args)
    for n, op in ((2, True), (1, False)):
        threads(n)
        torch._dynamo.reset()
        graph = torch._dynamo.explain(conv)(x, *args).graphs[0]
        assert any("edge_sum" in str(node.target) for node in graph.graph.nodes) == op
        assert (compile_one_graph(conv, x, *args) - eager).abs().max() < 1e-5
    torch._dynamo.reset()
