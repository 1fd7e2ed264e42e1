r"""Times the neighbour-search backends of :mod:`gdl_pyg.ops` side by side:
``backend="torch"`` (blocked brute force), ``backend="scipy"`` (KD-tree),
``backend="cluster"`` (torch_cluster, when it imports) and scipy's cKDTree
called directly (build + query, the raw cost of the tree): ``query(x, k + 1)``
for ``knn_graph``; for ``radius_graph`` ``query_pairs(r, output_type=
"ndarray")``, both directions of each pair, then a stable sort by target
(the edges, though not PyG's order inside a target, which ``radius_graph``
also delivers). ``scipy/raw`` is the median of the ratios of interleaved
pairs of runs (one run of each per repeat), the times are the best runs.

Usage::

    python scripts/bench_ops.py                      # 10k and 100k, 3-D, k=16
    python scripts/bench_ops.py --brute-force-large  # also torch at 100k
    python scripts/bench_ops.py --dims 3 8 16 24 32 --sizes 5000 20000
                                                     # k-NN vs dimension

The radius is chosen so that a ball holds about ``k`` points on average;
``radius_graph`` keeps at most ``4k`` neighbours. The torch backend is
skipped (and says so) on CPU for more than ``--brute-force-max`` points
unless ``--brute-force-large`` is given: it costs :math:`O(N^2)`.
"""
import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Uninstalled.
from gdl_pyg import typing as gdl_typing  # noqa: E402
from gdl_pyg.ops import fps, knn_graph, radius_graph  # noqa: E402


def timeit(fn, device, repeat):
    best, out = float("inf"), None
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best, out


def timeit_paired(fn, raw, device, repeat):
    r"""Runs :obj:`fn` and :obj:`raw` alternately :obj:`repeat` times,
    after one untimed run of each.
    Returns the best time of each, the median of the paired ratios
    ``fn / raw`` and the last output of :obj:`fn`."""
    ratios, best_fn, best_raw, out = [], float("inf"), float("inf"), None
    fn(), raw()  # untimed warm-up of both (first-touch allocations, caches)
    for _ in range(repeat):
        t_fn, out = timeit(fn, device, 1)
        t_raw = timeit(raw, device, 1)[0]
        ratios.append(t_fn / t_raw)
        best_fn, best_raw = min(best_fn, t_fn), min(best_raw, t_raw)
    ratios.sort()
    mid = len(ratios) // 2
    median = ratios[mid] if len(ratios) % 2 else \
        0.5 * (ratios[mid - 1] + ratios[mid])
    return best_fn, best_raw, median, out


def pairs_by_target(xn, r):
    r"""The radius graph straight from scipy: build, all pairs within
    :obj:`r`, both directions, stably sorted by target."""
    pairs = cKDTree(xn).query_pairs(r, output_type="ndarray")
    source = np.concatenate([pairs[:, 1], pairs[:, 0]])
    target = np.concatenate([pairs[:, 0], pairs[:, 1]])
    perm = np.argsort(target, kind="stable")
    return np.stack([source[perm], target[perm]])


def radius_for(n, k, dim):
    r"""The radius whose ball holds about ``k`` of ``n`` uniform points in
    the unit cube."""
    unit_ball = math.pi ** (dim / 2) / math.gamma(dim / 2 + 1)
    return float((k / n / unit_ball) ** (1.0 / dim))


def fmt(t):
    return f"{t:>12.3f}" if isinstance(t, float) else f"{t:>12}"


