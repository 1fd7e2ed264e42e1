r"""Seeded fuzz test: malformed files for every reader, malformed tensors for
every converter and layer.

Each call must either return finite output of the right shape or raise
:class:`ValueError` / :class:`TypeError`; a ``RuntimeError``, ``IndexError``,
``AssertionError``, ``MemoryError`` (an allocation beyond 64 MiB + 50x the
input), a hang, a silent NaN, or accepting an input no reader may accept fails
the case (see tests/fuzz/guard.py). Every case is a parameter, so a failure
names the format / layer and the mutation.

Layers may propagate NaN / inf *features* (checking every feature would cost
a pass over the data on the hot path); everything else that is finite in must
be finite out, and converters must reject non-finite positions.
"""
import os
import tempfile
import zlib

import numpy as np
import pytest
import torch
from torch import Tensor
from torch_geometric.data import Data

from gdl_pyg.io import read_mesh, read_points, read_xyz

from fuzz.files import FACE, POS, mutations, seeds
from fuzz.guard import MiB, guarded_call

# ---------------------------------------------------------------------------------------
# readers
# ---------------------------------------------------------------------------------------

with tempfile.TemporaryDirectory() as _tmp:
    SEEDS = {s.name: s for s in seeds(_tmp)}

#: real files that are unreadable on purpose (tests/data/README.md)
INVALID_SEEDS = {"pybullet_nan_168_obj"}
READERS = {"mesh": read_mesh, "points": read_points, "xyz": read_xyz}


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


FILE_CASES = []
for _seed in SEEDS.values():
    _real = _seed.name.startswith(("pybullet", "pyvista"))
    for _name, _bytes, _strict in mutations(_seed, _rng(_seed.name), real=_real):
        FILE_CASES.append(pytest.param(_seed.name, _bytes, _strict,
                                       id=f"{_seed.name}-{_name}"))


def _finite(name: str, t: Tensor, what: str):
    if t.is_floating_point() and not torch.isfinite(t).all():
        pytest.fail(f"{what}: '{name}' has NaN/inf entries", pytrace=False)


def check_mesh(data, what: str):
    assert isinstance(data, Data), f"{what}: returned {type(data).__name__}, not Data"
    pos, face = data.pos, data.face
    assert pos.is_floating_point() and pos.dim() == 2 and pos.size(1) == 3 and \
        pos.size(0) > 0, f"{what}: pos {pos.dtype} {list(pos.shape)}"
    assert face.dtype == torch.long and face.dim() == 2 and face.size(0) == 3 and \
        face.size(1) > 0, f"{what}: face {face.dtype} {list(face.shape)}"
    n = pos.size(0)
    assert int(face.min()) >= 0 and int(face.max()) < n, \
        f"{what}: face indices span [{int(face.min())}, {int(face.max())}] for {n} vertices"
    for key, value in data.items():
        if isinstance(value, Tensor):
            _finite(key, value, what)
            if key != "face":
                assert value.size(0) == n, f"{what}: '{key}' has {value.size(0)} rows for {n}"


def check_points(data, what: str):
    assert isinstance(data, Data), f"{what}: returned {type(data).__name__}, not Data"
    pos = data.pos
    assert pos.is_floating_point() and pos.dim() == 2 and pos.size(1) == 3 and \
        pos.size(0) > 0, f"{what}: pos {pos.dtype} {list(pos.shape)}"
    for key, value in data.items():
        if isinstance(value, Tensor):
            _finite(key, value, what)
            assert value.size(0) == pos.size(0), \
                f"{what}: '{key}' has {value.size(0)} rows for {pos.size(0)} points"


