import importlib.util
import os
import os.path as osp
import shutil

import pytest
import torch
import torch_geometric.io.fs as pyg_fs
from torch_geometric.data import Data

from gdl_pyg.datasets import MeshFolderDataset, PointCloudFolderDataset
from gdl_pyg.io import read_mesh, read_points, write_mesh, write_points

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SHIPPED = osp.join(REPO, "datasets")
CLASSES = ["box", "capsule", "cone", "sphere", "torus"]


def _copy(name, tmp_path):
    src = osp.join(SHIPPED, name, "raw")
    if not osp.isdir(src):
        pytest.skip(f"datasets/{name} not generated (run scripts/make_datasets.py)")
    dst = tmp_path / name
    shutil.copytree(src, dst / "raw")
    return dst


class AddDegree:
    r"""A small picklable pre_transform."""

    def __call__(self, data):
        data.num_faces_ = torch.tensor([data.face.size(1)])
        return data

    def __repr__(self):
        return "AddDegree()"


def test_shapes_dataset(tmp_path):
    root = _copy("shapes", tmp_path)
    ds = MeshFolderDataset(root, pre_transform=AddDegree(), log=False)
    assert len(ds) == 40 and ds.classes == CLASSES and ds.num_classes == 5
    assert torch.bincount(ds.y).tolist() == [8] * 5
    assert repr(ds) == "MeshFolderDataset(40, classes=5)"
    for i in (0, 13, 39):
        data = ds[i]
        ref = read_mesh(osp.join(root, "raw", ds.files[i]))
        assert torch.equal(data.pos, ref.pos) and torch.equal(data.face, ref.face)
        assert ds.classes[int(data.y)] == ds.files[i].split(os.sep)[0]
        assert int(data.num_faces_) == ref.face.size(1)
    assert {osp.splitext(f)[1] for f in ds.files} == {".off", ".ply"}


def test_deform_dataset_node_labels(tmp_path):
    root = _copy("deform", tmp_path)
    ds = MeshFolderDataset(root, labels=None, node_label="part", log=False)
    assert len(ds) == 24 and ds.classes is None
    first = ds[0]
    assert first.y.shape == (first.num_nodes,) and sorted(first.y.unique().tolist()) == [0, 1, 2, 3]
    for data in (ds[5], ds[23]):  # same connectivity and labels: ground-truth correspondence
        assert torch.equal(data.face, first.face) and torch.equal(data.y, first.y)
        assert not torch.allclose(data.pos, first.pos)
        # near-isometric: edge lengths change little on average
        e = first.face[:2]
        rest = (first.pos[e[0]] - first.pos[e[1]]).norm(dim=1)
        new = (data.pos[e[0]] - data.pos[e[1]]).norm(dim=1)
        assert ((new / rest - 1).abs().mean()) < 0.05


def test_points_dataset(tmp_path):
    root = _copy("points", tmp_path)
    ds = PointCloudFolderDataset(root, log=False)
    assert len(ds) == 30 and ds.classes == CLASSES
    assert torch.bincount(ds.y).tolist() == [6] * 5
    data = ds[7]
    assert data.pos.shape == (512, 3) and data.normal.shape == (512, 3)
    assert torch.allclose(data.normal.norm(dim=1), torch.ones(512), atol=1e-5)
    ref = read_points(osp.join(root, "raw", ds.files[7]))
    assert torch.equal(ref.pos, data.pos)


def _flat(tmp_path, n=6):
    raw = tmp_path / "flat" / "raw"
    (raw / "sub").mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    files = []
    for i in range(n):
        rel = f"sub/c{i}.xyz" if i % 2 else f"c{i}.xyz"
        write_points(raw / rel, torch.randn(10 + i, 3, generator=g))
        files.append(rel)
    return tmp_path / "flat", files


