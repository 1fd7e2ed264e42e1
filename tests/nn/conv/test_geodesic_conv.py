import math

import pytest
import torch
import trimesh
from torch_geometric.data import Batch

from gdl_pyg.domains import mesh_to_data
from gdl_pyg.groups import GaugeGroup, Permutations
from gdl_pyg.io import read_mesh
from gdl_pyg.nn.conv import GeodesicConv
from gdl_pyg.testing import assert_equivariant, equivariance_error

POSE = "datasets/deform/raw/pose_003.ply"


def icosphere(subdivisions=2, noise=0.0, seed=0):
    mesh = trimesh.creation.icosphere(subdivisions)
    pos = torch.tensor(mesh.vertices, dtype=torch.float64)
    if noise:
        gen = torch.Generator().manual_seed(seed)
        pos = pos * (1 + noise * torch.randn(pos.size(0), 1, generator=gen, dtype=pos.dtype))
    return pos, torch.tensor(mesh.faces).T.contiguous()


def torus():
    mesh = trimesh.creation.torus(1.0, 0.35, major_sections=20, minor_sections=10)
    return torch.tensor(mesh.vertices, dtype=torch.float64), \
        torch.tensor(mesh.faces).T.contiguous()


def pose():
    data = read_mesh(POSE)
    return data.pos.to(torch.float64), data.face


MESHES = {"icosphere": (lambda: icosphere(2), 0.3), "torus": (torus, 0.5),
          "pose_003": (pose, 0.12)}


def mesh_data(pos, face, channels=3, seed=0):
    data = mesh_to_data(pos, face)
    gen = torch.Generator().manual_seed(seed)
    data.x = torch.randn(pos.size(0), channels, generator=gen, dtype=pos.dtype)
    return data


def small_data(channels=3):
    return mesh_data(*icosphere(1, noise=0.05), channels=channels)


def make_conv(c_in=3, c_out=5, seed=0, **kwargs):
    torch.manual_seed(seed)
    kwargs.setdefault("max_radius", 0.6)
    conv = GeodesicConv(c_in, c_out, **kwargs).double()
    with torch.no_grad():
        conv.bias.normal_()
    return conv


def run(conv, data):
    return conv(data.x, data.edge_index, data.edge_logmap)


# --------------------------------------------------------------------------
# a slow, literal reference of the patch operator and the rotation response
# --------------------------------------------------------------------------
def ref_window(psi, T, K, sigma):
    # v(psi) = 1/T sum_{k=-K}^{K} exp(-k^2 sigma^2 / 2) exp(i k psi), for a tensor psi
    return sum(math.exp(-0.5 * (k * sigma) ** 2) * torch.cos(k * psi)
               for k in range(-K, K + 1)) / T


def ref_patch_at(conv, data, i, theta_shift=0.0):
    r"""D_i(rho_m, theta_t + shift) ``[A, C, M, T]`` (``A`` shifts) by a loop over the
    neighbours of ``i``."""
    T, M, K = conv.num_theta, conv.num_rho, conv.num_theta // 2
    rho = [(m + 1) * conv.max_radius / M for m in range(M)]
    shift = torch.as_tensor(theta_shift, dtype=torch.float64).reshape(-1, 1)
    theta = 2 * math.pi * torch.arange(T, dtype=torch.float64) / T + shift  # [A, T]

    def w(r, m):
        return math.exp(-0.5 * ((r - rho[m]) / conv.rho_sigma) ** 2)

    x = data.x
    D = torch.zeros(shift.size(0), x.size(1), M, T, dtype=torch.float64)
    for m in range(M):
        Z = w(0.0, m)
        D[:, :, m, :] = w(0.0, m) / T * x[i].view(1, -1, 1)
        for e in (data.edge_index[1] == i).nonzero().flatten().tolist():
            j = int(data.edge_index[0, e])
            r, phi = data.edge_logmap[e].tolist()
            Z += w(r, m)
            win = ref_window(phi - theta, T, K, conv.theta_sigma)  # [A, T]
            D[:, :, m, :] += w(r, m) * win.unsqueeze(1) * x[j].view(1, -1, 1)
        D[:, :, m, :] /= Z
    return D if torch.as_tensor(theta_shift).dim() > 0 else D[0]


