r"""Mini-batch training with the per-graph structure cached by a pre-transform:
forward + backward timings of gdl_pyg's GCN- and GIN-style layers over an
epoch of mini-batches, on ``edge_index`` (normalised and turned into a CSR in
every call) and on the sparse ``adj_t`` that PyG's transforms store once per
graph, next to PyG's ``GCNConv`` / ``GINConv`` on the same inputs.

    python scripts/bench_cache.py                 # CPU, one thread
    python scripts/bench_cache.py --quick         # a few seconds
    python scripts/bench_cache.py --device cuda --graphs 2000 --nodes 500

Data: ``--graphs`` random graphs of PyG's
:class:`~torch_geometric.datasets.FakeDataset` (about ``--nodes`` nodes and
``--degree`` edges per node each, ``--channels`` float32 features, made in
the script, seed 0), cut into mini-batches of ``--batch-size`` graphs by
PyG's ``DataLoader``. The cached inputs come from pre-transforms run once per
graph, as a dataset's ``pre_transform`` would:

- ``CSR adj_t (GCNNorm)``: ``Compose([GCNNorm(), ToSparseTensor(layout=
  torch.sparse_csr)])``, the GCN coefficients with self loops, for
  ``ConvolutionalConv(normalize=False, add_self_loops=False)`` and
  ``GCNConv(normalize=False)``;
- ``CSR adj_t``: ``ToSparseTensor(layout=torch.sparse_csr)``, the pattern,
  for the GIN-style sum;
- with torch_sparse installed, the same two as a ``SparseTensor``
  (``ToSparseTensor()``).

Every case runs forward + backward of one layer (``sum`` of its output, the
input features requiring grad) on every mini-batch of one epoch; batches are
collated once beforehand, and the time one epoch of ``DataLoader`` collation
takes for each input is in a second table (sparse ``adj_t`` collates
differently from ``edge_index``). The layers of a case and its peer share
their weights; their outputs on the first batch are compared (``check``:
the largest difference relative to the output scale, at most ``1e-4`` in
float32; the GCNNorm coefficients are summed in another order than the
layer's own normalisation). The two run interleaved, ``--rounds`` times after
``--warmup`` untimed rounds; the ratio is the median of the paired ratios
``ours / peer`` (below 1: gdl_pyg faster). Rows with the peer ``(cache
gain)`` compare gdl_pyg's layer on the cached input with the same layer on
``edge_index``.

The tables are printed as markdown and, with ``--out``, written as JSON.
"""
import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Uninstalled.

#: relative tolerance of the float32 output check
TOL = 1e-4


def make_graphs(args) -> list:
    from torch_geometric.datasets import FakeDataset

    torch.manual_seed(0)
    dataset = FakeDataset(num_graphs=args.graphs, avg_num_nodes=args.nodes,
                          avg_degree=args.degree, num_channels=args.channels, edge_dim=0,
                          num_classes=2)
    return [dataset[i] for i in range(len(dataset))]


def input_formats(with_sparse_tensor: bool) -> Dict[str, Optional[Callable]]:
    r"""``input name -> pre-transform`` (:obj:`None`: the raw ``edge_index``)."""
    import torch_geometric.transforms as T

    formats = {
        "edge_index": None,
        "CSR adj_t (GCNNorm)": T.Compose([T.GCNNorm(),
                                          T.ToSparseTensor(layout=torch.sparse_csr)]),
        "CSR adj_t": T.ToSparseTensor(layout=torch.sparse_csr),
    }
    if with_sparse_tensor:
        formats["SparseTensor (GCNNorm)"] = T.Compose([T.GCNNorm(), T.ToSparseTensor()])
        formats["SparseTensor"] = T.ToSparseTensor()
    return formats


def collate(graphs: list, transform, batch_size: int, device: torch.device) -> list:
    from torch_geometric.loader import DataLoader

    data = graphs if transform is None else [transform(g.clone()) for g in graphs]
    return [b.to(device) for b in DataLoader(data, batch_size=batch_size)]


