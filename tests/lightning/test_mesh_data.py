import os.path as osp
import shutil

import pytest
import torch
from torch_geometric.data import Data

from gdl_pyg.lightning.mesh_data import MeshDataModule, PositionFeatures, _rotation, rotate_shape
from gdl_pyg.transforms import MeshGeometry

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _deform(tmp_path, num=8):
    src = osp.join(REPO, "datasets", "deform", "raw")
    dst = tmp_path / "deform" / "raw"
    dst.mkdir(parents=True)
    for k in range(num):
        shutil.copy(osp.join(src, f"pose_{k:03d}.ply"), dst)
    return str(tmp_path / "deform")


def test_segmentation_splits_and_rotated_copies(tmp_path):
    dm = MeshDataModule(_deform(tmp_path), labels=None, node_label="part",
                        pre_transforms=[MeshGeometry(), PositionFeatures()],
                        val_fraction=0.25, test_fraction=0.25, seed=3)
    dm.setup()
    assert dm.num_classes == 4 and dm.num_features == 3
    assert (len(dm.train_dataset), len(dm.val_dataset)) == (4, 2)
    assert list(dm.test_datasets) == ["upright", "rotated"]
    for up, rot in zip(dm.test_datasets["upright"], dm.test_datasets["rotated"]):
        Q = rot.rotation[0].double()
        assert torch.allclose(Q @ Q.T, torch.eye(3, dtype=torch.float64), atol=1e-6)
        assert abs(float(torch.det(Q)) - 1) < 1e-5
        # the shape was rotated before the geometry was computed
        assert torch.allclose(rot.pos.double(), up.pos.double() @ Q.T, atol=1e-5)
        assert torch.allclose(rot.x, rot.pos) and not torch.allclose(rot.x, up.x, atol=1e-2)
        # intrinsic geometry agrees, extrinsic rotates with the shape
        assert torch.allclose(rot.mass, up.mass, rtol=1e-4, atol=1e-7)
        assert torch.allclose(rot.normal.double(), up.normal.double() @ Q.T, atol=1e-4)
        assert torch.equal(rot.y, up.y) and torch.equal(rot.edge_index, up.edge_index)
    # all shapes are used once
    train_val = {float(d.pos.sum()) for d in list(dm.train_dataset) + list(dm.val_dataset)}
    test = {float(d.pos.sum()) for d in dm.test_datasets["upright"]}
    assert len(train_val) == 6 and len(test) == 2 and not train_val & test
    batch = next(iter(dm.train_dataloader()))
    assert batch.num_graphs == 4 and batch.y.numel() == batch.num_nodes


def test_rotations_are_seeded(tmp_path):
    root = _deform(tmp_path, 5)
    kw = dict(labels=None, node_label="part", val_fraction=0.2, test_fraction=0.4)
    a = MeshDataModule(root, seed=1, **kw)
    b = MeshDataModule(root, seed=1, **kw)
    c = MeshDataModule(root, seed=2, **kw)
    for dm in (a, b, c):
        dm.setup("test")
    ra = torch.stack([d.rotation for d in a.test_datasets["rotated"]])
    rb = torch.stack([d.rotation for d in b.test_datasets["rotated"]])
    rc = torch.stack([d.rotation for d in c.test_datasets["rotated"]])
    assert torch.equal(ra, rb) and not torch.allclose(ra, rc)


def test_classification_folders(tmp_path):
    src = osp.join(REPO, "datasets", "shapes", "raw")
    for cls in ("box", "torus"):
        (tmp_path / "raw" / cls).mkdir(parents=True)
        for i in range(3):
            ext = "off" if i % 2 == 0 else "ply"
            shutil.copy(osp.join(src, cls, f"{cls}_{i:02d}.{ext}"), tmp_path / "raw" / cls)
    dm = MeshDataModule(str(tmp_path), rotate_test=False, val_fraction=0.2, test_fraction=0.2)
    dm.setup()
    assert dm.num_classes == 2 and list(dm.test_datasets) == ["upright"]
    assert all(d.y.shape == (1,) for d in dm.train_dataset)


def test_rotate_shape_and_position_features():
    gen = torch.Generator().manual_seed(0)
    Q = _rotation(gen)
    data = Data(pos=torch.randn(5, 3), normal=torch.randn(5, 3), y=torch.arange(5))
    out = rotate_shape(data, Q)
    assert torch.allclose(out.pos, data.pos @ Q.T.float(), atol=1e-6)
    assert torch.allclose(out.normal, data.normal @ Q.T.float(), atol=1e-6)
    assert torch.equal(out.y, data.y) and torch.equal(data.pos, data.pos)
    feats = PositionFeatures()(out.clone())
    assert torch.equal(feats.x, out.pos)
    out.x = torch.ones(5, 2)
    assert PositionFeatures(cat=True)(out).x.shape == (5, 5)
    with pytest.raises(ValueError, match="expected a 'Data' with 'pos'"):
        PositionFeatures()(Data(x=torch.ones(3, 1)))


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="kind 'mesh' or 'points'"):
        MeshDataModule(kind="voxels")
    with pytest.raises(ValueError, match="val_fraction \\+ test_fraction < 1"):
        MeshDataModule(val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(TypeError, match="list of transforms"):
        MeshDataModule(pre_transforms=[1, 2])
    dm = MeshDataModule(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="--data.root"):
        dm.setup()
    root = _deform(tmp_path, 2)
    with pytest.raises(ValueError, match="at least 3 shapes"):
        MeshDataModule(root, labels=None, node_label="part").setup()


def test_default_root_resolves_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dm = MeshDataModule("datasets/deform")
    assert osp.isdir(osp.join(dm.resolved_root, "raw"))
    assert osp.samefile(dm.resolved_root, osp.join(REPO, "datasets", "deform"))