def test_shapes_and_repr():
    data = small_data()
    conv = GeodesicConv(3, 16, num_rho=2, num_theta=6, max_radius=0.5)
    assert str(conv) == "GeodesicConv(3, 16, num_rho=2, num_theta=6, max_radius=0.5)"
    assert GeodesicConv.group_name == "SO(2)^N"
    assert conv.weight.shape == (16, 3, 2, 6) and conv.bias.shape == (16,)
    out = conv(data.x.float(), data.edge_index, data.edge_logmap.float())
    assert out.shape == (data.num_nodes, 16) and out.dtype == torch.float32
    conv = GeodesicConv(3, 4, oriented=True, bias=False)
    assert conv.bias is None and str(conv).endswith("oriented=True)")
    assert conv(data.x.float(), data.edge_index, data.edge_logmap.float()).shape == \
        (data.num_nodes, 4, 8)
    assert str(GeodesicConv(3, 4, rotation_pool="discrete")).endswith(
        "rotation_pool='discrete')")
    w = conv.weight.detach().clone()
    conv.reset_parameters()
    assert not torch.equal(w, conv.weight)
    # odd number of angular bins, and a single bin (isotropic filters)
    for T in (1, 3, 5):
        conv = GeodesicConv(3, 2, num_theta=T)
        assert conv(data.x.float(), data.edge_index, data.edge_logmap.float()).shape == \
            (data.num_nodes, 2)


@pytest.mark.parametrize("num_theta", [8, 5])
def test_patch_operator_matches_loop(num_theta):
    data = small_data()
    conv = make_conv(num_theta=num_theta, num_rho=3)
    patch = conv.patch(data.x, data.edge_index, data.edge_logmap)
    assert patch.shape == (data.num_nodes, 3, 3, num_theta)
    for i in (0, 5, 17, 41):
        assert (patch[i] - ref_patch_at(conv, data, i)).abs().max() < 1e-12
    # the angular bins of a ring sum to its normalised (weighted mean) signal
    ring_mean = patch.sum(-1)
    assert torch.allclose(ring_mean.sum(1) / 3, ring_mean.mean(1))
    # oriented output: the filter cyclically shifted over the patch bins
    conv.oriented = True
    out = run(conv, data)
    for s in range(num_theta):
        expected = torch.einsum("ocmt,ncmt->no", conv.weight, patch.roll(-s, dims=-1))
        assert (out[..., s] - expected - conv.bias).abs().max() < 1e-12


def test_continuous_max_matches_dense_search():
    data = small_data()
    conv = make_conv(num_theta=6)
    out = run(conv, data)
    # brute force: the response at 3600 rotations of the reference patch, for a few
    # vertices, then golden-section refinement around the best one
    with torch.no_grad():
        for i in (3, 29):
            def response(alpha):
                D = ref_patch_at(conv, data, i, theta_shift=alpha)
                return torch.einsum("ocmt,acmt->ao", conv.weight, D) + conv.bias

            grid = torch.linspace(0, 2 * math.pi, 3601, dtype=torch.float64)[:-1]
            vals = response(grid)  # [A, O]
            lo = grid[vals.argmax(0)] - 0.002
            hi = lo + 0.004
            g = (math.sqrt(5) - 1) / 2
            for _ in range(60):
                a, b = hi - g * (hi - lo), lo + g * (hi - lo)
                ra = response(a).diagonal()
                rb = response(b).diagonal()
                hi = torch.where(ra > rb, b, hi)
                lo = torch.where(ra > rb, lo, a)
            best = response(0.5 * (lo + hi)).diagonal()
            assert (best - out[i]).abs().max() < 1e-10
    # never below the max over the discrete rotations
    disc = make_conv(num_theta=6, rotation_pool="discrete")
    assert bool((out >= run(disc, data) - 1e-12).all())


