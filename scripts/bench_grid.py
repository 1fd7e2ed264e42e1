r"""Benchmarks the grid layers against their PyTorch references.

Each case is a tuple ``(label, reference, candidate)`` of callables that run
one forward + backward pass; the table shows the median time of each and the
ratio candidate / reference::

    python scripts/bench_grid.py                      # CPU, batch 8, 64 ch, 64x64, k=3
    python scripts/bench_grid.py --device cuda --repeats 50
    python scripts/bench_grid.py --batch 2 --channels 16 --size 32 --repeats 5

Cases come from :func:`grid_cases` (GridConv on its dense and message passing
paths against ``torch.nn.Conv2d``, GridPool against ``F.max_pool2d``) and,
when ``scripts/_bench_p4.py`` exists, from its ``p4_cases(args)``, which
returns more tuples of the same form. ``args`` is the parsed command line:
``device``, ``dtype`` (a ``torch.dtype``), ``batch``, ``channels``, ``size``,
``kernel``, ``repeats``, ``warmup``, ``threads``, ``compile``. A case whose
reference or candidate is ``None`` (a peer library that is not installed) is
printed as skipped, with the reason in its label.

Each reference runs interleaved with its candidate, and the ratio is the
median of the paired ratios (robust to a machine whose load changes during
the run).
"""
import argparse
import importlib.util
import math
import os
import statistics
import sys
import time
from typing import Callable, List, Sequence, Tuple

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gdl_pyg.domains.grid import grid_to_data  # noqa: E402
from gdl_pyg.nn.conv.grid_conv import GridConv  # noqa: E402
from gdl_pyg.nn.pool.grid_pool import GridPool  # noqa: E402

#: ``(label, reference, candidate)``: each callable runs forward + backward once.
Case = Tuple[str, Callable[[], None], Callable[[], None]]


def parse_args(argv: Sequence[str] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--batch", type=int, default=8, help="images per batch")
    parser.add_argument("--channels", type=int, default=64, help="input = output channels")
    parser.add_argument("--size", type=int, default=64, help="height = width of the images")
    parser.add_argument("--kernel", type=int, default=3, help="kernel size of the convolutions")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per callable")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs per callable")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (torch.set_num_threads); default: torch's choice")
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile of the message passing path")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but CUDA is not available")
    args.dtype = getattr(torch, args.dtype)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    return args


def forward_backward(module: torch.nn.Module, inputs: Sequence, x: torch.Tensor,
                     grad: torch.Tensor) -> Callable[[], None]:
    r"""A callable running ``module(*inputs)`` and the gradients with respect
    to ``x`` and the parameters (no accumulation into ``.grad``)."""
    wrt = [x] + [p for p in module.parameters()]

    def run():
        out = module(*inputs)
        torch.autograd.grad(out, wrt, grad)
    return run