def test_csv_labels(tmp_path):
    root, files = _flat(tmp_path)
    names = ["cat", "dog", "cat", "bird", "dog", "cat"]
    (root / "labels.csv").write_text("file,label\n" + "".join(
        f"{f},{n}\n" for f, n in zip(files, names)))
    ds = PointCloudFolderDataset(root, labels="labels.csv", log=False)
    assert ds.classes == ["bird", "cat", "dog"]
    assert [ds.classes[int(d.y)] for d in ds] == names
    assert [d.num_nodes for d in ds] == [10 + i for i in range(6)]
    (root / "ints.csv").write_text("file,label\n" + "".join(
        f"{f},{i * 3}\n" for i, f in enumerate(files)))
    ds = PointCloudFolderDataset(root, labels=str(root / "ints.csv"), log=False)
    assert [int(d.y) for d in ds] == [0, 3, 6, 9, 12, 15]
    (root / "bad.csv").write_text("name,y\nc0.xyz,1\n")
    with pytest.raises(ValueError, match="header 'file,label'"):
        PointCloudFolderDataset(root, labels="bad.csv", log=False)
    (root / "missing.csv").write_text("file,label\nnope.xyz,1\n")
    with pytest.raises(FileNotFoundError, match="nope.xyz"):
        PointCloudFolderDataset(root, labels="missing.csv", log=False)


def _meshes(tmp_path):
    root = tmp_path / "m"
    pos = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    face = torch.tensor([[0, 0, 0, 1], [2, 1, 3, 3], [1, 3, 2, 2]])
    for cls, k in (("a", 2), ("b", 3)):
        (root / "raw" / cls).mkdir(parents=True)
        for i in range(k):
            write_mesh(root / "raw" / cls / f"{i}.off", pos * (i + 1), face)
    return root


def test_processed_cache_is_atomic(tmp_path, monkeypatch):
    root = _meshes(tmp_path)
    real = pyg_fs.torch_save
    calls = []

    def broken(obj, path):
        calls.append(path)
        with open(path, "wb") as f:  # a partial file ...
            f.write(b"\x80partial")
        raise KeyboardInterrupt  # ... and an interruption

    monkeypatch.setattr(pyg_fs, "torch_save", broken)
    with pytest.raises(KeyboardInterrupt):
        MeshFolderDataset(root, log=False)
    assert calls, "the dataset did not save through torch_geometric.io.fs.torch_save"
    leftovers = os.listdir(root / "processed")
    assert leftovers == [], leftovers  # neither the cache nor a temporary file
    monkeypatch.setattr(pyg_fs, "torch_save", real)
    ds = MeshFolderDataset(root, log=False)
    assert len(ds) == 5 and ds.classes == ["a", "b"]
    assert torch.bincount(ds.y).tolist() == [2, 3]


def test_cache_reuse_and_invalidation(tmp_path, monkeypatch):
    root = _meshes(tmp_path)
    ds = MeshFolderDataset(root, log=False)
    cache = ds.processed_paths[0]

    def fail(self):
        raise AssertionError("process() should not run on a valid cache")

    monkeypatch.setattr(MeshFolderDataset, "process", fail)
    again = MeshFolderDataset(root, log=False)
    assert again.processed_paths[0] == cache and len(again) == 5
    monkeypatch.undo()
    # a new file, or other reading options, give a different cache
    write_mesh(root / "raw" / "a" / "9.off", Data(pos=ds[0].pos, face=ds[0].face))
    grown = MeshFolderDataset(root, log=False)
    assert len(grown) == 6 and grown.processed_paths[0] != cache
    cleaned = MeshFolderDataset(root, clean=True, log=False)
    assert cleaned.processed_paths[0] not in (cache, grown.processed_paths[0])
    filtered = MeshFolderDataset(root, pre_filter=lambda d: int(d.y) == 1, force_reload=True,
                                 log=False)
    assert len(filtered) == 3


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="raw"):
        MeshFolderDataset(tmp_path / "nothing", log=False)
    (tmp_path / "flat" / "raw").mkdir(parents=True)
    with pytest.raises(ValueError, match="no class sub-folders"):
        MeshFolderDataset(tmp_path / "flat", log=False)
    with pytest.raises(ValueError, match="cannot read extensions"):
        MeshFolderDataset(tmp_path / "flat", extensions=["xyz"], log=False)
    root = _meshes(tmp_path)
    (root / "raw" / "a" / "broken.off").write_text("OFF\n3 1 0\n0 0 0\n")
    with pytest.raises(ValueError, match="broken.off"):
        MeshFolderDataset(root, log=False)