@pytest.mark.parametrize("num_theta", [4, 8, 12])
def test_rotation_max_of_random_responses(num_theta):
    # the continuous max on random trig. polynomials (incl. K nearly equal
    # peaks) against a dense search, and its invariance under shifts
    from gdl_pyg.nn.conv.geodesic_conv import _evaluate, _trig_table
    conv = GeodesicConv(1, 1, num_theta=num_theta).double()
    K = conv.max_freq
    gen = torch.Generator().manual_seed(num_theta)
    coef = torch.randn(3000, 1, 2 * K + 1, generator=gen, dtype=torch.float64)
    coef[1000:2000] *= 0.05
    coef[1000:2000, :, K] += 1.0  # ~ cos(K alpha): K peaks of almost the same height
    alpha = conv._argmax_rotation(coef)
    best = _evaluate(coef, alpha.unsqueeze(-1), conv.freqs)[0].squeeze(-1)
    fine = torch.linspace(0, 2 * math.pi, 20001, dtype=torch.float64)[:-1]
    dense = (coef @ _trig_table(fine, conv.freqs)).amax(-1)
    assert bool((best >= dense - 1e-12).all())
    # and a local maximum: zero derivative, to round-off
    _, d1, _ = _evaluate(coef, alpha.unsqueeze(-1), conv.freqs, derivatives=True)
    assert d1.abs().max() < 1e-9
    # shifting the polynomial by beta (a frame rotation) leaves the max unchanged
    beta = 2 * math.pi * torch.rand(3000, 1, 1, generator=gen, dtype=torch.float64)
    k = conv.freqs
    p, q = coef[..., 1:K + 1], coef[..., K + 1:]
    c, s = torch.cos(k * beta), torch.sin(k * beta)
    shifted = torch.cat([coef[..., :1], p * c + q * s, q * c - p * s], -1)  # R(alpha + beta)
    alpha2 = conv._argmax_rotation(shifted)
    best2 = _evaluate(shifted, alpha2.unsqueeze(-1), conv.freqs)[0].squeeze(-1)
    assert (best2 - best).abs().max() < 1e-12


def test_gauge_invariance():
    data = small_data()
    conv = make_conv()
    res = assert_equivariant(conv, data, GaugeGroup(), num_samples=6)
    assert res.error < 1e-12
    # any vertex's frame, any angle, one vertex at a time
    g = torch.zeros(data.num_nodes, dtype=torch.float64)
    g[7] = 0.123
    assert_equivariant(conv, data, GaugeGroup(), elements=[g])


@pytest.mark.parametrize("num_theta", [8, 5])
def test_oriented_equivariant_to_discrete_rotations(num_theta):
    data = small_data()
    conv = make_conv(num_theta=num_theta, oriented=True)
    T = num_theta
    gen = torch.Generator().manual_seed(1)
    shifts = torch.randint(0, T, (data.num_nodes,), generator=gen)
    theta = 2 * math.pi * shifts.to(torch.float64) / T
    group = GaugeGroup()
    out = run(conv, data)
    out_g = run(conv, group.act(theta, data))
    # a frame rotation by 2 pi m / T at i shifts the responses cyclically: y'_s = y_{s+m}
    idx = (torch.arange(T).view(1, -1) + shifts.view(-1, 1)) % T
    expected = out.gather(-1, idx.unsqueeze(1).expand_as(out))
    assert (out_g - expected).abs().max() < 1e-12
    # the same through the checker: the discrete Fourier transform over the T
    # rotations turns the cyclic shift into gauge:0,1,...,K (Nyquist with a zero sine)
    K = T // 2
    alpha = 2 * math.pi * torch.arange(T, dtype=torch.float64) / T
    k = torch.arange(1, K + 1, dtype=torch.float64)
    cos, sin = torch.cos(k[:, None] * alpha), torch.sin(k[:, None] * alpha)
    basis = torch.stack([torch.ones(T, dtype=torch.float64)]
                        + [v for kk in range(K) for v in (cos[kk], sin[kk])])  # [2K+1, T]
    rep = "gauge:" + ",".join(str(kk) for kk in range(K + 1))

    def fourier(module, d):
        return run(module, d) @ basis.T

    assert_equivariant(conv, data, group, elements=[theta], forward=fourier,
                       out_fields={"out": rep})
    off_grid = theta + 0.1 + 0.3 * torch.rand(data.num_nodes, generator=gen,
                                              dtype=torch.float64)
    if T % 2:
        # odd T: the T samples determine the response (degree (T-1)/2), so
        # their Fourier coefficients rotate exactly for every angle
        assert_equivariant(conv, data, group, elements=[off_grid], forward=fourier,
                           out_fields={"out": rep})
    else:
        # even T: the Nyquist sine is not sampled; angles off the grid break it
        with pytest.raises(AssertionError, match="not equivariant"):
            assert_equivariant(conv, data, group, elements=[off_grid], forward=fourier,
                               out_fields={"out": rep})