def grid_cases(args: argparse.Namespace) -> List[Case]:
    r"""GridConv (dense and message passing paths) against ``Conv2d``, and
    GridPool against ``F.max_pool2d``."""
    dev, dt = torch.device(args.device), args.dtype
    B, C, S, k = args.batch, args.channels, args.size, args.kernel
    torch.manual_seed(0)
    img = torch.randn(B, C, S, S, device=dev, dtype=dt)
    data = grid_to_data(img, batched=True, radius=k // 2)
    conv = GridConv(C, C, k).to(dev, dt)
    ref = torch.nn.Conv2d(C, C, k, padding="same").to(dev, dt)
    ref.load_state_dict(conv.state_dict())

    img_leaf = img.clone().requires_grad_()
    x = data.x.clone().requires_grad_()
    grad_img = torch.randn_like(img)
    grad_x = grad_img.movedim(1, -1).reshape(-1, C).contiguous()
    conv2d = forward_backward(ref, (img_leaf, ), img_leaf, grad_img)
    dense = forward_backward(conv, (x, data.edge_index, data.edge_offset, (S, S)), x, grad_x)
    general = forward_backward(conv, (x, data.edge_index, data.edge_offset), x, grad_x)
    cases = [
        ("GridConv dense path vs Conv2d", conv2d, dense),
        ("GridConv message passing vs Conv2d", conv2d, general),
    ]
    if args.compile:
        compiled = torch.compile(conv)
        cases.append(("GridConv message passing, compiled, vs Conv2d", conv2d,
                      forward_backward(compiled, (x, data.edge_index, data.edge_offset),
                                       x, grad_x)))

    pool = GridPool(2)
    pooled = data.clone()
    pooled.x = x
    grad_pool = torch.randn(B * (S // 2) ** 2, C, device=dev, dtype=dt)

    def max_pool2d():
        out = torch.nn.functional.max_pool2d(img_leaf, 2)
        torch.autograd.grad(out, [img_leaf], grad_pool.view(B, S // 2, S // 2, C)
                            .movedim(-1, 1))

    def grid_pool(dense_path):
        def run():
            out = pool(pooled, dense=dense_path).x
            torch.autograd.grad(out, [x], grad_pool)
        return run
    cases += [
        ("GridPool dense path (+ coarse graph) vs max_pool2d", max_pool2d, grid_pool(True)),
        ("GridPool scatter path (+ coarse graph) vs max_pool2d", max_pool2d, grid_pool(False)),
    ]
    return cases


def extra_cases(args: argparse.Namespace) -> List[Case]:
    r"""``p4_cases(args)`` of ``scripts/_bench_p4.py`` when that file exists
    (the rows of the p4 / p4m group convolutions)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bench_p4.py")
    if not os.path.exists(path):
        return []
    spec = importlib.util.spec_from_file_location("_bench_p4", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.p4_cases(args))


def median_time(fn: Callable[[], None], args: argparse.Namespace) -> float:
    r"""The median wall time of ``fn`` in seconds over ``args.repeats`` runs
    after ``args.warmup`` untimed ones (synchronising CUDA around each run)."""
    cuda = args.device == "cuda"
    for _ in range(args.warmup):
        fn()
    times = []
    for _ in range(args.repeats):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def paired_times(reference: Callable[[], None], candidate: Callable[[], None],
                 args: argparse.Namespace) -> Tuple[float, float, float, float]:
    r"""Times ``reference`` and ``candidate`` interleaved (``args.warmup``
    untimed pairs, then ``args.repeats`` timed pairs, alternating which runs
    first): the median time of each in seconds, the median of the paired
    ratios candidate / reference, and the interquartile range of those ratios
    (the noise of the measurement)."""
    cuda = args.device == "cuda"

    def timed(fn):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t
    for _ in range(args.warmup):
        reference()
        candidate()
    t_ref, t_cand = [], []
    for rep in range(args.repeats):
        if rep % 2:
            t_cand.append(timed(candidate))
            t_ref.append(timed(reference))
        else:
            t_ref.append(timed(reference))
            t_cand.append(timed(candidate))
    ratios = [c / r if r > 0 else math.inf for r, c in zip(t_ref, t_cand)]
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return statistics.median(t_ref), statistics.median(t_cand), statistics.median(ratios), \
        q[2] - q[0]


def main(argv: Sequence[str] = None) -> List[Tuple[str, float, float]]:
    args = parse_args(argv)
    device = torch.cuda.get_device_name() if args.device == "cuda" else \
        f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {device}, torch {torch.__version__}, dtype {str(args.dtype)[6:]}")
    print(f"batch {args.batch}, channels {args.channels} -> {args.channels}, image "
          f"{args.size}x{args.size}, kernel {args.kernel}, radius {args.kernel // 2}, "
          f"{args.repeats} timed runs (median) after {args.warmup} warm-up, forward + backward")
    cases = grid_cases(args) + extra_cases(args)
    width = max(len(label) for label, _, _ in cases)
    print("ratio: the median of paired ratios candidate / reference (the two run "
          "interleaved); IQR: the interquartile range of those ratios")
    print(f"\n{'case':<{width}}  {'reference ms':>12}  {'candidate ms':>12}  {'ratio':>7}"
          f"  {'IQR':>5}")
    print("-" * (width + 44))
    rows = []
    for label, reference, candidate in cases:
        if reference is None or candidate is None:  # a peer that is not installed
            print(f"{label:<{width}}  skipped", flush=True)
            continue
        t_ref, t_cand, ratio, iqr = paired_times(reference, candidate, args)
        rows.append((label, t_ref, t_cand))
        print(f"{label:<{width}}  {t_ref * 1e3:12.2f}  {t_cand * 1e3:12.2f}  {ratio:6.2f}x"
              f"  {iqr:5.2f}", flush=True)
    return rows


if __name__ == "__main__":
    main()
