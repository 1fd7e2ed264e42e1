r"""Timings of the mesh pipeline: :func:`gdl_pyg.domains.mesh_to_data` next to
libigl, and the mesh layers of gdl_pyg next to PyG's ``GMMConv`` and
``FeaStConv``, printed as markdown tables.

    python scripts/bench_mesh.py                          # CPU, one thread
    python scripts/bench_mesh.py --quick                  # small sizes, a few seconds
    python scripts/bench_mesh.py --device cuda --layer-vertices 160000

(a) ``mesh_to_data``: icospheres (``trimesh.creation.icosphere``) with the
vertex count nearest each of ``--sizes``; the time per vertex of the whole
conversion, of the part it shares with libigl (corner geometry, edges,
cotangent Laplacian and mixed-Voronoi mass) and of ``igl.cotmatrix`` +
``igl.massmatrix(..., MASSMATRIX_TYPE_VORONOI)`` (when the ``libigl`` package
is installed: ``pip install libigl``), medians of ``--repeats`` rounds after
one warm-up. The three run interleaved, one of each per round, and ``shared
/ igl`` and ``whole / igl`` are medians over rounds of paired ratios (robust
to load on a shared machine); the script then says whether ``whole / igl``
at the largest size meets the goal of at most 3x (issue 11).

``page-faulted bytes/vertex`` is the fresh memory a timed ``mesh_to_data``
call touched for the first time (minor page faults times the page size,
median over rounds). It explains most of the growth of ``us/vertex`` with
the mesh: at 10k vertices the allocator serves every buffer from memory the
process already holds; at 160k the heap grows by about the call's peak and
glibc trims it back once the call's buffers are freed (``strace`` shows
``brk`` up and down on every call, no ``mmap``), so every call touches those
pages afresh and the kernel zeroes them. How much of the peak is trimmed
depends on the allocator's state and varies from run to run (50 to 610
bytes/vertex at 160k in seven runs). With ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` set high enough that glibc keeps freed memory
(``MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=4000000000``),
the faults vanish from the timed calls and the time per vertex at 160k was
1.05-1.18x that at 10k in four runs on the 2-core CPU machine (1.16-1.56x
without, in the same sessions). :func:`mesh_to_data` drops its buffers as
soon as it is done with them to keep that peak low.

``peak MiB`` is the peak memory of ``mesh_to_data``, NumPy and torch
allocations alike: the growth of the peak resident set size of a fresh
Python process (which loads the inputs from a file, so that nothing but the
call raises its peak) over its resident size just before the call. On Linux
the peak is ``VmHWM``, reset before each call through
``/proc/self/clear_refs``, with freed heap memory returned first
(``malloc_trim``); elsewhere it is the growth of ``ru_maxrss``, a lower
bound (marked ``>=``).

(b) layers: forward + backward on an icosphere of about ``--layer-vertices``
vertices with ``--channels`` features in and out (GEMConv: ``channels //
(2 M + 1)`` fields of order ``M = --order``, the same width when it divides),
float32. The layers run interleaved, one fwd+bwd each per round, so the
ratio to ``GMMConv`` is the median over rounds of paired ratios (robust to
load on a shared machine). A layer of gdl_pyg that does not import (or
fails) prints ``not available`` and the others go on.
"""
import argparse
import json
import math
import os
import re
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Uninstalled.
from gdl_pyg.domains import mesh as mesh_mod  # noqa: E402
from gdl_pyg.domains.mesh import mesh_to_data  # noqa: E402


def icosphere(num_vertices):
    r"""``(pos [N, 3] float64, face [3, F] long)`` of the icosphere whose
    vertex count :math:`10 \cdot 4^s + 2` is nearest ``num_vertices``."""
    import trimesh

    s = max(0, round(math.log(max(num_vertices - 2, 10) / 10, 4)))
    m = trimesh.creation.icosphere(subdivisions=int(s))
    return (torch.tensor(np.asarray(m.vertices), dtype=torch.float64),
            torch.tensor(np.asarray(m.faces).T.copy(), dtype=torch.long))


