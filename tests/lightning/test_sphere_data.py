import os

import pytest
import torch

from gdl_pyg.domains.sphere import project_image, sphere_to_image
from gdl_pyg.lightning import RotatedDigitsDataModule, SphericalDigitsDataModule, random_rotations
from gdl_pyg.lightning.cli import main
from gdl_pyg.nn.models import GridCNN, SphericalCNN

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "gdl_pyg", "configs")


@pytest.fixture(scope="module")
def sphere_dm():
    dm = SphericalDigitsDataModule(batch_size=16, subdivisions=2, seed=3)
    dm.setup()
    return dm


def test_random_rotations_are_haar_rotations():
    R = random_rotations(4000, torch.Generator().manual_seed(0))
    eye = torch.eye(3, dtype=torch.float64)
    assert R.shape == (4000, 3, 3)
    assert (R @ R.transpose(1, 2) - eye).abs().max() < 1e-12
    assert (torch.det(R) - 1).abs().max() < 1e-12
    # Haar measure: E[R] = 0 and E[R_ij^2] = 1/3
    assert R.mean(0).abs().max() < 0.05 and ((R ** 2).mean(0) - 1 / 3).abs().max() < 0.03
    # seeded
    a, b = (random_rotations(3, torch.Generator().manual_seed(s)) for s in (0, 0))
    assert torch.equal(a, b)
    assert not torch.allclose(a, random_rotations(3, torch.Generator().manual_seed(1)))


def test_splits_and_signals(sphere_dm):
    dm = sphere_dm
    assert dm.test_names == ["upright", "rotated"]
    n = 10 * 4 ** 2 + 2
    ref = RotatedDigitsDataModule(seed=3)
    ref.setup()
    # the split of RotatedDigitsDataModule: the same labels in the same order
    for ours, theirs in ((dm.train_dataset, ref.train_dataset), (dm.val_dataset, ref.val_dataset),
                         (dm.test_datasets["upright"], ref.test_datasets["upright"])):
        assert [int(g.y) for g in ours] == [int(g.y) for g in theirs]
    g = dm.train_dataset[0]
    assert g.x.shape == (n, 1) and g.pos.shape == (n, 3) and g.mass.shape == (n,)
    assert g.x.dtype == torch.float32 and g.edge_index.shape == (2, 60 * 16)
    assert g.pos is dm.train_dataset[1].pos  # the geometry is shared
    assert torch.equal(g.rotation[0], torch.eye(3))
    # the upright signal is the projection of the digit image, the rotated one
    # the projection under its own rotation
    images, _ = dm.load_images()
    i = dm.split_indices(images.size(0))
    img = images[i["test"][5]]
    up, rot = dm.test_datasets["upright"][5], dm.test_datasets["rotated"][5]
    assert torch.allclose(up.x, project_image(img, up.pos, 90.0), atol=1e-6)
    R = dm.test_rotations(len(i["test"]))[5]
    assert torch.allclose(rot.rotation[0], R.float())
    assert torch.allclose(rot.x, project_image(img, up.pos, 90.0, rotation=R), atol=1e-6)
    assert up.x.sum() > 1 and not torch.allclose(up.x, rot.x)
    Rs = torch.cat([d.rotation for d in dm.test_datasets["rotated"]])
    assert torch.unique(Rs.round(decimals=4), dim=0).size(0) == len(Rs)
    # a model of each kind runs on a batch
    batch = next(iter(dm.train_dataloader()))
    assert SphericalCNN(1, 4, 10, num_layers=2, lmax=2)(batch).shape == (16, 10)


def test_image_output_reads_the_chart():
    dm = SphericalDigitsDataModule(batch_size=8, subdivisions=3, output="image", seed=3)
    dm.setup("test")
    up, rot = dm.test_datasets["upright"], dm.test_datasets["rotated"]
    g = up[0]
    assert g.x.shape == (64, 1) and tuple(g.grid_shape.view(-1).tolist()) == (8, 8)
    images, _ = dm.load_images()
    img = images[dm.split_indices(images.size(0))["test"][0]]
    # exactly sphere_to_image of the spherical signal, and close to the digit
    sph = project_image(img, dm.sphere().pos, 90.0)
    chart = sphere_to_image(sph, dm.sphere().pos, (8, 8), 90.0)
    assert torch.allclose(g.x.view(8, 8), chart[0], atol=1e-6)
    assert (chart[0] - img[0]).abs().mean() < 0.15
    # a random 3D rotation usually moves the digit out of the chart
    mass = lambda ds: torch.stack([d.x.sum() for d in ds])  # noqa: E731
    assert (mass(rot) < 0.5 * mass(up)).float().mean() > 0.5
    batch = next(iter(dm.test_dataloader()[1]))
    assert GridCNN(1, 10, hidden_channels=4)(batch).shape == (8, 10)


def test_bad_arguments():
    with pytest.raises(ValueError, match="'fov' in \\(0, 180\\)"):
        SphericalDigitsDataModule(fov=180)
    with pytest.raises(ValueError, match="output 'sphere' or 'image'"):
        SphericalDigitsDataModule(output="grid")
    with pytest.raises(ValueError, match="'subdivisions'"):
        SphericalDigitsDataModule(subdivisions=-1)
    with pytest.raises(ValueError, match="val_fraction \\+ test_fraction < 1"):
        SphericalDigitsDataModule(val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(TypeError, match="integer seed"):
        SphericalDigitsDataModule(seed=1.5)
    with pytest.raises(RuntimeError, match="call 'setup' first"):
        SphericalDigitsDataModule().train_dataloader()
    assert repr(SphericalDigitsDataModule()) == (
        "SphericalDigitsDataModule(subdivisions=3, fov=90.0, pad=0, output='sphere', "
        "batch_size=64, seed=0)")


@pytest.mark.parametrize("name", ["spherical_cnn_digits.yaml", "cnn_sphere_digits.yaml"])
def test_config_fast_dev_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", os.path.abspath(os.path.join(CONFIGS, name)),
          "--trainer.fast_dev_run", "1", "--trainer.accelerator", "cpu",
          "--data.init_args.subdivisions", "2"])
