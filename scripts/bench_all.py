r"""Runs every benchmark script of gdl_pyg and writes one table: each row a
case of gdl_pyg next to its peer (PyG, ``Conv2d``, scipy's KD-tree, libigl,
e3nn, a plain PyTorch loop, ...) as the ratio ``ours / peer`` of times (below
1 means gdl_pyg is faster).

    python scripts/bench_all.py                          # CPU, one thread, documented sizes
    python scripts/bench_all.py --quick                  # tiny sizes, a smoke test
    python scripts/bench_all.py --only graph,ops --quick
    python scripts/bench_all.py --device cuda --out runs/bench_all_cuda.md

Each script (``scripts/bench_<name>.py``: ``graph``, ``cache``, ``grid``,
``ops``, ``mesh``, ``e3``, ``stack``, ``compile``) runs in a fresh subprocess with ``--device``
passed through, one thread (``--threads`` and ``OMP_NUM_THREADS``) and, with
``--quick``, small sizes; its printed tables are parsed into rows. How each
ratio is formed is the script's own (interleaved medians of paired ratios
where the script does that, else the ratio of medians or of best times; the
``basis`` column says which). A script that crashes, times out or prints
nothing parseable becomes one row saying so, and the others go on.

``memory`` (run in this process) measures the device's copy bandwidth
(``y.copy_(x)``) and the throughput of a row gather (``x[index]``) and a row
scatter-add (``out.index_add_(0, index, src)``) of ``--mem-rows`` random rows
of ``--mem-channels`` float32 features, as a fraction of that bandwidth
(counting the bytes each must move at least); its time ratios are ``op /
copy of the same bytes``. A third row times what the layers of gdl_pyg run
for a sum over edges instead (``MessagePassingConv``'s default message,
``ConvolutionalConv``): the fused gather-scatter of one CSR sparse product
(:func:`gdl_pyg.nn.conv.message_passing_conv.csr_aggregate`, edges sorted by
target, the CSR built outside the timing as a transform caches it), against
PyG's way, a gather into an ``E x F`` tensor then the scatter-add (ratio:
fused / PyG's), with its bytes (rows read, indices, values, rows written) as
a fraction of copy bandwidth.

The table goes to ``--out`` (markdown, with the command line that produced it
and the versions) and the same rows to ``--out`` with ``.json`` as suffix.
"""
import argparse
import json
import math
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
NAMES = ("graph", "cache", "grid", "ops", "mesh", "e3", "stack", "compile", "memory")


# --------------------------------------------------------------------------
# the rows
# --------------------------------------------------------------------------

def row(bench: str, case: str, peer: str, ours: Optional[float], theirs: Optional[float],
        ratio: Optional[float] = None, basis: str = "ratio of medians",
        unit: str = "ms") -> Dict:
    r"""One table row; ``ratio`` defaults to ``ours / theirs``."""
    if ratio is None and ours is not None and theirs:
        ratio = ours / theirs
    return {"bench": bench, "case": case, "peer": peer, "ours": ours, "peer_value": theirs,
            "unit": unit, "ratio": ratio, "basis": basis}