def check_xyz(frames, what: str):
    assert isinstance(frames, list) and len(frames) > 0, f"{what}: returned {frames!r}"
    for data in frames:
        n = data.pos.size(0)
        assert data.pos.shape == (n, 3) and n > 0, f"{what}: pos {list(data.pos.shape)}"
        assert data.z.shape == (n,) and data.z.dtype == torch.long and \
            int(data.z.min()) > 0, f"{what}: z {data.z}"
        if "forces" in data:
            assert data.forces.shape == (n, 3), f"{what}: forces {list(data.forces.shape)}"
        for key, value in data.items():
            if isinstance(value, Tensor):
                _finite(key, value, what)


CHECKS = {"mesh": check_mesh, "points": check_points, "xyz": check_xyz}


@pytest.fixture(scope="module")
def warm_readers(tmp_path_factory):
    """Read every seed once, outside the memory budget, so that lazy imports
    inside the readers do not count against the first fuzzed call."""
    folder = tmp_path_factory.mktemp("seeds")
    for seed in SEEDS.values():
        path = folder / f"{seed.name}.{seed.ext}"
        path.write_bytes(seed.data)
        try:
            READERS[seed.reader](str(path))
        except Exception:  # noqa: BLE001 - test_seed_reads reports it
            pass
    return folder


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_seed_reads(name, warm_readers):
    seed = SEEDS[name]
    path = warm_readers / f"{seed.name}.{seed.ext}"
    if name in INVALID_SEEDS:
        with pytest.raises(ValueError, match="NaN"):
            READERS[seed.reader](str(path))
        return
    out = READERS[seed.reader](str(path))
    CHECKS[seed.reader](out, name)
    if not name.startswith(("pybullet", "pyvista")):
        first = out[0] if isinstance(out, list) else out
        assert first.pos.size(0) == len(POS)
        pos, ref = first.pos.double(), torch.from_numpy(POS).double()
        if seed.ext == "stl":  # STL vertices are numbered by first appearance
            pos, ref = (t[np.lexsort(t.numpy().T[::-1])] for t in (pos, ref))
        torch.testing.assert_close(pos, ref, atol=1e-6, rtol=0)
        if seed.reader == "mesh":
            assert first.face.size(1) == len(FACE)


@pytest.mark.parametrize("name, payload, must_raise", FILE_CASES)
def test_reader_fuzz(name, payload, must_raise, warm_readers):
    seed = SEEDS[name]
    path = warm_readers / f"fuzz.{seed.ext}"
    path.write_bytes(payload)
    what = f"{READERS[seed.reader].__name__}({name} mutated, {len(payload)} bytes)"
    ok, out = guarded_call(READERS[seed.reader], str(path),
                           budget_bytes=64 * MiB + 50 * len(payload), seconds=2.0)
    if not ok:
        assert str(out), f"{what}: {type(out).__name__} without a message"
        return
    if must_raise:
        first = out[0] if isinstance(out, list) and out else out
        got = {k: list(v.shape) for k, v in first.items() if isinstance(v, Tensor)} \
            if isinstance(first, Data) else out
        pytest.fail(f"{what}: accepted an input that must be rejected; returned {got}",
                    pytrace=False)
    CHECKS[seed.reader](out, what)


# ---------------------------------------------------------------------------------------
# layers and pooling operators
# ---------------------------------------------------------------------------------------

from fuzz.tensors import CONVERTERS, LAYERS, flat_tensors, layer_mutations, num_nodes  # noqa: E402

#: layers allocate parameters and work space; an index of 2**40 must not turn into
#: an allocation of that size
TENSOR_BUDGET = 1024 * MiB


def _build_all():
    built, broken = {}, {}
    for name, spec in LAYERS.items():
        try:
            built[name] = spec.build()
        except Exception as exc:  # noqa: BLE001 - reported by test_layer_specs_build
            broken[name] = f"{type(exc).__name__}: {exc}"
    return built, broken


_BUILT, _BROKEN = _build_all()
LAYER_CASES = [pytest.param(name, mut, kw, expect, id=f"{name}-{mut}")
               for name, spec in LAYERS.items() if name in _BUILT
               for mut, kw, expect in layer_mutations(spec, _BUILT[name][1])]
