r"""Tests of :mod:`gdl_pyg.nn._checks` and of the malformed / odd inputs that
the layers and pooling operators used to answer with a RuntimeError, an
IndexError or a silently different result (issue 9; the same cases run in
tests/test_fuzz.py, these pin the messages and the valid outputs)."""
import pytest
import torch

import gdl_pyg.domains as D
from gdl_pyg.nn import conv as C
from gdl_pyg.nn import pool as P
from gdl_pyg.nn._checks import check_index


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- check_index
def test_check_index_accepts_valid_and_none():
    check_index(None, 3, "Owner")
    check_index(torch.tensor([0, 0, 1]), 3, "Owner")
    check_index(torch.tensor([0, 0, 1], dtype=torch.int32), 3, "Owner", dim_size=2)
    check_index(torch.empty(0, dtype=torch.long), 0, "Owner", dim_size=0)
    check_index(torch.tensor([5, 7]), None, "Owner")  # no length, no upper bound


@pytest.mark.parametrize("index, err, pattern", [
    ([0.0, 1.0], TypeError, r"'Owner' expected 'batch' to be of integer type \(got "
                            r"'torch.float32'\); convert it with batch.long\(\)"),
    ([True, False], TypeError, "integer type"),
    ([[0, 1]], ValueError, r"one-dimensional of shape \[num_nodes\] \(got shape \[1, 2\]\)"),
    ([0, 1], ValueError, r"one entry per node, shape \[3\] \(got shape \[2\]\)"),
    ([0, -1, 1], ValueError, r"negative entry \(-1\) in 'batch'"),
    ([0, 2, 1], ValueError, r"found entry 2 in 'batch' but expected entries in \[0, 2\)"),
])
def test_check_index_rejects(index, err, pattern):
    with pytest.raises(err, match=pattern):
        check_index(torch.tensor(index), 3, "Owner", dim_size=2)


def test_check_index_rejects_non_tensor():
    with pytest.raises(TypeError, match=r"'Owner' expected 'cluster' to be a torch.Tensor "
                                        r"of shape \[num_nodes\] \(got list\)"):
        check_index([0, 1], 2, "Owner", "cluster")


def test_check_index_skips_range_off_cpu_unless_debug(monkeypatch):
    # the range check follows gdl_pyg.utils: it needs a device sync, so on an
    # accelerator it runs only under torch_geometric.debug()
    import gdl_pyg.nn._checks as checks

    class FakeDevice:
        type = "cuda"

    class FakeIndex(torch.Tensor):
        @property
        def device(self):
            return FakeDevice()

    idx = torch.tensor([0, -1]).as_subclass(FakeIndex)
    monkeypatch.setattr(checks, "_debug_enabled", lambda: False)
    checks.check_index(idx, 2, "Owner")  # skipped
    monkeypatch.setattr(checks, "_debug_enabled", lambda: True)
    with pytest.raises(ValueError, match="negative entry"):
        checks.check_index(idx, 2, "Owner")


# ---------------------------------------------------------------- readouts
X7 = torch.randn(7, 4, generator=_gen(), dtype=torch.float64)
B7 = torch.tensor([0, 0, 0, 1, 1, 1, 1])


def _readouts():
    torch.manual_seed(0)
    return [P.SumReadout(), P.MeanReadout(), P.MaxReadout(),
            P.AttentionReadout(4, 3).double()]