def _float(text) -> Optional[float]:
    try:
        value = float(str(text).strip().rstrip("x"))
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _cells(line: str) -> List[str]:
    return [c.strip().replace("\\|", "|")
            for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def markdown_tables(text: str) -> List[List[Dict[str, str]]]:
    r"""Every markdown table in ``text`` as a list of ``{header: cell}``."""
    tables, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip().startswith("|") and i + 1 < len(lines) and \
                re.match(r"^\s*\|[\s:|-]+\|\s*$", lines[i + 1]) and "-" in lines[i + 1]:
            header = _cells(lines[i])
            rows, i = [], i + 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                cells = _cells(lines[i])
                rows.append(dict(zip(header, cells)))
                i += 1
            tables.append(rows)
        else:
            i += 1
    return tables


def _column(rows: Sequence[Dict[str, str]], *words: str) -> Optional[str]:
    r"""The first header that contains all ``words`` (case-insensitive)."""
    for header in (rows[0] if rows else {}):
        if all(w.lower() in header.lower() for w in words):
            return header
    return None


# --------------------------------------------------------------------------
# one parser per script: stdout (and the files it wrote) -> rows
# --------------------------------------------------------------------------

_GRAPH_PEERS = [  # (pattern in our row's name, PyG layer)
    (r"GINE", "GINEConv"), (r"\bGIN\b|GIN-style|GIN\)", "GINConv"),
    (r"^ConvolutionalConv", "GCNConv"), (r"^AttentionalConv", "GATConv"),
]


def _sparse(name: str) -> bool:
    return bool(re.search(r"CSR|adj_t|sparse|SparseTensor|gcn_adjacency", name))


def _graph_input(name: str) -> str:
    r"""What a bench_graph row runs on: the precomputed GCN adjacency, a
    :class:`SparseTensor`, another sparse :obj:`adj_t`, or :obj:`edge_index`."""
    if "gcn_adjacency" in name:
        return "gcn_adjacency"
    if "SparseTensor" in name:
        return "SparseTensor"
    return "adj_t" if _sparse(name) else "edge_index"


def parse_graph(out: str, files: Dict) -> List[Dict]:
    # "<layer>  <eager ms>  <compiled ms | - | skipped | failed: X>  <compile s>
    # [<compiled/eager>x]": the last column (a median of paired ratios) is optional
    parsed = []
    for line in out.splitlines():
        m = re.match(r"^(.+?)\s+(\d+(?:\.\d+)?)\s+(\d+(?:\.\d+)?|-|skipped|failed: \S+)"
                     r"\s+(\S+)(?:\s+(\d+(?:\.\d+)?x|-))?\s*$", line)
        if m and not line.startswith(("layer", "device")):
            parsed.append((m.group(1).strip(), float(m.group(2)), _float(m.group(3)),
                           _float(m.group(5))))
    pyg = [p for p in parsed if "(PyG)" in p[0]]
    rows = []
    for name, eager, compiled, paired in parsed:
        if "(PyG)" in name:
            continue
        layer = next((peer for pat, peer in _GRAPH_PEERS if re.search(pat, name)), None)
        same = [p for p in pyg if layer and p[0].split(" (PyG)")[0] == layer]
        # the PyG row on the same input (edge_index, adj_t or the precomputed
        # gcn_adjacency), else on the same kind (sparse or not), else the first
        peer = next((p for p in same if _graph_input(p[0]) == _graph_input(name)),
                    next((p for p in same if _sparse(p[0]) == _sparse(name)),
                         same[0] if same else None))
        if peer is not None:
            rows.append(row("graph", f"{name}, eager", f"{peer[0]}, eager", eager, peer[1]))
        if compiled is not None and peer is not None:
            if peer[2] is not None:
                rows.append(row("graph", f"{name}, compiled", f"{peer[0]}, compiled",
                                compiled, peer[2]))
            else:  # PyG's layer does not compile there: its eager time is what it offers
                rows.append(row("graph", f"{name}, compiled", f"{peer[0]}, eager",
                                compiled, peer[1],
                                basis="ratio of medians (the peer does not compile)"))
        if compiled is not None and paired is not None:
            rows.append(row("graph", f"{name}, compiled", f"{name}, eager", compiled, eager,
                            ratio=paired, basis="median of paired ratios"))
    return rows


def parse_grid(out: str, files: Dict) -> List[Dict]:
    # "<case> vs <peer>  <reference ms>  <candidate ms>  <ratio>x  [IQR]": the printed
    # ratio is the script's (a median of paired ratios where it says so)
    paired = "median of paired" in out
    rows = []
    for line in out.splitlines():
        m = re.match(r"^(.+?)\s+(\d+(?:\.\d+)?)\s+(\d+(?:\.\d+)?)\s+(\d+(?:\.\d+)?)x"
                     r"(?:\s+\S+)*\s*$", line)
        if m:
            label = m.group(1).strip()
            case, _, peer = label.partition(" vs ")
            rows.append(row("grid", case or label, peer or "reference",
                            float(m.group(3)), float(m.group(2)), ratio=float(m.group(4)),
                            basis="median of paired ratios" if paired else "ratio of medians"))
        elif re.search(r"\sskipped\s*$", line) and " vs " in line:
            case, _, peer = line.rsplit("skipped", 1)[0].strip().partition(" vs ")
            rows.append(row("grid", case, peer, None, None, basis="skipped by the script"))
    return rows


def parse_ops(out: str, files: Dict) -> List[Dict]:
    rows, header = [], None
    for line in out.splitlines():
        tokens = line.split()
        if tokens[:1] == ["op"]:
            header = line
            continue
        if header is None or len(tokens) < 8 or not tokens[1].isdigit():
            continue
        name, n = tokens[0], int(tokens[1])
        t_torch, t_scipy, t_cluster, t_raw = (_float(t) for t in tokens[3:7])
        if t_raw is None:
            continue
        peer = ("scipy cKDTree build + query_pairs + stable sort by target"
                if name.startswith("radius") else "scipy cKDTree build + query(k+1)")
        paired = _float(tokens[7])  # scipy backend / raw: median of interleaved pairs
        for backend, t in (("scipy", t_scipy), ("cluster", t_cluster), ("torch", t_torch)):
            if t is None:
                continue
            if backend == "scipy" and paired is not None:
                rows.append(row("ops", f"{name} N={n} (backend={backend!r})", peer,
                                t * 1e3, t_raw * 1e3, ratio=paired,
                                basis="median of paired ratios"))
            else:
                rows.append(row("ops", f"{name} N={n} (backend={backend!r})", peer,
                                t * 1e3, t_raw * 1e3, basis="ratio of best times"))
    return rows


def parse_mesh(out: str, files: Dict) -> List[Dict]:
    rows = []
    for table in markdown_tables(out):
        if _column(table, "vertices") and _column(table, "mesh_to_data"):
            full, igl = _column(table, "us/vertex"), _column(table, "igl")
            shared = _column(table, "shared part")
            # paired ratios (medians over interleaved rounds) in tables with a "whole /
            # igl" column; before it, "shared / igl" was a ratio of medians
            whole_ratio = _column(table, "whole / igl")
            shared_ratio = _column(table, "shared / igl")
            first = None
            for r in table:
                n = r.get("vertices", "?")
                t_full, t_igl = _float(r.get(full)), _float(r.get(igl))
                t_shared = _float(r.get(shared)) if shared else None
                if t_igl is not None:
                    paired = _float(r.get(whole_ratio)) if whole_ratio else None
                    rows.append(row("mesh", f"mesh_to_data, all geometry, N={n}",
                                    "igl cotmatrix + massmatrix", t_full, t_igl, ratio=paired,
                                    basis="median of paired ratios" if paired is not None
                                    else "ratio of medians", unit="us/vertex"))
                    if t_shared is not None:
                        paired = _float(r.get(shared_ratio)) if whole_ratio else None
                        rows.append(row("mesh", f"mesh_to_data, shared part, N={n}",
                                        "igl cotmatrix + massmatrix", t_shared, t_igl,
                                        ratio=paired, basis="median of paired ratios"
                                        if paired is not None else "ratio of medians",
                                        unit="us/vertex"))
                if t_full is not None:
                    if first is None:
                        first = (n, t_full)
                    elif n != first[0]:
                        rows.append(row("mesh", f"mesh_to_data us/vertex, N={n}",
                                        f"itself at N={first[0]}", t_full, first[1],
                                        unit="us/vertex"))
        ratio = _column(table, "ratio")
        if _column(table, "layer") and ratio:
            ms = _column(table, "ms")
            peer = re.search(r"ratio to (\S+)", ratio)
            for r in table:
                value = _float(r.get(ratio))
                base = peer.group(1) if peer else None
                if value is not None and not (base and r.get("layer", "").startswith(base)):
                    rows.append(row("mesh", r["layer"], peer.group(1) if peer else "reference",
                                    _float(r.get(ms)), None, ratio=value,
                                    basis="median of paired ratios"))
    return rows


def parse_e3(out: str, files: Dict) -> List[Dict]:
    rows = []
    for table in markdown_tables(out):
        ratio, pair = _column(table, "ratio"), _column(table, "pair")
        if not (ratio and pair):
            continue
        ours, ref = _column(table, "ours", "ms"), _column(table, "reference", "ms")
        for r in table:
            case, _, peer = r[pair].partition(" / ")
            n = f", N={r['N']}" if "N" in r else ""
            rows.append(row("e3", case + n, peer or "reference", _float(r.get(ours)),
                            _float(r.get(ref)), ratio=_float(r[ratio]),
                            basis="median of paired ratios"))
    return rows


def parse_stack(out: str, files: Dict) -> List[Dict]:
    path = files.get("json")
    result = json.loads(Path(path).read_text()) if path and Path(path).is_file() else {}
    rows = []
    epoch = result.get("epoch")
    if epoch:
        rows.append(row("stack", "gdl-pyg fit, one epoch", "plain PyTorch loop",
                        epoch.get("lightning_epoch_s"), epoch.get("plain_epoch_s"),
                        ratio=epoch.get("ratio"), basis="median of paired ratios", unit="s"))
        if epoch.get("bare_epoch_s"):
            rows.append(row("stack", "bare Lightning (no callbacks, logging or metrics), one "
                            "epoch", "plain PyTorch loop", epoch.get("bare_epoch_s"),
                            epoch.get("plain_epoch_s"), ratio=epoch.get("bare_ratio"),
                            basis="median of paired ratios", unit="s"))
            rows.append(row("stack", "gdl-pyg fit on top of Lightning's loop, one epoch",
                            "bare Lightning",
                            epoch.get("lightning_epoch_s"), epoch.get("bare_epoch_s"),
                            ratio=epoch.get("ratio_to_bare"), basis="median of paired ratios",
                            unit="s"))
    startup = result.get("startup_s") or {}
    base_name = next((k for k in startup if "torch_geometric" in k and "lightning" in k),
                     "python -c pass" if "python -c pass" in startup else None)
    for name, seconds in startup.items():
        if base_name and name != base_name:
            rows.append(row("stack", f"start-up: {name}", base_name, seconds,
                            startup[base_name], basis="median of fresh processes", unit="s"))
    return rows


def parse_compile(out: str, files: Dict) -> List[Dict]:
    rows = []
    for table in markdown_tables(out):
        ratio = _column(table, "compiled / eager")
        if not ratio:
            continue
        for r in table:
            check = r.get("check", "")
            case = f"{r['layer']} ({r.get('input', '')}), compiled"
            if "FAILED" in check or _float(r[ratio]) is None:
                rows.append(row("compile", case, f"{r['layer']}, eager", None, None,
                                basis=check or "failed"))
                continue
            rows.append(row("compile", f"{case}, graphs / breaks {r.get('graphs / breaks')}",
                            f"{r['layer']}, eager", _float(r.get("compiled ms")),
                            _float(r.get("eager ms")), ratio=_float(r[ratio]),
                            basis="median of paired ratios"))
    return rows


def parse_cache(out: str, files: Dict) -> List[Dict]:
    rows = []
    for table in markdown_tables(out):
        ratio = _column(table, "ratio")
        if not ratio or "case" not in table[0]:
            continue
        for r in table:
            check = r.get("check", "")
            case = f"{r['case']}, one epoch of mini-batches"
            if "FAILED" in check:  # outputs that differ: no ratio
                rows.append(row("cache", case, r["peer"], None, None, basis=check))
                continue
            rows.append(row("cache", case, r["peer"], _float(r.get("ours ms/epoch")),
                            _float(r.get("peer ms/epoch")), ratio=_float(r[ratio]),
                            basis="median of paired ratios"))
    return rows


def _stack_args(args, tmp: Path) -> List[str]:
    out = ["--out", str(tmp / "bench_stack.json")]
    if args.quick:
        return out + ["--steps", "10", "--rounds", "1", "--warmup", "0", "--cli-repeats", "1"]
    return out


#: name -> (script, its arguments for full / quick runs, parser, takes --threads)
SPECS: Dict[str, Dict] = {
    "graph": dict(args=[], quick=["--nodes", "2000", "--edges", "20000", "--reps", "3",
                                  "--warmup", "1", "--no-compile"],
                  parse=parse_graph, threads=False),
    "cache": dict(args=[], quick=["--quick"], parse=parse_cache, threads=True),
    "grid": dict(args=[], quick=["--batch", "2", "--channels", "8", "--size", "16",
                                 "--repeats", "3", "--warmup", "1"],
                 parse=parse_grid, threads=True),
    "ops": dict(args=["--repeat", "7"], quick=["--sizes", "2000", "--repeat", "2"],
                parse=parse_ops, threads=False),
    "mesh": dict(args=[], quick=["--quick"], parse=parse_mesh, threads=True),
    "e3": dict(args=[], quick=["--quick", "--sizes", "100"], parse=parse_e3, threads=True),
    "stack": dict(args=[], quick=[], parse=parse_stack, threads=True),
    "compile": dict(args=["--models"], quick=["--quick"], parse=parse_compile, threads=True),
}


def run_script(name: str, args, tmp: Path) -> Dict:
    r"""Runs ``scripts/bench_<name>.py`` in a fresh process; returns its rows,
    status and command."""
    spec = SPECS[name]
    cmd = [sys.executable, str(SCRIPTS / f"bench_{name}.py"), "--device", args.device]
    if spec["threads"]:
        cmd += ["--threads", str(args.threads)]
    cmd += spec["quick"] if args.quick else spec["args"]
    if name == "stack":
        cmd += _stack_args(args, tmp)
    cmd += shlex.split(getattr(args, f"{name}_args") or "")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               PYTHONWARNINGS="ignore")
    shown = " ".join(shlex.quote(c) for c in ["python", f"scripts/bench_{name}.py"] + cmd[2:])
    result = {"bench": name, "command": shown, "status": "ok", "seconds": None, "error": None,
              "rows": []}
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=str(ROOT), env=env, capture_output=True, text=True,
                              timeout=args.timeout)
    except subprocess.TimeoutExpired as e:
        result.update(status="timeout", seconds=time.perf_counter() - t,
                      error=f"no result within --timeout {args.timeout:g} s")
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        result["stdout_tail"] = out[-4000:]
        return result
    result["seconds"] = time.perf_counter() - t
    result["stdout_tail"] = proc.stdout[-4000:]
    try:
        result["rows"] = spec["parse"](proc.stdout, {"json": str(tmp / "bench_stack.json")})
    except Exception as e:  # a format we do not know: say so, keep the others
        result["error"] = f"could not parse its output ({type(e).__name__}: {e})"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        result.update(status=f"exit {proc.returncode}", error=last[:300])
    elif not result["rows"] and not result["error"]:
        result.update(status="no rows", error="no table rows found in its output")
    return result


