r"""Benchmark cases of the p4 group convolutions (LiftingConv, GroupConv).

:func:`p4_cases` returns ``(label, reference, candidate)`` tuples whose
callables run one forward + backward pass (``scripts/bench_grid.py`` times
them). The reference is the dense G-CNN implementation: one ``conv2d`` on
the image layout ``[B, C (* |G|), H, W]`` with the filters rotated by
``torch.rot90`` (and, for the group convolution, cycled over the group axis)
in every call; the candidates run on the node layout of
:func:`~gdl_pyg.domains.lifted_grid.lift_grid` (fast path: ``conv2d`` and
the layout permutes; general path: message passing along the edges).

Standalone, it times the cases on the CPU with small sizes::

    python scripts/_bench_p4.py
"""
import os
import statistics
import sys
import time
from types import SimpleNamespace
from typing import Callable, List, Sequence, Tuple

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gdl_pyg.domains.grid import grid_to_data  # noqa: E402
from gdl_pyg.domains.lifted_grid import lift_grid  # noqa: E402
from gdl_pyg.groups.grid import CyclicGroup  # noqa: E402
from gdl_pyg.nn.conv.group_conv import GroupConv  # noqa: E402
from gdl_pyg.nn.conv.lifting_conv import LiftingConv  # noqa: E402

#: ``(label, reference, candidate)``: each callable runs forward + backward once
#: (and returns the detached output: ``[B, C, |G|, H, W]`` for the reference,
#: the lifted layout ``[B * H * W * |G|, C]`` for a candidate).
Case = Tuple[str, Callable[[], torch.Tensor], Callable[[], torch.Tensor]]


def _grad_fn(fn: Callable[[], torch.Tensor], wrt: Sequence[torch.Tensor],
             grad: torch.Tensor) -> Callable[[], None]:
    def run() -> torch.Tensor:
        out = fn()
        torch.autograd.grad(out, list(wrt), grad)
        return out.detach()  # for the agreement check of the standalone run
    return run


def _rotated(weight: torch.Tensor, k: int) -> torch.Tensor:
    return torch.rot90(weight, k, dims=(-2, -1))


