r"""``torch.compile`` against eager mode for the layers of
:mod:`gdl_pyg.nn.conv` that no other benchmark times compiled: each layer,
forward + backward on one input of a realistic size, compiled and eager
interleaved in the same process.

    python scripts/bench_compile.py                        # every case, inductor, CPU, 1 thread
    python scripts/bench_compile.py --only GEMConv,SphereConv
    python scripts/bench_compile.py --quick --compile-backend aot_eager   # a smoke test
    python scripts/bench_compile.py --models                # and the models of the configs
    python scripts/bench_compile.py --device cuda

The graph layers (``MessagePassingConv``, ``ConvolutionalConv``,
``AttentionalConv``) are timed compiled by ``scripts/bench_graph.py`` and
``TensorFieldConv`` / ``EGNNConv`` by ``scripts/bench_e3.py``; this script
covers the others: ``DeepSetsConv``, ``GraphTransformerConv`` (edge and
complete attention), ``GridConv``, ``LiftingConv`` / ``GroupConv`` (p4, p4m)
on their fast paths, ``GEMConv``, ``GeodesicConv``, ``DiffusionConv``
(Chebyshev with a fixed number of terms, spectral), ``SphereConv``
(isotropic, harmonic) and ``GatedRecurrentConv`` / ``GatedLSTMConv`` with a
precomputed :func:`~gdl_pyg.domains.sequence.sequence_layout`; and, as the
floor of the grid rows, PyTorch's own ``Conv2d`` on the same image in the
channels-last layout of the fast path (compiling a lone convolution gains
nothing over the mkldnn kernel it calls, so those rows measure the cost of
the compiled call itself). With ``--models``, also the model of each of
several ``gdl-pyg fit`` configs (``MODEL_CONFIGS``) on one batch of its
training data, in eval mode (rows ``model: CONFIG``), and the same layers as
``cnn_digits``' model in plain PyTorch (``Conv2d``, ``max_pool2d``) on a
batch of the same shape, the floor of the grid model rows.

For each case: the graphs and graph breaks that dynamo finds
(:func:`torch._dynamo.explain`), the seconds of the first compiled forward +
backward (the compilation), the largest difference of the compiled output
from the eager one (float32; inductor reorders sums, so the check is
``<= 1e-4`` x the output's scale) and then ``--repeats`` interleaved rounds
of one eager and one compiled step each, after ``--warmup`` untimed rounds.
The ratio is the median of the paired ratios ``compiled / eager`` (below 1
means compiling pays); issue 11 asks for at most 1.0 everywhere. A case
that fails becomes a row saying so, and the others go on; the exit status is
1 if any case failed or a compiled output differs.

The rows are printed as a markdown table and, with ``--out``, written as JSON.
"""
import argparse
import json
import statistics
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Uninstalled.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_e3 import COMPILED_TOL, fwd_bwd, interleaved, max_diff, paired_ratio  # noqa: E402

#: ``name -> factory(args) -> (module, args tuple, kwargs dict, input description)``
Factory = Callable[[argparse.Namespace], Tuple[torch.nn.Module, tuple, dict, str]]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _leaf(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed)).requires_grad_()


# --------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------

