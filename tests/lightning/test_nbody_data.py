import os

import numpy as np
import pytest
import torch

from gdl_pyg.lightning.cli import main
from gdl_pyg.lightning.nbody_data import (NBODY_FILE, NBodyDataModule, make_nbody_splits,
                                          simulate_charged_particles)

REPO = os.path.join(os.path.dirname(__file__), "..", "..")
SHIPPED = os.path.join(REPO, "datasets", "nbody", NBODY_FILE)
CONFIGS = [os.path.join(REPO, "gdl_pyg", "configs", f"{name}_nbody.yaml")
           for name in ("egnn", "gnn")]

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI.s args parameter")


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("nbody")
    np.savez_compressed(root / NBODY_FILE, **make_nbody_splits(40, 10, 12, seed=3))
    return str(root)


def test_simulation_physics():
    sim = simulate_charged_particles(64, seed=1, num_steps=300, record_steps=(1, 150, 300))
    loc, vel, q = sim["loc"], sim["vel"], sim["charges"]
    assert loc.shape == (3, 64, 5, 3) and q.shape == (64, 5)
    assert set(np.unique(q)) == {-1.0, 1.0}
    # pairwise forces are antisymmetric: total momentum (unit masses) is conserved
    # (up to the rare clipped force component)
    p = vel.sum(axis=2)
    drift = np.abs(p - p[0]).max(axis=(0, 2))
    assert (drift < 1e-10).mean() > 0.9
    # leapfrog: x(300) - x(150) = dt * sum of the 150 velocities in between ~ 0.15 v
    step = loc[2] - loc[1]
    assert np.abs(step).mean() > 1e-3
    # deterministic given the seed, different across seeds
    again = simulate_charged_particles(64, seed=1, num_steps=300, record_steps=(1, 150, 300))
    assert np.array_equal(again["loc"], loc)
    other = simulate_charged_particles(64, seed=2, num_steps=300, record_steps=(1, 150, 300))
    assert not np.array_equal(other["loc"], loc)
    with pytest.raises(ValueError, match="record_steps"):
        simulate_charged_particles(2, num_steps=10, record_steps=(11,))
    with pytest.raises(ValueError, match="unknown constants"):
        simulate_charged_particles(2, num_steps=10, record_steps=(5,), mass=2.0)


def test_simulation_is_e3_equivariant_in_its_force():
    from gdl_pyg.lightning.nbody_data import _forces
    gen = np.random.default_rng(0)
    loc = gen.standard_normal((4, 5, 3))
    qq = np.sign(gen.standard_normal((4, 5, 5)))
    qq = qq * qq.transpose(0, 2, 1)
    qq[:, range(5), range(5)] = 0
    Q, _ = np.linalg.qr(gen.standard_normal((3, 3)))
    F = _forces(loc, qq, 1.0, 1e9)
    assert np.abs(_forces(loc @ Q.T + 1.5, qq, 1.0, 1e9) - F @ Q.T).max() < 1e-10


def test_shipped_data():
    with np.load(SHIPPED) as f:
        sizes = {k: f[k].shape for k in f.files}
        assert sizes["train_pos"] == (3000, 5, 3) and sizes["val_target"] == (2000, 5, 3)
        assert sizes["test_charges"] == (2000, 5)
        assert f["train_pos"].dtype == np.float32
        # the paper's setting: a linear extrapolation x + a v has an MSE near
        # 0.08 (the paper's "Linear" model: 0.0819), staying put about 0.27
        p, v, y = f["test_pos"], f["test_vel"], f["test_target"]
        a = ((y - p) * v).sum() / (v * v).sum()
        assert 0.06 < ((p + a * v - y) ** 2).mean() < 0.11
        assert 0.2 < ((p - y) ** 2).mean() < 0.35
    assert os.path.getsize(SHIPPED) < 3e6


def test_data_module(small_root):
    dm = NBodyDataModule(root=small_root, num_train=30, batch_size=8)
    assert repr(dm) == "NBodyDataModule(num_train=30, batch_size=8, seed=0)"
    dm.setup()
    assert len(dm.train_dataset) == 30 and len(dm.val_dataset) == 10
    assert dm.test_names == ["test", "rotated"]
    g = dm.train_dataset[0]
    assert g.x.shape == (5, 1) and g.pos.shape == (5, 3) and g.vel.shape == (5, 3)
    assert g.edge_index.shape == (2, 20) and g.edge_attr.shape == (20, 1) and g.y.shape == (5, 3)
    assert not bool((g.edge_index[0] == g.edge_index[1]).any())
    assert len({tuple(e) for e in g.edge_index.t().tolist()}) == 20
    assert torch.allclose(g.x.view(-1), g.vel.norm(dim=-1))
    q = g.charge.view(-1)
    assert torch.equal(g.edge_attr.view(-1), q[g.edge_index[0]] * q[g.edge_index[1]])
    # the rotated test set: the same samples under one rigid motion each
    for a, b in zip(dm.test_datasets["test"], dm.test_datasets["rotated"]):
        P, R = torch.cat([a.pos, a.y]).double(), torch.cat([b.pos, b.y]).double()
        assert torch.allclose(torch.cdist(P, P), torch.cdist(R, R), atol=1e-4)
        assert torch.allclose(a.x, b.x, atol=1e-5)  # speeds of the rotated velocities
        assert torch.equal(a.edge_attr, b.edge_attr)
    Q, t = dm.rigid_motions(12)
    b0, a0 = dm.test_datasets["rotated"][0], dm.test_datasets["test"][0]
    assert torch.allclose(b0.y, a0.y @ Q[0].T.float() + t[0].float(), atol=1e-5)
    assert (Q.det().abs() - 1).abs().max() < 1e-10 and (Q.det() < 0).any()
    batch = next(iter(dm.train_dataloader()))
    assert batch.num_graphs == 8 and batch.edge_index.shape == (2, 160)


def test_data_module_errors(small_root, tmp_path):
    with pytest.raises(ValueError, match="num_train <= 40"):
        NBodyDataModule(root=small_root, num_train=41).setup("fit")
    with pytest.raises(FileNotFoundError, match="make_nbody.py"):
        NBodyDataModule(root=str(tmp_path)).setup("fit")
    with pytest.raises(ValueError, match="'num_train' to be an integer"):
        NBodyDataModule(num_train=0)
    with pytest.raises(TypeError, match="integer seed"):
        NBodyDataModule(seed=1.5)


def test_default_root_is_the_shipped_data():
    assert os.path.samefile(NBodyDataModule().path, SHIPPED)


@pytest.mark.parametrize("cfg", CONFIGS, ids=os.path.basename)
def test_config_fast_dev_run(cfg, tmp_path, monkeypatch, small_root):
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", os.path.abspath(cfg), "--trainer.fast_dev_run", "1",
          "--trainer.accelerator", "cpu", "--data.init_args.root", small_root,
          "--data.init_args.num_train", "40"])
