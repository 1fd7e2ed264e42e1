r"""Forward+backward timings of the E(3)-equivariant layers of gdl_pyg next to
reference implementations of the same functions, printed as one markdown
table:

(a) :class:`~gdl_pyg.nn.conv.EGNNConv` (edge list, one gather and one scatter)
    next to a *dense* EGNN layer written here: all pairs as ``[N, N, ...]``
    tensors masked by the adjacency, the way many EGNN codes batch small
    systems, reading the very same weights;
(b) :class:`~gdl_pyg.nn.conv.TensorFieldConv` (``backend="e3nn"``) next to
    e3nn's gated point convolution
    :class:`e3nn.nn.models.v2106.points_convolution.Convolution` with the
    weights copied across, and ``TensorFieldConv(backend="cuequivariance")``
    (the same parameters) where ``cuequivariance_torch`` imports.
(c) unless ``--no-compile``: both layers under :func:`torch.compile` next to
    themselves eager, and the compiled ``TensorFieldConv`` next to e3nn's
    ``Convolution`` compiled too (the compiled outputs checked against the
    eager ones in float32).

Usage::

    python scripts/bench_e3.py                       # CPU, one thread, N = 250 1000 4000
    python scripts/bench_e3.py --quick --sizes 250   # a few seconds
    python scripts/bench_e3.py --device cuda --sizes 1000 4000 16000

Graphs: ``N`` uniform random points in the unit cube, a radius graph
(:func:`gdl_pyg.ops.radius_graph`) whose radius is tuned so that a node has
about ``--neighbors`` neighbours on average. Before timing, each pair is run
once in float64 on that graph and the largest absolute difference of the
outputs is printed (the check passes below ``1e-9`` times the output scale).
Timings are float32. Within a size, the layers of a pair run interleaved, one
forward+backward each per round (the order rotating), after ``--warmup``
untimed rounds; the ratio is the median over ``--repeats`` rounds of the
paired ratios ``ours / reference`` (robust to load on a shared machine), the
times are medians too. A ratio below 1 means gdl_pyg is faster. Where the
last warm-up round says ``--repeats`` rounds would take more than
``--budget`` seconds, fewer are run (at least 3; the ``rounds`` column).

The dense reference holds several ``[N, N, hidden]`` tensors; it is skipped
(and says so) where their estimated size exceeds ``--dense-max-gib``.
"""
import argparse
import copy
import math
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Uninstalled.
from gdl_pyg.nn.conv.egnn_conv import EGNNConv  # noqa: E402
from gdl_pyg.nn.conv.tensor_field_conv import TensorFieldConv, _cuequivariance  # noqa: E402
from gdl_pyg.ops import radius_graph  # noqa: E402

#: an equality check passes when max |ours - reference| <= TOL * max(1, max |reference|)
TOL = 1e-9
#: compiled against eager, both float32 (inductor reorders sums)
COMPILED_TOL = 1e-4


# --------------------------------------------------------------------------
# graphs
# --------------------------------------------------------------------------
def random_cloud(n: int, neighbors: int, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor, float]:
    r"""``(pos [n, 3], edge_index [2, E], radius)``: uniform points in the
    unit cube and a radius graph with about ``neighbors`` neighbours per node
    on average (the radius is rescaled twice for the boundary losses)."""
    gen = torch.Generator().manual_seed(seed)
    pos = torch.rand(n, 3, generator=gen)
    r = (neighbors / n / (4.0 / 3.0 * math.pi)) ** (1.0 / 3.0)
    for _ in range(3):
        edge_index = radius_graph(pos, r, max_num_neighbors=4 * neighbors)
        mean_degree = edge_index.size(1) / n
        if abs(mean_degree - neighbors) < 0.5:
            break
        r *= (neighbors / max(mean_degree, 1e-3)) ** (1.0 / 3.0)
    return pos, edge_index, r