@pytest.mark.parametrize("name", list(MESHES))
def test_rigid_motion_and_renumbering_invariance(name):
    make, radius = MESHES[name]
    pos, face = make()
    N = pos.size(0)
    data = mesh_data(pos, face, channels=4)
    conv = make_conv(4, 8, max_radius=radius)
    disc = make_conv(4, 8, max_radius=radius, rotation_pool="discrete")
    out, out_disc = run(conv, data), run(disc, data)
    gen = torch.Generator().manual_seed(3)
    # rotation + reflection + translation, geometry recomputed from scratch
    Q, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    Q = Q @ torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    moved = mesh_to_data(pos @ Q.T + torch.randn(3, generator=gen, dtype=torch.float64), face)
    moved.x = data.x
    assert (run(conv, moved) - out).abs().max() < 1e-8
    # renumbering: permute the vertices, relabel the faces, recompute the geometry
    perm = torch.randperm(N, generator=gen)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(N)
    renum = mesh_to_data(pos[perm], inv[face])
    renum.x = data.x[perm]
    err = (run(conv, renum) - out[perm]).abs().max()
    assert err < 1e-8
    # the paper's discrete max over num_theta rotations is not invariant: the
    # renumbering moves the reference direction of most vertices
    assert (run(disc, renum) - out_disc[perm]).abs().max() > 1e-3


def test_permutation_equivariance_and_batching():
    d1 = small_data()
    d2 = mesh_data(*torus(), channels=3, seed=1)
    conv = make_conv()
    assert_equivariant(conv, d1, Permutations())
    batch = Batch.from_data_list([d1, d2])
    out = run(conv, batch)
    assert (out - torch.cat([run(conv, d1), run(conv, d2)])).abs().max() < 1e-12
    assert_equivariant(conv, batch, Permutations())
    assert_equivariant(conv, batch, GaugeGroup())


def test_checker_fails_on_broken_variants():
    data = small_data()

    class NoAngularPooling(GeodesicConv):
        # the response at alpha = 0 only: depends on the frame
        def forward(self, x, edge_index, edge_logmap=None):
            coef = self.response_coefficients(x, edge_index, edge_logmap)
            return coef @ self.rot_table[:, 0].to(coef.dtype)

    torch.manual_seed(0)
    broken = NoAngularPooling(3, 5, max_radius=0.6)
    with pytest.raises(AssertionError, match="not equivariant to SO\\(2\\)\\^N"):
        assert_equivariant(broken, data, GaugeGroup())
    # the paper's discrete pooling: invariant to rotations by 2 pi / T only
    disc = make_conv(rotation_pool="discrete")
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(disc, data, GaugeGroup())
    steps = (2 * math.pi / 8) * torch.randint(-4, 4, (data.num_nodes,)).to(torch.float64)
    assert equivariance_error(disc, data, GaugeGroup(), elements=[steps]).error < 1e-12


