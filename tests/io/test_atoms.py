import gzip
import os

import numpy as np
import pytest
import torch
from torch_geometric.data import Data

ase = pytest.importorskip("ase")
import ase.io  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.calculators.emt import EMT  # noqa: E402
from ase.cluster import Icosahedron  # noqa: E402

from gdl_pyg.io import read_xyz, write_xyz  # noqa: E402
from gdl_pyg.io.atoms import atoms_to_data, data_to_atoms  # noqa: E402

SHIPPED = os.path.join(os.path.dirname(__file__), "..", "..", "datasets", "atoms")


def _cluster(seed=0, sym="Cu"):
    atoms = Icosahedron(sym, noshells=2)
    atoms.rattle(0.05, seed=seed)
    atoms.calc = EMT()
    atoms.get_potential_energy()
    return atoms


def test_read_file_written_by_ase(tmp_path):
    frames = [_cluster(0), _cluster(1, "Au")]
    path = str(tmp_path / "ase.extxyz")
    ase.io.write(path, frames, format="extxyz")
    data = read_xyz(path)
    assert len(data) == 2
    for d, a in zip(data, frames):
        assert d.z.dtype == torch.long and d.z.tolist() == a.numbers.tolist()
        assert d.pos.shape == (13, 3) and d.pos.dtype == torch.float32
        assert torch.allclose(d.pos.double(), torch.from_numpy(a.positions), atol=1e-6)
        assert d.energy.shape == (1,)
        assert abs(float(d.energy) - a.get_potential_energy()) < 1e-5
        assert torch.allclose(d.forces.double(), torch.from_numpy(a.get_forces()), atol=1e-5)
        assert "cell" not in d and "pbc" not in d  # non-periodic, no cell
    last = read_xyz(path, index=-1, dtype=torch.float64)
    assert len(last) == 1 and last[0].pos.dtype == torch.float64
    assert torch.equal(last[0].z, data[1].z)
    assert len(read_xyz(path, index=slice(0, 1))) == 1


def test_round_trip_with_cell_and_compression(tmp_path):
    a = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
    a.rattle(0.02, seed=3)
    a.calc = EMT()
    d = atoms_to_data(a, dtype=torch.float64)
    assert d.cell.shape == (1, 3, 3) and d.pbc.tolist() == [[True, True, True]]
    cluster = read_xyz_helper = atoms_to_data(_cluster(2), dtype=torch.float64)
    no_labels = Data(z=torch.tensor([1, 8, 1]), pos=torch.randn(3, 3, dtype=torch.float64))
    for name in ("x.xyz", "x.xyz.gz"):
        path = str(tmp_path / name)
        write_xyz(path, [d, cluster, no_labels])
        back = read_xyz(path, dtype=torch.float64)
        assert len(back) == 3
        for orig, new in zip([d, cluster, no_labels], back):
            assert sorted(orig.keys()) == sorted(new.keys())
            for key in orig.keys():
                assert torch.allclose(orig[key].to(new[key].dtype), new[key], atol=1e-7), key
    with gzip.open(str(tmp_path / "x.xyz.gz"), "rt") as f:  # really gzip-compressed extxyz
        assert f.readline().strip() == "8"
    write_xyz(str(tmp_path / "one.xyz"), read_xyz_helper)  # a single Data
    assert len(read_xyz(str(tmp_path / "one.xyz"))) == 1
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]  # atomic writes leave nothing


def test_data_to_atoms_checks():
    with pytest.raises(ValueError, match="'z'"):
        data_to_atoms(Data(pos=torch.zeros(2, 3)))
    with pytest.raises(ValueError, match=r"\[2, 3\]"):
        data_to_atoms(Data(z=torch.tensor([1, 1]), pos=torch.zeros(2, 2)))
    with pytest.raises(ValueError, match="forces"):
        data_to_atoms(Data(z=torch.tensor([1, 1]), pos=torch.zeros(2, 3),
                           forces=torch.zeros(3, 3)))
    with pytest.raises(TypeError, match="Data"):
        data_to_atoms(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="non-empty"):
        write_xyz("unused.xyz", [])


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.xyz"):
        read_xyz(str(tmp_path / "missing.xyz"))
    empty = tmp_path / "empty.xyz"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        read_xyz(str(empty))
    bad = tmp_path / "bad.xyz"
    bad.write_text("3\ncomment\nCu 0 0 0\nnot an atom line\n")
    with pytest.raises(ValueError, match="bad.xyz"):
        read_xyz(str(bad))
    garbage = tmp_path / "garbage.xyz"
    garbage.write_text("hello world\n")
    with pytest.raises(ValueError, match="Cannot read .*garbage.xyz"):
        read_xyz(str(garbage))


def test_shipped_files_read():
    path = os.path.join(SHIPPED, "test.xyz.gz")
    if not os.path.exists(path):
        pytest.skip("datasets/atoms not generated")
    data = read_xyz(path, index="0:5")
    assert len(data) == 5
    for d in data:
        assert set(d.keys()) == {"z", "pos", "energy", "forces"}
        assert d.forces.shape == d.pos.shape
        assert np.isfinite(d.pos.numpy()).all()


# issue 9: no silent wrong answers on malformed files

def test_positions_overflowing_the_dtype_raise(tmp_path):
    path = tmp_path / "big.xyz"
    path.write_text("2\nProperties=species:S:1:pos:R:3\nH 0 0 0\nH 1e39 0 0\n")
    with pytest.raises(ValueError, match=r"big\.xyz' frame 0: position value 1e\+39.*"
                                         r"cannot be represented in torch\.float32"):
        read_xyz(path)
    assert read_xyz(path, dtype=torch.float64)[0].pos[1, 0].item() == 1e39


@pytest.mark.parametrize("compress", [False, True])
def test_atom_count_is_checked_against_the_file(tmp_path, compress):
    # ase reads a frame by one readline() per declared atom: 2e9 would build a list of
    # two billion strings before failing
    text = "2\nProperties=species:S:1:pos:R:3\nH 0 0 0\nH 1 0 0\n" \
           "2000000000\nProperties=species:S:1:pos:R:3\nH 0 0 0\n"
    path = tmp_path / ("huge.xyz.gz" if compress else "huge.xyz")
    if compress:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    with pytest.raises(ValueError, match=r"frame 1 declares 2000000000 atoms but only 1 "
                                         r"atom line\(s\) follow"):
        read_xyz(path)


def test_xyz_cut_inside_last_number_raises(tmp_path):
    path = tmp_path / "cut.xyz"
    path.write_text("2\nProperties=species:S:1:pos:R:3\nH 0 0 0\nH 1 0 0.12")
    with pytest.raises(ValueError, match="without a line break"):
        read_xyz(path)
    path.write_text("2\nProperties=species:S:1:pos:R:3\nH 0 0 0\nH 1 0 0.12\n")
    assert read_xyz(path)[0].pos.shape == (2, 3)