def test_make_datasets_is_deterministic(tmp_path):
    if not osp.isdir(osp.join(SHIPPED, "shapes", "raw")):
        pytest.skip("datasets/shapes not generated")
    spec = importlib.util.spec_from_file_location(
        "make_datasets", osp.join(REPO, "scripts", "make_datasets.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.make_shapes(str(tmp_path), seed=0)
    shipped = osp.join(SHIPPED, "shapes", "raw")
    for cls in CLASSES:
        names = sorted(os.listdir(osp.join(shipped, cls)))
        assert names == sorted(os.listdir(tmp_path / "shapes" / "raw" / cls))
        for name in names:
            with open(osp.join(shipped, cls, name), "rb") as f:
                assert f.read() == (tmp_path / "shapes" / "raw" / cls / name).read_bytes()


# ---------------------------------------------------------------------------
# robustness: unreadable files, mixed attributes, cache keys, safe loading
# ---------------------------------------------------------------------------

DATA = osp.join(REPO, "tests", "data")


def _real_folder(tmp_path, broken=()):
    root = tmp_path / "real"
    for cls, names in (("a", ["pybullet/bunny.obj", "pybullet/cube.obj"]),
                       ("b", ["pyvista/ant.ply", "pyvista/sphere.ply"])):
        (root / "raw" / cls).mkdir(parents=True)
        for name in names:
            shutil.copy(osp.join(DATA, *name.split("/")), root / "raw" / cls)
    for name in broken:
        shutil.copy(osp.join(DATA, "pybullet", "nan_168.obj"), root / "raw" / "a" / name)
    return root


def test_skip_errors(tmp_path):
    root = _real_folder(tmp_path, broken=["nan.obj"])
    (root / "raw" / "b" / "cut.off").write_text("OFF\n3 1 0\n0 0 0\n")
    with pytest.raises(ValueError, match="nan.obj"):
        MeshFolderDataset(root, log=False)
    with pytest.warns(UserWarning, match="skipped 2 unreadable") as record:
        ds = MeshFolderDataset(root, log=False, skip_errors=True)
    assert len(record) == 1  # one warning for all the files
    message = str(record[0].message)
    assert "a/nan.obj" in message and "NaN" in message and "b/cut.off" in message
    assert len(ds) == 4 and [f for f, _ in ds.skipped] == ["a/nan.obj", "b/cut.off"]
    assert ds.example_files == ["a/bunny.obj", "a/cube.obj", "b/ant.ply", "b/sphere.ply"]
    for i, rel in enumerate(ds.example_files):
        assert torch.equal(ds[i].pos, read_mesh(osp.join(root, "raw", rel)).pos)
    assert torch.bincount(ds.y).tolist() == [2, 2]
    # the list survives the cache
    again = MeshFolderDataset(root, log=False, skip_errors=True)
    assert again.skipped == ds.skipped and again.example_files == ds.example_files
    # every file broken: an error that lists them
    bad = tmp_path / "bad"
    (bad / "raw" / "x").mkdir(parents=True)
    for name in ("p.obj", "q.obj"):
        shutil.copy(osp.join(DATA, "pybullet", "nan_168.obj"), bad / "raw" / "x" / name)
    with pytest.raises(ValueError, match=r"could not read any of the 2 file\(s\)[\s\S]*p\.obj"
                                         r"[\s\S]*q\.obj"):
        MeshFolderDataset(bad, log=False, skip_errors=True)


def test_points_skip_errors(tmp_path):
    root, files = _flat(tmp_path)
    (root / "raw" / "broken.xyz").write_text("1 2 3\n4 5\n")
    with pytest.raises(ValueError, match="broken.xyz"):
        PointCloudFolderDataset(root, labels=None, log=False)
    with pytest.warns(UserWarning, match="broken.xyz"):
        ds = PointCloudFolderDataset(root, labels=None, log=False, skip_errors=True)
    assert len(ds) == len(files)


def test_mixed_vertex_attributes_collate_and_batch(tmp_path):
    from torch_geometric.loader import DataLoader
    root = tmp_path / "mixed"
    (root / "raw" / "c").mkdir(parents=True)
    sphere = read_mesh(osp.join(DATA, "pyvista", "sphere.ply"))
    n = sphere.num_nodes
    g = torch.Generator().manual_seed(0)
    normal = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1)
    rgb = torch.randint(0, 256, (n, 3), generator=g).to(torch.uint8)
    rgba = torch.randint(0, 256, (n, 4), generator=g).to(torch.uint8)
    write_mesh(root / "raw" / "c" / "with_normal.ply",
               Data(pos=sphere.pos, face=sphere.face, normal=normal, color=rgb))
    write_mesh(root / "raw" / "c" / "with_alpha.ply",
               Data(pos=sphere.pos, face=sphere.face, normal=normal, color=rgba))
    write_mesh(root / "raw" / "c" / "plain.ply", sphere)
    shutil.copy(osp.join(DATA, "pybullet", "cube.obj"), root / "raw" / "c")
    with pytest.warns(UserWarning, match="dropped attributes") as record:
        ds = MeshFolderDataset(root, log=False)
    assert len(record) == 1
    message = str(record[0].message)
    assert "'color'" in message and "'normal' (in 2 of 4 examples)" in message
    assert len(ds) == 4
    for data in ds:
        assert set(data.keys()) == {"pos", "face", "y"}
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch.num_graphs == 4 and batch.pos.size(0) == sum(d.num_nodes for d in ds)
    assert batch.face.max() < batch.pos.size(0)
    # files that agree keep their attributes
    keep = tmp_path / "keep"
    (keep / "raw" / "c").mkdir(parents=True)
    for name in ("with_normal.ply", "plain.ply"):
        shutil.copy(root / "raw" / "c" / "with_normal.ply", keep / "raw" / "c" / name)
    ds = MeshFolderDataset(keep, log=False)
    assert torch.equal(ds[1].normal, normal)
    assert next(iter(DataLoader(ds, batch_size=2))).normal.shape == (2 * n, 3)


class Scale:
    def __init__(self, factor):
        self.factor = factor

    def __call__(self, data):
        data.pos = data.pos * self.factor
        return data

    def __repr__(self):
        return f"Scale({self.factor})"


def test_cache_follows_pre_transform_and_pre_filter(tmp_path, monkeypatch):
    root = _meshes(tmp_path)
    one = MeshFolderDataset(root, pre_transform=Scale(1.0), log=False)
    two = MeshFolderDataset(root, pre_transform=Scale(2.0), log=False)  # no force_reload
    assert one.processed_paths[0] != two.processed_paths[0]
    assert torch.equal(two[0].pos, 2 * one[0].pos)
    # PyG's own pre_transform.pt / pre_filter.pt are neither written nor needed
    assert not osp.exists(root / "processed" / "pre_transform.pt")
    assert not osp.exists(root / "processed" / "pre_filter.pt")
    # different lambdas give different caches; the same one is reused
    a = MeshFolderDataset(root, pre_filter=lambda d: int(d.y) == 0, log=False)
    b = MeshFolderDataset(root, pre_filter=lambda d: int(d.y) == 1, log=False)
    assert (len(a), len(b)) == (2, 3)

    def fail(self):
        raise AssertionError("process() should not run on a valid cache")

    monkeypatch.setattr(MeshFolderDataset, "process", fail)
    assert len(MeshFolderDataset(root, pre_filter=lambda d: int(d.y) == 1, log=False)) == 3
    assert torch.equal(MeshFolderDataset(root, pre_transform=Scale(2.0), log=False)[0].pos,
                       two[0].pos)


MARKER = "pwned.txt"


class _Exploit:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):  # unpickling this creates a file
        return (open, (self.path, "w"))