def p4_cases(args) -> List[Case]:
    r"""LiftingConv and GroupConv (p4), fast and message passing paths,
    against the dense ``conv2d`` reference with expanded filters.

    ``args`` needs ``device``, ``batch``, ``channels``, ``size`` and
    ``kernel_size`` (or ``kernel``); ``dtype`` and ``compile`` are optional.
    The lifted layers use ``max(1, channels // 4)`` channels per group element.
    """
    dev = torch.device(args.device)
    dt = getattr(args, "dtype", torch.float32)
    k = getattr(args, "kernel_size", None) or getattr(args, "kernel", 3)
    B, S, C = args.batch, args.size, max(1, args.channels // 4)
    G, r = 4, k // 2
    group = CyclicGroup(4)
    torch.manual_seed(0)
    img = torch.randn(B, C, S, S, device=dev, dtype=dt)
    pix = grid_to_data(img, batched=True, radius=r)
    lifted = lift_grid(pix, group)
    sizes = f"B={B} C={C}->{C} |G|=4 {S}x{S} k={k}"

    # LiftingConv ---------------------------------------------------------
    lconv = LiftingConv(C, C, k, group).to(dev, dt)
    img_leaf = img.clone().requires_grad_()
    x = pix.x.clone().requires_grad_()
    grad_img = torch.randn(B, C, G, S, S, device=dev, dtype=dt)
    grad_x = grad_img.permute(0, 3, 4, 2, 1).reshape(-1, C).contiguous()
    lw = lconv.weight

    def lift_dense():
        w = torch.stack([_rotated(lw, h) for h in range(G)], dim=1).reshape(C * G, C, k, k)
        return F.conv2d(img_leaf, w, lconv.bias.repeat_interleave(G), padding=r)

    lift_ref = _grad_fn(lambda: lift_dense().view(B, C, G, S, S), [img_leaf, lw, lconv.bias],
                        grad_img)
    wrt = [x, lw, lconv.bias]
    cases = [
        (f"LiftingConv p4 fast path vs dense conv2d ({sizes})", lift_ref,
         _grad_fn(lambda: lconv(x, pix.edge_index, pix.edge_offset, (S, S)), wrt, grad_x)),
        (f"LiftingConv p4 message passing vs dense conv2d ({sizes})", lift_ref,
         _grad_fn(lambda: lconv(x, pix.edge_index, pix.edge_offset), wrt, grad_x)),
    ]

    # GroupConv -----------------------------------------------------------
    gconv = GroupConv(C, C, k, group).to(dev, dt)
    gw = gconv.weight
    limg = torch.randn(B, C * G, S, S, device=dev, dtype=dt)  # channel c * G + h'
    limg_leaf = limg.clone().requires_grad_()
    xl = limg.view(B, C, G, S, S).permute(0, 3, 4, 2, 1).reshape(-1, C).clone() \
        .requires_grad_()
    # rel[h, h'] = h^{-1} h' = h' - h (mod 4): the kernel slice each pair uses
    rel = (torch.arange(G).view(1, G) - torch.arange(G).view(G, 1)) % G

    def group_dense():
        w = torch.stack([_rotated(gw[:, :, rel[h]], h) for h in range(G)], dim=1)
        w = w.reshape(C * G, C * G, k, k)  # [(o, h), (c, h')]
        return F.conv2d(limg_leaf, w, gconv.bias.repeat_interleave(G), padding=r)

    group_ref = _grad_fn(lambda: group_dense().view(B, C, G, S, S),
                         [limg_leaf, gw, gconv.bias], grad_img)
    ei, eo, ge = lifted.edge_index, lifted.edge_offset, lifted.group_elem
    wrt = [xl, gw, gconv.bias]
    cases += [
        (f"GroupConv p4 fast path vs dense conv2d ({sizes})", group_ref,
         _grad_fn(lambda: gconv(xl, ei, eo, ge, (S, S)), wrt, grad_x)),
        (f"GroupConv p4 message passing vs dense conv2d ({sizes})", group_ref,
         _grad_fn(lambda: gconv(xl, ei, eo, ge), wrt, grad_x)),
    ]
    # the same reference on a channels-last image (the fast path's layout)
    limg_cl = limg.contiguous(memory_format=torch.channels_last).requires_grad_()
    grad_cl = grad_img.view(B, C * G, S, S).contiguous(memory_format=torch.channels_last)

    def group_dense_cl():
        w = torch.stack([_rotated(gw[:, :, rel[h]], h) for h in range(G)], dim=1)
        out = F.conv2d(limg_cl, w.reshape(C * G, C * G, k, k),
                       gconv.bias.repeat_interleave(G), padding=r)
        torch.autograd.grad(out, [limg_cl, gw, gconv.bias], grad_cl)
        return out.detach().view(B, C, G, S, S)
    cases.append((f"GroupConv p4 fast path vs dense conv2d, channels-last ({sizes})",
                  group_dense_cl, cases[-2][2]))

    # p4m: the reference filter is the layer's own expanded_weight (checked
    # against per-element convolutions in tests/nn/conv/test_group_conv.py)
    mconv = GroupConv(C, C, k, "p4m").to(dev, dt)
    M = mconv.order
    mimg = torch.randn(B, C * M, S, S, device=dev, dtype=dt, requires_grad=True)
    xm = mimg.detach().view(B, C, M, S, S).permute(0, 3, 4, 2, 1).reshape(-1, C).clone() \
        .requires_grad_()
    grad_m = torch.randn(B, C, M, S, S, device=dev, dtype=dt)
    grad_xm = grad_m.permute(0, 3, 4, 2, 1).reshape(-1, C).contiguous()
    wrt_m = [mimg, mconv.weight, mconv.bias]
    mref = _grad_fn(lambda: F.conv2d(mimg, mconv.expanded_weight(),
                                     mconv.bias.repeat_interleave(M), padding=r)
                    .view(B, C, M, S, S), wrt_m, grad_m)
    msizes = sizes.replace("|G|=4", "|G|=8")
    cases.append((f"GroupConv p4m fast path vs dense conv2d ({msizes})", mref,
                  _grad_fn(lambda: mconv(xm, lifted.edge_index, lifted.edge_offset,
                                         lifted.group_elem, (S, S)),
                           [xm, mconv.weight, mconv.bias], grad_xm)))
    cases.append(_escnn_case(args, C, k, limg, grad_img, cases[-3][2], sizes))

    if getattr(args, "compile", False):
        lc, gc = torch.compile(lconv), torch.compile(gconv)
        cases += [
            (f"LiftingConv p4 message passing, compiled ({sizes})", lift_ref,
             _grad_fn(lambda: lc(x, pix.edge_index, pix.edge_offset), [x, lw, lconv.bias],
                      grad_x)),
            (f"GroupConv p4 message passing, compiled ({sizes})", group_ref,
             _grad_fn(lambda: gc(xl, ei, eo, ge), wrt, grad_x)),
        ]
    return cases


def _escnn_case(args, C: int, k: int, limg: torch.Tensor, grad_img: torch.Tensor,
                candidate: Callable, sizes: str) -> Case:
    r"""escnn's ``R2Conv`` on ``C`` regular fields of C4 (the same image
    layout as the dense reference), or a ``None`` reference with the reason
    when escnn cannot be imported."""
    label = f"GroupConv p4 fast path vs escnn R2Conv, C4 regular ({sizes})"
    try:
        from escnn import gspaces
        from escnn import nn as enn
    except Exception as exc:  # ImportError, or a broken dependency (lie_learn)
        return (f"GroupConv p4 vs escnn R2Conv: escnn unavailable "
                f"({type(exc).__name__}: {str(exc)[:40]})", None, candidate)
    space = gspaces.rot2dOnR2(N=4)
    field = enn.FieldType(space, C * [space.regular_repr])
    conv = enn.R2Conv(field, field, kernel_size=k, padding=k // 2).to(limg.device, limg.dtype)
    leaf = limg.clone().requires_grad_()
    wrt = [leaf] + list(conv.parameters())
    return (label, _grad_fn(lambda: conv(enn.GeometricTensor(leaf, field)).tensor
                            .view_as(grad_img), wrt, grad_img), candidate)


def _median_time(fn: Callable[[], None], repeats: int = 20, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def check_agreement(args) -> float:
    r"""The largest difference between the reference and candidate outputs."""
    worst = 0.0
    for label, reference, candidate in p4_cases(args):
        if reference is None or "escnn" in label:  # escnn: its own random filter
            continue
        ref = reference()
        ref = ref.permute(0, 3, 4, 2, 1).reshape(-1, ref.size(1))
        worst = max(worst, float((candidate() - ref).abs().max()))
    return worst


if __name__ == "__main__":
    check = SimpleNamespace(device="cpu", dtype=torch.float64, batch=2, channels=8, size=7,
                            kernel_size=3)
    print(f"largest difference candidate - reference (float64): {check_agreement(check):.2e}")
    args = SimpleNamespace(device="cpu", dtype=torch.float32, batch=2, channels=32, size=16,
                           kernel_size=3, compile=False)
    print(f"cpu ({torch.get_num_threads()} threads), torch {torch.__version__}, "
          f"forward + backward, median of 20")
    times = {}
    for label, reference, candidate in p4_cases(args):
        if reference is None:
            print(f"{label}: skipped")
            continue
        if id(reference) not in times:
            times[id(reference)] = _median_time(reference)
        t_ref, t_cand = times[id(reference)], _median_time(candidate)
        print(f"{label:<80} ref {t_ref * 1e3:8.2f} ms  cand {t_cand * 1e3:8.2f} ms  "
              f"{t_cand / t_ref:6.2f}x")