# --------------------------------------------------------------------------
# (a) a dense EGNN layer reading EGNNConv's weights
# --------------------------------------------------------------------------
class DenseEGNN(torch.nn.Module):
    r"""The EGNN layer of :class:`EGNNConv` on all pairs at once: ``[N, N, H]``
    messages masked by a dense adjacency ``adj [N, N]`` (``adj[i, j] = 1`` for
    an edge ``j -> i``), with edge attributes ``[N, N, D]``. It reads the
    weights of ``conv`` (no copies) and supports its default options
    (``attention``, ``normalize``, ``coords_agg``, ``tanh``, ``velocity``)."""

    def __init__(self, conv: EGNNConv):
        super().__init__()
        self.conv = conv

    def forward(self, x, pos, adj, edge_attr=None, vel=None):
        c = self.conv
        C = c.in_channels
        first = c.edge_mlp[0]
        W = first.weight                                          # [H, 2C + 1 + D]
        # first layer of phi_e split by receiver i (rows) and sender j (columns)
        recv = torch.nn.functional.linear(x, W[:, :C], first.bias)  # [N, H]
        send = torch.nn.functional.linear(x, W[:, C:2 * C])        # [N, H]
        diff = pos.unsqueeze(1) - pos.unsqueeze(0)                 # x_i - x_j, [N, N, n]
        radial = (diff * diff).sum(-1, keepdim=True)               # [N, N, 1]
        pre = recv.unsqueeze(1) + send.unsqueeze(0) + radial * W[:, 2 * C]
        if edge_attr is not None:
            pre = pre + torch.nn.functional.linear(edge_attr, W[:, 2 * C + 1:])
        m = c.edge_mlp[1:](pre)                                    # [N, N, H]
        if c.att_mlp is not None:
            m = m * torch.sigmoid(c.att_mlp(m))
        agg = torch.einsum("ij,ijh->ih", adj, m)                   # sum over neighbours j
        h = c.node_mlp(torch.cat([x, agg], dim=-1))
        if c.residual:
            h = h + x
        if not c.update_coords:
            return h, pos
        w = c.coord_mlp(m)                                         # [N, N, 1]
        if c.tanh:
            w = torch.tanh(w)
        if c.normalize:
            diff = diff / (torch.linalg.vector_norm(diff, dim=-1, keepdim=True) + c.eps)
        step = torch.einsum("ij,ijd->id", adj, diff * w)
        if c.coords_agg == "mean":
            step = step / adj.sum(1, keepdim=True).clamp_min(1.0)
        if c.velocity:
            step = c.vel_mlp(x) * vel + step
        return h, pos + step


def dense_bytes(n: int, hidden: int, itemsize: int = 4) -> int:
    r"""A rough size of the dense layer's saved activations: about ten
    ``[N, N, hidden]`` tensors."""
    return 10 * n * n * hidden * itemsize


# --------------------------------------------------------------------------
# (b) e3nn's reference convolution with TensorFieldConv's weights
# --------------------------------------------------------------------------
def _tp_key(tp, ins):
    return ins.i_in1, ins.i_in2, tp.irreps_out[ins.i_out].ir


def _linear_from_fctp(linear, fctp, in_map=None) -> None:
    # FullyConnectedTensorProduct(a, "0e", b) -> o3.Linear(a', b), a' = a reordered by in_map
    in_map = in_map or {i: i for i in range(len(fctp.irreps_in1))}
    src = {(in_map[ins.i_in1], ins.i_out): w[:, 0, :]
           for _, ins, w in fctp.weight_views(yield_instruction=True)}
    with torch.no_grad():
        for _, ins, w in linear.weight_views(yield_instruction=True):
            w.copy_(src.pop((ins.i_in, ins.i_out)))
    if src:
        raise RuntimeError(f"weights of {sorted(src)} found no place in {linear}")