def test_cache_never_unpickles_code(tmp_path):
    root = _meshes(tmp_path)
    ds = MeshFolderDataset(root, log=False)
    expected = [ds[i].pos.clone() for i in range(len(ds))]
    marker = tmp_path / MARKER
    processed = root / "processed"
    for name in (osp.basename(ds.processed_paths[0]), "pre_transform.pt", "pre_filter.pt"):
        torch.save(_Exploit(str(marker)), processed / name)
    assert not marker.exists()
    with pytest.warns(UserWarning, match="does not load as plain tensors"):
        again = MeshFolderDataset(root, log=False)
    assert not marker.exists()  # nothing was unpickled
    assert len(again) == len(expected)  # ... and the cache was rebuilt from raw/
    assert all(torch.equal(a.pos, b) for a, b in zip(again, expected))
    # PyG's own loader would have run it (the point of the test)
    with pytest.warns(UserWarning):
        pyg_fs.torch_load(str(processed / "pre_filter.pt"))
    assert marker.exists()


# ---------------------------------------------------------------------------
# caches: planted pickles, corrupt files, content keys, temporaries of dead writers
# ---------------------------------------------------------------------------

def _points(tmp_path):
    root = tmp_path / "p"
    g = torch.Generator().manual_seed(1)
    for cls, k in (("a", 2), ("b", 3)):
        (root / "raw" / cls).mkdir(parents=True)
        for i in range(k):
            write_points(root / "raw" / cls / f"{i}.xyz", torch.randn(6 + i, 3, generator=g))
    return root


