"""Malformed-tensor cases for every layer / pooling operator (``LAYERS``) and
for the converters of :mod:`gdl_pyg.domains` (``CONVERTERS``).

A layer spec builds a module and a valid call ``module(**kwargs)``; generic
mutations then break one argument at a time (see :func:`layer_mutations`).
Each mutation carries an expectation:

* ``"raise"``: must end in ValueError / TypeError;
* ``"ok"``: valid but odd input (no edges, no nodes): must return finite
  output of the right shape;
* ``"either"``: may raise ValueError / TypeError, or return finite output of
  the right shape (e.g. integer features);
* ``"garbage"``: NaN / inf features: may raise, or return output of the right
  shape (NaN may propagate; checking every feature would cost a pass over
  the data on the hot path).
"""
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import Data

import gdl_pyg.domains as D
from gdl_pyg.nn import conv as C
from gdl_pyg.nn import pool as P

from .files import FACE, POS


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=_gen(seed), dtype=dtype)


_CACHE: Dict[str, Data] = {}


def mesh() -> Data:
    if "mesh" not in _CACHE:
        s = D.icosphere(1)
        _CACHE["mesh"] = D.mesh_to_data(s.pos, s.face)
    return _CACHE["mesh"]


def sphere() -> Data:
    if "sphere" not in _CACHE:
        _CACHE["sphere"] = D.icosphere(1)
    return _CACHE["sphere"]


def spectral_mesh() -> Data:
    if "spectral" not in _CACHE:
        from gdl_pyg.transforms import LaplacianEigenbasis
        _CACHE["spectral"] = LaplacianEigenbasis(k=8)(mesh().clone())
    return _CACHE["spectral"]


def grid() -> Data:
    if "grid" not in _CACHE:
        _CACHE["grid"] = D.grid_to_data(_randn(1, 2, 4, 5, dtype=torch.float32), batched=True)
    return _CACHE["grid"]


def lifted() -> Data:
    if "lifted" not in _CACHE:
        _CACHE["lifted"] = D.lift_grid(
            D.grid_to_data(_randn(1, 1, 4, 5, dtype=torch.float32), batched=True), "p4")
    return _CACHE["lifted"]


def sequence() -> Data:
    if "seq" not in _CACHE:
        _CACHE["seq"] = D.sequence_to_data([_randn(5, 2, dtype=torch.float32),
                                            _randn(3, 2, seed=1, dtype=torch.float32)])
    return _CACHE["seq"]


@dataclass
class LayerSpec:
    name: str
    build: Callable[[], Tuple[Callable, Dict[str, Any]]]
    channel_key: Optional[str] = "x"    # the argument whose width the layer fixes
    channel_dim: int = -1
    edge_key: Optional[str] = "edge_index"
    num_nodes_key: str = "x"            # the argument whose first dim is |V|
    shape_rule: str = "node"            # "node": outputs [|V|, ...]; "free": rank only
    no_empty: str = ""                  # why an empty graph is not a valid input
    extra: List[Tuple[str, Callable, str]] = field(default_factory=list)


def _m(layer, dtype=torch.float64):
    torch.manual_seed(0)
    return layer.to(dtype)