def copy_reference_weights(conv: TensorFieldConv, ref) -> None:
    r"""Copies the weights of e3nn's ``Convolution`` ``ref`` into ``conv``
    (built with ``alpha=True``, ``gate=False``, ``radial_layers=1``,
    ``radial_basis="smooth_finite"``). The two order the intermediate irreps
    differently: tensor-product paths are matched by (input, sh, output
    irrep), and the radial MLP's outputs are permuted accordingly."""
    ref_ins = {_tp_key(ref.tp, ins): ins for ins in ref.tp.instructions}
    mid_map = {ref_ins[_tp_key(conv.tp, ins)].i_out: ins.i_out for ins in conv.tp.instructions}
    idx = torch.arange(ref.tp.weight_numel, dtype=torch.float64).unsqueeze(0)
    blocks = {_tp_key(ref.tp, ins): w.flatten()
              for _, ins, w in ref.tp.weight_views(idx, yield_instruction=True)}
    perm = torch.cat([blocks[_tp_key(conv.tp, ins)] for ins in conv.tp.instructions]).long()
    with torch.no_grad():
        for mine, theirs in zip(conv.radial, ref.fc):
            mine.weight.copy_(theirs.weight)
        conv.radial[-1].weight.copy_(ref.fc[-1].weight[:, perm])
    _linear_from_fctp(conv.lin1, ref.lin1)
    _linear_from_fctp(conv.sc, ref.sc)
    _linear_from_fctp(conv.lin2, ref.lin2, mid_map)
    _linear_from_fctp(conv.alpha, ref.alpha, mid_map)


class E3nnReference(torch.nn.Module):
    r"""e3nn's ``Convolution`` with the edge inputs TensorFieldConv computes
    itself (spherical harmonics, the ``smooth_finite`` radial basis scaled by
    :math:`\sqrt{n}`, constant node attributes ``"0e"``): ``forward(x, pos,
    edge_index)``, the signature of TensorFieldConv."""

    def __init__(self, ref, lmax: int, max_radius: float, num_basis: int):
        super().__init__()
        self.ref = ref
        self.lmax, self.max_radius, self.num_basis = lmax, max_radius, num_basis

    def forward(self, x, pos, edge_index):
        from e3nn import o3
        from e3nn.math import soft_one_hot_linspace
        src, dst = edge_index[0], edge_index[1]
        vec = pos[src] - pos[dst]
        sh = o3.spherical_harmonics(list(range(self.lmax + 1)), vec, True,
                                    normalization="component")
        emb = soft_one_hot_linspace(vec.norm(dim=1), 0.0, self.max_radius, self.num_basis,
                                    basis="smooth_finite", cutoff=True)
        emb = emb.mul(self.num_basis ** 0.5)
        return self.ref(x, x.new_ones(x.size(0), 1), src, dst, sh, emb)


def build_tfn(irreps: str, lmax: int, num_basis: int, hidden: int, max_radius: float,
              num_neighbors: float, cue: bool, seed: int = 0) -> Dict[str, torch.nn.Module]:
    r"""``{"ours": TensorFieldConv(e3nn), "reference": e3nn Convolution, ["cue":
    TensorFieldConv(cuequivariance)]}`` computing the same function, float64."""
    from e3nn import o3
    from e3nn.nn.models.v2106.points_convolution import Convolution

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(seed)
        kwargs = dict(irreps_sh=lmax, num_radial_basis=num_basis, radial_hidden=hidden,
                      radial_layers=1, radial_basis="smooth_finite", max_radius=max_radius,
                      num_neighbors=num_neighbors, alpha=True, gate=False)
        ours = TensorFieldConv(irreps, irreps, backend="e3nn", **kwargs)
        ref = Convolution(irreps, "0e", o3.Irreps.spherical_harmonics(lmax), irreps,
                          [num_basis, hidden], num_neighbors)
        with torch.no_grad():  # alpha starts at zero in both; make the convolution count
            ref.alpha.weight.normal_()
        copy_reference_weights(ours, ref)
        out = {"ours": ours, "reference": E3nnReference(ref, lmax, max_radius, num_basis)}
        if cue:
            other = TensorFieldConv(irreps, irreps, backend="cuequivariance", **kwargs)
            other.load_state_dict(ours.state_dict())
            out["cue"] = other
    finally:
        torch.set_default_dtype(old)
    return out


# --------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _loss(out) -> torch.Tensor:
    if isinstance(out, (tuple, list)):
        return sum(o.sum() for o in out)
    return out.sum()


