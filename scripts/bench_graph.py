r"""Forward+backward timings of the three GNN flavours of gdl_pyg next to the
PyG layers they generalise (GCNConv, GATConv, GINConv, GINEConv), eager and
compiled, plus the sparse-matmul paths (CSR :obj:`adj_t`).

    python scripts/bench_graph.py --device cpu
    python scripts/bench_graph.py --device cuda --nodes 100000 --edges 2000000

Random graph: ``--nodes`` nodes, ``--edges`` uniformly random directed edges,
``--channels`` features in and out, float32. Each row gives the median of
``--reps`` timed forward+backward runs after ``--warmup`` untimed ones, eager
and compiled (after compilation, which is timed separately), and
``compiled/eager``: the median of the paired ratios of the two, whose runs
alternate (eager, compiled, eager, ...) so that both see the same machine
load. Compare a layer with its PyG peer through the ratios of their rows
(``scripts/bench_all.py`` does). ``--no-compile`` skips
:func:`torch.compile` (which takes tens of seconds per layer on a small CPU);
``--rows GIN,GCN`` times only the rows whose name contains one of the
comma-separated strings.

Compiled rows on sparse input: dynamo takes no sparse tensors (it refuses
to wrap them). A layer given a CSR :obj:`adj_t` then runs its own frame
eagerly and only the functions it calls with dense tensors are compiled:
for gdl_pyg's layers that is the aggregation over the nonzeros, compiled
from the dense parts of the adjacency; for PyG's layers next to nothing, so
their compiled rows on sparse input measure eager code. PyG's symmetric GCN
normalisation of a sparse :obj:`adj_t` (``gcn_norm`` inside
:class:`~torch_geometric.nn.conv.GCNConv`) fails under :func:`torch.compile`
(an :class:`IndexError` in dynamo's shape inference on the sparse values),
so that row is not compiled and says why under the table;
:class:`ConvolutionalConv` normalises a sparse :obj:`adj_t` without it and
is compiled there.

With torch_sparse installed, four rows run on the same adjacency as a
:class:`torch_sparse.SparseTensor`, which dynamo does trace: gdl_pyg's
layers read its stored tensors and compile in one graph; PyG's call
torch_sparse's kernels, which have no fake-tensor implementations, so their
compiled rows are skipped (and say why).
"""
import argparse
import os
import statistics
import sys
import time
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # noqa: E402
from torch_geometric.nn import GATConv, GCNConv, GINConv, GINEConv
from torch_geometric.utils import to_torch_csr_tensor