def test_bad_input():
    data = small_data()
    conv = make_conv()
    with pytest.raises(ValueError, match="MeshGeometry"):
        conv(data.x, data.edge_index)
    with pytest.raises(ValueError, match=r"shape \[num_nodes, 3\]"):
        conv(data.x[:, :2], data.edge_index, data.edge_logmap)
    with pytest.raises(ValueError, match=r"\[num_edges, 2\]"):
        conv(data.x, data.edge_index, data.edge_logmap[:-1])
    with pytest.raises(ValueError, match=r"\[2, num_edges\]"):
        conv(data.x, data.edge_index[:1], data.edge_logmap)
    x = data.x.clone()
    x[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        conv(x, data.edge_index, data.edge_logmap)
    lm = data.edge_logmap.clone()
    lm[0, 1] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite"):
        conv(data.x, data.edge_index, lm)
    adj = torch.sparse_coo_tensor(data.edge_index, torch.ones(data.num_edges),
                                  (data.num_nodes,) * 2, check_invariants=True)
    with pytest.raises(TypeError, match="sparse adjacency is not supported"):
        conv(data.x, adj, data.edge_logmap)
    for kwargs, match in ((dict(num_theta=0), "'num_theta' to be an integer >= 1"),
                          (dict(max_radius=-1.0), "'max_radius' to be a positive"),
                          (dict(rho_sigma=0.0), "'rho_sigma' to be a positive"),
                          (dict(rotation_pool="mean"), "'rotation_pool' to be one of"),
                          (dict(aggr="mean"), "aggr='add'")):
        with pytest.raises(ValueError, match=match):
            GeodesicConv(3, 4, **kwargs)


def test_gradients():
    data = small_data(channels=2)
    conv = make_conv(2, 2, num_theta=4)
    x = data.x.clone().requires_grad_()
    # Danskin: the gradient of the max is the gradient of the response at the maximiser
    assert torch.autograd.gradcheck(lambda x: run(conv, data.clone().update({"x": x})), (x,),
                                    eps=1e-6, atol=1e-6)
    out = run(conv, data)
    out.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
               for p in conv.parameters())
    # the oriented and discrete variants too
    for kwargs in (dict(oriented=True), dict(rotation_pool="discrete")):
        conv = make_conv(2, 2, num_theta=4, **kwargs)
        assert torch.autograd.gradcheck(lambda x: run(conv, data.clone().update({"x": x})),
                                        (x,), eps=1e-6, atol=1e-6)


def test_float32_close_to_float64():
    data = small_data()
    conv = make_conv()
    out64 = run(conv, data)
    c32 = conv.float()
    out32 = c32(data.x.float(), data.edge_index, data.edge_logmap.float())
    assert (out32.double() - out64).abs().max() < 1e-4


@pytest.mark.parametrize("kwargs", [dict(), dict(oriented=True)])
def test_compile_no_graph_breaks(kwargs):
    data = small_data()
    conv = GeodesicConv(3, 4, max_radius=0.6, **kwargs)
    torch._dynamo.reset()
    explain = torch._dynamo.explain(conv)(data.x.float(), data.edge_index,
                                          data.edge_logmap.float())
    assert explain.graph_break_count == 0
    assert explain.graph_count == 1 and not explain.break_reasons


# --------------------------------------------------------------------------
# the fast path (sparse patch product, block-sparse contraction, certified
# maximisation) against a plain per-edge formulation written here
# --------------------------------------------------------------------------
def plain_response(conv, x, edge_index, edge_logmap):
    r"""The response coefficients ``[N, O, 2K+1]``: per-edge patch
    coefficients ``[E, M, 2K+1, C]`` summed by target, then the dense filter
    contraction through ``conv.mix``."""
    N, K, M = x.size(0), conv.max_freq, conv.num_rho
    j, i = edge_index
    r, phi = edge_logmap[:, 0], edge_logmap[:, 1]
    rho = torch.arange(1, M + 1, dtype=x.dtype) * conv.max_radius / M
    w = torch.exp(-0.5 * ((r[:, None] - rho) / conv.rho_sigma) ** 2)  # [E, M]
    w0 = torch.exp(-0.5 * (rho / conv.rho_sigma) ** 2)
    k = torch.arange(1, K + 1, dtype=x.dtype)
    ang = torch.cat([torch.ones(len(phi), 1, dtype=x.dtype), torch.cos(phi[:, None] * k),
                     torch.sin(phi[:, None] * k)], 1)  # [E, B]
    per_edge = w[:, :, None, None] * ang[:, None, :, None] * x[j][:, None, None, :]
    F = torch.zeros(N, *per_edge.shape[1:], dtype=x.dtype).index_add_(0, i, per_edge)
    F[:, :, 0] += w0[:, None] * x[:, None]
    Z = torch.zeros(N, M, dtype=x.dtype).index_add_(0, i, w) + w0
    F = F / Z[:, :, None, None]
    return torch.einsum("nmbc,ocmt,tbd->nod", F, conv.weight, conv.mix)


