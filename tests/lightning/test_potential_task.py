import importlib.util
import os

import pytest
import torch
from lightning.pytorch import Trainer

from gdl_pyg.lightning.cli import main
from gdl_pyg.lightning.potential import AtomsDataModule, EnergyForceTask
from gdl_pyg.nn.models import InteratomicPotential

pytest.importorskip("ase")

REPO = os.path.join(os.path.dirname(__file__), "..", "..")
SCRIPT = os.path.join(REPO, "scripts", "make_atoms.py")
CONFIGS = [os.path.join(REPO, "gdl_pyg", "configs", f"potential_{name}.yaml")
           for name in ("egnn", "baseline")]
SPECIES = [13, 28, 29, 46, 47, 78, 79]

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI.s args parameter",
                                        "ignore:.*does not have many workers",
                                        "ignore:The number of training batches")


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("make_atoms", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    root = tmp_path_factory.mktemp("atoms")
    script.main(["--out", str(root), "--num-train", "24", "--num-test", "8", "--seed", "3"])
    return str(root)


def _task(**kwargs):
    torch.manual_seed(0)
    model = InteratomicPotential("egnn", species=SPECIES, cutoff=4.5, hidden_channels=8,
                                 num_layers=1, num_radial_basis=4)
    return EnergyForceTask(model, **kwargs)


def test_data_module(small_root):
    dm = AtomsDataModule(root=small_root, val_fraction=0.25, batch_size=4, seed=1)
    assert repr(dm) == "AtomsDataModule(val_fraction=0.25, num_train=None, batch_size=4, seed=1)"
    dm.setup()
    assert len(dm.train_dataset) == 18 and len(dm.val_dataset) == 6
    assert dm.test_names == ["upright", "rotated"]
    up, rot = dm.test_datasets["upright"], dm.test_datasets["rotated"]
    assert len(up) == len(rot) == 8
    dets = []
    for a, b in zip(up, rot):
        assert torch.equal(a.z, b.z) and torch.equal(a.energy, b.energy)
        # the same rigid motion maps positions and rotates forces
        pa, pb = a.pos.double(), b.pos.double()
        ca, cb = pa - pa.mean(0), pb - pb.mean(0)
        Q = torch.linalg.lstsq(ca, cb).solution.T  # cb = ca Q^T
        assert torch.allclose(Q @ Q.T, torch.eye(3, dtype=torch.float64), atol=1e-4)
        assert torch.allclose(a.forces.double() @ Q.T, b.forces.double(), atol=1e-3)
        dets.append(float(torch.det(Q)))
        # pairwise distances are kept
        assert torch.allclose(torch.cdist(pa, pa), torch.cdist(pb, pb), atol=1e-4)
    assert not torch.allclose(up[0].pos, rot[0].pos)
    batch = next(iter(dm.train_dataloader()))
    assert batch.num_graphs == 4 and batch.forces.shape == batch.pos.shape
    again = AtomsDataModule(root=small_root, val_fraction=0.25, batch_size=4, seed=1)
    again.setup("test")
    assert torch.equal(again.test_datasets["rotated"][3].pos, rot[3].pos)
    small = AtomsDataModule(root=small_root, val_fraction=0.25, num_train=5)
    small.setup("fit")
    assert len(small.train_dataset) == 5
    with pytest.raises(ValueError, match="num_train"):
        AtomsDataModule(root=small_root, num_train=100).setup("fit")
    with pytest.raises(FileNotFoundError, match="make_atoms.py"):
        AtomsDataModule(root=os.path.join(small_root, "nowhere")).setup("fit")
    with pytest.raises(ValueError, match="val_fraction"):
        AtomsDataModule(val_fraction=1.5)


@pytest.mark.parametrize("inference_mode", [True, False])
def test_fit_validate_test_give_force_metrics(small_root, tmp_path, inference_mode):
    dm = AtomsDataModule(root=small_root, val_fraction=0.25, batch_size=6)
    task = _task(lr=3e-3)
    trainer = Trainer(max_epochs=2, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=str(tmp_path), inference_mode=inference_mode)
    trainer.fit(task, datamodule=dm)
    # fit_statistics ran on the training set before fitting
    assert float(task.model.scale) > 0.1 and task.model.atom_ref.abs().sum() > 0
    assert "train/forces_mae" in trainer.callback_metrics
    val = trainer.validate(task, datamodule=dm, verbose=False)[0]
    assert {"val/forces_mae", "val/energy_mae", "val/energy_mae_per_atom"} <= set(val)
    assert all(v > 0 and v == v for v in val.values())
    res = trainer.test(task, datamodule=dm, verbose=False)
    names = set(res[0]) | set(res[1])
    for split in ("upright", "rotated"):
        for metric in ("forces_mae", "energy_mae", "energy_mae_per_atom"):
            assert f"test/{metric}_{split}" in names
    # the EGNN potential is E(3)-invariant: the rotated set has the same loss
    # (force MSE is rotation invariant) and energy errors; the MAE of force
    # *components* is not invariant, it only stays close
    up, rot = res[0]["test/loss_upright"], res[1]["test/loss_rotated"]
    assert abs(up - rot) < 1e-4 * max(up, 1.0)
    assert abs(res[0]["test/energy_mae_upright"] - res[1]["test/energy_mae_rotated"]) < 1e-3
    up, rot = res[0]["test/forces_mae_upright"], res[1]["test/forces_mae_rotated"]
    assert abs(up - rot) < 0.2 * up
    preds = trainer.predict(task, datamodule=dm)
    energy, forces = preds[0][0]
    assert energy.shape == (6,) and forces.shape[1] == 3


def test_task_checks():
    model = InteratomicPotential("egnn", species=SPECIES, hidden_channels=8, num_layers=1)
    with pytest.raises(ValueError, match="force_weight"):
        EnergyForceTask(model, force_weight=-1.0)
    with pytest.raises(ValueError, match="both 0"):
        EnergyForceTask(model, energy_weight=0.0, force_weight=0.0)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        EnergyForceTask("egnn")
    task = EnergyForceTask(model, force_weight=5.0)
    assert task.force_weight == 5.0 and "EnergyForceTask(model=InteratomicPotential(" in repr(task)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: os.path.basename(p))
