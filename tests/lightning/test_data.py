import pytest
import torch
from torch_geometric.data import Batch

from gdl_pyg.domains.grid import data_to_grid, grid_to_data
from gdl_pyg.lightning.data import GraphDataModule, RotatedDigitsDataModule, rotate_images


def _images(graphs):
    return torch.stack([data_to_grid(g) for g in graphs])


def test_splits_and_layout():
    dm = RotatedDigitsDataModule(batch_size=32)
    assert "RotatedDigitsDataModule" in repr(dm)
    assert dm.test_names == []  # nothing is built before setup
    with pytest.raises(RuntimeError, match="call 'setup' first"):
        dm.train_dataloader()
    dm.setup()
    n_train, n_val = len(dm.train_dataset), len(dm.val_dataset)
    n_test = len(dm.test_datasets["upright"])
    assert n_train + n_val + n_test == 1797
    assert n_test == round(0.25 * 1797) and n_val == round(0.15 * 1797)
    assert dm.test_names == ["upright", "rotated"] == dm.predict_names
    assert len(dm.test_datasets["rotated"]) == n_test

    # every graph is exactly grid_to_data of its image, with a label
    g = dm.train_dataset[5]
    ref = grid_to_data(data_to_grid(g))
    for key in ("x", "pos", "edge_index", "edge_offset", "grid_shape"):
        assert torch.equal(g[key], ref[key]), key
    assert g.x.shape == (64, 1) and 0.0 <= float(g.x.min()) and float(g.x.max()) <= 1.0
    assert g.y.shape == (1,) and 0 <= int(g.y) < 10

    # the three splits hold different images (a seeded permutation of the data set)
    def keys(graphs):
        return {tuple(gr.x.view(-1).tolist()) + (int(gr.y),) for gr in graphs}
    train, val, test = keys(dm.train_dataset), keys(dm.val_dataset), \
        keys(dm.test_datasets["upright"])
    assert len(train & test) < 5 and len(val & test) < 5  # (the data set has a few duplicates)

    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, Batch) and batch.num_graphs == 32
    assert batch.x.shape == (32 * 64, 1) and batch.grid_shape.shape == (32, 2)
    loaders = dm.test_dataloader()
    assert len(loaders) == 2 and len(dm.predict_dataloader()) == 2
    assert sum(b.num_graphs for b in loaders[1]) == n_test


def test_rotated_test_set_is_exact_rot90():
    dm = RotatedDigitsDataModule(rotation="quarter")
    dm.setup("test")
    up, rot = dm.test_datasets["upright"], dm.test_datasets["rotated"]
    ks = torch.tensor([int(g.angle) // 90 for g in rot])
    assert set(ks.tolist()) == {0, 1, 2, 3}  # all four quarter turns occur
    assert all(float(g.angle) == 0.0 for g in up)
    for a, b, k in zip(up, rot, ks):
        assert torch.equal(data_to_grid(b), torch.rot90(data_to_grid(a), int(k), dims=(-2, -1)))
        assert torch.equal(a.y, b.y)
    # a broken rotation (the wrong direction) is caught by the same comparison
    k_bad = next(int(k) for k in ks if int(k) in (1, 3))
    i = int((ks == k_bad).nonzero()[0])
    assert not torch.equal(data_to_grid(rot[i]),
                           torch.rot90(data_to_grid(up[i]), -k_bad, dims=(-2, -1)))


def test_determinism():
    def build(**kw):
        dm = RotatedDigitsDataModule(**kw)
        dm.setup()
        return dm

    a, b, c = build(seed=3), build(seed=3), build(seed=4)
    for split in ("train_dataset", "val_dataset"):
        assert torch.equal(_images(getattr(a, split)), _images(getattr(b, split)))
    for name in a.test_names:
        assert torch.equal(_images(a.test_datasets[name]), _images(b.test_datasets[name]))
        assert torch.equal(torch.cat([g.angle for g in a.test_datasets[name]]),
                           torch.cat([g.angle for g in b.test_datasets[name]]))
    assert not torch.equal(_images(a.test_datasets["upright"]),
                           _images(c.test_datasets["upright"]))
    # setup stages are independent: test data does not depend on having set up "fit"
    d = RotatedDigitsDataModule(seed=3)
    d.setup("test")
    assert torch.equal(_images(d.test_datasets["rotated"]), _images(a.test_datasets["rotated"]))


def test_continuous_and_pad():
    dm = RotatedDigitsDataModule(rotation="continuous", pad=4)
    dm.setup("test")
    g = dm.test_datasets["rotated"][0]
    assert tuple(g.grid_shape.view(-1).tolist()) == (16, 16) and g.x.shape == (256, 1)
    angles = torch.cat([g.angle for g in dm.test_datasets["rotated"]])
    assert float(angles.min()) >= 0.0 and float(angles.max()) < 360.0
    assert len(set(angles.tolist())) > 100  # not only quarter turns
    # the padding border stays empty on upright images
    img = data_to_grid(dm.test_datasets["upright"][0])
    assert float(img[:, :4].abs().sum()) == 0.0 and float(img[:, :, -4:].abs().sum()) == 0.0


def test_rotate_images():
    x = torch.randn(5, 2, 6, 6, dtype=torch.float64)
    k = torch.tensor([0, 1, 2, 3, 1])
    quarter = rotate_images(x, k, "quarter")
    for i in range(5):
        assert torch.equal(quarter[i], torch.rot90(x[i], int(k[i]), dims=(-2, -1)))
    # bilinear rotation by multiples of 90 degrees reproduces rot90
    cont = rotate_images(x, k.double() * 90.0, "continuous")
    assert torch.allclose(cont, quarter, atol=1e-12)
    # and a half-way angle interpolates: mass is not preserved exactly, shape is
    assert rotate_images(x, torch.full((5,), 45.0), "continuous").shape == x.shape
    with pytest.raises(ValueError, match="one angle per image"):
        rotate_images(x, k[:3], "quarter")
    with pytest.raises(ValueError, match="mode"):
        rotate_images(x, k, "eighth")
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        rotate_images(x[0], k[:1], "quarter")


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "batch_size"),
    (dict(val_fraction=0.0), "val_fraction"),
    (dict(test_fraction=1.5), "test_fraction"),
    (dict(val_fraction=0.5, test_fraction=0.5), "val_fraction \\+ test_fraction"),
    (dict(rotation="eighth"), "rotation"),
    (dict(pad=-1), "pad"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RotatedDigitsDataModule(**kwargs)


def test_base_module_without_splits():
    dm = GraphDataModule(batch_size=4)
    assert dm.test_names == [] and repr(dm) == "GraphDataModule(batch_size=4)"
    for fn in (dm.val_dataloader, dm.test_dataloader, dm.predict_dataloader):
        with pytest.raises(RuntimeError):
            fn()
