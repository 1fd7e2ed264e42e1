r"""Benchmark cases of the p4 group convolutions (LiftingConv, GroupConv).

:func:`p4_cases` returns ``(label, reference, candidate)`` tuples whose
callables run one forward + backward pass (``scripts/bench_grid.py`` times
them). The reference is the dense G-CNN implementation: one ``conv2d`` on
the image layout ``[B, C (* |G|), H, W]`` with the filters rotated by
``torch.rot90`` (and, for the group convolution, cycled over the group axis)
in every call; the candidates run on the node layout of
:func:`~gdl_pyg.domains.lifted_grid.lift_grid` (fast path: ``conv2d`` and
the layout permutes; general path: message passing along the edges).
When escnn imports, :func:`escnn_cases` adds its ``R2Conv`` on C4 / D4
regular fields as a second reference of the fast paths (rows "vs escnn").

Standalone, it times the cases on the CPU with small sizes::

    python scripts/_bench_p4.py
"""
import os
import statistics
import sys
import time
import warnings
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
    cases += escnn_cases(args, sizes, msizes)

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


def _escnn_rows(reason: str, sizes: str, msizes: str) -> List[Case]:
    return [(f"GroupConv p4 fast path vs escnn R2Conv, C4 regular ({sizes}): {reason}",
             None, None),
            (f"GroupConv p4m fast path vs escnn R2Conv, D4 regular ({msizes}): {reason}",
             None, None)]


