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