# --------------------------------------------------------------------------
# memory: gather / scatter-add throughput against copy bandwidth
# --------------------------------------------------------------------------

def bench_memory(args) -> Dict:
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    E, F = (200_000, 16) if args.quick else (args.mem_rows, args.mem_channels)
    N = max(E // 20, 1)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, F, generator=gen).to(device)
    src = torch.randn(E, F, generator=gen).to(device)
    index = torch.randint(0, N, (E,), generator=gen).to(device)
    dst = torch.empty_like(src)
    out = torch.zeros(N, F, device=device)
    row_bytes, idx_bytes = E * F * 4, E * 8
    ops = {  # name -> (callable, bytes it must move at least)
        "copy": (lambda: dst.copy_(src), 2 * row_bytes),
        "gather x[index]": (lambda: torch.index_select(x, 0, index, out=dst),
                            2 * row_bytes + idx_bytes),
        "scatter-add index_add_": (lambda: out.index_add_(0, index, src),
                                   row_bytes + idx_bytes + 2 * N * F * 4),
    }
    # the layers' sum over edges: one CSR product over edges sorted by target
    from gdl_pyg.nn.conv.message_passing_conv import csr_adjacency, csr_aggregate

    edge_index = torch.stack([torch.randint(0, N, (E,), generator=gen), index.cpu()])
    edge_index = edge_index[:, torch.argsort(edge_index[1], stable=True)].to(device)
    adj_t = csr_adjacency(edge_index, N, N, "source_to_target", x.dtype)
    gathered = torch.empty_like(src)

    def unfused():  # PyG's propagate: x_j for every edge, then the scatter-add
        torch.index_select(x, 0, edge_index[0], out=gathered)
        return out.zero_().index_add_(0, edge_index[1], gathered)

    fused_sum = "fused gather-scatter, one CSR product (csr_aggregate)"
    ops[fused_sum] = (lambda: csr_aggregate(adj_t, x, "sum", node_dim=0),
                      row_bytes + E * 12 + (N + 1) * 8 + N * F * 4)
    ops["PyG gather + scatter-add"] = (unfused, None)
    fused, reference = ops[fused_sum][0](), unfused()
    if not torch.allclose(fused, reference, rtol=1e-4, atol=1e-4):
        raise RuntimeError(f"{fused_sum} differs from the gather + scatter-add by "
                           f"{(fused - reference).abs().max().item():.3g}")
    repeats = 5 if args.quick else 20
    times = {k: [] for k in ops}
    for fn, _ in ops.values():
        fn()
    for _ in range(repeats):  # interleaved
        for name, (fn, _) in ops.items():
            sync()
            t = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t)
    bw = {k: ops[k][1] / statistics.median(v) for k, v in times.items() if ops[k][1]}
    rows = []
    for name in ("gather x[index]", "scatter-add index_add_"):
        # time ratio to a copy of the same bytes, paired per round
        paired = [t / (c * ops[name][1] / ops["copy"][1])
                  for t, c in zip(times[name], times["copy"])]
        rows.append(row("memory", f"{name} (E={E}, F={F}, N={N}), {bw[name] / 1e9:.1f} GB/s = "
                        f"{bw['copy'] and bw[name] / bw['copy']:.0%} of copy",
                        f"copy {bw['copy'] / 1e9:.1f} GB/s", statistics.median(times[name]) * 1e3,
                        statistics.median(times["copy"]) * 1e3 * ops[name][1] / ops["copy"][1],
                        ratio=statistics.median(paired), basis="median of paired ratios"))
    pyg = "PyG gather + scatter-add"
    rows.append(row("memory", f"{fused_sum} (E={E}, F={F}, N={N}), "
                    f"{bw[fused_sum] / 1e9:.1f} GB/s = {bw[fused_sum] / bw['copy']:.0%} of copy",
                    "PyG's gather of x_j into E x F, then index_add_ (the same edges)",
                    statistics.median(times[fused_sum]) * 1e3,
                    statistics.median(times[pyg]) * 1e3,
                    ratio=statistics.median(f / g for f, g in zip(times[fused_sum], times[pyg])),
                    basis="median of paired ratios"))
    return {"bench": "memory", "command": "(in process)", "status": "ok", "seconds": None,
            "error": None, "rows": rows,
            "bandwidth_GBps": {k: v / 1e9 for k, v in bw.items()},
            "fraction_of_copy": {k: bw[k] / bw["copy"] for k in bw}}


