r"""Malformed inputs to every layer and pooling operator of ``gdl_pyg.nn``
(except the three GNN flavours, tested beside their own files) end in a
``ValueError`` / ``TypeError`` naming the layer, never in a ``RuntimeError``,
an ``IndexError`` or a silently different result (issue 9)."""
import re
from typing import Callable, Dict, NamedTuple

import pytest
import torch

from gdl_pyg.domains import icosphere, mesh_to_data
from gdl_pyg.domains.grid import grid_to_data
from gdl_pyg.domains.lifted_grid import lift_grid
from gdl_pyg.domains.sequence import sequence_to_data
from gdl_pyg.nn.conv import (DeepSetsConv, DiffusionConv, EGNNConv, GatedLSTMConv,
                             GatedRecurrentConv, GEMConv, GeodesicConv, GraphTransformerConv,
                             GridConv, GroupConv, LiftingConv, SphereConv, TensorFieldConv)
from gdl_pyg.nn.nonlinearity import RegularNonlinearity
from gdl_pyg.nn.pool import (AttentionReadout, GraclusPooling, ParallelTransportPool,
                             ParallelTransportUnpool, SpherePool)

ERRORS = (ValueError, TypeError)


class Case(NamedTuple):
    module: torch.nn.Module
    kwargs: Dict[str, object]  # a valid call: module(**kwargs)
    edge_key: str = "edge_index"  # the connectivity argument (None: takes none)
    num_nodes: int = 0  # number of source nodes (for the range check)
    channel_key: str = "x"  # the argument whose width the layer fixes (None: any)
    channel_dim: int = -1
    geometry: Dict[str, object] = {}  # attributes with a wrong shape


def _gen():
    return torch.Generator().manual_seed(0)


def _mesh():
    d = icosphere(1)
    return mesh_to_data(d.pos, d.face)


def _drop_last(t):
    return t[:-1]


def lifting():
    data = grid_to_data(torch.randn(1, 2, 4, 5, generator=_gen()), batched=True)
    return Case(LiftingConv(2, 3, 3, group="p4"),
                dict(x=data.x, edge_index=data.edge_index, edge_offset=data.edge_offset),
                num_nodes=data.num_nodes,
                geometry={"edge_offset": _drop_last(data.edge_offset)})


def group():
    data = lift_grid(grid_to_data(torch.randn(1, 1, 4, 5, generator=_gen()), batched=True), "p4")
    x = torch.randn(data.num_nodes, 2, generator=_gen())
    return Case(GroupConv(2, 3, 3, group="p4"),
                dict(x=x, edge_index=data.edge_index, edge_offset=data.edge_offset,
                     group_elem=data.group_elem),
                num_nodes=data.num_nodes,
                geometry={"edge_offset": _drop_last(data.edge_offset),
                          "group_elem": _drop_last(data.group_elem)})


def grid():
    data = grid_to_data(torch.randn(1, 2, 4, 5, generator=_gen()), batched=True)
    return Case(GridConv(2, 3, 3),
                dict(x=data.x, edge_index=data.edge_index, edge_offset=data.edge_offset),
                num_nodes=data.num_nodes,
                geometry={"edge_offset": _drop_last(data.edge_offset)})


def deep_sets():
    x = torch.randn(6, 3, generator=_gen())
    return Case(DeepSetsConv(3, 4), dict(x=x, batch=torch.tensor([0, 0, 0, 1, 1, 1])),
                edge_key=None, geometry={"batch": torch.tensor([0, 0, 1])})


def diffusion():
    m = _mesh()
    x = torch.randn(m.num_nodes, 3, generator=_gen(), dtype=torch.float64)
    return Case(DiffusionConv(3, method="chebyshev", init_time=0.1).double(),
                dict(x=x, mass=m.mass, laplacian_index=m.laplacian_index,
                     laplacian_weight=m.laplacian_weight),
                edge_key="laplacian_index", num_nodes=m.num_nodes,
                geometry={"laplacian_weight": _drop_last(m.laplacian_weight),
                          "mass": _drop_last(m.mass)})


def egnn():
    m = _mesh()
    x = torch.randn(m.num_nodes, 3, generator=_gen(), dtype=torch.float64)
    return Case(EGNNConv(3, 4, hidden_channels=8).double(),
                dict(x=x, pos=m.pos, edge_index=m.edge_index), num_nodes=m.num_nodes,
                geometry={"pos": _drop_last(m.pos)})