@pytest.mark.parametrize("kwargs", [dict(), dict(num_theta=5, num_rho=2), dict(num_theta=1),
                                    dict(num_theta=2)])
def test_fast_path_matches_plain_formulation(kwargs):
    data = mesh_data(*torus(), channels=3)
    conv = make_conv(3, 4, **kwargs)
    x = data.x.clone().requires_grad_()
    ref = plain_response(conv, x, data.edge_index, data.edge_logmap)
    coef = conv.response_coefficients(x, data.edge_index, data.edge_logmap)
    assert (coef - ref).abs().max() < 1e-12
    g_ref, = torch.autograd.grad(ref.sin().sum(), x)
    g, = torch.autograd.grad(coef.sin().sum(), x)
    assert (g - g_ref).abs().max() < 1e-12
    # the continuous max: the plain response at a dense grid, refined
    out = run(conv, data)
    K = conv.max_freq
    if K:
        from gdl_pyg.nn.conv.geodesic_conv import _trig_table
        fine = torch.linspace(0, 2 * math.pi, 4001, dtype=torch.float64)[:-1]
        dense = (ref.detach() @ _trig_table(fine, conv.freqs)).amax(-1) + conv.bias
        assert bool((out >= dense - 1e-12).all())
        assert (out - dense).abs().max() < 1e-5


@pytest.mark.parametrize("kwargs", [dict(), dict(oriented=True), dict(rotation_pool="discrete")])
def test_fast_and_geometry_differentiable_paths_agree(kwargs):
    # a geometry that requires grad takes the per-edge (message passing) path
    data = mesh_data(*torus(), channels=3)
    conv = make_conv(3, 4, **kwargs)
    outs, grads = [], []
    for lm in (data.edge_logmap, data.edge_logmap.clone().requires_grad_()):
        x = data.x.clone().requires_grad_()
        conv.zero_grad()
        out = conv(x, data.edge_index, lm)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append([x.grad, conv.weight.grad.clone(), conv.bias.grad.clone()])
        if lm.requires_grad:
            assert lm.grad is not None and torch.isfinite(lm.grad).all()
            assert lm.grad.abs().sum() > 0
    assert (outs[0] - outs[1]).abs().max() < 1e-12
    for a, b in zip(*grads):
        assert (a - b).abs().max() < 1e-11
    # without grad for x the transposed patch matrix is skipped: same weight grads
    conv.zero_grad()
    conv(data.x, data.edge_index, data.edge_logmap).square().sum().backward()
    assert (conv.weight.grad - grads[0][1]).abs().max() < 1e-11


def test_edge_order_does_not_matter():
    data = small_data()
    conv = make_conv()
    out = run(conv, data)
    perm = torch.randperm(data.num_edges, generator=torch.Generator().manual_seed(5))
    shuffled = data.clone()
    shuffled.edge_index = data.edge_index[:, perm]
    shuffled.edge_logmap = data.edge_logmap[perm]
    assert (run(conv, shuffled) - out).abs().max() < 1e-12
    # vertices without edges: the patch is the centre vertex alone
    shuffled.x = torch.cat([data.x, torch.randn(2, 3, dtype=torch.float64)])
    out2 = run(conv, shuffled)
    assert out2.shape == (data.num_nodes + 2, 5) and torch.isfinite(out2).all()
    assert (out2[:-2] - out).abs().max() < 1e-12
    # no edges at all: the fast path agrees with the per-edge one
    ei, lm = data.edge_index[:, :0], data.edge_logmap[:0]
    empty = conv(data.x, ei, lm)
    assert (empty - conv(data.x, ei, lm.clone().requires_grad_())).abs().max() < 1e-12