#: Bytes per page, for the page-fault column.
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def minor_faults():
    r"""The minor page faults of this process so far (fresh memory touched
    for the first time), or :obj:`None` where :mod:`resource` is missing."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def median_time(fn, repeats, warmup=1, sync=lambda: None):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def shared_part(pos, face):
    r"""The part of :func:`mesh_to_data` libigl also computes: the corner
    geometry, the edge list, the cotangent Laplacian and the mixed mass."""
    P = pos.numpy()
    F = face.numpy().T.copy()
    N = P.shape[0]
    K = mesh_mod._corner_data(np.ascontiguousarray(P.T), F, mass="mixed")
    edge_index, ptr, eid_next, eid_prev = mesh_mod._edges(N, K.a, K.b, K.c)
    mesh_mod._laplacian(N, edge_index, ptr, eid_next, eid_prev, K.b, K.c, K.half_cot)
    np.bincount(K.a, K.mass, minlength=N)


#: The goal of issue 11: mesh_to_data at most this many times libigl's
#: cotmatrix + massmatrix at the largest size.
GOAL = 3.0


def _proc_status(key):
    r"""``key`` of ``/proc/self/status`` in bytes (``None`` where unavailable)."""
    try:
        with open("/proc/self/status") as f:
            m = re.search(key + r":\s+(\d+) kB", f.read())
    except OSError:
        return None
    return int(m.group(1)) * 1024 if m else None


def peak_rss_increase(fn):
    r"""Runs ``fn()`` and returns ``(bytes, exact)``: how far the peak
    resident set size of this process rose above its resident size just
    before the call. ``exact`` where the peak could be reset first (Linux:
    ``/proc/self/clear_refs``, after ``malloc_trim`` returned freed heap
    memory), otherwise the growth of ``ru_maxrss``, a lower bound. Resident
    memory counts every allocation that was touched, NumPy's and torch's
    alike (:mod:`tracemalloc` sees neither torch's allocator nor memory
    allocated in C)."""
    import ctypes
    import gc
    import resource

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak (VmHWM) to the current resident size
        base = _proc_status("VmRSS")
        exact = base is not None
    except OSError:
        exact = False
    if exact:
        fn()
        return max(0, _proc_status("VmHWM") - base), True
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    fn()
    return max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale - before), False


def _peak_child(path, threads):
    r"""The body of the fresh process of :func:`peak_memory`: prints one JSON
    line per mesh of ``path`` (an ``.npz`` of ``pos<N>`` and ``face<N>``)."""
    torch.set_num_threads(threads)
    data = np.load(path)
    ico = icosahedron()
    mesh_to_data(*ico)  # first-call costs (lazy imports) out of the first measurement
    for key in sorted((k for k in data.files if k.startswith("pos")), key=lambda k: int(k[3:])):
        n = key[3:]
        pos, face = torch.from_numpy(data[key]), torch.from_numpy(data["face" + n])
        peak, exact = peak_rss_increase(lambda: mesh_to_data(pos, face))
        print(json.dumps({"vertices": int(n), "peak": peak, "exact": exact}), flush=True)


def icosahedron():
    r"""The 12-vertex icosahedron (a tiny mesh for warm-up calls)."""
    t = (1 + 5 ** 0.5) / 2
    pos = torch.tensor([[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
                        [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1],
                        [-t, 0, 1]], dtype=torch.float64)
    face = torch.tensor([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11],
                         [1, 5, 9], [5, 11, 4], [11, 10, 2], [10, 7, 6], [7, 1, 8],
                         [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9],
                         [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]]).T
    return pos, face.contiguous()


def peak_memory(meshes, threads=1):
    r"""``{vertices: (bytes, exact)}``: the peak memory of ``mesh_to_data`` on
    each ``(pos, face)`` of ``meshes``, measured in one fresh Python process
    (see :func:`peak_rss_increase`); ``{}`` if that process fails."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "meshes.npz")
        np.savez(path, **{f"{k}{pos.size(0)}": v.numpy() for pos, face in meshes
                          for k, v in (("pos", pos), ("face", face))})
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--peak-child",
                               path, "--threads", str(threads)], capture_output=True,
                              text=True)
    out = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            out[r["vertices"]] = (r["peak"], r["exact"])
    return out