# --------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------

def _fmt(value: Optional[float]) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def render(report: Dict) -> str:
    lines = ["# gdl_pyg benchmarks", "",
             f"Produced by `{report['command']}` on {report['date']} ({report['machine']}; "
             f"{report['versions']}).", "",
             "Ratio = ours / peer (time); below 1 means gdl_pyg is faster.", "",
             "| bench | case | peer | ours | peer | unit | ratio (ours / peer) | basis |",
             "| --- | --- | --- | ---: | ---: | --- | ---: | --- |"]
    for res in report["benches"]:
        for r in res["rows"]:
            cells = [r["bench"], r["case"], r["peer"], _fmt(r["ours"]), _fmt(r["peer_value"]),
                     r["unit"], "-" if r["ratio"] is None else f"{r['ratio']:.2f}", r["basis"]]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        if res["error"]:
            lines.append(f"| {res['bench']} | **{res['status']}**: "
                         f"{res['error'].replace('|', chr(92) + '|')} | - | - | - | - | - | - |")
    lines += ["", "| bench | status | seconds | command |", "| --- | --- | ---: | --- |"]
    for res in report["benches"]:
        sec = "-" if res["seconds"] is None else f"{res['seconds']:.1f}"
        lines.append(f"| {res['bench']} | {res['status']} | {sec} | `{res['command']}` |")
    return "\n".join(lines) + "\n"