def interleaved(steps: Dict[str, Callable[[], None]], repeats: int, warmup: int,
                device: torch.device, budget: float = float("inf"),
                min_repeats: int = 3) -> Dict[str, List[float]]:
    r"""Seconds per call of every step, ``repeats`` rounds of one call each
    (the order rotating), after ``warmup`` untimed rounds; fewer rounds (but
    at least ``min_repeats``) where the last warm-up round says that
    ``repeats`` would take more than ``budget`` seconds."""
    names = list(steps)
    round_time = 0.0
    for _ in range(warmup):
        _sync(device)
        t = time.perf_counter()
        for name in names:
            steps[name]()
        _sync(device)
        round_time = time.perf_counter() - t
    if round_time * repeats > budget:
        repeats = max(min(repeats, min_repeats), int(budget / round_time))
    times: Dict[str, List[float]] = {name: [] for name in names}
    for k in range(repeats):
        for name in names[k % len(names):] + names[:k % len(names)]:
            _sync(device)
            t = time.perf_counter()
            steps[name]()
            _sync(device)
            times[name].append(time.perf_counter() - t)
    return times


def paired_ratio(a: List[float], b: List[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b))


def fwd_bwd(module: torch.nn.Module, args: tuple) -> Callable[[], None]:
    def step():
        module.zero_grad(set_to_none=True)
        _loss(module(*args)).backward()
    return step


def max_diff(a, b, tol: float = TOL) -> Tuple[float, bool]:
    a = a if isinstance(a, (tuple, list)) else (a,)
    b = b if isinstance(b, (tuple, list)) else (b,)
    diff = max(float((u - v).abs().max()) for u, v in zip(a, b))
    scale = max([1.0] + [float(v.abs().max()) for v in b])
    return diff, diff <= tol * scale


def _as64(value):
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.detach().double()
    return value


def check(ours: torch.nn.Module, ref: torch.nn.Module, ours_args: tuple,
          ref_args: tuple) -> Tuple[float, bool]:
    r"""One float64 forward of both (on copies), compared."""
    with torch.no_grad():
        a = copy.deepcopy(ours).double()(*map(_as64, ours_args))
        b = copy.deepcopy(ref).double()(*map(_as64, ref_args))
    return max_diff(a, b)


def compiled_rows(cases: Dict[str, Tuple[str, torch.nn.Module, tuple,
                                         List[Tuple[str, Optional[torch.nn.Module]]]]],
                  graph: str, args, failures: List[str]) -> List[Tuple[str, ...]]:
    r"""Rows of :func:`torch.compile`'d modules next to their peers: ``cases``
    maps a key to ``(name, module, inputs, peers)``, ``peers`` a list of
    ``(peer name, peer module)``, compiled too (a peer given as ``None`` is
    the module itself in eager mode); each compiled module is timed once per
    round, for all its peers. The compiled output is checked against the
    eager one in float32 (to ``COMPILED_TOL`` x output scale), and every
    step is called once before the timed rounds (the compilation)."""
    device = torch.device(args.device)
    steps, rows, checks = {}, [], {}
    for key, (name, module, inputs, peers) in cases.items():
        compiled = torch.compile(module, backend=args.compile_backend)
        with torch.no_grad():
            checks[key] = max_diff(compiled(*inputs), module(*inputs), COMPILED_TOL)
        if not checks[key][1]:
            failures.append(f"{name}, compiled vs eager: {checks[key][0]:.1e}")
        steps[key] = fwd_bwd(compiled, inputs)
        for peer_name, peer in peers:
            steps[f"{key} / {peer_name}"] = fwd_bwd(
                torch.compile(peer, backend=args.compile_backend) if peer is not None
                else module, inputs)
    for step in steps.values():
        step()
    t = interleaved(steps, args.repeats, args.warmup, device, args.budget)
    for key, (name, _, _, peers) in cases.items():
        diff, ok = checks[key]
        for peer_name, _ in peers:
            ours, ref = t[key], t[f"{key} / {peer_name}"]
            rows.append((f"{name}, compiled / {peer_name}", graph, str(len(ours)),
                         fmt_ms(statistics.median(ours)), fmt_ms(statistics.median(ref)),
                         f"{paired_ratio(ours, ref):.2f}",
                         f"{diff:.1e} vs eager, float32 ({'ok' if ok else 'FAILED'})"))
    return rows