def _sequence():
    gen = _gen()
    return sequence_to_data([torch.randn(4, 2, generator=gen), torch.randn(3, 2, generator=gen)])


def gru():
    data = _sequence()
    return Case(GatedRecurrentConv(2, 4), dict(x=data.x, edge_index=data.edge_index),
                num_nodes=data.num_nodes, geometry={"dt": torch.ones(3)})


def lstm():
    data = _sequence()
    return Case(GatedLSTMConv(2, 4), dict(x=data.x, edge_index=data.edge_index),
                num_nodes=data.num_nodes, geometry={"dt": torch.ones(3)})


def gem():
    m = _mesh()
    x = torch.randn(m.num_nodes, 2, 3, generator=_gen(), dtype=torch.float64)
    return Case(GEMConv(2, 3, in_order=1, out_order=1).double(),
                dict(x=x, edge_index=m.edge_index, edge_logmap=m.edge_logmap,
                     edge_connection=m.edge_connection),
                num_nodes=m.num_nodes, channel_dim=1,
                geometry={"edge_logmap": _drop_last(m.edge_logmap),
                          "edge_connection": _drop_last(m.edge_connection)})


def geodesic():
    m = _mesh()
    x = torch.randn(m.num_nodes, 2, generator=_gen(), dtype=torch.float64)
    return Case(GeodesicConv(2, 3, num_rho=2, num_theta=4).double(),
                dict(x=x, edge_index=m.edge_index, edge_logmap=m.edge_logmap),
                num_nodes=m.num_nodes,
                geometry={"edge_logmap": _drop_last(m.edge_logmap)})


def transformer():
    m = _mesh()
    x = torch.randn(m.num_nodes, 4, generator=_gen())
    return Case(GraphTransformerConv(4, 4, heads=2), dict(x=x, edge_index=m.edge_index),
                num_nodes=m.num_nodes)


def transformer_edge_attr():
    m = _mesh()
    x = torch.randn(m.num_nodes, 4, generator=_gen())
    ea = torch.randn(m.edge_index.size(1), 2, generator=_gen())
    return Case(GraphTransformerConv(4, 4, heads=2, edge_dim=2),
                dict(x=x, edge_index=m.edge_index, edge_attr=ea), num_nodes=m.num_nodes,
                geometry={"edge_attr": _drop_last(ea)})


def sphere():
    d = icosphere(1)
    x = torch.randn(d.num_nodes, 2, generator=_gen(), dtype=torch.float64)
    return Case(SphereConv(2, 3).double(), dict(x=x, pos=d.pos, edge_index=d.edge_index),
                num_nodes=d.num_nodes, geometry={"pos": d.pos[:, :2]})


def tensor_field():
    d = icosphere(1)
    x = torch.randn(d.num_nodes, 2, generator=_gen(), dtype=torch.float64)
    return Case(TensorFieldConv("2x0e", "2x0e + 1x1o", irreps_sh=1, max_radius=1.0).double(),
                dict(x=x, pos=d.pos, edge_index=d.edge_index), num_nodes=d.num_nodes,
                geometry={"pos": _drop_last(d.pos)})


def graclus():
    m = _mesh()
    x = torch.randn(m.num_nodes, 2, generator=_gen(), dtype=torch.float64)
    w = torch.rand(m.edge_index.size(1), generator=_gen(), dtype=torch.float64)
    return Case(GraclusPooling(), dict(x=x, edge_index=m.edge_index, edge_weight=w),
                num_nodes=m.num_nodes, channel_key=None,
                geometry={"edge_weight": _drop_last(w), "batch": torch.zeros(3).long()})


def sphere_pool():
    d = icosphere(1)
    x = torch.randn(d.num_nodes, 2, generator=_gen(), dtype=torch.float64)
    return Case(SpherePool(), dict(x=x, pos=d.pos, edge_index=d.edge_index),
                num_nodes=d.num_nodes, channel_key=None,
                geometry={"pos": _drop_last(d.pos), "mass": _drop_last(d.mass)})


def attention_readout():
    x = torch.randn(5, 3, generator=_gen())
    return Case(AttentionReadout(3, 2), dict(x=x), edge_key=None)