def bench_mesh_to_data(args):
    try:
        import igl
    except ImportError:
        igl = None
    meshes = [icosphere(size) for size in args.sizes]
    peaks = peak_memory(meshes, args.threads)
    print("## mesh_to_data (float64, CPU)\n")
    print("| vertices | faces | mesh_to_data ms | us/vertex | shared part us/vertex "
          "| igl cotmatrix+massmatrix us/vertex | shared / igl | whole / igl | peak MiB "
          "| bytes/vertex | page-faulted bytes/vertex |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    last = None
    for pos, face in meshes:
        N, nF = pos.size(0), face.size(1)
        runs = {"full": lambda: mesh_to_data(pos, face), "part": lambda: shared_part(pos, face)}
        if igl is not None:
            V, Fi = pos.numpy(), face.numpy().T.copy()

            def run_igl():
                igl.cotmatrix(V, Fi)
                igl.massmatrix(V, Fi, igl.MASSMATRIX_TYPE_VORONOI)

            runs["igl"] = run_igl
        times = {k: [] for k in runs}
        for fn in runs.values():  # warm-up
            fn()
        faults = []  # minor page faults of the mesh_to_data runs
        for _ in range(args.repeats):  # interleaved: one run of each per round
            for k, fn in runs.items():
                f0 = minor_faults()
                t = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t)
                if k == "full" and f0 is not None:
                    faults.append(minor_faults() - f0)
        t_full, t_part = statistics.median(times["full"]), statistics.median(times["part"])
        if igl is not None:
            def paired(k):
                return statistics.median(t / r for t, r in zip(times[k], times["igl"]))

            t_igl = statistics.median(times["igl"])
            whole = paired("full")
            igl_cols = f"{t_igl / N * 1e6:.2f} | {paired('part'):.2f} | {whole:.2f}"
            last = (N, whole)
        else:
            igl_cols = "libigl not installed | - | -"
        if N in peaks:
            peak, exact = peaks[N]
            mem_cols = f"{'' if exact else '>='}{peak / 2 ** 20:.1f} | {peak / N:.0f}"
        else:
            mem_cols = "- | -"
        fault_col = (f"{statistics.median(faults) * PAGE / N:.0f}" if faults else "-")
        print(f"| {N} | {nF} | {t_full * 1e3:.1f} | {t_full / N * 1e6:.2f} "
              f"| {t_part / N * 1e6:.2f} | {igl_cols} | {mem_cols} | {fault_col} |", flush=True)
    if igl is None:
        print("\nlibigl is not installed (`pip install libigl`): no reference timings.")
    else:
        N, whole = last
        print(f"\ngoal (issue 11): mesh_to_data at most {GOAL:g}x igl cotmatrix+massmatrix at "
              f"N={N}: {whole:.2f}x, {'met' if whole <= GOAL else 'NOT met'}")
    if not peaks:
        print("\npeak memory: the measuring process failed")