_REFERENCE = {}


def _reference(name):
    """The output on the valid input (computed outside the budgets, which also
    starts the thread pools and lazy imports before the fuzzed calls)."""
    if name not in _REFERENCE:
        fn, kw = _BUILT[name]
        with torch.no_grad():
            out = fn(**kw)
        ref = flat_tensors(out)
        assert ref, f"{name}: the valid call returned no tensor ({type(out).__name__})"
        for t in ref:
            _finite(name, t, f"{name} on its valid input")
        _REFERENCE[name] = (ref, num_nodes(LAYERS[name], kw))
    return _REFERENCE[name]


def _check_like(out, ref, n_ref, n_new, rule, finite, what):
    got = flat_tensors(out)
    assert len(got) == len(ref), \
        f"{what}: returned {len(got)} tensors, the valid input gives {len(ref)}"
    for i, (g, r) in enumerate(zip(got, ref)):
        assert g.dim() == r.dim(), \
            f"{what}: output {i} has shape {list(g.shape)}, valid input gives {list(r.shape)}"
        if rule == "node":
            # outputs of [|V|, ...] or [|V| * |G|, ...] (lifted) rows
            want = list(r.shape)
            if n_ref and want[0] % n_ref == 0:
                want[0] = n_new * (want[0] // n_ref)
            assert list(g.shape) == want, \
                f"{what}: output {i} has shape {list(g.shape)}, expected {want}"
        if finite:
            _finite(f"output {i}", g, what)


@pytest.mark.parametrize("name, mutation, kwargs, expect", LAYER_CASES)
def test_layer_fuzz(name, mutation, kwargs, expect):
    ref, n_ref = _reference(name)
    fn = _BUILT[name][0]
    what = f"{name}({mutation})"
    with torch.no_grad():
        ok, out = guarded_call(fn, budget_bytes=TENSOR_BUDGET, **kwargs)
    if not ok:
        assert expect != "ok", f"{what}: valid input rejected: {type(out).__name__}: {out}"
        assert str(out), f"{what}: {type(out).__name__} without a message"
        return
    if expect == "raise":
        shapes = [list(t.shape) for t in flat_tensors(out)]
        pytest.fail(f"{what}: accepted malformed input, returned shapes {shapes}",
                    pytrace=False)
    _check_like(out, ref, n_ref, num_nodes(LAYERS[name], kwargs), LAYERS[name].shape_rule,
                expect != "garbage", what)


def test_layer_specs_build():
    """The valid input of every spec builds (the mutations of a spec that does not
    build would silently be missing)."""
    assert _BROKEN == {}


def test_every_layer_is_fuzzed():
    """Every public layer / pooling operator has a spec (a new layer must add one)."""
    import gdl_pyg.nn.conv as conv
    import gdl_pyg.nn.pool as pool
    covered = {name.split("-")[0] for name in LAYERS}
    public = {n for mod in (conv, pool) for n in mod.__all__
              if n.endswith(("Conv", "Pool", "Pooling", "Unpool", "Readout"))}
    assert public - covered == set()


# ---------------------------------------------------------------------------------------
# converters
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn, kwargs, expect",
                         [pytest.param(fn, kw, ex, id=name) for name, fn, kw, ex in CONVERTERS])
def test_converter_fuzz(fn, kwargs, expect):
    what = f"{fn.__name__}({', '.join(kwargs)})"
    ok, out = guarded_call(fn, budget_bytes=TENSOR_BUDGET, **kwargs)
    if not ok:
        assert expect != "ok", f"{what}: valid input rejected: {type(out).__name__}: {out}"
        assert str(out), f"{what}: {type(out).__name__} without a message"
        return
    if expect == "raise":
        shapes = {k: list(v.shape) for k, v in out.items() if isinstance(v, Tensor)} \
            if isinstance(out, Data) else [list(t.shape) for t in flat_tensors(out)]
        pytest.fail(f"{what}: accepted malformed input, returned {shapes}", pytrace=False)
    if expect != "garbage":
        items = out.items() if isinstance(out, Data) else \
            enumerate(flat_tensors(out))
        for key, value in items:
            if isinstance(value, Tensor):
                _finite(str(key), value.to_dense() if value.layout != torch.strided
                        else value, what)
    if isinstance(out, Data) and out.get("pos") is not None and \
            out.get("edge_index") is not None and out.edge_index.numel():
        n = out.pos.size(0)
        assert int(out.edge_index.min()) >= 0 and int(out.edge_index.max()) < n, \
            f"{what}: edge_index out of range for {n} nodes"