def _spec_list() -> List[LayerSpec]:
    S = []

    def add(name, build, **kw):
        S.append(LayerSpec(name, build, **kw))

    def conv_graph(make, edge_attr_dim=None, weight=False):
        def build():
            m = mesh()
            kw = dict(x=_randn(m.num_nodes, 4), edge_index=m.edge_index)
            if edge_attr_dim:
                kw["edge_attr"] = _randn(m.edge_index.size(1), edge_attr_dim, seed=1)
            if weight:
                kw["edge_weight"] = torch.rand(m.edge_index.size(1), generator=_gen(2),
                                               dtype=torch.float64)
            return _m(make()), kw
        return build

    add("ConvolutionalConv", conv_graph(lambda: C.ConvolutionalConv(4, 6), weight=True))
    add("ConvolutionalConv-combine", conv_graph(
        lambda: C.ConvolutionalConv(4, 6, combine="cat", normalize=False)))
    add("AttentionalConv", conv_graph(lambda: C.AttentionalConv(4, 3, heads=2, edge_dim=2),
                                      edge_attr_dim=2))
    add("AttentionalConv-v2", conv_graph(lambda: C.AttentionalConv(4, 3, heads=2, v2=True)))
    add("MessagePassingConv", conv_graph(
        lambda: C.MessagePassingConv(psi=torch.nn.Linear(8 + 2, 5),
                                     phi=torch.nn.Linear(4 + 5, 3), combine="cat",
                                     edge_dim=2, in_channels=4), edge_attr_dim=2))
    add("GraphTransformerConv", conv_graph(
        lambda: C.GraphTransformerConv(4, 4, heads=2, edge_dim=2), edge_attr_dim=2))

    def deep_sets():
        return _m(C.DeepSetsConv(4, 3)), dict(x=_randn(7, 4),
                                              batch=torch.tensor([0, 0, 0, 1, 1, 1, 1]))
    add("DeepSetsConv", deep_sets, edge_key=None)

    def egnn():
        m = mesh()
        return _m(C.EGNNConv(4, 3, hidden_channels=8, edge_dim=2)), dict(
            x=_randn(m.num_nodes, 4), pos=m.pos, edge_index=m.edge_index,
            edge_attr=_randn(m.edge_index.size(1), 2, seed=1))
    add("EGNNConv", egnn)

    def tfn():
        s = sphere()
        return _m(C.TensorFieldConv("4x0e", "2x0e + 1x1o", irreps_sh=1, max_radius=1.0)), \
            dict(x=_randn(s.num_nodes, 4), pos=s.pos, edge_index=s.edge_index)
    add("TensorFieldConv", tfn)

    def gem():
        m = mesh()
        return _m(C.GEMConv(4, 3, in_order=1, out_order=1)), dict(
            x=_randn(m.num_nodes, 4, 3), edge_index=m.edge_index, edge_logmap=m.edge_logmap,
            edge_connection=m.edge_connection)
    add("GEMConv", gem, channel_dim=1)

    def geodesic():
        m = mesh()
        return _m(C.GeodesicConv(4, 3, num_rho=2, num_theta=4)), dict(
            x=_randn(m.num_nodes, 4), edge_index=m.edge_index, edge_logmap=m.edge_logmap)
    add("GeodesicConv", geodesic)

    def diffusion_cheb():
        m = mesh()
        return _m(C.DiffusionConv(4, method="chebyshev", init_time=0.1)), dict(
            x=_randn(m.num_nodes, 4), mass=m.mass, laplacian_index=m.laplacian_index,
            laplacian_weight=m.laplacian_weight)
    add("DiffusionConv-chebyshev", diffusion_cheb, edge_key="laplacian_index")

    def diffusion_spec():
        m = spectral_mesh()
        return _m(C.DiffusionConv(4, method="spectral", init_time=0.1)), dict(
            x=_randn(m.num_nodes, 4), mass=m.mass, evals=m.evals, evecs=m.evecs)
    add("DiffusionConv-spectral", diffusion_spec, edge_key=None)

    def grid_conv():
        g = grid()
        return _m(C.GridConv(2, 3, 3), torch.float32), dict(
            x=g.x, edge_index=g.edge_index, edge_offset=g.edge_offset)
    add("GridConv", grid_conv)

    def lifting():
        g = grid()
        return _m(C.LiftingConv(2, 3, 3, group="p4"), torch.float32), dict(
            x=g.x, edge_index=g.edge_index, edge_offset=g.edge_offset)
    add("LiftingConv", lifting)

    def group_conv():
        g = lifted()
        return _m(C.GroupConv(2, 3, 3, group="p4"), torch.float32), dict(
            x=_randn(g.num_nodes, 2, dtype=torch.float32), edge_index=g.edge_index,
            edge_offset=g.edge_offset, group_elem=g.group_elem)
    add("GroupConv", group_conv)

    def sphere_conv():
        s = sphere()
        return _m(C.SphereConv(4, 3)), dict(x=_randn(s.num_nodes, 4), pos=s.pos,
                                            edge_index=s.edge_index, mass=s.mass)
    add("SphereConv", sphere_conv)

    def gru():
        q = sequence()
        return _m(C.GatedRecurrentConv(2, 4), torch.float32), dict(x=q.x,
                                                                   edge_index=q.edge_index)
    add("GatedRecurrentConv", gru)

    def lstm():
        q = sequence()
        return _m(C.GatedLSTMConv(2, 4), torch.float32), dict(x=q.x, edge_index=q.edge_index)
    add("GatedLSTMConv", lstm)

    def readout(cls):
        def build():
            return _m(cls()), dict(x=_randn(7, 4), batch=torch.tensor([0, 0, 0, 1, 1, 1, 1]))
        return build
    for cls in (P.SumReadout, P.MeanReadout, P.MaxReadout):
        add(cls.__name__, readout(cls), edge_key=None, channel_key=None, shape_rule="free")

    def attention_readout():
        return _m(P.AttentionReadout(4, 3)), dict(
            x=_randn(7, 4), batch=torch.tensor([0, 0, 0, 1, 1, 1, 1]))
    add("AttentionReadout", attention_readout, edge_key=None, shape_rule="free")

    def graclus():
        m = mesh()
        return P.GraclusPooling(), dict(
            x=_randn(m.num_nodes, 4), edge_index=m.edge_index,
            edge_weight=torch.rand(m.edge_index.size(1), generator=_gen(3),
                                   dtype=torch.float64))
    add("GraclusPooling", graclus, channel_key=None, shape_rule="free")

    def sphere_pool():
        s = sphere()
        return P.SpherePool(), dict(x=_randn(s.num_nodes, 4), pos=s.pos,
                                    edge_index=s.edge_index, mass=s.mass)
    add("SpherePool", sphere_pool, channel_key=None, shape_rule="free",
        no_empty="an icosphere level has at least 12 vertices")

    def transport_pool():
        return P.ParallelTransportPool(), dict(
            x=_randn(6, 2, 3), cluster=torch.tensor([0, 0, 1, 1, 2, 2]),
            transport=torch.rand(6, generator=_gen(4), dtype=torch.float64))
    add("ParallelTransportPool", transport_pool, edge_key=None, channel_key=None,
        shape_rule="free")

    def transport_unpool():
        return P.ParallelTransportUnpool(), dict(
            x=_randn(3, 2, 3), cluster=torch.tensor([0, 0, 1, 1, 2, 2, 1]),
            transport=torch.rand(7, generator=_gen(4), dtype=torch.float64))
    add("ParallelTransportUnpool", transport_unpool, edge_key=None, channel_key=None,
        num_nodes_key="cluster", shape_rule="free")

    def group_pool_fn():
        return P.group_pool, dict(x=_randn(8, 3), group_order=4)
    add("group_pool", group_pool_fn, edge_key=None, channel_key=None, shape_rule="free")

    def data_module(module, data, **extra):
        def call(**kw):
            return module(Data(**kw))
        kw = {k: v for k, v in data.items()}
        kw.update(extra)
        return call, kw

    add("GridPool", lambda: data_module(P.GridPool(2), grid()), channel_key=None,
        shape_rule="free", no_empty="a grid has at least one pixel")
    add("GroupPool", lambda: data_module(P.GroupPool(), lifted(),
                                         x=_randn(lifted().num_nodes, 3)),
        channel_key=None, shape_rule="free", no_empty="a grid has at least one pixel")

    def gcn_adjacency():
        m = mesh()
        return C.gcn_adjacency, dict(edge_index=m.edge_index,
                                     edge_weight=torch.rand(m.edge_index.size(1),
                                                            generator=_gen(5),
                                                            dtype=torch.float64),
                                     num_nodes=m.num_nodes)
    add("gcn_adjacency", gcn_adjacency, channel_key=None, num_nodes_key="num_nodes",
        shape_rule="free")

    def heavy_edge():
        m = mesh()
        return P.heavy_edge_matching, dict(edge_index=m.edge_index, num_nodes=m.num_nodes)
    add("heavy_edge_matching", heavy_edge, channel_key=None, num_nodes_key="num_nodes",
        shape_rule="node")
    return S