@pytest.mark.parametrize("num_theta", [4, 8, 12])
def test_certified_max_is_never_wrong(num_theta):
    # the single-start search certifies only global maxima, and certifies
    # most of the responses of a layer (else the fast path is not taken)
    from gdl_pyg.nn.conv.geodesic_conv import _evaluate, _trig_table
    conv = GeodesicConv(1, 1, num_theta=num_theta).double()
    K = conv.max_freq
    gen = torch.Generator().manual_seed(num_theta)
    coef = torch.randn(4000, 2 * K + 1, generator=gen, dtype=torch.float64)
    coef[1000:2000] *= 0.05
    coef[1000:2000, K] += 1.0  # K peaks of almost the same height
    coef[2000:3000, 1:] *= torch.exp(-0.5 * (torch.cat([conv.freqs, conv.freqs]) * 0.4) ** 2)
    alpha, ok = conv._argmax_certified(coef)
    best = _evaluate(coef[:, None], alpha.view(-1, 1, 1), conv.freqs)[0].view(-1)
    fine = torch.linspace(0, 2 * math.pi, 20001, dtype=torch.float64)[:-1]
    dense = (coef @ _trig_table(fine, conv.freqs)).amax(-1)
    assert bool((best[ok] >= dense[ok] - 1e-12).all())
    assert ok[2000:3000].double().mean() > 0.8  # smooth (windowed) responses
    # the single start misses some near-ties: they must not be certified
    assert not bool(ok[best < dense - 1e-6].any())
    # a trained-like layer's responses
    data = small_data(channels=8)
    layer = make_conv(8, 16, num_theta=num_theta)
    c = layer.response_coefficients(data.x, data.edge_index, data.edge_logmap)
    _, ok = layer._argmax_certified(c.detach().reshape(-1, 2 * K + 1))
    assert ok.double().mean() > 0.9


def test_trusting_every_single_start_fails():
    # the broken variant: certify every single-start result; the dense
    # search of test_rotation_max_of_random_responses then catches it
    from gdl_pyg.nn.conv.geodesic_conv import _evaluate, _trig_table

    class Trusting(GeodesicConv):
        def _argmax_certified(self, c, chunk=8192):
            alpha, ok = super()._argmax_certified(c, chunk)
            return alpha, torch.ones_like(ok)

    gen = torch.Generator().manual_seed(8)
    coef = 0.05 * torch.randn(2000, 1, 9, generator=gen, dtype=torch.float64)
    coef[..., 4] += 1.0
    fine = torch.linspace(0, 2 * math.pi, 20001, dtype=torch.float64)[:-1]
    for cls, wrong in ((GeodesicConv, False), (Trusting, True)):
        conv = cls(1, 1, num_theta=8).double()
        alpha = conv._argmax_rotation(coef)
        best = _evaluate(coef, alpha.unsqueeze(-1), conv.freqs)[0].squeeze(-1)
        dense = (coef @ _trig_table(fine, conv.freqs)).amax(-1)
        assert bool((best < dense - 1e-6).any()) == wrong