def bench_sizes(args, device):
    print(f"{'op':<14}{'N':>8}{'edges':>10}{'torch (s)':>12}"
          f"{'scipy (s)':>12}{'cluster (s)':>12}{'cKDTree (s)':>12}"
          f"{'scipy/raw':>10}{'torch/scipy':>12}")
    for n in args.sizes:
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(n, args.dim, generator=gen).to(device)
        xn = x.double().cpu().numpy()
        k, r, m = args.k, radius_for(n, args.k, args.dim), 4 * args.k
        cases = [
            ("knn_graph",
             lambda b: knn_graph(x, k, backend=b),
             lambda: cKDTree(xn).query(xn, k=k + 1)),
            ("radius_graph",
             lambda b: radius_graph(x, r, max_num_neighbors=m, backend=b),
             lambda: pairs_by_target(xn, r)),
        ]
        if args.fps:
            cases.append(("fps(0.25)",
                          lambda b: fps(x, ratio=0.25, random_start=False,
                                        backend=b),
                          None))
        for name, call, raw in cases:
            times, edges, outs = {}, None, {}
            skip_torch = (device.type == "cpu" and n > args.brute_force_max
                          and not args.brute_force_large)
            t_raw, ratio = "-", f"{'-':>10}"
            for backend in ["torch", "scipy", "cluster"]:
                if backend == "scipy" and name.startswith("fps"):
                    times[backend] = "-"
                elif backend == "torch" and skip_torch:
                    times[backend] = "skipped"
                elif backend == "cluster" and \
                        not gdl_typing.WITH_TORCH_CLUSTER:
                    times[backend] = "n/a"
                elif backend == "scipy" and raw is not None:
                    times[backend], t_raw, median, outs[backend] = \
                        timeit_paired(lambda: call(backend), raw, device,
                                      args.repeat)
                    ratio = f"{median:>10.2f}"
                    edges = outs[backend].size(-1)
                else:
                    times[backend], outs[backend] = timeit(
                        lambda: call(backend), device, args.repeat)
                    edges = outs[backend].size(-1)
            if edges is None:  # Nothing timed (e.g., fps, large N, CPU).
                edges = "-"
            if "torch" in outs and "scipy" in outs and \
                    not torch.equal(outs["torch"], outs["scipy"]):
                print(f"  (torch and scipy outputs differ for {name} N={n}: "
                      f"float32 near-ties, see gdl_pyg/ops/_kdtree.py)")
            speedup = (f"{times['torch'] / times['scipy']:>12.1f}"
                       if isinstance(times["torch"], float)
                       and isinstance(times["scipy"], float)
                       else f"{'-':>12}")
            print(f"{name:<14}{n:>8}{edges:>10}{fmt(times['torch'])}"
                  f"{fmt(times['scipy'])}{fmt(times['cluster'])}"
                  f"{fmt(t_raw)}{ratio}{speedup}", flush=True)
            if times["torch"] == "skipped":
                print(f"  (torch backend skipped at N={n} on CPU: O(N^2); "
                      f"pass --brute-force-large to time it)")


def bench_dims(args, device):
    print(f"knn_graph(k={args.k}) on standard normal points, "
          f"torch vs scipy backend by dimension")
    print(f"{'D':>4}{'N':>8}{'torch (s)':>11}{'scipy (s)':>11}"
          f"{'torch/scipy':>12}")
    for dim in args.dims:
        for n in args.sizes:
            gen = torch.Generator().manual_seed(dim)
            x = torch.randn(n, dim, generator=gen).to(device)
            t_torch, a = timeit(lambda: knn_graph(x, args.k, backend="torch"),
                                device, args.repeat)
            t_scipy, b = timeit(lambda: knn_graph(x, args.k, backend="scipy"),
                                device, args.repeat)
            same = "" if torch.equal(a, b) else "  (outputs differ)"
            print(f"{dim:>4}{n:>8}{t_torch:>11.3f}{t_scipy:>11.3f}"
                  f"{t_torch / t_scipy:>12.2f}{same}", flush=True)


def main(args=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--sizes", type=int, nargs="+",
                        default=[10_000, 100_000])
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--dim", type=int, default=3)
    parser.add_argument("--dims", type=int, nargs="+", default=None,
                        help="time knn_graph torch vs scipy at these "
                             "dimensions instead")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--brute-force-max", type=int, default=20_000,
                        help="largest N timed with the torch backend on CPU")
    parser.add_argument("--brute-force-large", action="store_true",
                        help="time the torch backend at every N")
    parser.add_argument("--fps", action="store_true",
                        help="also time fps(ratio=0.25)")
    args = parser.parse_args(args)
    device = torch.device(args.device)
    print(f"device={device} torch={torch.__version__} "
          f"threads={torch.get_num_threads()} k={args.k} dim={args.dim} "
          f"repeat={args.repeat} torch_cluster="
          f"{'yes' if gdl_typing.WITH_TORCH_CLUSTER else 'no'}")
    if args.dims:
        bench_dims(args, device)
    else:
        bench_sizes(args, device)


if __name__ == "__main__":
    main()