FOLDERS = [pytest.param(MeshFolderDataset, _meshes, id="mesh"),
           pytest.param(PointCloudFolderDataset, _points, id="points")]


def _snapshot(root):
    r"""Bytes and modification times of every raw file."""
    out = {}
    for dirpath, _, names in os.walk(root / "raw"):
        for name in names:
            path = osp.join(dirpath, name)
            with open(path, "rb") as f:
                out[path] = (f.read(), os.stat(path).st_mtime_ns)
    return out


@pytest.mark.parametrize("cls,make", FOLDERS)
def test_planted_pre_transform_pt_is_never_unpickled(tmp_path, cls, make):
    # PyG's Dataset._process reads processed/pre_transform.pt with full unpickling
    # whenever it exists, before looking at the cache: a planted file would run code
    root = make(tmp_path)
    ds = cls(root, log=False)
    marker = tmp_path / MARKER
    for name in ("pre_transform.pt", "pre_filter.pt"):
        torch.save(_Exploit(str(marker)), root / "processed" / name)
    cls(root, log=False, pre_transform=Scale(2.0))  # a new cache is built
    again = cls(root, log=False)  # the old one is reused
    assert not marker.exists()
    assert again.processed_paths[0] == ds.processed_paths[0] and len(again) == len(ds)


