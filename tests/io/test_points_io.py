import os

import numpy as np
import pytest
import torch
import trimesh
from torch_geometric.data import Data

from gdl_pyg.io import read_points, write_points

FORMATS = [("ply", True), ("ply", False), ("xyz", False), ("pts", False), ("txt", False),
           ("npy", False), ("npz", False)]


def _cloud(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(n, 3, generator=g) * 10
    normal = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1)
    color = torch.randint(0, 256, (n, 3), generator=g).to(torch.uint8)
    return Data(pos=pos, normal=normal, color=color)


@pytest.mark.parametrize("ext,binary", FORMATS)
def test_round_trip(tmp_path, ext, binary):
    data = _cloud()
    write_points(tmp_path / f"a.{ext}", data, binary=binary)
    out = read_points(tmp_path / f"a.{ext}")
    assert torch.equal(out.pos, data.pos)
    assert torch.equal(out.normal, data.normal)
    assert out.color.dtype == torch.uint8 and torch.equal(out.color, data.color)
    # positions only
    write_points(tmp_path / f"b.{ext}", data.pos, binary=binary)
    out = read_points(tmp_path / f"b.{ext}")
    assert torch.equal(out.pos, data.pos) and set(out.keys()) == {"pos"}


@pytest.mark.parametrize("ext", ["xyz", "npy"])
def test_explicit_columns(tmp_path, ext):
    data = _cloud()
    data.intensity = torch.rand(data.num_nodes)
    cols = ("pos", "color", "intensity")
    d = Data(pos=data.pos, color=data.color, intensity=data.intensity)
    with pytest.raises(ValueError, match="would not be recognised"):
        write_points(tmp_path / f"a.{ext}", d, point_attrs=("intensity",))
    write_points(tmp_path / f"a.{ext}", d, point_attrs=("intensity",), columns=cols)
    out = read_points(tmp_path / f"a.{ext}", columns=cols)
    assert torch.equal(out.pos, d.pos) and torch.equal(out.color, d.color)
    assert torch.equal(out.intensity, d.intensity)
    with pytest.raises(ValueError, match="need 9 values per row but the file has 7"):
        read_points(tmp_path / f"a.{ext}", columns=("pos", "normal", "color"))


def test_ply_extra_properties_and_float64(tmp_path):
    data = _cloud()
    data.label = torch.arange(data.num_nodes) % 5
    write_points(tmp_path / "a.ply", data, point_attrs=("label",))
    out = read_points(tmp_path / "a.ply")
    assert out.label.dtype == torch.long and torch.equal(out.label, data.label)
    pos64 = data.pos.double() / 3
    for ext in ("xyz", "ply", "npz"):
        write_points(tmp_path / f"d.{ext}", pos64)
        assert torch.equal(read_points(tmp_path / f"d.{ext}", dtype=torch.float64).pos, pos64)


def test_pts_count_header_and_intensity(tmp_path):
    (tmp_path / "a.pts").write_text("3\n0 0 0 7\n1 0 0 8\n0 1 0 9\n")
    out = read_points(tmp_path / "a.pts")
    assert out.pos.shape == (3, 3) and out.intensity.tolist() == [7.0, 8.0, 9.0]
    (tmp_path / "b.pts").write_text("4\n0 0 0\n1 0 0\n0 1 0\n")
    with pytest.raises(ValueError, match=r"b\.pts.*declares 4 points.*holds 3"):
        read_points(tmp_path / "b.pts")


def test_agrees_with_trimesh_xyz_loader(tmp_path):
    mesh = trimesh.creation.icosphere(2)
    pts, idx = trimesh.sample.sample_surface(mesh, 300, seed=0)
    data = Data(pos=torch.tensor(pts, dtype=torch.float32),
                normal=torch.tensor(mesh.face_normals[idx], dtype=torch.float32))
    write_points(tmp_path / "a.xyz", data)
    theirs = trimesh.load(str(tmp_path / "a.xyz"))
    ours = read_points(tmp_path / "a.xyz")
    assert len(theirs.vertices) == ours.num_nodes == 300
    assert np.array_equal(np.asarray(theirs.vertices, dtype=np.float32), ours.pos.numpy())