from gdl_pyg.nn.conv.attentional_conv import AttentionalConv
from gdl_pyg.nn.conv.convolutional_conv import ConvolutionalConv, gcn_adjacency
from gdl_pyg.nn.conv.message_passing_conv import MessagePassingConv
from gdl_pyg.typing import WITH_TORCH_SPARSE


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_fwd_bwd(fns, args, device, warmup, reps):
    r"""Forward+backward times of each of :obj:`fns` on the same inputs, the
    runs of the functions alternating; returns one list of times per
    function."""
    def step(fn):
        out = fn(*args)
        out.sum().backward()

    for _ in range(warmup):
        for fn in fns:
            step(fn)
    times = [[] for _ in fns]
    for _ in range(reps):
        for fn, ts in zip(fns, times):
            sync(device)
            t = time.perf_counter()
            step(fn)
            sync(device)
            ts.append(time.perf_counter() - t)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--edges", type=int, default=200_000)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--edge-dim", type=int, default=16)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--rows", default="",
                        help="comma-separated substrings; time only the rows whose name "
                             "contains one of them (default: all rows)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    device = torch.device(args.device)
    N, E, F, H, D = args.nodes, args.edges, args.channels, args.heads, args.edge_dim
    gen = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, N, (2, E), generator=gen).to(device)
    x = torch.randn(N, F, generator=gen).to(device).requires_grad_()
    edge_attr = torch.randn(E, D, generator=gen).to(device)
    adj_t = to_torch_csr_tensor(edge_index.flip(0), size=(N, N))  # pattern, built once
    # the GCN coefficients of the sparse path, precomputed once (as a transform would)
    adj_norm = gcn_adjacency(edge_index, num_nodes=N)
    print(f"device={device} ({torch.get_num_threads()} threads), torch {torch.__version__}, "
          f"N={N}, E={E}, F={F}, heads={H}, edge_dim={D}, float32, "
          f"median of {args.reps} fwd+bwd runs (eager and compiled alternating)")

    def mlp():
        return torch.nn.Sequential(torch.nn.Linear(F, F), torch.nn.ReLU(),
                                   torch.nn.Linear(F, F))

    no_norm_compile = ("torch.compile cannot trace PyG's gcn_norm on a sparse adj_t "
                       "(IndexError in dynamo's shape inference); see the rows on "
                       "gcn_adjacency, and ConvolutionalConv's, which normalises without it")
    rows = [
        ("GCNConv (PyG)", GCNConv(F, F), (x, edge_index)),
        ("GCNConv (PyG) CSR adj_t", GCNConv(F, F), (x, adj_t), no_norm_compile),
        ("GCNConv (PyG) CSR gcn_adjacency",
         GCNConv(F, F, normalize=False, add_self_loops=False), (x, adj_norm)),
        ("ConvolutionalConv edge_index", ConvolutionalConv(F, F), (x, edge_index)),
        ("ConvolutionalConv CSR adj_t (norm+spmm)", ConvolutionalConv(F, F), (x, adj_t)),
        ("ConvolutionalConv CSR gcn_adjacency",
         ConvolutionalConv(F, F, normalize=False, add_self_loops=False), (x, adj_norm)),
        ("GATConv (PyG)", GATConv(F, F // H, heads=H), (x, edge_index)),
        ("AttentionalConv", AttentionalConv(F, F // H, heads=H), (x, edge_index)),
        ("GINConv (PyG)", GINConv(mlp()), (x, edge_index)),
        ("MessagePassingConv (GIN)", MessagePassingConv(phi=mlp()), (x, edge_index)),
        ("GINConv (PyG) CSR adj_t", GINConv(mlp()), (x, adj_t)),
        ("MessagePassingConv (GIN) CSR adj_t", MessagePassingConv(phi=mlp()), (x, adj_t)),
        ("GINEConv (PyG)", GINEConv(mlp(), edge_dim=D), (x, edge_index, edge_attr)),
        ("MessagePassingConv (GINE)",
         MessagePassingConv(phi=mlp(), edge_dim=D, in_channels=F), (x, edge_index, edge_attr)),
    ]
    if WITH_TORCH_SPARSE:  # the same adjacency as a torch_sparse.SparseTensor
        from torch_sparse import SparseTensor
        adj_st = SparseTensor.from_edge_index(edge_index, sparse_sizes=(N, N)).t()
        no_st_compile = ("torch.compile cannot trace torch_sparse's kernels (no fake-tensor "
                         "implementations: TorchRuntimeError)")
        rows += [
            ("GCNConv (PyG) SparseTensor", GCNConv(F, F), (x, adj_st), no_st_compile),
            ("ConvolutionalConv SparseTensor (norm)", ConvolutionalConv(F, F), (x, adj_st)),
            ("GINConv (PyG) SparseTensor", GINConv(mlp()), (x, adj_st), no_st_compile),
            ("MessagePassingConv (GIN) SparseTensor", MessagePassingConv(phi=mlp()),
             (x, adj_st)),
        ]
    if args.rows:
        wanted = [w.strip() for w in args.rows.split(",") if w.strip()]
        rows = [row for row in rows if any(w in row[0] for w in wanted)]
    print(f"{'layer':40s} {'eager ms':>10s} {'compiled ms':>12s} {'compile s':>10s} "
          f"{'compiled/eager':>15s}")
    notes = []
    for name, module, inputs, *skip in rows:
        module = module.to(device)
        compiled, ctime, ratio, cmod = "-", "-", "-", None
        if args.compile and skip:
            compiled = "skipped"
            notes.append(f"{name}: not compiled: {skip[0]}")
        elif args.compile:
            torch._dynamo.reset()
            try:
                cmod = torch.compile(module)
                t = time.perf_counter()
                out = cmod(*inputs)
                out.sum().backward()
                sync(device)
                ctime = f"{time.perf_counter() - t:.1f}"
            except Exception as e:  # report, keep benchmarking the others
                cmod, compiled = None, f"failed: {type(e).__name__}"
                notes.append(f"{name}: compile failed: {type(e).__name__}: "
                             f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}")
        fns = [module] if cmod is None else [module, cmod]
        times = time_fwd_bwd(fns, inputs, device, args.warmup, args.reps)
        eager = statistics.median(times[0]) * 1e3
        if cmod is not None:
            compiled = f"{statistics.median(times[1]) * 1e3:.1f}"
            ratio = f"{statistics.median(c / e for e, c in zip(*times)):.2f}x"
        print(f"{name:40s} {eager:10.1f} {compiled:>12s} {ctime:>10s} {ratio:>15s}", flush=True)
    if args.compile and any(isinstance(row[2][1], torch.Tensor) and row[2][1].is_sparse_csr
                            for row in rows):
        notes.append("compiled rows on a CSR adj_t: dynamo takes no sparse tensors, so the "
                     "layers run their own frames eagerly; gdl_pyg's compile their sum over "
                     "the nonzeros from the dense parts of adj_t, PyG's next to nothing")
    for note in notes:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