@pytest.mark.parametrize("readout", _readouts(), ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("batch, err, pattern", [
    (B7[:-1], ValueError, r"one entry per node, shape \[7\] \(got shape \[6\]\)"),
    (B7.double(), TypeError, "'batch' to be of integer type"),
    (torch.cat([B7[:-1], torch.tensor([-1])]), ValueError, "negative entry"),
])
def test_readout_bad_batch(readout, batch, err, pattern):
    with pytest.raises(err, match=f"'{type(readout).__name__}'.*" + pattern):
        readout(X7, batch)


@pytest.mark.parametrize("readout", _readouts(), ids=lambda m: type(m).__name__)
def test_readout_batch_beyond_batch_size(readout):
    with pytest.raises(ValueError, match=r"found entry 1 in 'batch'.*\[0, 1\)"):
        readout(X7, B7, 1)
    assert readout(X7, B7, 2).shape[0] == 2


def test_attention_readout_integer_x():
    with pytest.raises(TypeError, match="'AttentionReadout' expected 'x' to be floating"):
        P.AttentionReadout(4, 3)(X7.long(), B7)


# ---------------------------------------------------------------- DeepSetsConv
def test_deep_sets_bad_inputs():
    conv = C.DeepSetsConv(4, 3).double()
    assert conv(X7, B7).shape == (7, 3)
    with pytest.raises(TypeError, match="'DeepSetsConv' expected 'x' to be floating point"):
        conv(X7.long(), B7)
    with pytest.raises(TypeError, match="'DeepSetsConv' expected 'batch' to be of integer"):
        conv(X7, B7.double())
    with pytest.raises(ValueError, match="'DeepSetsConv' found a negative entry"):
        conv(X7, torch.cat([B7[:-1], torch.tensor([-1])]))
    with pytest.raises(ValueError, match=r"'DeepSetsConv' expected 'batch' with one entry"):
        conv(X7, B7[:-1])


# ---------------------------------------------------------------- integer features
def _mesh():
    s = D.icosphere(1)
    return D.mesh_to_data(s.pos, s.face)


def _int_feature_cases():
    m, s = _mesh(), D.icosphere(1)
    g = D.grid_to_data(torch.randn(1, 2, 4, 5, generator=_gen()), batched=True)
    lifted = D.lift_grid(D.grid_to_data(torch.randn(1, 1, 4, 5, generator=_gen()),
                                        batched=True), "p4")
    q = D.sequence_to_data([torch.randn(5, 2, generator=_gen()),
                            torch.randn(3, 2, generator=_gen(1))])
    xm = torch.randn(m.num_nodes, 4, generator=_gen(), dtype=torch.float64)
    return {
        "GEMConv": (C.GEMConv(4, 3, in_order=1, out_order=1).double(),
                    dict(x=torch.randn(m.num_nodes, 4, 3, generator=_gen(),
                                       dtype=torch.float64),
                         edge_index=m.edge_index, edge_logmap=m.edge_logmap,
                         edge_connection=m.edge_connection)),
        "GeodesicConv": (C.GeodesicConv(4, 3, num_rho=2, num_theta=4).double(),
                         dict(x=xm, edge_index=m.edge_index, edge_logmap=m.edge_logmap)),
        "DiffusionConv": (C.DiffusionConv(4, method="chebyshev", init_time=0.1).double(),
                          dict(x=xm, mass=m.mass, laplacian_index=m.laplacian_index,
                               laplacian_weight=m.laplacian_weight)),
        "GridConv": (C.GridConv(2, 3, 3), dict(x=g.x, edge_index=g.edge_index,
                                               edge_offset=g.edge_offset)),
        "LiftingConv": (C.LiftingConv(2, 3, 3, group="p4"),
                        dict(x=g.x, edge_index=g.edge_index, edge_offset=g.edge_offset)),
        "GroupConv": (C.GroupConv(2, 3, 3, group="p4"),
                      dict(x=torch.randn(lifted.num_nodes, 2, generator=_gen()),
                           edge_index=lifted.edge_index, edge_offset=lifted.edge_offset,
                           group_elem=lifted.group_elem)),
        "SphereConv": (C.SphereConv(4, 3).double(),
                       dict(x=torch.randn(s.num_nodes, 4, generator=_gen(),
                                          dtype=torch.float64),
                            pos=s.pos, edge_index=s.edge_index, mass=s.mass)),
        "GatedRecurrentConv": (C.GatedRecurrentConv(2, 4),
                               dict(x=q.x, edge_index=q.edge_index)),
        "GatedLSTMConv": (C.GatedLSTMConv(2, 4), dict(x=q.x, edge_index=q.edge_index)),
        "TensorFieldConv": (C.TensorFieldConv("4x0e", "2x0e + 1x1o", irreps_sh=1,
                                              max_radius=1.0).double(),
                            dict(x=torch.randn(s.num_nodes, 4, generator=_gen(),
                                               dtype=torch.float64),
                                 pos=s.pos, edge_index=s.edge_index)),
    }


INT_CASES = _int_feature_cases()


@pytest.mark.parametrize("name", sorted(INT_CASES))
def test_integer_features_raise_type_error(name):
    # like PyG's Linear-based layers, integer features are not cast silently
    module, kw = INT_CASES[name]
    out = module(**kw)  # the valid call works
    assert torch.isfinite(out).all()
    bad = dict(kw, x=(kw["x"] * 3).round().long())
    with pytest.raises(TypeError, match=rf"'{name}' expected 'x' to be floating point "
                                        rf"\(got torch.int64\); convert it with x.float\(\)"):
        module(**bad)


def test_sphere_conv_integer_pos_and_short_mass():
    module, kw = INT_CASES["SphereConv"]
    with pytest.raises(TypeError, match="'SphereConv' expected 'pos' to be floating point"):
        module(**dict(kw, pos=(kw["pos"] * 3).round().long()))
    # the isotropic kernel does not read 'mass', but a wrong one is still an error
    assert module.kernel == "isotropic"
    with pytest.raises(ValueError, match=r"'SphereConv' expected 'mass' of shape \[42\]"):
        module(**dict(kw, mass=kw["mass"][:-1]))
    with pytest.raises(ValueError, match="'SphereConv' expected 'batch' with one entry"):
        module(**dict(kw, batch=torch.zeros(41, dtype=torch.long)))


# ---------------------------------------------------------------- empty graphs
@pytest.mark.parametrize("name", ["GEMConv", "DiffusionConv", "TensorFieldConv",
                                  "GatedRecurrentConv", "GatedLSTMConv", "GeodesicConv",
                                  "SphereConv"])
def test_empty_graph_gives_empty_output(name):
    module, kw = INT_CASES[name]
    ref = module(**kw)
    empty = {}
    for key, v in kw.items():
        if key in ("edge_index", "laplacian_index"):
            empty[key] = v[:, :0]
        elif key in ("edge_logmap", "edge_connection", "laplacian_weight"):
            empty[key] = v[:0]
        else:
            empty[key] = v[:0]
    out = module(**empty)
    assert out.shape == (0, *ref.shape[1:]) and out.dtype == ref.dtype


@pytest.mark.parametrize("name", ["GEMConv", "GeodesicConv", "TensorFieldConv"])
def test_graph_without_edges(name):
    module, kw = INT_CASES[name]
    ref = module(**kw)
    cut = {k: (v[:, :0] if k == "edge_index" else v[:0]) for k, v in kw.items()
           if k.startswith("edge")}
    out = module(**dict(kw, **cut))
    assert out.shape == ref.shape and torch.isfinite(out).all()


def test_gated_lstm_empty_with_cell():
    module, kw = INT_CASES["GatedLSTMConv"]
    h, c = module(kw["x"][:0], kw["edge_index"][:, :0], return_cell=True)
    assert h.shape == c.shape == (0, 4)
    # an empty batch has no sequences: an initial state must have no rows
    with pytest.raises(ValueError, match=r"\[num_sequences, hidden_channels\] = \[0, 4\]"):
        module(kw["x"][:0], kw["edge_index"][:, :0], h0=torch.zeros(1, 4))


# ---------------------------------------------------------------- int32 edge_index
def test_int32_edge_index_gives_the_same_result():
    m = _mesh()
    ei32 = m.edge_index.int()
    w = torch.rand(m.edge_index.size(1), generator=_gen(3), dtype=torch.float64)
    assert torch.equal(P.heavy_edge_matching(ei32, w, m.num_nodes),
                       P.heavy_edge_matching(m.edge_index, w, m.num_nodes))
    x = torch.randn(m.num_nodes, 4, generator=_gen(), dtype=torch.float64)
    a, b = P.GraclusPooling()(x, ei32, w), P.GraclusPooling()(x, m.edge_index, w)
    for u, v in zip(a, b):
        if u is not None:
            assert torch.equal(u, v)
    assert a[1].dtype == torch.long


def test_graclus_bad_batch():
    m = _mesh()
    x = torch.randn(m.num_nodes, 4, generator=_gen(), dtype=torch.float64)
    with pytest.raises(TypeError, match="'GraclusPooling' expected 'batch' to be of integer"):
        P.GraclusPooling()(x, m.edge_index, batch=torch.zeros(m.num_nodes))
    with pytest.raises(ValueError, match="'GraclusPooling' found a negative entry"):
        P.GraclusPooling()(x, m.edge_index,
                           batch=torch.full((m.num_nodes,), -1, dtype=torch.long))


# ---------------------------------------------------------------- grid / group pools
def _grid():
    return D.grid_to_data(torch.randn(2, 2, 4, 4, generator=_gen()), batched=True)


def _lifted():
    data = D.lift_grid(D.grid_to_data(torch.randn(1, 1, 4, 4, generator=_gen()),
                                      batched=True), "p4")
    data.x = torch.randn(data.num_nodes, 3, generator=_gen())
    return data


@pytest.mark.parametrize("make, pool", [(_grid, P.GridPool(2)), (_lifted, P.GroupPool())],
                         ids=["GridPool", "GroupPool"])
@pytest.mark.parametrize("mutate, err, pattern", [
    (lambda b: b[:-1], ValueError, "'batch' with one entry per node"),
    (lambda b: b.double(), TypeError, "'batch' to be of integer type"),
    (lambda b: torch.cat([b[:-1], torch.tensor([-4])]), ValueError, "negative entry"),
])
def test_pool_bad_batch(make, pool, mutate, err, pattern):
    data = make()
    pool(data)  # valid
    data.batch = mutate(data.batch)
    with pytest.raises(err, match=f"'{type(pool).__name__}'.*" + pattern):
        pool(data)


@pytest.mark.parametrize("mutate, err, pattern", [
    (lambda d: setattr(d, "edge_index", d.edge_index.double()), ValueError, "integer type"),
    (lambda d: setattr(d, "edge_index", d.edge_index > 0), ValueError, "integer type"),
    (lambda d: d.edge_index.view(-1).__setitem__(0, -1), ValueError, "negative index"),
    (lambda d: d.edge_index.view(-1).__setitem__(0, 64), ValueError, "only 64 nodes"),
    (lambda d: d.edge_index.view(-1).__setitem__(0, 2 ** 40), ValueError, "only 64 nodes"),
    (lambda d: setattr(d, "edge_offset", d.edge_offset[:-1]), ValueError,
     "'edge_offset' with one row per column"),
    (lambda d: setattr(d, "pos", d.pos[:-1]), ValueError, r"'pos' with one row per node"),
])
def test_group_pool_malformed(mutate, err, pattern):
    data = _lifted()
    data.edge_index = data.edge_index.clone()
    out = P.GroupPool()(data)
    assert out.x.shape == (16, 3) and out.edge_index.max() < 16
    mutate(data)
    with pytest.raises(err, match="'GroupPool'.*" + pattern):
        P.GroupPool()(data)


def test_group_pool_int32_edge_index():
    data = _lifted()
    ref = P.GroupPool()(data)
    data.edge_index = data.edge_index.int()
    out = P.GroupPool()(data)
    assert torch.equal(out.edge_index.long(), ref.edge_index) and torch.equal(out.x, ref.x)


def test_readout_overhead_is_metadata_only_on_compile():
    # under torch.compile the range check is skipped (no data-dependent branch)
    from torch._dynamo import explain
    readout = P.SumReadout()
    ex = explain(readout)(X7, B7, 2)
    assert ex.graph_break_count == 0