def collate_seconds(graphs: list, transform, batch_size: int) -> float:
    r"""One epoch of ``DataLoader`` collation of the (pre-transformed) graphs."""
    from torch_geometric.loader import DataLoader

    data = graphs if transform is None else [transform(g.clone()) for g in graphs]
    loader = DataLoader(data, batch_size=batch_size)
    t = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - t


def structure(batch):
    return batch.adj_t if "adj_t" in batch else batch.edge_index


def layers(F: int, seed: int = 0) -> Dict[str, Callable[[], torch.nn.Module]]:
    r"""``name -> factory``; every factory draws the same weights."""
    from torch_geometric.nn import GCNConv, GINConv

    from gdl_pyg.nn.conv import ConvolutionalConv, MessagePassingConv

    def gcn(cls, lin: str, **kw):
        # the layer with the same weight (in its Linear 'lin') and bias every time
        def make():
            conv = cls(F, F, **kw)
            torch.manual_seed(seed)
            with torch.no_grad():
                getattr(conv, lin).weight.copy_(torch.randn(F, F) / F ** 0.5)
                conv.bias.copy_(torch.randn(F) * 0.1)
            return conv
        return make

    def mlp():
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(F, F), torch.nn.ReLU(),
                                   torch.nn.Linear(F, F))

    return {
        "ConvolutionalConv": gcn(ConvolutionalConv, "psi"),
        "ConvolutionalConv(normalize=False, add_self_loops=False)":
            gcn(ConvolutionalConv, "psi", normalize=False, add_self_loops=False),
        "GCNConv": gcn(GCNConv, "lin"),
        "GCNConv(normalize=False)": gcn(GCNConv, "lin", normalize=False),
        "MessagePassingConv (GIN)": lambda: MessagePassingConv(phi=mlp()),
        "GINConv": lambda: GINConv(mlp()),
    }


def cases(with_sparse_tensor: bool) -> List[tuple]:
    r"""``(ours, its input, peer, the peer's input)``."""
    out = [
        ("ConvolutionalConv", "edge_index", "GCNConv", "edge_index"),
        ("ConvolutionalConv(normalize=False, add_self_loops=False)", "CSR adj_t (GCNNorm)",
         "GCNConv(normalize=False)", "CSR adj_t (GCNNorm)"),
        ("ConvolutionalConv(normalize=False, add_self_loops=False)", "CSR adj_t (GCNNorm)",
         "ConvolutionalConv", "edge_index"),
        ("MessagePassingConv (GIN)", "edge_index", "GINConv", "edge_index"),
        ("MessagePassingConv (GIN)", "CSR adj_t", "GINConv", "CSR adj_t"),
        ("MessagePassingConv (GIN)", "CSR adj_t", "MessagePassingConv (GIN)", "edge_index"),
    ]
    if with_sparse_tensor:
        out += [
            ("ConvolutionalConv(normalize=False, add_self_loops=False)",
             "SparseTensor (GCNNorm)", "GCNConv(normalize=False)", "SparseTensor (GCNNorm)"),
            ("MessagePassingConv (GIN)", "SparseTensor", "GINConv", "SparseTensor"),
        ]
    return out


def epoch_step(module: torch.nn.Module, batches: list) -> Callable[[], None]:
    xs = [b.x.detach().clone().requires_grad_() for b in batches]
    adjs = [structure(b) for b in batches]

    def step():
        module.zero_grad(set_to_none=True)
        for x, adj in zip(xs, adjs):
            x.grad = None
            module(x, adj).sum().backward()
    return step


def check(ours: torch.nn.Module, peer: torch.nn.Module, a, b) -> float:
    with torch.no_grad():
        out, ref = ours(a.x, structure(a)), peer(b.x, structure(b))
    return float((out - ref).abs().max() / ref.abs().max().clamp(min=1e-12))