LAYERS = {s.name: s for s in _spec_list()}


def num_nodes(spec: LayerSpec, kw: Dict[str, Any]) -> int:
    v = kw[spec.num_nodes_key]
    return int(v) if not isinstance(v, Tensor) else v.size(0)


def _with(kw, **changes):
    out = dict(kw)
    out.update(changes)
    return out


def _drop_row(t: Tensor) -> Tensor:
    return t[:-1]


def _set_first(t: Tensor, value) -> Tensor:
    t = t.clone(memory_format=torch.contiguous_format)
    t.view(-1)[0] = value
    return t


def layer_mutations(spec: LayerSpec, kw: Dict[str, Any]):
    """Yield ``(name, kwargs, expectation)``."""
    n = num_nodes(spec, kw)
    ei = kw.get(spec.edge_key) if spec.edge_key else None
    e = ei.size(1) if ei is not None else -1
    node_keys = [k for k, v in kw.items() if isinstance(v, Tensor) and v.dim() > 0
                 and v.size(0) == n and k != spec.edge_key and k != spec.num_nodes_key]
    edge_keys = [k for k, v in kw.items() if isinstance(v, Tensor) and v.dim() > 0
                 and v.size(0) == e and k != spec.edge_key]
    float_keys = [k for k, v in kw.items() if isinstance(v, Tensor) and v.is_floating_point()]
    out = []
    if ei is not None:
        k = spec.edge_key
        bad = {
            "transposed": ei.t().contiguous(),
            "three_rows": torch.cat([ei, ei[:1]], 0),
            "one_row": ei[:1],
            "flat": ei.reshape(-1),
            "float": ei.double(),
            "bool": ei > 0,
            "negative": _set_first(ei, -1),
            "out_of_range": _set_first(ei, n),
            "huge_index": _set_first(ei, 2 ** 40),
        }
        for name, value in bad.items():
            out.append((f"{k}_{name}", _with(kw, **{k: value}), "raise"))
        out.append((f"{k}_int32", _with(kw, **{k: ei.int()}), "either"))
        empty = {k: ei[:, :0]}
        empty.update({key: kw[key][:0] for key in edge_keys})
        out.append(("no_edges", _with(kw, **empty), "ok"))
    for key in edge_keys:
        out.append((f"{key}_one_row_short", _with(kw, **{key: _drop_row(kw[key])}), "raise"))
    for key in node_keys:
        out.append((f"{key}_one_row_short", _with(kw, **{key: _drop_row(kw[key])}), "raise"))
    if spec.channel_key:
        x, d = kw[spec.channel_key], spec.channel_dim
        wider = torch.cat([x, x.narrow(d, 0, 1)], d)
        out.append((f"{spec.channel_key}_extra_channel", _with(kw, **{spec.channel_key: wider}),
                    "raise"))
        out.append((f"{spec.channel_key}_rank_plus",
                    _with(kw, **{spec.channel_key: x.unsqueeze(-1).expand(*x.shape, 2)}),
                    "raise"))
        out.append((f"{spec.channel_key}_rank_minus",
                    _with(kw, **{spec.channel_key: x.select(-1, 0)}), "raise"))
    for key in float_keys:
        v = kw[key]
        out.append((f"{key}_nan", _with(kw, **{key: _set_first(v, float("nan"))}), "garbage"))
        out.append((f"{key}_inf", _with(kw, **{key: _set_first(v, float("inf"))}), "garbage"))
        if key in (spec.channel_key, "pos"):
            out.append((f"{key}_int", _with(kw, **{key: (v * 3).round().long()}), "either"))
    for key in node_keys + ([spec.num_nodes_key] if spec.num_nodes_key in kw and
                            isinstance(kw[spec.num_nodes_key], Tensor) else []):
        v = kw[key]
        if not v.is_floating_point() and key in ("batch", "cluster"):
            out.append((f"{key}_float", _with(kw, **{key: v.double()}), "raise"))
            out.append((f"{key}_negative", _with(kw, **{key: _set_first(v, -1)}), "raise"))
    if not spec.no_empty:
        empty = {}
        for key, v in kw.items():
            if key == spec.edge_key:
                empty[key] = v[:, :0]
            elif key == spec.num_nodes_key and not isinstance(v, Tensor):
                empty[key] = 0
            elif isinstance(v, Tensor) and v.dim() > 0 and (key in node_keys or key in edge_keys
                                                            or key == spec.num_nodes_key):
                empty[key] = v[:0]
        out.append(("empty_graph", _with(kw, **empty), "ok"))
    return out