def transport_pool():
    x = torch.randn(6, 2, 3, generator=_gen())
    cluster = torch.tensor([0, 0, 1, 1, 2, 2])
    return Case(ParallelTransportPool(), dict(x=x, cluster=cluster, transport=torch.rand(6)),
                edge_key=None, channel_key=None,
                geometry={"cluster": torch.tensor([0, 0, 1, 1, 2, -1]),
                          "transport": torch.rand(5)})


def transport_unpool():
    x = torch.randn(3, 2, 3, generator=_gen())
    cluster = torch.tensor([0, 0, 1, 1, 2, 2])
    return Case(ParallelTransportUnpool(), dict(x=x, cluster=cluster, transport=torch.rand(6)),
                edge_key=None, channel_key=None,
                geometry={"cluster": torch.tensor([0, 0, 1, 1, 2, 3]),
                          "transport": torch.rand(5)})


def regular_nonlinearity():
    return Case(RegularNonlinearity(1), dict(x=torch.randn(4, 2, 3, generator=_gen())),
                edge_key=None)


CASES: Dict[str, Callable[[], Case]] = {
    "LiftingConv": lifting, "GroupConv": group, "GridConv": grid, "DeepSetsConv": deep_sets,
    "DiffusionConv": diffusion, "EGNNConv": egnn, "GatedRecurrentConv": gru,
    "GatedLSTMConv": lstm, "GEMConv": gem, "GeodesicConv": geodesic,
    "GraphTransformerConv": transformer, "GraphTransformerConv-edge_attr": transformer_edge_attr,
    "SphereConv": sphere, "TensorFieldConv": tensor_field, "GraclusPooling": graclus,
    "SpherePool": sphere_pool, "AttentionReadout": attention_readout,
    "ParallelTransportPool": transport_pool, "ParallelTransportUnpool": transport_unpool,
    "RegularNonlinearity": regular_nonlinearity,
}
_SPECS = {k: build() for k, build in CASES.items()}  # for the parameter lists only
EDGE_CASES = [k for k, c in _SPECS.items() if c.edge_key is not None]
CHANNEL_CASES = [k for k, c in _SPECS.items() if c.channel_key is not None]
GEOMETRY_CASES = [(k, g) for k, c in _SPECS.items() for g in c.geometry]


def _owner(name):
    return "'" + name.split("-")[0] + "'"


def _outputs(out):
    if isinstance(out, torch.Tensor):
        return [out]
    return [o for o in out if isinstance(o, torch.Tensor)]


@pytest.mark.parametrize("name", list(CASES))
def test_valid_input_still_works(name):
    case = CASES[name]()
    for out in _outputs(case.module(**case.kwargs)):
        if out.is_floating_point():
            assert torch.isfinite(out).all()


def _bad_edges(kind, ei, num_nodes):
    if kind == "transposed":
        return ei.t().contiguous()
    if kind == "three_rows":
        return torch.cat([ei, ei[:1]], dim=0)
    if kind == "float":
        return ei.float()
    if kind == "one_dim":
        return ei.reshape(-1)
    if kind == "list":
        return ei.tolist()
    ei = ei.clone()
    if kind == "source_out_of_range":
        ei[0, 0] = num_nodes
    elif kind == "target_out_of_range":
        ei[1, -1] = num_nodes + 5
    elif kind == "negative":
        ei[1, 0] = -1
    return ei


EDGE_KINDS = ["transposed", "three_rows", "float", "one_dim", "list", "source_out_of_range",
              "target_out_of_range", "negative"]
EDGE_MESSAGES = {"transposed": "transposed", "three_rows": r"\[2, num_edges\]",
                 "float": "integer", "one_dim": r"\[2, num_edges\]", "list": "Tensor",
                 "source_out_of_range": "nodes", "target_out_of_range": "nodes",
                 "negative": "negative"}


@pytest.mark.parametrize("kind", EDGE_KINDS)
@pytest.mark.parametrize("name", EDGE_CASES)
def test_malformed_edge_index(name, kind):
    case = CASES[name]()
    kwargs = dict(case.kwargs)
    kwargs[case.edge_key] = _bad_edges(kind, kwargs[case.edge_key], case.num_nodes)
    with pytest.raises(ERRORS, match=_owner(name)) as info:
        case.module(**kwargs)
    assert case.edge_key in str(info.value)
    # the message also says what was expected or how to fix it
    assert re.search(EDGE_MESSAGES[kind], str(info.value)), str(info.value)