# --------------------------------------------------------------------------
# torch.compile: the sparse patch product and the certified maximisation run
# as operators (gdl_pyg::patch_product, gdl_pyg::rotation_argmax)
# --------------------------------------------------------------------------
def _compiled_graph_ops(module, *args):
    r"""The output of ``torch.compile(module)(*args)`` (aot_eager) and the
    operators of the traced FX graphs."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    seen = []

    def backend(gm, example_inputs):
        seen.extend(str(node.target) for node in gm.graph.nodes
                    if node.op == "call_function")
        return aot_autograd(fw_compiler=lambda g, _: make_boxed_func(g),
                            bw_compiler=lambda g, _: make_boxed_func(g))(gm, example_inputs)
    torch._dynamo.reset()
    out = torch.compile(module, backend=backend, fullgraph=True)(*args)
    return out, seen


@pytest.mark.parametrize("kwargs", [dict(), dict(oriented=True), dict(rotation_pool="discrete")])
@pytest.mark.parametrize("shuffle", [False, True])
def test_compiled_matches_eager(kwargs, shuffle):
    data = mesh_data(*torus(), channels=3)
    ei, lm = data.edge_index, data.edge_logmap
    if shuffle:  # the operator sorts the edges itself
        perm = torch.randperm(ei.size(1), generator=torch.Generator().manual_seed(1))
        ei, lm = ei[:, perm], lm[perm]
    conv = make_conv(3, 4, **kwargs)
    results = []
    for compiled in (False, True):
        x = data.x.clone().requires_grad_()
        conv.zero_grad()
        if compiled:
            out, ops = _compiled_graph_ops(conv, x, ei, lm)
        else:
            out = conv(x, ei, lm)
        out.square().sum().backward()
        results.append([out.detach(), x.grad, conv.weight.grad.clone(), conv.bias.grad.clone()])
    for a, b in zip(*results):
        assert (a - b).abs().max() < 1e-11
    # the sparse product, not the per-edge [E, M, 2K+1, C] tensor; the
    # certified maximiser, not the search alone
    assert "gdl_pyg.patch_product.default" in ops
    continuous = not kwargs
    assert ("gdl_pyg.rotation_argmax.default" in ops) == continuous
    torch._dynamo.reset()


def test_compiled_geometry_gradient_takes_the_per_edge_path():
    # a geometry that requires grad is differentiated through: no operator
    data = small_data()
    conv = make_conv()
    lm = data.edge_logmap.clone().requires_grad_()
    out, ops = _compiled_graph_ops(conv, data.x, data.edge_index, lm)
    assert "gdl_pyg.patch_product.default" not in ops
    out.sum().backward()
    ref = data.edge_logmap.clone().requires_grad_()
    run_ = conv(data.x, data.edge_index, ref)
    run_.sum().backward()
    assert (out - run_).abs().max() < 1e-11 and (lm.grad - ref.grad).abs().max() < 1e-10
    torch._dynamo.reset()


def test_patch_product_operator():
    # torch's checks of the operators (schema, fake implementation, autograd)
    # and the product and its gradients against the CSR matrices
    from gdl_pyg.nn.conv.geodesic_conv import _patch_matrices, _patch_product

    gen = torch.Generator().manual_seed(3)
    N, K, M, C, E = 9, 2, 3, 4, 40
    src, dst = torch.randint(0, N, (2, E), generator=gen)
    vals = torch.randn(2 * K + 1, M, E, generator=gen, dtype=torch.float64)
    x = torch.randn(N, C, generator=gen, dtype=torch.float64, requires_grad=True)
    op = torch.ops.gdl_pyg.patch_product.default
    torch.library.opcheck(op, (x, src, dst, vals, K, M, False))
    g = torch.randn(N * (K + 1) * 2 * M, C, generator=gen, dtype=torch.float64,
                    requires_grad=True)
    torch.library.opcheck(op, (g, src, dst, vals, K, M, True))
    perm = torch.argsort(dst, stable=True)
    A, AT = _patch_matrices(src[perm], dst[perm], N, K, M, vals[..., perm], True)
    assert torch.allclose(_patch_product(x, src, dst, vals, K, M, False), A @ x.detach())
    assert torch.allclose(_patch_product(g, src, dst, vals, K, M, True), AT @ g.detach())
    assert torch.allclose(AT.to_dense(), A.to_dense().t())
    fn = lambda x: _patch_product(x, src, dst, vals, K, M, False)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_rotation_argmax_operator():
    from gdl_pyg.nn.conv.geodesic_conv import _evaluate, _trig_table

    conv = GeodesicConv(1, 1, num_theta=8).double()
    gen = torch.Generator().manual_seed(8)
    coef = 0.05 * torch.randn(500, 9, generator=gen, dtype=torch.float64)
    coef[:, 4] += 1.0  # near-ties: some fall back to the search
    s = conv._sampling(coef.dtype)
    args = (coef, s.freqs, s.grid, s.table, s.step, s.newton_steps)
    torch.library.opcheck(torch.ops.gdl_pyg.rotation_argmax.default, args)
    alpha = torch.ops.gdl_pyg.rotation_argmax(*args)
    assert torch.equal(alpha, conv._argmax_rotation(coef))
    _, ok = conv._argmax_certified(coef)
    assert not bool(ok.all())  # the fallback was exercised
    best = _evaluate(coef.unsqueeze(1), alpha.view(-1, 1, 1), conv.freqs)[0].view(-1)
    fine = torch.linspace(0, 2 * math.pi, 20001, dtype=torch.float64)[:-1]
    assert bool((best >= (coef @ _trig_table(fine, conv.freqs)).amax(-1) - 1e-9).all())