# --------------------------------------------------------------------------
def fmt_ms(t: Optional[float]) -> str:
    return "-" if t is None else f"{t * 1e3:.2f}"


def run(args) -> Tuple[List[Tuple[str, ...]], List[str]]:
    r"""The table rows and the failed equality checks."""
    device = torch.device(args.device)
    cue = _cuequivariance()[0] is not None and not args.no_cue
    rows: List[Tuple[str, ...]] = []
    failures: List[str] = []
    for n in args.sizes:
        pos, edge_index, r = random_cloud(n, args.neighbors, seed=n)
        E = edge_index.size(1)
        gen = torch.Generator().manual_seed(n + 1)
        pos, edge_index = pos.to(device), edge_index.to(device)
        graph = f"{n} | {E} | {E / n:.1f}"

        # (a) EGNNConv vs dense
        C, H, D = args.channels, args.channels, 1
        torch.manual_seed(n)
        conv = EGNNConv(C, C, H, edge_dim=D).to(device)
        x = torch.randn(n, C, generator=gen).to(device).requires_grad_()
        edge_attr = torch.randn(E, D, generator=gen).to(device)
        egnn = (conv, (x, pos, edge_index, edge_attr))
        need = dense_bytes(n, H)
        if need > args.dense_max_gib * 2 ** 30:
            rows.append(("EGNNConv / dense EGNN", graph, "-", "-", "-", "-",
                         f"dense skipped (~{need / 2 ** 30:.0f} GiB > --dense-max-gib "
                         f"{args.dense_max_gib:g})"))
        else:
            dense = DenseEGNN(conv)
            adj = torch.zeros(n, n, device=device)
            adj[edge_index[1], edge_index[0]] = 1.0
            ea_dense = torch.zeros(n, n, D, device=device)
            ea_dense[edge_index[1], edge_index[0]] = edge_attr
            diff, ok = check(conv, dense, (x, pos, edge_index, edge_attr),
                             (x, pos, adj, ea_dense))
            if not ok:
                failures.append(f"EGNNConv vs dense at N={n}: {diff:.1e}")
            t = interleaved({"ours": fwd_bwd(conv, (x, pos, edge_index, edge_attr)),
                             "ref": fwd_bwd(dense, (x, pos, adj, ea_dense))},
                            args.repeats, args.warmup, device, args.budget)
            rows.append(("EGNNConv / dense EGNN", graph, str(len(t["ours"])),
                         fmt_ms(statistics.median(t["ours"])),
                         fmt_ms(statistics.median(t["ref"])),
                         f"{paired_ratio(t['ours'], t['ref']):.2f}",
                         f"{diff:.1e} ({'ok' if ok else 'FAILED'})"))
            del dense, adj, ea_dense, t

        # (b) TensorFieldConv vs e3nn's Convolution (and the cuequivariance backend)
        mods = build_tfn(args.irreps, args.lmax, args.radial_basis, args.radial_hidden,
                         max_radius=r, num_neighbors=E / n, cue=cue, seed=n)
        mods = {k: m.to(device) for k, m in mods.items()}
        dim = mods["ours"].irreps_in.dim
        h = torch.randn(n, dim, generator=gen).to(device).requires_grad_()
        inputs = (h, pos, edge_index)
        # checked as built, in float64 (a float32 round trip would round
        # e3nn's constant tables), then timed in float32
        checks = {key: check(module, mods["reference"], inputs, inputs)
                  for key, module in mods.items() if key != "reference"}
        mods = {k: m.float() for k, m in mods.items()}
        steps = {key: fwd_bwd(module, inputs) for key, module in mods.items()}
        t = interleaved(steps, args.repeats, args.warmup, device, args.budget)
        names = {"ours": "TensorFieldConv (e3nn) / e3nn Convolution",
                 "cue": "TensorFieldConv (cuequivariance) / e3nn Convolution"}
        for key in [k for k in ("ours", "cue") if k in mods]:
            diff, ok = checks[key]
            if not ok:
                failures.append(f"{names[key]} at N={n}: {diff:.1e}")
            rows.append((names[key], graph, str(len(t[key])), fmt_ms(statistics.median(t[key])),
                         fmt_ms(statistics.median(t["reference"])),
                         f"{paired_ratio(t[key], t['reference']):.2f}",
                         f"{diff:.1e} ({'ok' if ok else 'FAILED'})"))
        if not cue:
            rows.append((names["cue"], graph, "-", "-", "-", "-",
                         "not available (cuequivariance_torch does not import)"
                         if not args.no_cue else "skipped (--no-cue)"))
        if not args.no_compile:
            rows += compiled_rows(
                {"egnn": ("EGNNConv", egnn[0], egnn[1], [("EGNNConv, eager", None)]),
                 "tfn": ("TensorFieldConv (e3nn)", mods["ours"], inputs,
                         [("e3nn Convolution, compiled", mods["reference"]),
                          ("TensorFieldConv (e3nn), eager", None)])},
                graph, args, failures)
        del mods, steps, t, egnn
    return rows, failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads (default: 1)")
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="graph sizes N (default: 250 1000 4000, --quick: 250)")
    parser.add_argument("--neighbors", type=int, default=20,
                        help="mean neighbours per node of the radius graphs (default: 20)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed rounds per size (default: 10, --quick: 3)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed rounds first (default: 2, --quick: 1)")
    parser.add_argument("--budget", type=float, default=60.0,
                        help="seconds per pair and size: fewer rounds (at least 3) where "
                             "--repeats would take longer (default: 60)")
    parser.add_argument("--channels", type=int, default=64,
                        help="EGNN feature and hidden width (default: 64)")
    parser.add_argument("--irreps", default="16x0e + 8x1o + 4x2e",
                        help="TensorFieldConv irreps in and out (default: 16x0e + 8x1o + 4x2e)")
    parser.add_argument("--lmax", type=int, default=2, help="spherical harmonics (default: 2)")
    parser.add_argument("--radial-basis", type=int, default=10)
    parser.add_argument("--radial-hidden", type=int, default=64)
    parser.add_argument("--dense-max-gib", type=float, default=4.0,
                        help="skip the dense EGNN above this estimated memory (default: 4)")
    parser.add_argument("--no-cue", action="store_true",
                        help="skip the cuequivariance backend")
    parser.add_argument("--no-compile", action="store_true",
                        help="skip the torch.compile rows (EGNNConv and TensorFieldConv "
                             "compiled, next to themselves eager and to e3nn's Convolution "
                             "compiled)")
    parser.add_argument("--compile-backend", default="inductor",
                        help="torch.compile backend of the compiled rows (default: inductor; "
                             "aot_eager checks the graphs without generating kernels)")
    parser.add_argument("--quick", action="store_true",
                        help="few rounds (a smoke test); default sizes 250")
    args = parser.parse_args(argv)
    args.sizes = args.sizes or ([250] if args.quick else [250, 1000, 4000])
    args.repeats = args.repeats or (3 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")

    print(f"device={device} ({torch.get_num_threads()} threads), torch {torch.__version__}, "
          f"float32 forward+backward, {args.repeats} rounds after {args.warmup} warm-up; "
          f"EGNN: {args.channels} channels, edge_dim=1; TFN: {args.irreps}, lmax={args.lmax}, "
          f"{args.radial_basis} radial basis, hidden {args.radial_hidden}", flush=True)
    rows, failures = run(args)
    print()
    print("| pair (ours / reference) | N | E | E / N | rounds | ours ms | reference ms "
          "| ratio (median of paired) | max abs diff, float64 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    if failures:
        print("equality check FAILED: " + "; ".join(failures))
        return 1
    compiled = "" if args.no_compile else \
        f"; compiled within {COMPILED_TOL:g} x output scale of eager in float32"
    print(f"equality check passed (every pair within {TOL:g} x output scale in float64"
          f"{compiled})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