def test_config_fast_dev_run(config, small_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs/ and logs go to the tmp folder
    # the shipped configs on the small generated data (the shipped files take
    # a minute to parse on a busy 2-core machine)
    args = ["--config", config, "--trainer.fast_dev_run", "1", "--trainer.enable_progress_bar",
            "false", "--data.batch_size", "4", "--data.root", small_root,
            "--data.num_train", "8"]
    main(["fit"] + args)
    main(["test"] + args)


def test_structures_are_cached_as_tensors(tmp_path):
    import shutil

    from gdl_pyg.io import read_xyz, write_xyz
    from gdl_pyg.lightning.potential import _cached_structures
    src = read_xyz(os.path.join(os.path.dirname(__file__), "..", "..", "datasets", "atoms",
                                "test.xyz.gz"), index=":7")
    path = str(tmp_path / "few.xyz")
    write_xyz(path, src)
    calls = []

    def read(p):
        calls.append(p)
        return read_xyz(p)

    first = _cached_structures(path, read)
    again = _cached_structures(path, read)
    assert len(calls) == 1 and len(first) == len(again) == 7
    for a, b in zip(first, again):
        for key in ("z", "pos", "energy", "forces"):
            assert torch.equal(a[key], b[key])
    # a corrupt cache is rebuilt, with a warning
    cache = next((tmp_path / "processed").glob("few.xyz.*.pt"))
    cache.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="Rebuilding"):
        third = _cached_structures(path, read)
    assert len(calls) == 2 and torch.equal(third[3].pos, first[3].pos)
    shutil.rmtree(tmp_path / "processed")


# ---------------------------------------------------------------------------
# the atoms cache: content key, corrupt / planted files, temporaries of dead writers
# ---------------------------------------------------------------------------