def run(args) -> Dict:
    from gdl_pyg.typing import WITH_TORCH_SPARSE

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    graphs = make_graphs(args)
    formats = input_formats(WITH_TORCH_SPARSE)
    batches = {name: collate(graphs, tf, args.batch_size, device) for name, tf in formats.items()}
    make = layers(args.channels)
    rows = []
    for ours_name, ours_in, peer_name, peer_in in cases(WITH_TORCH_SPARSE):
        ours, peer = make[ours_name]().to(device), make[peer_name]().to(device)
        diff = check(ours, peer, batches[ours_in][0], batches[peer_in][0])
        steps = {"ours": epoch_step(ours, batches[ours_in]),
                 "peer": epoch_step(peer, batches[peer_in])}
        times: Dict[str, List[float]] = {"ours": [], "peer": []}
        for r in range(args.warmup + args.rounds):
            order = ("ours", "peer") if r % 2 == 0 else ("peer", "ours")
            for key in order:
                sync()
                t = time.perf_counter()
                steps[key]()
                sync()
                if r >= args.warmup:
                    times[key].append(time.perf_counter() - t)
        gain = peer_name == ours_name.split("(")[0] or peer_name == ours_name
        rows.append({
            "case": f"{ours_name}, {ours_in}",
            "peer": f"{peer_name}, {peer_in}" + (" (cache gain)" if gain else ""),
            "ours_ms": statistics.median(times["ours"]) * 1e3,
            "peer_ms": statistics.median(times["peer"]) * 1e3,
            "ratio": statistics.median(o / p for o, p in zip(times["ours"], times["peer"])),
            "max_rel_diff": diff, "check": diff <= TOL})
    collation = {}
    for _ in range(max(args.rounds // 2, 1)):
        for name, tf in formats.items():
            collation.setdefault(name, []).append(collate_seconds(graphs, tf, args.batch_size))
    collation = {k: statistics.median(v) * 1e3 for k, v in collation.items()}
    nodes = sum(g.num_nodes for g in graphs)
    edges = sum(g.num_edges for g in graphs)
    return {"graphs": len(graphs), "nodes": nodes, "edges": edges,
            "batches": len(batches["edge_index"]), "rows": rows, "collate_ms": collation}


def markdown(result: Dict, args) -> str:
    out = [f"## one epoch of mini-batches: {result['graphs']} graphs ({result['nodes']} nodes, "
           f"{result['edges']} edges), {result['batches']} batches of {args.batch_size}, "
           f"F={args.channels}, float32, {args.device}, {args.threads} thread(s)", "",
           "| case | peer | ours ms/epoch | peer ms/epoch | ratio (ours / peer) | check |",
           "| --- | --- | ---: | ---: | ---: | --- |"]
    for r in result["rows"]:
        out.append(f"| {r['case']} | {r['peer']} | {r['ours_ms']:.1f} | {r['peer_ms']:.1f} | "
                   f"{r['ratio']:.2f} | {r['max_rel_diff']:.1e} relative "
                   f"({'ok' if r['check'] else 'FAILED'}) |")
    base = result["collate_ms"]["edge_index"]
    out += ["", "## DataLoader collation, one epoch", "",
            "| input | collate ms/epoch | / edge_index |", "| --- | ---: | ---: |"]
    for name, ms in result["collate_ms"].items():
        out.append(f"| {name} | {ms:.1f} | {ms / base:.2f} |")
    return "\n".join(out)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--graphs", type=int, default=640)
    parser.add_argument("--nodes", type=int, default=200, help="average nodes per graph")
    parser.add_argument("--degree", type=float, default=10.0, help="average degree")
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="small sizes, few rounds")
    parser.add_argument("--out", default=None, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.graphs, args.nodes, args.channels, args.batch_size = 32, 30, 16, 8
        args.rounds, args.warmup = 3, 1
    for name in ("threads", "graphs", "channels", "batch_size", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1 "
                         f"(got {getattr(args, name)})")
    result = run(args)
    print(markdown(result, args))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"args": vars(args), **result}, indent=2) + "\n")
    return 0 if all(r["check"] for r in result["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