@pytest.mark.parametrize("name", CHANNEL_CASES)
def test_wrong_channel_count(name):
    case = CASES[name]()
    kwargs = dict(case.kwargs)
    x = kwargs[case.channel_key]
    dim = case.channel_dim % x.dim()
    expected = x.size(dim)
    shape = list(x.shape)
    shape[dim] += 1
    kwargs[case.channel_key] = torch.randn(*shape, dtype=x.dtype)
    with pytest.raises(ValueError, match=_owner(name)) as info:
        case.module(**kwargs)
    msg = str(info.value)
    assert str(expected) in msg and str(expected + 1) in msg, msg


@pytest.mark.parametrize("name,key", GEOMETRY_CASES, ids=lambda v: str(v))
def test_wrong_geometry_shape(name, key):
    case = CASES[name]()
    kwargs = dict(case.kwargs)
    kwargs[key] = case.geometry[key]
    with pytest.raises(ERRORS, match=_owner(name)) as info:
        case.module(**kwargs)
    assert key in str(info.value), str(info.value)


# ----------------------------------------------------------------- empty graphs
@pytest.mark.parametrize("num_nodes", [0, 1, 5])
def test_graclus_on_graph_without_edges(num_nodes):
    # PyG's graclus + max_pool on a graph without edges: every node is its own
    # cluster, features kept, no edges
    x = torch.randn(num_nodes, 3, dtype=torch.float64)
    ei = torch.empty(2, 0, dtype=torch.long)
    batch = torch.zeros(num_nodes, dtype=torch.long)
    for reduce in ("max", "mean"):
        out_x, out_ei, out_w, out_batch, cluster = GraclusPooling(reduce)(x, ei, batch=batch)
        assert torch.equal(cluster, torch.arange(num_nodes))
        assert torch.equal(out_x, x)
        assert out_ei.shape == (2, 0) and out_ei.dtype == torch.long
        assert out_w is None
        assert torch.equal(out_batch, batch)
        w = torch.empty(0, dtype=torch.float64)
        out_x, out_ei, out_w, _, cluster = GraclusPooling(reduce)(x, ei, w)
        assert torch.equal(out_x, x) and out_w.shape == (0,)


def test_graclus_empty_graph_with_feature_dims():
    x = torch.randn(0, 2, 3)
    out_x, out_ei, _, _, cluster = GraclusPooling()(x, torch.empty(2, 0, dtype=torch.long))
    assert out_x.shape == (0, 2, 3) and cluster.shape == (0,) and out_ei.shape == (2, 0)


def test_graclus_self_loops_only():
    x = torch.randn(3, 2)
    ei = torch.tensor([[0, 1, 2], [0, 1, 2]])
    out_x, out_ei, _, _, cluster = GraclusPooling()(x, ei)
    assert torch.equal(cluster, torch.arange(3)) and torch.equal(out_x, x)
    assert out_ei.size(1) == 0  # coarsening removes self loops


# ----------------------------------------------------------------- GridPool
@pytest.mark.parametrize("kind", EDGE_KINDS[:3] + EDGE_KINDS[5:])
def test_grid_pool_malformed_edge_index(kind):
    from gdl_pyg.nn.pool import GridPool
    data = lift_grid(grid_to_data(torch.randn(1, 1, 4, 4, generator=_gen()), batched=True), "p4")
    data.x = torch.randn(data.num_nodes, 2, generator=_gen())
    pool = GridPool(2)
    assert pool(data).x.shape == (2 * 2 * 4, 2)  # the valid input works
    data.edge_index = _bad_edges(kind, data.edge_index, data.num_nodes)
    with pytest.raises(ERRORS, match="'GridPool'.*edge_index") as info:
        pool(data)
    assert re.search(EDGE_MESSAGES[kind], str(info.value)), str(info.value)


def test_grid_pool_edge_offset_mismatch():
    from gdl_pyg.nn.pool import GridPool
    data = grid_to_data(torch.randn(1, 1, 4, 4, generator=_gen()), batched=True)
    data.edge_offset = data.edge_offset[:-1]
    with pytest.raises(ValueError, match="'GridPool' expected 'edge_offset' of shape"):
        GridPool(2)(data)