def _few(tmp_path, n=5):
    from gdl_pyg.io import read_xyz, write_xyz
    src = read_xyz(os.path.join(os.path.dirname(__file__), "..", "..", "datasets", "atoms",
                                "test.xyz.gz"), index=f":{n}")
    path = str(tmp_path / "few.xyz")
    write_xyz(path, src)
    calls = []

    def read(p):
        calls.append(p)
        return read_xyz(p)
    return path, read, calls


def test_atoms_cache_follows_content_not_size_or_mtime(tmp_path):
    from gdl_pyg.io import read_xyz
    from gdl_pyg.lightning.potential import _cached_structures
    path, read, calls = _few(tmp_path)
    first = _cached_structures(path, read)
    # change one digit of a coordinate of the last structure: same size, and the
    # modification time restored to the nanosecond
    st = os.stat(path)
    text = open(path).read()
    i = next(i for i in range(len(text) - 40, 0, -1) if text[i] in "123456789")
    text = text[:i] + ("1" if text[i] != "1" else "2") + text[i + 1:]
    with open(path, "w") as f:
        f.write(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (os.stat(path).st_size, os.stat(path).st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    fresh = read_xyz(path)
    assert not all(torch.equal(a.pos, b.pos) and torch.equal(a.forces, b.forces)
                   for a, b in zip(fresh, first))
    again = _cached_structures(path, read)
    assert len(calls) == 2  # re-parsed, not served from the stale cache
    for a, b in zip(again, fresh):
        for key in ("z", "pos", "energy", "forces"):
            assert torch.equal(a[key], b[key])
    # one cache per file: the one of the earlier content is gone
    assert len(list((tmp_path / "processed").glob("few.xyz.*.pt"))) == 1


class _Exploit:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):  # unpickling this creates a file
        return (open, (self.path, "w"))


@pytest.mark.parametrize("kind", ["planted", "truncated", "flipped", "foreign"])
def test_atoms_cache_corrupt_or_planted_is_rebuilt_never_unpickled(tmp_path, kind):
    from gdl_pyg.lightning.potential import _cached_structures
    path, read, calls = _few(tmp_path)
    first = _cached_structures(path, read)
    cache = next((tmp_path / "processed").glob("few.xyz.*.pt"))
    raw = (open(path, "rb").read(), os.stat(path).st_mtime_ns)
    marker = tmp_path / "pwned.txt"
    blob = cache.read_bytes()
    if kind == "planted":
        torch.save(_Exploit(str(marker)), cache)
    elif kind == "truncated":
        cache.write_bytes(blob[: len(blob) // 2])
    elif kind == "flipped":  # inside a tensor's bytes: torch.load does not notice
        i = blob.index(first[-1].pos.numpy().tobytes()) + 5
        cache.write_bytes(blob[:i] + bytes([blob[i] ^ 0xFF]) + blob[i + 1:])
    else:
        torch.save({"z": torch.zeros(3)}, cache)
    with pytest.warns(UserWarning, match="does not load as plain tensors.*Rebuilding"):
        again = _cached_structures(path, read)
    assert not marker.exists()
    assert len(calls) == 2 and len(again) == len(first)
    for a, b in zip(again, first):
        for key in ("z", "pos", "energy", "forces"):
            assert torch.equal(a[key], b[key])
    assert (open(path, "rb").read(), os.stat(path).st_mtime_ns) == raw
    assert len(_cached_structures(path, read)) == len(first) and len(calls) == 2


def test_atoms_cache_removes_temporaries_of_dead_writers(tmp_path):
    import subprocess
    import sys

    from gdl_pyg.datasets._cache import _host
    from gdl_pyg.lightning.potential import _cached_structures
    path, read, _ = _few(tmp_path, n=2)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    processed = tmp_path / "processed"
    processed.mkdir()
    dead = processed / f".few.xyz.0123.v2.pt.{_host()}.{proc.pid}.abcd1234.tmp"
    alive = processed / f".few.xyz.0123.v2.pt.{_host()}.{os.getpid()}.abcd1234.tmp"
    for p in (dead, alive):
        p.write_bytes(b"\x80partial")
    _cached_structures(path, read)
    assert not dead.exists() and alive.exists()