def deep_sets(args):
    from gdl_pyg.nn.conv import DeepSetsConv

    n, sets, C = args.nodes, max(args.nodes // 100, 1), args.channels
    batch = torch.arange(sets).repeat_interleave(n // sets)
    x = _leaf(batch.numel(), C)
    return (DeepSetsConv(C, C), (x, batch), dict(batch_size=sets),
            f"{sets} sets of {n // sets}, F={C}")


def _random_graph(n: int, degree: int, seed: int = 0) -> torch.Tensor:
    r"""``degree`` random sources per target, self-loops dropped, sorted by
    target (the order of PyG's ``radius_graph``)."""
    src = torch.randint(0, n, (n * degree,), generator=_gen(seed))
    dst = torch.arange(n).repeat_interleave(degree)
    keep = src != dst
    return torch.stack([src[keep], dst[keep]])


def transformer_edges(args):
    from gdl_pyg.nn.conv import GraphTransformerConv

    n, C = args.nodes // 4, args.channels
    edge_index = _random_graph(n, 20)
    return (GraphTransformerConv(C, C // 4, heads=4), (_leaf(n, C), edge_index), {},
            f"N={n}, E={edge_index.size(1)}, 4 heads x {C // 4}")


def transformer_complete(args):
    from gdl_pyg.nn.conv import GraphTransformerConv

    graphs, size, C = 8, max(args.nodes // 80, 4), args.channels
    batch = torch.arange(graphs).repeat_interleave(size)
    return (GraphTransformerConv(C, C // 4, heads=4), (_leaf(graphs * size, C),),
            dict(batch=batch, batch_size=graphs, max_num_nodes=size),
            f"complete attention, {graphs} graphs of {size}, 4 heads x {C // 4}")


def _grid(args, channels: int):
    from gdl_pyg.domains.grid import grid_to_data

    S = args.size
    img = torch.randn(args.batch, channels, S, S, generator=_gen())
    return grid_to_data(img, batched=True, radius=1), S


def grid_conv(args):
    from gdl_pyg.nn.conv import GridConv

    C = args.channels // 4
    data, S = _grid(args, C)
    return (GridConv(C, C, 3), (data.x.requires_grad_(), data.edge_index, data.edge_offset,
                                (S, S)), {}, f"B={args.batch}, {C} -> {C} channels, {S}x{S}, k=3")


def conv2d(args):
    r"""PyTorch's own ``Conv2d`` on the same image as :func:`grid_conv`, in the
    channels-last layout of GridConv's fast path: what compiling a lone
    convolution costs or saves (the floor of the grid rows)."""
    C, S = args.channels // 4, args.size
    img = torch.randn(args.batch, C, S, S, generator=_gen())
    img = img.contiguous(memory_format=torch.channels_last).requires_grad_()
    return (torch.nn.Conv2d(C, C, 3, padding=1), (img,), {},
            f"B={args.batch}, {C} -> {C} channels, {S}x{S}, k=3, channels-last")


def _lifted(args, group: str):
    from gdl_pyg.domains.lifted_grid import lift_grid

    C = max(args.channels // 16, 1)
    data, S = _grid(args, C)
    lifted = lift_grid(data, group)
    return data, lifted, C, S


def lifting_conv(args):
    from gdl_pyg.nn.conv import LiftingConv

    data, _, C, S = _lifted(args, "p4")
    return (LiftingConv(C, C, 3, "p4"), (data.x.requires_grad_(), data.edge_index,
                                         data.edge_offset, (S, S)), {},
            f"p4, B={args.batch}, {C} -> {C}x4 channels, {S}x{S}, k=3")


def group_conv(group: str) -> Factory:
    def factory(args):
        from gdl_pyg.nn.conv import GroupConv

        _, lifted, C, S = _lifted(args, group)
        conv = GroupConv(C, C, 3, group)
        x = _leaf(lifted.num_nodes, C)
        return (conv, (x, lifted.edge_index, lifted.edge_offset, lifted.group_elem, (S, S)), {},
                f"{group}, B={args.batch}, {C}x{conv.order} -> {C}x{conv.order} channels, "
                f"{S}x{S}, k=3")
    return factory


_MESH: Dict[int, object] = {}


def _mesh(args):
    r"""``mesh_to_data`` of the icosphere nearest ``--mesh-vertices`` (float32)."""
    if args.mesh_vertices not in _MESH:
        from bench_mesh import icosphere
        from gdl_pyg.domains.mesh import mesh_to_data

        pos, face = icosphere(args.mesh_vertices)
        _MESH[args.mesh_vertices] = mesh_to_data(pos.float(), face)
    return _MESH[args.mesh_vertices]


def mesh_layer(index: int) -> Factory:
    r"""The ``index``-th gdl_pyg case of ``scripts/bench_mesh.py`` (GEMConv,
    GeodesicConv, DiffusionConv Chebyshev / spectral), with its inputs."""
    def factory(args):
        from bench_mesh import layer_cases

        data = _mesh(args)
        cases = [c for c in layer_cases(data, args.channels, 1, 8, 8, torch.device("cpu"))
                 if "PyG" not in c[0]]
        name, make = cases[index]
        made = make()
        module, inputs = made[0], made[1]
        kwargs = made[2] if len(made) > 2 else {}
        return module, inputs, kwargs, (f"{name}, N={data.num_nodes}, "
                                        f"E={data.edge_index.size(1)}")
    return factory


def sphere_conv(kernel: str) -> Factory:
    def factory(args):
        from torch_geometric.data import Batch

        from gdl_pyg.domains.sphere import icosphere
        from gdl_pyg.nn.conv import SphereConv

        graphs, C = 4, args.channels // 4
        batch = Batch.from_data_list([icosphere(args.sphere_level, dtype=torch.float32)] * graphs)
        x = _leaf(batch.num_nodes, C)
        return (SphereConv(C, C, kernel=kernel),
                (x, batch.pos, batch.edge_index),
                dict(batch=batch.batch, batch_size=graphs),
                f"{kernel}, {graphs} icospheres of level {args.sphere_level} "
                f"({batch.num_nodes // graphs} vertices), {C} channels")
    return factory


def recurrent(kind: str) -> Factory:
    def factory(args):
        from gdl_pyg.domains.sequence import sequence_layout, sequence_to_data
        from gdl_pyg.nn.conv import GatedLSTMConv, GatedRecurrentConv

        B, T, F, H = 32, args.seq_len, 8, args.channels // 2
        data = sequence_to_data([torch.randn(T, F, generator=_gen(b)) for b in range(B)])
        layout = sequence_layout(data.edge_index, data.num_nodes)
        conv = (GatedRecurrentConv if kind == "gru" else GatedLSTMConv)(F, H)
        return (conv, (data.x.requires_grad_(), data.edge_index), dict(layout=layout),
                f"{B} sequences of {T}, {F} -> {H} hidden, precomputed layout")
    return factory


CASES: Dict[str, Factory] = {
    "DeepSetsConv": deep_sets,
    "GraphTransformerConv (edges)": transformer_edges,
    "GraphTransformerConv (complete)": transformer_complete,
    "GridConv (fast path)": grid_conv,
    "torch.nn.Conv2d (the peer of GridConv)": conv2d,
    "LiftingConv (fast path)": lifting_conv,
    "GroupConv p4 (fast path)": group_conv("p4"),
    "GroupConv p4m (fast path)": group_conv("p4m"),
    "GEMConv": mesh_layer(0),
    "GeodesicConv": mesh_layer(1),
    "DiffusionConv (chebyshev)": mesh_layer(2),
    "DiffusionConv (spectral)": mesh_layer(3),
    "SphereConv (isotropic)": sphere_conv("isotropic"),
    "SphereConv (harmonic)": sphere_conv("harmonic"),
    "GatedRecurrentConv": recurrent("gru"),
    "GatedLSTMConv": recurrent("lstm"),
}


#: The configs of ``gdl-pyg fit`` whose models ``--models`` times.
MODEL_CONFIGS = ("cnn_digits", "gcnn_digits", "spherical_cnn_digits", "gnn_graphs",
                 "transformer_graphs", "deepsets_sets", "gem_shapes", "geodesic_deform",
                 "diffusion_shapes", "egnn_nbody", "tfn_nbody", "sequence_warp")


def config_model(name: str) -> Factory:
    r"""The model of ``gdl-pyg fit --config NAME`` on the first batch of its
    training data, in eval mode (no dropout: compiled and eager compute the
    same function), after one eager call (caches such as the coarse
    icospheres filled, as after a first training step)."""
    def factory(args):
        import logging

        from gdl_pyg.lightning.cli import GdlCLI, config_path

        logging.getLogger("lightning").setLevel(logging.ERROR)
        saved, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns when given both
        try:
            cli = GdlCLI(subclass_mode_model=True, subclass_mode_data=True, run=False,
                         args=["--config", config_path(name), "--trainer.logger", "false"])
        finally:
            sys.argv = saved
        data = cli.datamodule
        data.prepare_data()
        data.setup("fit")
        batch = next(iter(data.train_dataloader()))
        model = cli.model.model.eval()
        with torch.no_grad():
            model(batch)
        graphs = getattr(batch, "num_graphs", 1)
        return (model, (batch,), {}, f"{type(model).__name__}, config {name}: one training "
                f"batch ({graphs} graphs, {batch.num_nodes} nodes), eval mode")
    return factory


class TorchCNN(torch.nn.Module):
    r"""The layers of ``cnn_digits``' ``GridCNN`` in plain PyTorch: three 3x3
    convolutions with ReLU, a 2x2 max pooling after the first two, a mean
    over the pixels and a linear classifier."""

    def __init__(self, in_channels: int = 1, hidden: int = 32, classes: int = 10):
        super().__init__()
        self.convs = torch.nn.ModuleList([
            torch.nn.Conv2d(in_channels if i == 0 else hidden, hidden, 3, padding=1)
            for i in range(3)])
        self.lin = torch.nn.Linear(hidden, classes)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            img = conv(img).relu()
            if i < 2:
                img = torch.nn.functional.max_pool2d(img, 2)
        return self.lin(img.mean((2, 3)))


def torch_cnn(args):
    r""":class:`TorchCNN` on a batch shaped like ``cnn_digits``' (64 images
    of 8x8, channels-last): what compiling costs or saves a small CNN of
    PyTorch's own layers, the floor of the grid model rows."""
    img = torch.randn(64, 1, 8, 8, generator=_gen())
    img = img.contiguous(memory_format=torch.channels_last).requires_grad_()
    return (TorchCNN().eval(), (img,), {},
            "3 Conv2d + ReLU, 2 max_pool2d, mean, Linear; 64 images of 8x8, channels-last")


MODELS: Dict[str, Factory] = {f"model: {name}": config_model(name) for name in MODEL_CONFIGS}
MODELS["model: torch CNN (the peer of cnn_digits)"] = torch_cnn


# --------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------

def _step(module, inputs, kwargs) -> Callable[[], None]:
    r"""forward + backward of ``sum(output)``, no gradient accumulation."""
    class _Bound(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = module

        def forward(self, *a):
            return self.inner(*a, **kwargs)
    if not kwargs:
        return fwd_bwd(module, inputs)
    return fwd_bwd(_Bound(), inputs)


def _to(value, device: torch.device):
    r"""``value`` on ``device``: tensors (leaves stay leaves), and the tuples,
    named tuples and dicts holding them."""
    if isinstance(value, torch.Tensor):
        return value.detach().to(device).requires_grad_(value.requires_grad)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(_to(v, device) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_to(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    if hasattr(value, "stores") and hasattr(value, "to"):  # a PyG Data / Batch
        return value.to(device)
    return value


def bench_case(name: str, factory: Factory, args) -> Dict:
    row: Dict = {"case": name}
    device = torch.device(args.device)
    torch.manual_seed(0)
    module, inputs, kwargs, what = factory(args)
    module, inputs, kwargs = module.to(device), _to(inputs, device), _to(kwargs, device)
    row["input"] = what
    torch._dynamo.reset()
    explain = torch._dynamo.explain(module)(*inputs, **kwargs)
    row["graphs"], row["breaks"] = explain.graph_count, explain.graph_break_count
    torch._dynamo.reset()
    compiled = torch.compile(module, backend=args.compile_backend)
    eager_step, compiled_step = _step(module, inputs, kwargs), _step(compiled, inputs, kwargs)
    t = time.perf_counter()
    compiled_step()
    row["compile_s"] = time.perf_counter() - t
    with torch.no_grad():
        diff, ok = max_diff(compiled(*inputs, **kwargs), module(*inputs, **kwargs), COMPILED_TOL)
    row["max_diff"], row["check"] = diff, ok
    times = interleaved({"eager": eager_step, "compiled": compiled_step}, args.repeats,
                        args.warmup, device, args.budget)
    row["eager_ms"] = statistics.median(times["eager"]) * 1e3
    row["compiled_ms"] = statistics.median(times["compiled"]) * 1e3
    row["ratio"] = paired_ratio(times["compiled"], times["eager"])
    row["rounds"] = len(times["eager"])
    return row


def markdown(rows: List[Dict]) -> str:
    out = ["| layer | input | graphs / breaks | compile s | eager ms | compiled ms | "
           "compiled / eager | check |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['case']} | {r.get('input', '-')} | - | - | - | - | - | "
                       f"FAILED: {r['error']} |")
            continue
        out.append(f"| {r['case']} | {r['input']} | {r['graphs']} / {r['breaks']} | "
                   f"{r['compile_s']:.1f} | {r['eager_ms']:.2f} | {r['compiled_ms']:.2f} | "
                   f"{r['ratio']:.2f} | {r['max_diff']:.1e} vs eager, float32 "
                   f"({'ok' if r['check'] else 'FAILED'}) |")
    return "\n".join(out)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads (default: 1)")
    parser.add_argument("--only", default=None,
                        help="comma-separated case names or prefixes (default: all): "
                             + ", ".join(CASES))
    parser.add_argument("--compile-backend", default="inductor",
                        help="torch.compile backend (default: inductor; aot_eager checks the "
                             "graphs without generating kernels)")
    parser.add_argument("--nodes", type=int, default=None,
                        help="nodes of the point and graph cases (default: 10000, --quick: 400)")
    parser.add_argument("--channels", type=int, default=None,
                        help="feature width (default: 64, --quick: 16)")
    parser.add_argument("--batch", type=int, default=None,
                        help="images per grid batch (default: 8, --quick: 2)")
    parser.add_argument("--size", type=int, default=None,
                        help="image side (default: 64, --quick: 12)")
    parser.add_argument("--mesh-vertices", type=int, default=None,
                        help="icosphere vertices of the mesh layers (default: 10000, "
                             "--quick: 200)")
    parser.add_argument("--sphere-level", type=int, default=None,
                        help="icosphere subdivisions of SphereConv (default: 4, --quick: 1)")
    parser.add_argument("--seq-len", type=int, default=None,
                        help="sequence length of the recurrent cases (default: 50, --quick: 6)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed rounds (default: 15, --quick: 3)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed rounds first (default: 2, --quick: 1)")
    parser.add_argument("--budget", type=float, default=30.0,
                        help="seconds per case: fewer rounds (at least 3) where --repeats "
                             "would take longer (default: 30)")
    parser.add_argument("--models", action="store_true",
                        help="also the models of the configs " + ", ".join(MODEL_CONFIGS)
                        + " (names 'model: CONFIG'), each on a batch of its training data "
                        "(sizes as configured)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few rounds")
    parser.add_argument("--out", default=None, help="also write the rows here as JSON")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but CUDA is not available")
    q = args.quick
    for key, full, quick in (("nodes", 10000, 400), ("channels", 64, 16), ("batch", 8, 2),
                             ("size", 64, 12), ("mesh_vertices", 10000, 200),
                             ("sphere_level", 4, 1), ("seq_len", 50, 6), ("repeats", 15, 3),
                             ("warmup", 2, 1)):
        if getattr(args, key) is None:
            setattr(args, key, quick if q else full)
    cases = dict(CASES, **MODELS) if args.models else CASES
    names = list(cases)
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        names = [n for n in cases if any(n == w or n.startswith(w) for w in wanted)]
        unknown = [w for w in wanted if not any(n == w or n.startswith(w) for n in cases)]
        if unknown:
            parser.error(f"--only: unknown case(s) {unknown}; expected names or prefixes of "
                         f"{list(cases)}")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)

    print(f"## torch.compile ({args.compile_backend}) / eager, forward + backward "
          f"({args.device}, {torch.get_num_threads()} thread(s), float32, "
          f"torch {torch.__version__})\n",
          flush=True)
    rows = []
    for name in names:
        t = time.perf_counter()
        try:
            rows.append(bench_case(name, cases[name], args))
        except Exception as e:  # one row saying so; the others go on
            traceback.print_exc()
            rows.append({"case": name, "error": f"{type(e).__name__}: {str(e)[:200]}"})
        r = rows[-1]
        done = (f"{r['ratio']:.2f} ({r['rounds']} rounds)" if "ratio" in r
                else r.get("error", ""))
        print(f"[{len(rows)}/{len(names)}] {name}: {done}, {time.perf_counter() - t:.0f} s",
              file=sys.stderr, flush=True)
    print(markdown(rows))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"backend": args.compile_backend,
                                              "threads": args.threads, "rows": rows},
                                             indent=1))
    failed = [r for r in rows if "error" in r or not r.get("check", True)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