def layer_cases(data, C, M, K, heads, device):
    r"""``(name, factory)`` pairs; a factory returns ``(module, inputs)`` or
    raises (then the row reads ``not available``)."""
    from torch_geometric.nn import FeaStConv, GMMConv

    N = data.num_nodes
    ei = data.edge_index
    logmap = data.edge_logmap
    radius = float(logmap[:, 0].max()) * 1.01
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, C, generator=g).to(device).requires_grad_()
    cases = [
        (f"GMMConv (PyG, kernel_size={K}, dim=2)",
         lambda: (GMMConv(C, C, dim=2, kernel_size=K), (x, ei, logmap))),
        (f"FeaStConv (PyG, heads={heads})",
         lambda: (FeaStConv(C, C, heads=heads), (x, ei))),
    ]

    def gem():
        from gdl_pyg.nn.conv.gem_conv import GEMConv

        comps = 2 * M + 1
        xg = torch.randn(N, max(1, C // comps), comps, generator=g).to(device)
        return (GEMConv(xg.size(1), xg.size(1), M, M, max_radius=radius),
                (xg.requires_grad_(), ei, logmap, data.edge_connection))

    def geodesic():
        from gdl_pyg.nn.conv.geodesic_conv import GeodesicConv

        return GeodesicConv(C, C, max_radius=radius), (x, ei, logmap)

    def diffusion_chebyshev():
        from gdl_pyg.nn.conv.diffusion_conv import DiffusionConv

        conv = DiffusionConv(C, method="chebyshev", init_time=1e-3, num_terms=8)
        return conv, (x, data.mass), dict(laplacian_index=data.laplacian_index,
                                          laplacian_weight=data.laplacian_weight)

    def diffusion_spectral(k=128):
        from gdl_pyg.nn.conv.diffusion_conv import DiffusionConv

        # timing only: a random orthonormal basis has the shapes of the
        # LaplacianEigenbasis output (its values do not change the cost)
        evecs = torch.linalg.qr(torch.randn(N, k, generator=g))[0].to(device)
        evals = torch.linspace(0, 100, k).view(1, k).to(device)
        conv = DiffusionConv(C, method="spectral", init_time=1e-3)
        return conv, (x, data.mass), dict(evals=evals, evecs=evecs)

    cases += [
        (f"GEMConv (order {M} -> {M}, {max(1, C // (2 * M + 1))}x{2 * M + 1})", gem),
        ("GeodesicConv (3 rho x 8 theta)", geodesic),
        ("DiffusionConv (chebyshev, 8 terms)", diffusion_chebyshev),
        ("DiffusionConv (spectral, k=128)", diffusion_spectral),
    ]
    return cases


def bench_layers(args, device):
    pos, face = icosphere(args.layer_vertices)
    data = mesh_to_data(pos.float(), face).to(device)
    N, E = data.num_nodes, data.edge_index.size(1)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(f"\n## mesh layers, forward + backward ({device}, {torch.get_num_threads()} "
          f"thread(s), float32, N={N}, E={E}, channels={args.channels})\n")
    rows = []
    for name, factory in layer_cases(data, args.channels, args.order, args.kernel_size,
                                     args.heads, device):
        try:
            made = factory()
            module, inputs = made[0].to(device), made[1]
            kwargs = made[2] if len(made) > 2 else {}

            def step(module=module, inputs=inputs, kwargs=kwargs):
                module(*inputs, **kwargs).sum().backward()

            for _ in range(args.warmup):
                step()
            sync()
            rows.append([name, step, []])
        except Exception as e:  # report, keep benchmarking the others
            rows.append([name, None, f"not available ({type(e).__name__}: {str(e)[:60]})"])
    for _ in range(args.rounds):  # interleaved: one fwd+bwd of each per round
        for row in rows:
            if row[1] is None:
                continue
            sync()
            t = time.perf_counter()
            row[1]()
            sync()
            row[2].append(time.perf_counter() - t)
    base = rows[0][2]
    print("| layer | fwd+bwd ms | ns/edge | ratio to GMMConv (median of paired) |")
    print("| --- | ---: | ---: | ---: |")
    for name, step, times in rows:
        if step is None:
            print(f"| {name} | {times} | - | - |")
            continue
        ratio = statistics.median(t / b for t, b in zip(times, base))
        med = statistics.median(times)
        print(f"| {name} | {med * 1e3:.1f} | {med / E * 1e9:.0f} | {ratio:.2f} |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="vertex counts of (a) (default: 10000 40000 160000)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs of (a) (default: 5; 3 with --quick)")
    parser.add_argument("--layer-vertices", type=int, default=None,
                        help="vertices of the mesh of (b) (default: 40000; 2500 with --quick)")
    parser.add_argument("--channels", type=int, default=30)
    parser.add_argument("--order", type=int, default=1, help="GEMConv feature order M")
    parser.add_argument("--kernel-size", type=int, default=8, help="GMMConv kernels")
    parser.add_argument("--heads", type=int, default=4, help="FeaStConv heads")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved rounds of (b) (default: 7; 3 with --quick)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--skip-mesh", action="store_true", help="skip (a)")
    parser.add_argument("--skip-layers", action="store_true", help="skip (b)")
    parser.add_argument("--peak-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peak_child:
        _peak_child(args.peak_child, args.threads)
        return
    q = args.quick
    if args.sizes is None:
        args.sizes = [2500, 10000] if q else [10000, 40000, 160000]
    if args.repeats is None:
        args.repeats = 3 if q else 5
    if args.layer_vertices is None:
        args.layer_vertices = 2500 if q else 40000
    if args.rounds is None:
        args.rounds = 3 if q else 7
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda requested but CUDA is not available")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, numpy {np.__version__}, {torch.get_num_threads()} "
          f"torch thread(s), device {device}\n")
    if not args.skip_mesh:
        bench_mesh_to_data(args)
    if not args.skip_layers:
        bench_layers(args, device)


if __name__ == "__main__":
    main()