def _w(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return p


def _npy(tmp_path, name, arr):
    p = tmp_path / name
    np.save(p, arr)
    return p


MALFORMED = {
    "ragged.xyz": lambda t: _w(t, "ragged.xyz", "0 0 0\n1 0 0\n0 1\n"),
    "nan.xyz": lambda t: _w(t, "nan.xyz", "0 0 0\nnan 0 0\n"),
    "inf.txt": lambda t: _w(t, "inf.txt", "0 0 0\ninf 0 0\n"),
    "nan_normal.xyz": lambda t: _w(t, "nan_normal.xyz", "0 0 0 0 0 1\n1 0 0 nan 0 1\n"),
    "five_cols.xyz": lambda t: _w(t, "five_cols.xyz", "0 0 0 1 2\n"),
    "words.xyz": lambda t: _w(t, "words.xyz", "a b c\n"),
    "empty.xyz": lambda t: _w(t, "empty.xyz", b""),
    "comments.xyz": lambda t: _w(t, "comments.xyz", "# no points\n"),
    "empty.ply": lambda t: _w(t, "empty.ply", b""),
    "trunc.ply": lambda t: _w(t, "trunc.ply", (lambda p: p.read_bytes()[:-50])(
        (write_points(t / "full.ply", _cloud()), t / "full.ply")[1])),
    "no_xyz.ply": lambda t: _w(t, "no_xyz.ply", "ply\nformat ascii 1.0\nelement vertex 1\n"
                               "property float a\nend_header\n1\n"),
    "wrong.npy": lambda t: _npy(t, "wrong.npy", np.zeros((4, 3, 2))),
    "empty.npy": lambda t: _npy(t, "empty.npy", np.zeros((0, 3))),
    "trunc.npy": lambda t: _w(t, "trunc.npy", (lambda p: p.read_bytes()[:-16])(
        _npy(t, "full.npy", np.zeros((10, 3))))),
    "nopos.npz": lambda t: (np.savez(t / "nopos.npz", xyz=np.zeros((3, 3))), t / "nopos.npz")[1],
    "badpos.npz": lambda t: (np.savez(t / "badpos.npz", pos=np.zeros((3, 2))),
                             t / "badpos.npz")[1],
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_raises_value_error_naming_the_file(tmp_path, name):
    path = MALFORMED[name](tmp_path)
    with pytest.raises(ValueError) as info:
        read_points(path)
    assert str(path) in str(info.value)


def test_unknown_extension_missing_file_and_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"a\.abc.*\.npz.*\.xyz"):
        read_points(_w(tmp_path, "a.abc", "0 0 0\n"))
    with pytest.raises(FileNotFoundError, match="nothere.xyz"):
        read_points(tmp_path / "nothere.xyz")
    with pytest.raises(ValueError, match="NaN"):
        write_points(tmp_path / "b.xyz", torch.full((2, 3), float("nan")))
    with pytest.raises(ValueError, match=r"\[num_nodes, 3\]"):
        write_points(tmp_path / "b.xyz", torch.zeros(2, 2))
    with pytest.raises(ValueError, match="'normal' has 3 rows for 2 points"):
        write_points(tmp_path / "b.ply", Data(pos=torch.zeros(2, 3), normal=torch.zeros(3, 3)))
    with pytest.raises(ValueError, match="'columns' applies"):
        read_points(_w(tmp_path, "c.xyz", "0 0 0\n"), file_format="ply", columns=("pos",))


@pytest.mark.parametrize("ext", ["xyz", "ply", "npz"])
def test_failed_write_leaves_existing_file(tmp_path, monkeypatch, ext):
    data = _cloud()
    path = tmp_path / f"a.{ext}"
    write_points(path, data)
    before = path.read_bytes()
    import plyfile

    def broken(*args, **kwargs):
        target = args[0] if not isinstance(args[0], plyfile.PlyData) else args[1]
        with open(target, "wb") as f:
            f.write(b"partial")
        raise RuntimeError("disk full")

    if ext == "xyz":
        monkeypatch.setattr(np, "savetxt", broken)
    elif ext == "npz":
        monkeypatch.setattr(np, "savez", broken)
    else:
        monkeypatch.setattr(plyfile.PlyData, "write", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_points(path, Data(pos=data.pos * 2))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [path.name]


# issue 9: no silent wrong answers on malformed files

@pytest.mark.parametrize("ext", ["xyz", "pts", "txt"])
def test_coordinates_overflowing_the_dtype_raise(tmp_path, ext):
    path = tmp_path / f"big.{ext}"
    path.write_text("0 0 0\n1e39 0 0\n0 1 0\n")
    with pytest.raises(ValueError, match=r"1e\+39.*cannot be represented in torch\.float32"):
        read_points(path)
    assert read_points(path, dtype=torch.float64).pos[1, 0].item() == 1e39


def test_ply_and_npy_overflowing_the_dtype_raise(tmp_path):
    pos = np.array([[0, 0, 0], [1e39, 0, 0], [0, 1, 0]], dtype=np.float64)
    write_points(tmp_path / "big.ply", pos)
    np.save(tmp_path / "big.npy", pos)
    np.savez(tmp_path / "big.npz", pos=np.eye(3), normal=np.eye(3), intensity=pos[:, 0])
    for name, match in [("big.ply", "point coordinate"), ("big.npy", "point coordinate"),
                        ("big.npz", "field 'intensity'")]:
        with pytest.raises(ValueError, match=match + r".*cannot be represented"):
            read_points(tmp_path / name)
        read_points(tmp_path / name, dtype=torch.float64)


@pytest.mark.parametrize("ext", ["xyz", "pts", "txt"])
def test_text_table_cut_inside_last_number_raises(tmp_path, ext):
    path = tmp_path / f"cut.{ext}"
    path.write_text("0 0 0\n1 0 0\n0 1 0.12")  # "0.1234" cut short still parses
    with pytest.raises(ValueError, match="without a line break.*append a newline"):
        read_points(path)
    path.write_text("0 0 0\n1 0 0\n0 1 0.12\n# a comment without newline")
    assert read_points(path).pos.shape == (3, 3)


def test_ply_header_counts_are_checked(tmp_path):
    path = tmp_path / "huge.ply"
    path.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 2000000000\n"
                     b"property float x\nproperty float y\nproperty float z\nend_header\n"
                     + np.zeros(9, np.float32).tobytes())
    with pytest.raises(ValueError, match="declares 2000000000 'vertex' elements.*only 36"):
        read_points(path)