def flat_tensors(out) -> List[Tensor]:
    if isinstance(out, Tensor):
        if out.layout != torch.strided:
            out = out.to_dense()
        return [out]
    if isinstance(out, Data):
        return [v for _, v in sorted(out.items(), key=lambda kv: kv[0])
                if isinstance(v, Tensor)]
    if isinstance(out, (tuple, list)):
        return [t for o in out if o is not None for t in flat_tensors(o)]
    if type(out).__name__ == "SequenceLayout":
        return flat_tensors(tuple(out))
    return []


# ---------------------------------------------------------------------------------------
# converters: explicit cases (name, fn, kwargs, expectation)
# ---------------------------------------------------------------------------------------

def converter_cases():
    pos = torch.from_numpy(POS).double()
    face = torch.from_numpy(FACE.T.copy())
    cases = []

    def add(name, fn, expect, **kw):
        cases.append((name, fn, kw, expect))

    m2d = D.mesh_to_data
    add("mesh_to_data-valid", m2d, "ok", pos=pos, face=face)
    add("mesh_to_data-valid_float32", m2d, "ok", pos=pos.float(), face=face)
    add("mesh_to_data-face_transposed", m2d, "raise", pos=pos, face=face.t().contiguous())
    add("mesh_to_data-face_float", m2d, "raise", pos=pos, face=face.double())
    add("mesh_to_data-face_negative", m2d, "raise", pos=pos, face=_set_first(face, -1))
    add("mesh_to_data-face_out_of_range", m2d, "raise", pos=pos,
        face=_set_first(face, pos.size(0)))
    add("mesh_to_data-face_two_rows", m2d, "raise", pos=pos, face=face[:2])
    add("mesh_to_data-face_four_rows", m2d, "raise", pos=pos, face=torch.cat([face, face[:1]]))
    add("mesh_to_data-face_flat", m2d, "raise", pos=pos, face=face.reshape(-1))
    add("mesh_to_data-no_faces", m2d, "either", pos=pos, face=face[:, :0])
    add("mesh_to_data-empty", m2d, "either", pos=pos[:0], face=face[:, :0])
    add("mesh_to_data-pos_nan", m2d, "raise", pos=_set_first(pos, float("nan")), face=face)
    add("mesh_to_data-pos_inf", m2d, "raise", pos=_set_first(pos, float("inf")), face=face)
    add("mesh_to_data-pos_int", m2d, "either", pos=(pos * 10).round().long(), face=face)
    add("mesh_to_data-pos_2d", m2d, "raise", pos=pos[:, :2], face=face)
    add("mesh_to_data-pos_flat", m2d, "raise", pos=pos.reshape(-1), face=face)
    add("mesh_to_data-pos_one_row_short", m2d, "raise", pos=pos[:-1], face=face)
    for scale in (1e20, 1e-25):
        add(f"mesh_to_data-float32_scaled_{scale:g}", m2d, "either",
            pos=(pos * scale).float(), face=face)
    add("mesh_to_data-float64_scaled_1e200", m2d, "either", pos=pos * 1e200, face=face)
    add("mesh_to_data-degenerate_face", m2d, "either", pos=pos,
        face=torch.cat([face, torch.tensor([[0], [0], [1]])], 1))

    rng = _randn(40, 3, seed=7)
    p2d = D.points_to_data
    add("points_to_data-valid", p2d, "ok", pos=rng, k=6)
    add("points_to_data-radius", p2d, "ok", pos=rng, r=0.8)
    add("points_to_data-pos_nan", p2d, "raise", pos=_set_first(rng, float("nan")), k=6)
    add("points_to_data-pos_inf", p2d, "raise", pos=_set_first(rng, float("inf")), k=6)
    add("points_to_data-pos_int", p2d, "either", pos=(rng * 10).round().long(), k=6)
    add("points_to_data-pos_flat", p2d, "raise", pos=rng.reshape(-1), k=6)
    add("points_to_data-pos_4cols", p2d, "raise", pos=_randn(40, 4), k=6)
    add("points_to_data-empty", p2d, "either", pos=rng[:0], k=6)
    add("points_to_data-k_zero", p2d, "either", pos=rng, k=0)
    add("points_to_data-k_negative", p2d, "raise", pos=rng, k=-3)
    add("points_to_data-k_above_n", p2d, "either", pos=rng[:5], k=9)
    add("points_to_data-r_negative", p2d, "raise", pos=rng, r=-1.0)
    add("points_to_data-r_nan", p2d, "raise", pos=rng, r=float("nan"))
    add("points_to_data-duplicate_points", p2d, "either", pos=rng[:1].repeat(10, 1), k=4)
    add("points_to_data-batch_short", p2d, "raise", pos=rng, k=6,
        batch=torch.zeros(39, dtype=torch.long))
    add("points_to_data-batch_float", p2d, "raise", pos=rng, k=6, batch=torch.zeros(40))
    add("points_to_data-normal_short", p2d, "raise", pos=rng, k=6, normal=rng[:-1])
    add("points_to_data-normal_nan", p2d, "raise", pos=rng, k=6,
        normal=_set_first(rng, float("nan")))
    add("points_to_data-float32_scaled_1e20", p2d, "either", pos=(rng * 1e20).float(), k=6)

    en = D.estimate_normals
    add("estimate_normals-valid", en, "ok", pos=rng, k=8)
    add("estimate_normals-pos_nan", en, "raise", pos=_set_first(rng, float("nan")), k=8)
    add("estimate_normals-k_one", en, "either", pos=rng, k=1)
    add("estimate_normals-collinear", en, "either",
        pos=torch.linspace(0, 1, 20, dtype=torch.float64)[:, None].repeat(1, 3), k=5)

    pcl = D.point_cloud_laplacian
    add("point_cloud_laplacian-valid", pcl, "ok", pos=rng, k=8)
    add("point_cloud_laplacian-pos_nan", pcl, "raise", pos=_set_first(rng, float("nan")), k=8)
    add("point_cloud_laplacian-duplicates", pcl, "either",
        pos=torch.cat([rng, rng[:5]]), k=8)
    add("point_cloud_laplacian-float32_scaled_1e-25", pcl, "either",
        pos=(rng * 1e-25).float(), k=8)
    add("point_cloud_laplacian-k_above_n", pcl, "either", pos=rng[:6], k=30)

    img = _randn(2, 4, 5, dtype=torch.float32)
    g2d = D.grid_to_data
    add("grid_to_data-valid", g2d, "ok", image=img)
    add("grid_to_data-rank1", g2d, "raise", image=img.reshape(-1))
    add("grid_to_data-rank6", g2d, "raise", image=img.reshape(1, 1, 1, 2, 4, 5))
    add("grid_to_data-int", g2d, "either", image=(img * 10).long())
    add("grid_to_data-zero_height", g2d, "either", image=img[:, :0])
    add("grid_to_data-radius_negative", g2d, "raise", image=img, radius=-1)
    add("grid_to_data-radius_float", g2d, "raise", image=img, radius=1.5)
    add("grid_to_data-nan", g2d, "garbage", image=_set_first(img, float("nan")))
    add("grid_to_data-not_tensor", g2d, "raise", image=img.tolist())

    def lift(mutate):
        def fn(group="p4"):
            data = grid().clone()
            mutate(data)
            return D.lift_grid(data, group)
        return fn
    add("lift_grid-valid", lift(lambda d: None), "ok")
    add("lift_grid-bad_group", lift(lambda d: None), "raise", group="p5")
    add("lift_grid-edge_index_transposed",
        lift(lambda d: setattr(d, "edge_index", d.edge_index.t().contiguous())), "raise")
    add("lift_grid-edge_offset_short",
        lift(lambda d: setattr(d, "edge_offset", d.edge_offset[:-1])), "raise")
    add("lift_grid-no_edge_offset", lift(lambda d: delattr(d, "edge_offset")), "either")

    s2d = D.sequence_to_data
    seqs = [_randn(5, 2, dtype=torch.float32), _randn(3, 2, seed=1, dtype=torch.float32)]
    add("sequence_to_data-valid", s2d, "ok", x=seqs)
    add("sequence_to_data-padded", s2d, "ok", x=torch.stack([seqs[0], seqs[0]]),
        lengths=[5, 2])
    add("sequence_to_data-channel_mismatch", s2d, "raise", x=[seqs[0], _randn(3, 4)])
    add("sequence_to_data-rank1_items", s2d, "either", x=[seqs[0][:, 0], seqs[1][:, 0]])
    add("sequence_to_data-empty_list", s2d, "either", x=[])
    add("sequence_to_data-empty_sequence", s2d, "either", x=[seqs[0], seqs[1][:0]])
    add("sequence_to_data-length_too_long", s2d, "raise", x=torch.stack([seqs[0], seqs[0]]),
        lengths=[5, 9])
    add("sequence_to_data-length_negative", s2d, "raise", x=torch.stack([seqs[0], seqs[0]]),
        lengths=[5, -1])
    add("sequence_to_data-lengths_count", s2d, "raise", x=torch.stack([seqs[0], seqs[0]]),
        lengths=[5])
    add("sequence_to_data-lengths_float", s2d, "raise", x=torch.stack([seqs[0], seqs[0]]),
        lengths=torch.tensor([5.0, 2.0]))

    q = sequence()
    sl = D.sequence_layout
    add("sequence_layout-valid", sl, "ok", edge_index=q.edge_index, num_nodes=q.num_nodes)
    add("sequence_layout-transposed", sl, "raise", edge_index=q.edge_index.t().contiguous(),
        num_nodes=q.num_nodes)
    add("sequence_layout-out_of_range", sl, "raise",
        edge_index=_set_first(q.edge_index, q.num_nodes), num_nodes=q.num_nodes)
    add("sequence_layout-cycle", sl, "raise",
        edge_index=torch.tensor([[0, 1, 2], [1, 2, 0]]), num_nodes=3)
    add("sequence_layout-branch", sl, "raise",
        edge_index=torch.tensor([[0, 0], [1, 2]]), num_nodes=3)
    add("sequence_layout-empty", sl, "either", edge_index=q.edge_index[:, :0], num_nodes=0)

    t = torch.arange(q.num_nodes, dtype=torch.float32)
    ws = D.warp_step_sizes
    add("warp_step_sizes-valid", ws, "ok", t=t, edge_index=q.edge_index, num_nodes=q.num_nodes)
    add("warp_step_sizes-transposed", ws, "raise", t=t, edge_index=q.edge_index.t().contiguous(),
        num_nodes=q.num_nodes)
    add("warp_step_sizes-t_short", ws, "raise", t=t[:-1], edge_index=q.edge_index,
        num_nodes=q.num_nodes)
    add("warp_step_sizes-t_nan", ws, "garbage", t=_set_first(t, float("nan")),
        edge_index=q.edge_index, num_nodes=q.num_nodes)

    ico = D.icosphere
    add("icosphere-negative", ico, "raise", subdivisions=-1)
    add("icosphere-float", ico, "raise", subdivisions=1.5)
    add("icosphere-int_dtype", ico, "raise", subdivisions=1, dtype=torch.long)

    s = sphere()
    pimg = _randn(3, 8, 8, dtype=torch.float64)
    add("project_image-valid", D.project_image, "ok", image=pimg, pos=s.pos)
    add("project_image-pos_nan", D.project_image, "raise", image=pimg,
        pos=_set_first(s.pos, float("nan")))
    add("project_image-fov_zero", D.project_image, "raise", image=pimg, pos=s.pos, fov=0.0)
    add("project_image-rank1", D.project_image, "raise", image=pimg.reshape(-1), pos=s.pos)
    return cases


CONVERTERS = converter_cases()