def _versions() -> str:
    try:
        import torch
        import torch_geometric
        return f"torch {torch.__version__}, torch_geometric {torch_geometric.__version__}"
    except ImportError:  # pragma: no cover
        return "torch not importable"


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1,
                        help="threads of every script (default: 1)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument("--only", default=None,
                        help=f"comma-separated subset of {','.join(NAMES)} (default: all)")
    parser.add_argument("--out", default="runs/bench_all.md",
                        help="the markdown table; the JSON goes next to it (default: "
                             "runs/bench_all.md)")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds per script before it is recorded as a timeout")
    parser.add_argument("--mem-rows", type=int, default=2_000_000,
                        help="rows gathered / scattered by 'memory' (default: 2000000)")
    parser.add_argument("--mem-channels", type=int, default=64)
    for name in SPECS:
        parser.add_argument(f"--{name}-args", default=None, metavar="ARGS",
                            help=f"extra arguments for bench_{name}.py (one quoted string)")
    args = parser.parse_args(argv)
    names = NAMES if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in NAMES]
    if unknown or not names:
        parser.error(f"--only: expected names from {','.join(NAMES)} (got {args.only!r})")

    command = " ".join(["python", "scripts/bench_all.py"] +
                       [shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)])
    report = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, device {args.device}, "
                         f"{args.threads} thread(s)",
              "versions": _versions(), "benches": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            print(f"[bench_all] {name} ...", flush=True)
            if name == "memory":
                try:
                    res = bench_memory(args)
                except Exception as e:  # recorded, not raised
                    res = {"bench": "memory", "command": "(in process)", "status": "failed",
                           "seconds": None, "error": f"{type(e).__name__}: {e}", "rows": []}
            else:
                res = run_script(name, args, Path(tmp))
            report["benches"].append(res)
            print(f"[bench_all] {name}: {res['status']}, {len(res['rows'])} rows"
                  + (f" ({res['error']})" if res["error"] else ""), flush=True)
    text = render(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    print(text)
    print(f"Written to {out} and {out.with_suffix('.json')}")
    return report


if __name__ == "__main__":
    main()