def escnn_cases(args, sizes: str = "", msizes: str = "") -> List[Case]:
    r"""escnn's ``R2Conv`` between ``C`` regular fields of C4 (p4) and of D4
    (p4m), against the :class:`GroupConv` fast path on the same fields.

    escnn is the reference and our layer the candidate, so a row's ratio is
    ours / escnn. escnn's filter is loaded into the :class:`GroupConv`
    (:func:`group_conv_from_escnn`), so both compute the same output from the
    same input values: escnn takes the image ``[B, C * |G|, H, W]`` (channel
    ``c * |G| + h``), ours the lifted rows ``[B * H * W * |G|, C]``. Two rows per
    group: ``R2Conv`` in training mode (it expands its filter from the basis
    coefficients in every call, as ours does), and its ``export()``, a plain
    ``torch.nn.Conv2d`` with that filter fixed (its inference path). When escnn
    does not import, or its ``R2Conv`` cannot be built, the rows have a
    ``None`` reference and candidate and the reason in their label.
    """
    dev = torch.device(args.device)
    dt = getattr(args, "dtype", torch.float32)
    k = getattr(args, "kernel_size", None) or getattr(args, "kernel", 3)
    B, S, C = args.batch, args.size, max(1, args.channels // 4)
    try:
        with warnings.catch_warnings():  # py3nj: only for SO(3), not needed here
            warnings.filterwarnings("ignore", message=".*py3nj")
            from escnn import gspaces
            from escnn import nn as enn
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "escnn":
            return _escnn_rows("escnn not installed", sizes, msizes)
        return _escnn_rows(f"escnn does not import ({type(exc).__name__}: {exc})", sizes,
                           msizes)
    except Exception as exc:  # e.g. lie_learn built for numpy 1 under numpy 2
        return _escnn_rows(f"escnn does not import ({type(exc).__name__}: "
                           f"{str(exc)[:60]})", sizes, msizes)
    cases = []
    for name, group, space, label_sizes in (
            ("p4", CyclicGroup(4), lambda: gspaces.rot2dOnR2(N=4), sizes),
            ("p4m", "p4m", lambda: gspaces.flipRot2dOnR2(N=4), msizes)):
        gname = "C4" if name == "p4" else "D4"
        label = f"GroupConv {name} fast path vs escnn R2Conv"
        try:
            gspace = space()
            field = enn.FieldType(gspace, C * [gspace.regular_repr])
            conv = enn.R2Conv(field, field, kernel_size=k, padding=k // 2).to(dev, dt)
        except Exception as exc:  # np.matrix into scikit-learn >= 1.2 (D4 basis)
            cases.append((f"{label}, {gname} regular ({label_sizes}): R2Conv failed "
                          f"({type(exc).__name__}: {str(exc)[:60]})", None, None))
            continue
        exported = conv.export().to(dev, dt)  # eval mode: the filter expanded once
        conv.train()  # the timed R2Conv expands its filter in every call
        ours = group_conv_from_escnn(exported, C, k, group)
        G = ours.order
        torch.manual_seed(1)
        img = torch.randn(B, C * G, S, S, device=dev, dtype=dt)
        grad_img = torch.randn_like(img)
        leaf = img.clone().requires_grad_()
        x = img.view(B, C, G, S, S).permute(0, 3, 4, 2, 1).reshape(-1, C).clone() \
            .requires_grad_()
        grad_x = grad_img.view(B, C, G, S, S).permute(0, 3, 4, 2, 1).reshape(-1, C) \
            .contiguous()
        shape = (B, C, G, S, S)

        def r2conv(conv=conv, field=field, leaf=leaf, shape=shape):
            return conv(enn.GeometricTensor(leaf, field)).tensor.view(shape)

        def r2conv_export(exported=exported, leaf=leaf, shape=shape):
            return exported(leaf).view(shape)

        candidate = _grad_fn(lambda ours=ours, x=x: ours(x, None, None, None, (S, S)),
                             [x, ours.weight, ours.bias], grad_x)
        cases += [
            (f"{label}, {gname} regular ({label_sizes})",
             _grad_fn(r2conv, [leaf] + list(conv.parameters()), grad_img.view(shape)),
             candidate),
            (f"{label} exported to Conv2d, {gname} regular ({label_sizes})",
             _grad_fn(r2conv_export, [leaf, exported.weight, exported.bias],
                      grad_img.view(shape)), candidate),
        ]
    return cases


def group_conv_from_escnn(exported: torch.nn.Conv2d, channels: int, kernel_size: int,
                          group) -> GroupConv:
    r"""A :class:`GroupConv` (``channels -> channels`` per group element)
    with the filter and bias of an escnn ``R2Conv`` between regular fields
    of C4 (``group`` p4) or D4 (``group`` ``"p4m"``), given as the
    ``torch.nn.Conv2d`` of its ``export()``.

    escnn's expanded filter ``[C * |G|, C * |G|, k, k]`` has the layout of
    :meth:`GroupConv.expanded_weight` (row ``o * |G| + h``, column
    ``c * |G| + h'``, escnn's regular representations ordering the group
    elements as :mod:`gdl_pyg.groups.grid` does), so our filter
    :math:`W_{oc}(h', v)` is its ``h = e`` row. Raises :class:`ValueError`
    when the exported filter is not a G-CNN filter of that layout.
    """
    ours = GroupConv(channels, channels, kernel_size, group).to(exported.weight.device,
                                                                 exported.weight.dtype)
    G, C, k = ours.order, channels, kernel_size
    w = exported.weight.detach()
    if w.shape != (C * G, C * G, k, k) or exported.bias is None:
        raise ValueError(f"expected the exported Conv2d of an R2Conv between {C} regular "
                         f"fields of a group of order {G} with a bias (got a filter of "
                         f"shape {list(w.shape)}, bias {exported.bias is not None})")
    with torch.no_grad():
        ours.weight.copy_(w.view(C, G, C, G, k, k)[:, 0])
        ours.bias.copy_(exported.bias.detach().view(C, G)[:, 0])
        err = float((ours.expanded_weight() - w).abs().max())
    if err > 1e-5 * max(1.0, float(w.abs().max())):
        raise ValueError(f"the exported filter is not a G-CNN filter of a group of order "
                         f"{G} in the layout of GroupConv.expanded_weight (differs by "
                         f"{err:.2e})")
    return ours


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
        if reference is None or "escnn" in label:  # not installed / tested separately:
            continue  # escnn's filter is G-tied to float32 precision only
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
