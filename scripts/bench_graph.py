r"""Forward+backward timings of the three GNN flavours of gdl_pyg next to the
PyG layers they generalise (GCNConv, GATConv, GINConv, GINEConv), eager and
compiled, plus the sparse-matmul paths (CSR :obj:`adj_t`).

    python scripts/bench_graph.py --device cpu
    python scripts/bench_graph.py --device cuda --nodes 100000 --edges 2000000

Random graph: ``--nodes`` nodes, ``--edges`` uniformly random directed edges,
``--channels`` features in and out, float32. Each row is the median of
``--reps`` timed runs after ``--warmup`` untimed ones (compiled rows: after
compilation, which is timed separately). ``--no-compile`` skips
:func:`torch.compile` (which takes tens of seconds per layer on a small CPU);
``--rows GIN,GCN`` times only the rows whose name contains one of the
comma-separated strings.

Compiled rows that cannot run say why under the table: PyG's symmetric GCN
normalisation of a sparse :obj:`adj_t` (``gcn_norm`` inside
:class:`~torch_geometric.nn.conv.GCNConv`, and the same path of
:class:`ConvolutionalConv`) does not trace under :func:`torch.compile` with
torch sparse tensors (dynamo's fake tensors fail on them with an
:class:`IndexError`; with :class:`torch_sparse.SparseTensor` with a
:class:`RuntimeError`), so those two rows are not compiled; their compiled
peers are the rows on the precomputed normalised adjacency
(``gcn_adjacency``), which compile for PyG's layer and ours.
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


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_fwd_bwd(fn, args, device, warmup, reps):
    def step():
        out = fn(*args)
        out.sum().backward()

    for _ in range(warmup):
        step()
    times = []
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


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
          f"median of {args.reps} fwd+bwd runs")

    def mlp():
        return torch.nn.Sequential(torch.nn.Linear(F, F), torch.nn.ReLU(),
                                   torch.nn.Linear(F, F))

    no_norm_compile = ("torch.compile cannot trace PyG's gcn_norm on a sparse adj_t "
                       "(fails for PyG's GCNConv too); see the rows on gcn_adjacency")
    rows = [
        ("GCNConv (PyG)", GCNConv(F, F), (x, edge_index)),
        ("GCNConv (PyG) CSR adj_t", GCNConv(F, F), (x, adj_t), no_norm_compile),
        ("GCNConv (PyG) CSR gcn_adjacency",
         GCNConv(F, F, normalize=False, add_self_loops=False), (x, adj_norm)),
        ("ConvolutionalConv edge_index", ConvolutionalConv(F, F), (x, edge_index)),
        ("ConvolutionalConv CSR adj_t (norm+spmm)", ConvolutionalConv(F, F), (x, adj_t),
         no_norm_compile),
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
    if args.rows:
        wanted = [w.strip() for w in args.rows.split(",") if w.strip()]
        rows = [row for row in rows if any(w in row[0] for w in wanted)]
    print(f"{'layer':40s} {'eager ms':>10s} {'compiled ms':>12s} {'compile s':>10s}")
    notes = []
    for name, module, inputs, *skip in rows:
        module = module.to(device)
        eager = time_fwd_bwd(module, inputs, device, args.warmup, args.reps) * 1e3
        compiled, ctime = "-", "-"
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
                compiled = f"{time_fwd_bwd(cmod, inputs, device, 1, args.reps) * 1e3:.1f}"
            except Exception as e:  # report, keep benchmarking the others
                compiled = f"failed: {type(e).__name__}"
                notes.append(f"{name}: compile failed: {type(e).__name__}: "
                             f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}")
        print(f"{name:40s} {eager:10.1f} {compiled:>12s} {ctime:>10s}", flush=True)
    for note in notes:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