# ---------------------------------------------------------------------------------------
# the harness itself fails on what it must catch
# ---------------------------------------------------------------------------------------

def test_guard_fails_on_wrong_exception_types():
    for bad in (lambda: torch.zeros(3)[5], lambda: [][1], lambda: {}["k"]):
        with pytest.raises(pytest.fail.Exception, match="Error at"):
            guarded_call(bad)
    assert guarded_call(int, "x")[0] is False  # ValueError is allowed
    assert guarded_call(len, 3)[0] is False    # TypeError is allowed
    assert guarded_call(len, [1, 2]) == (True, 2)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="RLIMIT_AS needs Linux")
def test_guard_fails_on_large_allocation():
    # 8 GiB of address space, never touched: only the budget can stop it
    with pytest.raises(pytest.fail.Exception, match="MemoryError"):
        guarded_call(np.empty, 8 << 30, dtype=np.uint8, budget_bytes=64 * MiB)
    assert guarded_call(np.empty, 1 << 20, dtype=np.uint8, budget_bytes=64 * MiB)[0]

    def wrapped():  # a reader that turns every exception into a ValueError
        try:
            np.empty(8 << 30, dtype=np.uint8)
        except Exception as exc:
            raise ValueError(f"could not read: {exc}") from exc
    with pytest.raises(pytest.fail.Exception, match="re-raised as ValueError"):
        guarded_call(wrapped, budget_bytes=64 * MiB)


def test_guard_fails_on_hang():
    import time
    with pytest.raises(pytest.fail.Exception, match="timeout"):
        guarded_call(time.sleep, 5, seconds=0.2)


def test_checks_fail_on_bad_output():
    pos, face = torch.rand(4, 3), torch.tensor([[0], [1], [3]])
    check_mesh(Data(pos=pos, face=face), "ok")
    with pytest.raises(AssertionError, match="face indices"):
        check_mesh(Data(pos=pos, face=face + 1), "out of range")
    with pytest.raises(pytest.fail.Exception, match="NaN"):
        check_mesh(Data(pos=_set_nan(pos), face=face), "nan")
    with pytest.raises(AssertionError, match="rows"):
        check_points(Data(pos=pos, normal=pos[:3]), "short normal")
    ref = [torch.zeros(5, 2)]
    _check_like(torch.zeros(3, 2), ref, 5, 3, "node", True, "ok")
    with pytest.raises(AssertionError, match="expected"):
        _check_like(torch.zeros(5, 2), ref, 5, 3, "node", True, "stale size")
    with pytest.raises(pytest.fail.Exception, match="NaN"):
        _check_like(_set_nan(torch.zeros(3, 2)), ref, 5, 3, "node", True, "nan")


def _set_nan(t):
    t = t.clone()
    t.view(-1)[0] = float("nan")
    return t


def test_truncated_obj_case_is_strict():
    """The OBJ cut inside its last index (967 -> 96) must be rejected, not
    read as a smaller mesh: the mutation list marks it so."""
    cases = {name: strict for name, _, strict in mutations(SEEDS["obj"], _rng("obj"))}
    last = [name for name in cases if name.startswith("truncate_in_last_token")]
    assert len(last) == 1 and cases[last[0]]
    assert cases["empty"] and cases["face_index=huge"]