def _corrupt(kind, path, pos):
    blob = open(path, "rb").read()
    if kind == "truncated":
        blob = blob[:len(blob) // 2]
    elif kind == "empty":
        blob = b""
    elif kind == "garbage":
        blob = bytes(torch.randint(0, 256, (len(blob),), generator=torch.Generator()
                                   .manual_seed(0), dtype=torch.uint8).tolist())
    elif kind == "flipped":  # one byte of a coordinate: torch.load does not notice
        i = blob.index(pos.numpy().tobytes()) + 5
        blob = blob[:i] + bytes([blob[i] ^ 0xFF]) + blob[i + 1:]
    elif kind == "foreign":  # a valid torch file with other content
        torch.save({"x": torch.zeros(3)}, path)
        return
    with open(path, "wb") as f:
        f.write(blob)


@pytest.mark.parametrize("kind", ["truncated", "empty", "garbage", "flipped", "foreign"])
@pytest.mark.parametrize("cls,make", FOLDERS)
def test_corrupt_cache_is_reported_and_rebuilt(tmp_path, monkeypatch, cls, make, kind):
    root = make(tmp_path)
    ds = cls(root, log=False)
    expected = [(d.pos.clone(), int(d.y)) for d in ds]
    cache = ds.processed_paths[0]
    raw = _snapshot(root)
    _corrupt(kind, cache, ds[-1].pos)
    with pytest.warns(UserWarning, match="does not load as plain tensors.*rebuilt") as rec:
        again = cls(root, log=False)
    assert osp.basename(cache) in str(rec[0].message)
    assert len(again) == len(expected)
    assert all(torch.equal(d.pos, p) and int(d.y) == y for d, (p, y) in zip(again, expected))
    assert _snapshot(root) == raw  # the raw files were only read
    # the rebuilt cache is good: the next opening neither warns nor processes

    def fail(self):
        raise AssertionError("process() should not run on a rebuilt cache")

    monkeypatch.setattr(cls, "process", fail)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(cls(root, log=False)) == len(expected)


def _edit_same_size(path):
    r"""Changes one digit of a text file, keeping its size and restoring its
    access and modification times to the nanosecond."""
    st = os.stat(path)
    text = open(path).read()
    i = next(i for i, c in enumerate(text) if c in "123456789" and i > len(text) // 2)
    text = text[:i] + ("1" if text[i] != "1" else "2") + text[i + 1:]
    with open(path, "w") as f:
        f.write(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    new = os.stat(path)
    assert (new.st_size, new.st_mtime_ns) == (st.st_size, st.st_mtime_ns)


@pytest.mark.parametrize("cls,make", FOLDERS)
def test_cache_key_follows_content_not_size_or_mtime(tmp_path, cls, make):
    root = make(tmp_path)
    ds = cls(root, log=False)
    i = 3
    path = osp.join(root, "raw", ds.files[i])
    _edit_same_size(path)
    fresh = read_mesh(path) if cls is MeshFolderDataset else read_points(path)
    assert not torch.equal(fresh.pos, ds[i].pos)
    again = cls(root, log=False)
    assert again.processed_paths[0] != ds.processed_paths[0]
    assert torch.equal(again[i].pos, fresh.pos)  # not the stale cached copy
    assert all(torch.equal(again[j].pos, ds[j].pos) for j in range(len(ds)) if j != i)


def _dead_pid():
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_dead_writers_are_removed(tmp_path):
    from gdl_pyg.datasets._cache import STALE_AFTER, _host
    root = _meshes(tmp_path)
    processed = root / "processed"
    processed.mkdir()
    host, dead = _host(), _dead_pid()
    names = {
        "dead": f".data_0123456789ab.pt.{host}.{dead}.k2j4h6g8.tmp",
        "alive": f".data_0123456789ab.pt.{host}.{os.getpid()}.a1b2c3d4.tmp",
        "other_host_new": f".data_0123456789ab.pt.elsewhere.{dead}.a1b2c3d4.tmp",
        "other_host_old": f".data_0123456789ab.pt.elsewhere.{dead}.z9y8x7w6.tmp",
        "legacy_new": ".data_0123456789ab.q1w2e3r4.tmp.pt",
        "legacy_old": ".data_0123456789ab.t5y6u7i8.tmp.pt",
        "unrelated": "notes.tmp.txt",
    }
    for name in names.values():
        (processed / name).write_bytes(b"\x80partial")
    old = os.stat(processed / names["legacy_old"]).st_mtime - STALE_AFTER - 60
    for key in ("other_host_old", "legacy_old"):
        os.utime(processed / names[key], (old, old))
    ds = MeshFolderDataset(root, log=False)
    left = set(os.listdir(processed))
    assert names["dead"] not in left and names["other_host_old"] not in left
    assert names["legacy_old"] not in left
    for key in ("alive", "other_host_new", "legacy_new", "unrelated"):
        assert names[key] in left, key
    assert osp.basename(ds.processed_paths[0]) in left


_KILLED_WRITER = r"""
import os, signal, sys
import torch_geometric.io.fs as pyg_fs
from gdl_pyg.datasets import {cls}

def killed(obj, path):
    with open(path, "wb") as f:
        f.write(b"\x80partial")
        f.flush()
    print(path, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

pyg_fs.torch_save = killed
{cls}(sys.argv[1], log=False)
"""


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL")
def test_writer_killed_mid_write_leaves_nothing_behind_next_time(tmp_path):
    import subprocess
    import sys
    root = _meshes(tmp_path)
    proc = subprocess.run([sys.executable, "-c", _KILLED_WRITER.format(cls="MeshFolderDataset"),
                           str(root)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    tmp = proc.stdout.strip().splitlines()[-1]
    assert osp.dirname(tmp) == str(root / "processed") and osp.isfile(tmp)
    assert os.listdir(root / "processed") == [osp.basename(tmp)]  # no cache, one temporary
    ds = MeshFolderDataset(root, log=False)
    assert os.listdir(root / "processed") == [osp.basename(ds.processed_paths[0])]
    assert len(ds) == 5
