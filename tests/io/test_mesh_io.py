import os
import os.path as osp

import numpy as np
import pytest
import torch
import trimesh
from torch_geometric.data import Data

import gdl_pyg.io.mesh as mesh_module
from gdl_pyg.io import MeshReport, clean_mesh, mesh_report, read_mesh, write_mesh

# (extension, binary): every format write_mesh / read_mesh support
FORMATS = [("off", False), ("obj", False), ("ply", True), ("ply", False), ("stl", True),
           ("stl", False), ("vtk", True), ("vtk", False), ("vtu", True), ("msh", True),
           ("msh", False), ("mesh", False), ("inp", False)]


def _torus(seed=0):
    m = trimesh.creation.torus(major_radius=1.0, minor_radius=0.3, major_sections=20,
                               minor_sections=8)
    g = torch.Generator().manual_seed(seed)
    # perturb so that coordinates are "ugly" float32 values, not round decimals
    pos = torch.tensor(m.vertices, dtype=torch.float32)
    pos = pos + 1e-3 * torch.randn(pos.shape, generator=g)
    return pos, torch.tensor(m.faces.T.copy())


@pytest.mark.parametrize("ext,binary", FORMATS)
def test_round_trip(tmp_path, ext, binary):
    pos, face = _torus()
    path = tmp_path / f"torus.{ext}"
    write_mesh(path, Data(pos=pos, face=face), binary=binary)
    data, report = read_mesh(path, return_report=True)
    assert data.pos.dtype == torch.float32 and data.face.dtype == torch.long
    assert data.face.shape == face.shape
    if ext == "stl":  # a triangle soup: the triangles survive, vertices re-merged
        assert torch.equal(data.pos[data.face], pos[face])
        assert data.num_nodes == pos.size(0)
    else:
        assert torch.equal(data.pos, pos)
        assert torch.equal(data.face, face)
    assert report.is_clean and report.is_manifold and report.num_boundary_edges == 0
    assert report.num_vertices == pos.size(0) and report.num_faces == face.size(1)
    if ext == "ply":
        header = path.read_bytes()[:200]
        assert (b"binary_little_endian" in header) == binary
        assert (b"format ascii" in header) == (not binary)


def test_round_trip_float64_and_pos_face_arguments(tmp_path):
    pos, face = _torus()
    pos64 = pos.double() + 1e-12
    write_mesh(tmp_path / "a.ply", pos64, face)
    out = read_mesh(tmp_path / "a.ply", dtype=torch.float64)
    assert torch.equal(out.pos, pos64) and torch.equal(out.face, face)
    write_mesh(tmp_path / "b.obj", pos.numpy(), face.numpy())
    assert torch.equal(read_mesh(tmp_path / "b.obj").pos, pos)


def test_ply_vertex_attributes(tmp_path):
    pos, face = _torus()
    n = pos.size(0)
    g = torch.Generator().manual_seed(1)
    normal = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1)
    color = torch.randint(0, 256, (n, 3), generator=g).to(torch.uint8)
    part = torch.randint(0, 4, (n,), generator=g)
    quality = torch.rand(n, generator=g)
    data = Data(pos=pos, face=face, normal=normal, color=color, part=part, quality=quality)
    for binary in (True, False):
        write_mesh(tmp_path / "a.ply", data, vertex_attrs=("part", "quality"), binary=binary)
        out = read_mesh(tmp_path / "a.ply")
        assert torch.equal(out.normal, normal) and torch.equal(out.color, color)
        assert out.part.dtype == torch.long and torch.equal(out.part, part)
        assert torch.equal(out.quality, quality)
    with pytest.raises(ValueError, match="only be stored in PLY"):
        write_mesh(tmp_path / "a.off", data, vertex_attrs=("part",))
    with pytest.raises(ValueError, match="'missing' is not in the data"):
        write_mesh(tmp_path / "a.ply", data, vertex_attrs=("missing",))


CUBE_V = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1), (1, 1, 1),
          (0, 1, 1)]
CUBE_Q = [(0, 3, 2, 1), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7)]


def _cube_text(ext):
    if ext == "off":
        return "OFF\n# a cube of quads\n8 6 0\n" + "".join(f"{x} {y} {z}\n" for x, y, z in
                                                         CUBE_V) + \
            "".join(f"4 {a} {b} {c} {d}\n" for a, b, c, d in CUBE_Q)
    if ext == "obj":
        return "".join(f"v {x} {y} {z}\n" for x, y, z in CUBE_V) + \
            "".join(f"f {a + 1} {b + 1} {c + 1} {d + 1}\n" for a, b, c, d in CUBE_Q)
    return ("ply\nformat ascii 1.0\nelement vertex 8\nproperty float x\nproperty float y\n"
            "property float z\nelement face 6\nproperty list uchar int vertex_indices\n"
            "end_header\n" + "".join(f"{x} {y} {z}\n" for x, y, z in CUBE_V)
            + "".join(f"4 {a} {b} {c} {d}\n" for a, b, c, d in CUBE_Q))


@pytest.mark.parametrize("ext", ["off", "obj", "ply"])
def test_quad_triangulation(tmp_path, ext):
    path = tmp_path / f"cube.{ext}"
    path.write_text(_cube_text(ext))
    data, report = read_mesh(path, return_report=True)
    assert data.face.shape == (3, 12)
    assert report.num_polygons_triangulated == 6
    # fan from the first corner, file order: (a, b, c), (a, c, d) per quad
    expected = torch.tensor([t for a, b, c, d in CUBE_Q for t in ((a, b, c), (a, c, d))]).T
    assert torch.equal(data.face, expected)
    assert report.is_manifold and report.num_boundary_edges == 0 and report.is_clean
    # same surface as trimesh's own loader: total area and (outward) volume
    ours = trimesh.Trimesh(data.pos.double().numpy(), data.face.T.numpy(), process=False)
    theirs = trimesh.load(str(path), process=False)
    assert ours.area == pytest.approx(theirs.area) == pytest.approx(6.0)
    assert ours.volume == pytest.approx(theirs.volume) == pytest.approx(1.0)


def test_polygon_mixed_sizes_off(tmp_path):
    # a pentagonal prism: 2 pentagons (3 triangles each) + 5 quads (2 each)
    ang = np.arange(5) * 2 * np.pi / 5
    v = [(float(np.cos(a)), float(np.sin(a)), z) for z in (0.0, 1.0) for a in ang]
    faces = [(4, 3, 2, 1, 0), (5, 6, 7, 8, 9)] + [(i, (i + 1) % 5, (i + 1) % 5 + 5, i + 5)
                                                  for i in range(5)]
    text = f"OFF\n{len(v)} {len(faces)} 0\n" + "".join(f"{x!r} {y!r} {z!r}\n" for x, y, z in v)
    text += "".join(f"{len(f)} " + " ".join(map(str, f)) + "\n" for f in faces)
    (tmp_path / "prism.off").write_text(text)
    data, report = read_mesh(tmp_path / "prism.off", return_report=True)
    assert data.face.size(1) == 2 * 3 + 5 * 2 == report.num_faces
    assert report.num_polygons_triangulated == 7 and report.is_manifold
    assert torch.equal(data.face[:, :3].T, torch.tensor([[4, 3, 2], [4, 2, 1], [4, 1, 0]]))
    # (trimesh 5.2's own OFF loader fails on faces with more than 4 corners, so compare
    # with the exact geometry instead)
    ours = trimesh.Trimesh(data.pos.double().numpy(), data.face.T.numpy(), process=False)
    pentagon = 2.5 * np.sin(2 * np.pi / 5)
    side = 2 * np.sin(np.pi / 5)
    assert ours.area == pytest.approx(2 * pentagon + 5 * side, rel=1e-6)
    assert ours.volume == pytest.approx(pentagon, rel=1e-6)


def _dirty_mesh():
    r"""An icosphere with known defects appended; cleaning must give it back."""
    ico = trimesh.creation.icosphere(1)
    pos = np.asarray(ico.vertices, dtype=np.float32).astype(np.float64)
    face = np.asarray(ico.faces, dtype=np.int64).copy()
    n = pos.shape[0]
    # 3 duplicate vertices (copies of 0, 1, 2); faces using 0 / 1 are redirected to them
    dup = pos[[0, 1, 2]]
    face_d = face.copy()
    uses0 = np.nonzero((face == 0).any(axis=1))[0][0]
    uses1 = np.nonzero((face == 1).any(axis=1) & ~(face == 0).any(axis=1))[0][0]
    face_d[uses0][face_d[uses0] == 0] = n
    face_d[uses1][face_d[uses1] == 1] = n + 1
    # 2 unreferenced vertices, 1 collinear (midpoint of 0 and 5) used by a degenerate face
    extra = np.array([[5.0, 5.0, 5.0], [-5.0, 5.0, 5.0]])
    mid = (pos[0] + pos[5]) / 2
    all_pos = np.concatenate([pos, dup, extra, mid[None]])
    i_mid = all_pos.shape[0] - 1
    degenerate = np.array([[0, 0, 7], [0, i_mid, 5], [1, n + 1, 9]])  # repeated, flat, merged
    duplicates = np.array([face[10], face[11][::-1]])  # same face, and reversed orientation
    all_face = np.concatenate([face_d, degenerate, duplicates])
    expected = dict(num_duplicate_vertices=3, num_unreferenced_vertices=3,
                    num_degenerate_faces=3, num_duplicate_faces=2,
                    num_polygons_triangulated=0, non_manifold_edges=0)
    # unreferenced: the 2 far points and the unused copy of vertex 2
    return ico, all_pos, all_face, expected


def test_clean_report_counts(tmp_path):
    ico, pos, face, expected = _dirty_mesh()
    path = tmp_path / "dirty.ply"
    write_mesh(path, torch.from_numpy(pos), torch.from_numpy(face.T.copy()))
    data, report = read_mesh(path, return_report=True)
    assert isinstance(report, MeshReport)
    for key, value in expected.items():
        assert getattr(report, key) == value, key
    assert not report.is_clean
    assert data.num_nodes == pos.shape[0] and data.face.size(1) == face.shape[0]
    cleaned, report2 = read_mesh(path, clean=True, return_report=True)
    assert report2 == report  # the report describes the file, not the output
    assert torch.equal(cleaned.pos, torch.tensor(ico.vertices, dtype=torch.float32))
    assert torch.equal(cleaned.face, torch.tensor(ico.faces.T.copy()))
    assert mesh_report(cleaned.pos, cleaned.face).is_clean
    # the tensor-level functions agree
    assert mesh_report(torch.from_numpy(pos), torch.from_numpy(face.T.copy())) == report
    p, f, r = clean_mesh(torch.from_numpy(pos), torch.from_numpy(face.T.copy()))
    assert r == report and torch.equal(p.float(), cleaned.pos) and torch.equal(f, cleaned.face)


def test_non_manifold(tmp_path):
    pos, face = _torus()
    # a fin: a third triangle on the edge (a, b) of face 0
    a, b = face[0, 0].item(), face[1, 0].item()
    pos2 = torch.cat([pos, torch.tensor([[0.0, 0.0, 3.0]])])
    face2 = torch.cat([face, torch.tensor([[a], [b], [pos.size(0)]])], dim=1)
    path = tmp_path / "fin.off"
    write_mesh(path, pos2, face2)
    _, report = read_mesh(path, return_report=True)
    assert report.non_manifold_edges == 1 and not report.is_manifold
    assert report.num_boundary_edges == 2
    with pytest.raises(ValueError, match=r"fin\.off.*not manifold"):
        read_mesh(path, require_manifold=True)


def _dem_mesh(step=8):
    r"""A terrain mesh from real elevation data shipped with matplotlib
    (the Jacksboro fault DEM), triangulated as a grid."""
    from matplotlib import cbook
    dem = cbook.get_sample_data("jacksboro_fault_dem.npz")
    z = (dem if hasattr(dem, "files") else np.load(dem))["elevation"]
    z = np.asarray(z[::step, ::step], dtype=np.float64)
    h, w = z.shape
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64),
                         indexing="ij")
    v = np.stack([xx.ravel() * 10.0, yy.ravel() * 10.0, z.ravel()], axis=1)
    idx = np.arange(h * w).reshape(h, w)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]
    f = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3),
                        np.stack([a, c, d], -1).reshape(-1, 3)])
    return trimesh.Trimesh(v, f, process=False)


# meshes no one here made: no mesh files ship in the installed wheels (trimesh, meshio,
# matplotlib, scipy were searched), so: real terrain data + trimesh's own primitives,
# exported with trimesh's own exporters
REAL = {
    "dem": _dem_mesh,
    "icosphere": lambda: trimesh.creation.icosphere(3),
    "capsule": lambda: trimesh.creation.capsule(height=1.0, radius=0.4, count=[16, 16]),
    "torus": lambda: trimesh.creation.torus(1.0, 0.3),
    "annulus": lambda: trimesh.creation.annulus(0.5, 1.0, 0.3),
}


@pytest.mark.parametrize("name", sorted(REAL))
@pytest.mark.parametrize("ext", ["off", "obj", "ply", "stl"])
def test_counts_agree_with_trimesh(tmp_path, name, ext):
    path = tmp_path / f"{name}.{ext}"
    REAL[name]().export(str(path))  # trimesh's exporter
    ours, report = read_mesh(path, return_report=True)
    theirs = trimesh.load(str(path), process=False, force="mesh")
    assert ours.face.size(1) == len(theirs.faces)
    if ext == "stl":  # trimesh keeps the unmerged soup; we merge equal corners
        assert len(theirs.vertices) == 3 * len(theirs.faces)
        assert ours.num_nodes == np.unique(theirs.vertices, axis=0).shape[0]
        assert np.array_equal(ours.pos[ours.face.T].numpy().astype(np.float32),
                              theirs.vertices[theirs.faces].astype(np.float32))
    else:
        assert ours.num_nodes == len(theirs.vertices)
        assert np.array_equal(ours.pos.numpy(), theirs.vertices.astype(np.float32))
        assert np.array_equal(ours.face.T.numpy(), theirs.faces)
    assert report.is_manifold


def _write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _truncated(tmp_path, name, binary, frac=0.8):
    pos, face = _torus()
    full = tmp_path / f"full_{name}"
    write_mesh(full, pos, face, binary=binary)
    data = full.read_bytes()
    return _write(tmp_path, name, data[:int(len(data) * frac)])


TRI_OFF = "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n"

MALFORMED = {
    "trunc_faces.off": lambda t: _truncated(t, "trunc_faces.off", False),
    "trunc_bin.ply": lambda t: _truncated(t, "trunc_bin.ply", True),
    "trunc_ascii.ply": lambda t: _truncated(t, "trunc_ascii.ply", False, 0.3),
    "trunc_bin.stl": lambda t: _truncated(t, "trunc_bin.stl", True),
    "trunc_ascii.stl": lambda t: _truncated(t, "trunc_ascii.stl", False),
    # OBJ has no counts: a cut is only detectable inside a face line ("f a b")
    "trunc.obj": lambda t: _write(t, "trunc.obj", (lambda b: b[:b.rstrip().rindex(b" ")])(
        _truncated(t, "full.obj", False, 1.0).read_bytes())),
    "trunc.vtk": lambda t: _truncated(t, "trunc.vtk", True),
    "trunc.msh": lambda t: _truncated(t, "trunc.msh", True),
    "count_vertices.off": lambda t: _write(t, "count_vertices.off",
                                           TRI_OFF.replace("3 1 0", "4 1 0")),
    "count_faces.off": lambda t: _write(t, "count_faces.off", TRI_OFF.replace("3 1 0", "3 2 0")),
    "oob.off": lambda t: _write(t, "oob.off", TRI_OFF.replace("3 0 1 2", "3 0 1 3")),
    "negative.off": lambda t: _write(t, "negative.off", TRI_OFF.replace("3 0 1 2", "3 0 -1 2")),
    "oob.obj": lambda t: _write(t, "oob.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n"),
    "zero_index.obj": lambda t: _write(t, "zero_index.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n"),
    "two_corners.obj": lambda t: _write(t, "two_corners.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n"),
    "oob.ply": lambda t: _write(t, "oob.ply", _cube_text("ply").replace("4 0 3 2 1", "4 0 3 2 8")),
    "nan.off": lambda t: _write(t, "nan.off", TRI_OFF.replace("1 0 0", "nan 0 0")),
    "inf.obj": lambda t: _write(t, "inf.obj", "v 0 0 0\nv inf 0 0\nv 0 1 0\nf 1 2 3\n"),
    "nan.ply": lambda t: _write(t, "nan.ply",
                                _cube_text("ply").replace("\n1 1 0\n", "\nnan 1 0\n")),
    "empty.off": lambda t: _write(t, "empty.off", b""),
    "empty.ply": lambda t: _write(t, "empty.ply", b""),
    "empty.stl": lambda t: _write(t, "empty.stl", b""),
    "empty_mesh.off": lambda t: _write(t, "empty_mesh.off", "OFF\n0 0 0\n"),
    "no_faces.off": lambda t: _write(t, "no_faces.off", "OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n"),
    "comments_only.obj": lambda t: _write(t, "comments_only.obj", "# nothing here\n"),
    "points_only.ply": lambda t: _write(t, "points_only.ply", _cube_text("ply").replace(
        "element face 6", "element face 0").split("4 0 3 2 1")[0]),
    "not_a_mesh.vtu": lambda t: _write(t, "not_a_mesh.vtu", "<VTKFile> broken"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_raises_value_error_naming_the_file(tmp_path, name):
    path = MALFORMED[name](tmp_path)
    with pytest.raises(ValueError) as info:
        read_mesh(path)
    assert str(path) in str(info.value) or name in str(info.value)


def test_unknown_extension_and_missing_file(tmp_path):
    path = _write(tmp_path, "mesh.xyzw", TRI_OFF)
    with pytest.raises(ValueError, match=r"mesh\.xyzw.*\.off.*\.ply.*\.stl"):
        read_mesh(path)
    assert read_mesh(path, file_format="off").face.shape == (3, 1)
    with pytest.raises(FileNotFoundError, match="missing.off"):
        read_mesh(tmp_path / "missing.off")
    with pytest.raises(ValueError, match="unsupported"):
        write_mesh(tmp_path / "a.abc", torch.zeros(3, 3), torch.tensor([[0], [1], [2]]))


def test_write_validation(tmp_path):
    pos, face = _torus()
    bad = face.clone()
    bad[0, 0] = pos.size(0)
    with pytest.raises(ValueError, match="face indices"):
        write_mesh(tmp_path / "a.off", pos, bad)
    with pytest.raises(ValueError, match=r"shape \[3, num_faces\]"):
        write_mesh(tmp_path / "a.off", pos, face.T)
    with pytest.raises(ValueError, match="NaN"):
        write_mesh(tmp_path / "a.off", pos * float("nan"), face)
    with pytest.raises(ValueError, match=r"\[num_nodes, 3\]"):
        write_mesh(tmp_path / "a.off", pos[:, :2], face)
    with pytest.raises(ValueError, match="needs faces"):
        write_mesh(tmp_path / "a.off", Data(pos=pos))
    with pytest.raises(TypeError, match="integer 'face'"):
        write_mesh(tmp_path / "a.off", pos, face.float())
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("ext,target", [("ply", "_write_ply"), ("stl", "_write_stl"),
                                        ("off", "_write_meshio")])
def test_failed_write_leaves_existing_file(tmp_path, monkeypatch, ext, target):
    pos, face = _torus()
    path = tmp_path / f"mesh.{ext}"
    write_mesh(path, pos, face)
    before = path.read_bytes()
    real = getattr(mesh_module, target)

    def broken(tmp, *args, **kwargs):
        real(tmp, *args, **kwargs)  # the temporary file is fully written ...
        with open(tmp, "r+b") as f:  # ... then half of it is clobbered and the writer dies
            f.truncate(os.path.getsize(tmp) // 2)
        raise RuntimeError("disk full")

    monkeypatch.setattr(mesh_module, target, broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_mesh(path, pos * 2, face)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [path.name]  # no temporary file left behind
    monkeypatch.undo()
    write_mesh(path, pos * 2, face)
    assert torch.equal(read_mesh(path).pos if ext != "stl" else read_mesh(path).pos.sort(0)[0],
                       (pos * 2) if ext != "stl" else (pos * 2).sort(0)[0])


def test_report_repr_and_dict():
    r = MeshReport(1, 2, 3, 4, 5, 6)
    assert "num_duplicate_vertices=1" in repr(r)
    assert r.to_dict()["non_manifold_edges"] == 6 and not r.is_clean and not r.is_manifold
    assert osp.basename(mesh_module.__file__) == "mesh.py"


# ---------------------------------------------------------------------------
# OBJ as users have them, real files made by others, orientation cleaning
# ---------------------------------------------------------------------------

DATA = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), "data")
REAL_FILES = ["pybullet/bunny.obj", "pybullet/cloth_z_up.obj", "pybullet/convex_009.obj",
              "pybullet/cube.obj", "pybullet/domino.obj", "pybullet/duck_vhacd.obj",
              "pyvista/ant.ply", "pyvista/sphere.ply", "pybullet/finger_tip_left.stl"]


def _data(name):
    return osp.join(DATA, *name.split("/"))


def _v_lines(path):
    with open(path, "rb") as f:
        return [ln.split()[1:4] for ln in f.read().decode().splitlines() if ln.startswith("v ")]


def test_obj_statements(tmp_path):
    # every kind of statement trimesh reads, plus relative indices declared between
    # vertex blocks, a continued line, CRLF ends and an unreferenced vertex
    text = "\r\n".join([
        "# a comment", "mtllib missing.mtl", "o first", "g side", "s 1",
        "v 0 0 0", "v 1 0 0", "v 1 1 0 1.0", "v 0 1 0 0.5 0.5 0.5",  # w, colour
        "vt 0 0", "vt 1 0", "vt 1 1", "vt 0 1", "vt 0.5 0.5",  # 5 uvs for 4 vertices
        "vn 0 0 1",
        "usemtl red",
        "f 1/1/1 2/2/1 3/3/1",
        "f 1//1 3//1 4//1  # trailing comment",
        "v 5 5 5",  # unreferenced
        "g top", "usemtl blue", "s off",
        "v 0 0 1", "v 1 0 1", "v 1 1 1", "v 0.5 1.5 1", "v 0 1 1",
        "f -5/1 -4/2 -3/3 \\", "  -2/4 -1/5",  # a pentagon, relative, continued
        "l 1 2", "p 3",
        "f 6 8 2",
    ]) + "\r\n"
    path = _write(tmp_path, "statements.obj", text)
    data, report = read_mesh(path, return_report=True)
    coords = [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [5, 5, 5], [0, 0, 1], [1, 0, 1],
              [1, 1, 1], [0.5, 1.5, 1], [0, 1, 1]]
    assert data.pos.tolist() == coords  # one row per 'v' line, file order, none dropped
    expected = [[0, 1, 2], [0, 2, 3], [5, 6, 7], [5, 7, 8], [5, 8, 9], [5, 7, 1]]
    assert data.face.T.tolist() == expected
    assert report.num_polygons_triangulated == 1 and report.num_unreferenced_vertices == 1
    assert report.num_vertices == 10 and report.num_faces == 6
    # trimesh (5.2) cannot parse a face line with a trailing comment; without it, it
    # finds the same triangles (as corner positions)
    path2 = _write(tmp_path, "statements2.obj", text.replace("  # trailing comment", ""))
    assert torch.equal(read_mesh(path2).face, data.face)
    theirs = trimesh.load(str(path2), process=False, maintain_order=True, force="mesh")
    assert len(theirs.faces) == 6
    ours = {tuple(map(tuple, t)) for t in data.pos[data.face.T].tolist()}
    assert {tuple(map(tuple, t)) for t in theirs.vertices[theirs.faces].tolist()} <= ours


@pytest.mark.parametrize("name", [f for f in REAL_FILES if f.endswith(".obj")])
def test_real_obj_against_trimesh(name):
    path = _data(name)
    ours, report = read_mesh(path, return_report=True, dtype=torch.float64)
    # one vertex per 'v' line, in file order
    v = np.array(_v_lines(path), dtype=np.float64)
    assert ours.num_nodes == report.num_vertices == v.shape[0]
    assert np.array_equal(ours.pos.numpy(), v)
    # trimesh with maintain_order keeps the file's indexing on these files: identical
    theirs = trimesh.load(path, process=False, maintain_order=True, force="mesh")
    assert np.array_equal(ours.pos.numpy(), theirs.vertices)
    assert np.array_equal(ours.face.T.numpy(), theirs.faces)
    # trimesh's default splits vertices along uv / normal seams, but the triangles
    # (as corner positions, in order) are the same
    split = trimesh.load(path, process=False, force="mesh")
    assert np.array_equal(ours.pos.numpy()[ours.face.T.numpy()],
                          split.vertices[split.faces])
    if name.endswith(("cube.obj", "domino.obj")):
        assert len(split.vertices) > ours.num_nodes  # the seams trimesh splits


@pytest.mark.parametrize("name", [f for f in REAL_FILES if not f.endswith(".obj")])
def test_real_ply_stl_against_trimesh(name):
    path = _data(name)
    ours = read_mesh(path, dtype=torch.float64)
    theirs = trimesh.load(path, process=False, force="mesh")
    assert np.array_equal(ours.pos.numpy()[ours.face.T.numpy()],
                          theirs.vertices[theirs.faces])
    if name.endswith(".ply"):
        assert np.array_equal(ours.pos.numpy(), theirs.vertices)
        assert np.array_equal(ours.face.T.numpy(), theirs.faces)


@pytest.mark.parametrize("name", REAL_FILES)
def test_real_clean_then_mesh_to_data(name):
    from gdl_pyg.domains import mesh_to_data
    data, report = read_mesh(_data(name), clean=True, return_report=True,
                             dtype=torch.float64)
    assert report.is_manifold and report.is_oriented
    out = mesh_to_data(data.pos, data.face)
    assert out.mass.sum() > 0 and out.edge_logmap.shape == (out.edge_index.size(1), 2)


def _flip(face, mask):
    face = face.clone()
    face[:, mask] = face[:, mask].flip(0)
    return face


def test_clean_fixes_flipped_faces_of_a_real_mesh(tmp_path):
    from gdl_pyg.domains import mesh_to_data
    ref = read_mesh(_data("pybullet/bunny.obj"), dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(ref.face.size(1), generator=g) < 0.3
    flipped = _flip(ref.face, mask)
    path = tmp_path / "flipped.obj"
    write_mesh(path, ref.pos, flipped)
    raw, report = read_mesh(path, return_report=True, dtype=torch.float64)
    assert torch.equal(raw.face, flipped)  # reading alone changes nothing
    assert report.inconsistent_winding == int(mask.sum()) and not report.is_clean
    assert not report.is_oriented and report.num_non_orientable_edges == 0
    with pytest.raises(ValueError, match="orient"):
        mesh_to_data(raw.pos, raw.face)
    fixed = read_mesh(path, clean=True, dtype=torch.float64)
    assert torch.equal(fixed.pos, ref.pos) and torch.equal(fixed.face, ref.face)
    assert mesh_report(fixed.pos, fixed.face).is_clean
    mesh_to_data(fixed.pos, fixed.face)
    # the same as trimesh's repair (fix_normals: consistent winding, then outward)
    tm = trimesh.Trimesh(ref.pos.numpy(), flipped.T.numpy(), process=False)
    trimesh.repair.fix_normals(tm)
    assert np.allclose(tm.face_normals, trimesh.Trimesh(
        fixed.pos.numpy(), fixed.face.T.numpy(), process=False).face_normals)


def test_clean_turns_inverted_closed_components_outwards():
    ref = read_mesh(_data("pybullet/duck_vhacd.obj"), dtype=torch.float64)
    # five closed hulls; turn the second and fourth inside out
    comp = torch.from_numpy(trimesh.graph.connected_component_labels(
        trimesh.Trimesh(ref.pos.numpy(), ref.face.T.numpy(), process=False).face_adjacency,
        node_count=ref.face.size(1)))
    assert int(comp.max()) + 1 == 5
    mask = (comp == 1) | (comp == 3)
    inverted = _flip(ref.face, mask)
    report = mesh_report(ref.pos, inverted)
    assert report.num_inverted_components == 2 and report.inconsistent_winding == 0
    pos, face, _ = clean_mesh(ref.pos, inverted)
    assert torch.equal(pos, ref.pos) and torch.equal(face, ref.face)
    vol = trimesh.Trimesh(pos.numpy(), face.T.numpy(), process=False).volume
    assert vol > 0


def test_clean_drops_unreferenced_vertices_of_a_real_mesh(tmp_path):
    from gdl_pyg.domains import mesh_to_data
    src = _data("pybullet/cube.obj")
    with open(src, "rb") as f:
        text = f.read().decode()
    # two stray vertices, one before the real ones (so every position index moves by
    # one) and one between the vertices and the faces
    lines = ["v 9 9 9"]
    for ln in text.splitlines():
        if ln.startswith("f "):
            if "v 7 7 7" not in lines:
                lines.append("v 7 7 7")
            corners = [c.split("/", 1) for c in ln.split()[1:]]
            ln = "f " + " ".join("/".join([str(int(c[0]) + 1)] + c[1:]) for c in corners)
        lines.append(ln)
    path = _write(tmp_path, "stray.obj", "\n".join(lines) + "\n")
    raw, report = read_mesh(path, return_report=True)
    assert raw.num_nodes == 10 and report.num_unreferenced_vertices == 2
    with pytest.raises(ValueError, match="no face"):
        mesh_to_data(raw.pos.double(), raw.face)
    clean = read_mesh(path, clean=True)
    ref = read_mesh(src)
    assert torch.equal(clean.pos, ref.pos) and torch.equal(clean.face, ref.face)


def test_report_detects_what_it_should_and_only_that():
    # a checker that fails on broken input: consistent meshes report nothing, each
    # defect is counted by exactly its own field
    ref = read_mesh(_data("pyvista/sphere.ply"), dtype=torch.float64)
    assert mesh_report(ref.pos, ref.face).is_oriented
    one = _flip(ref.face, torch.arange(ref.face.size(1)) == 7)
    r = mesh_report(ref.pos, one)
    assert (r.inconsistent_winding, r.num_inverted_components) == (1, 0)
    r = mesh_report(ref.pos, ref.face.flip(0))
    assert (r.inconsistent_winding, r.num_inverted_components) == (0, 1)
    assert "1 inward-facing closed component(s)" in r.problems()


def test_non_manifold_vertex_and_non_orientable(tmp_path):
    # a bow-tie: two triangles sharing one vertex only
    pos = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]])
    face = torch.tensor([[0, 1, 2], [0, 3, 4]]).T
    path = tmp_path / "bowtie.off"
    write_mesh(path, pos, face)
    _, report = read_mesh(path, return_report=True)
    assert report.non_manifold_vertices == 1 and report.non_manifold_edges == 0
    assert not report.is_manifold
    with pytest.raises(ValueError, match=r"bowtie\.off.*1 vertex\(es\).*bow-ties"):
        read_mesh(path, require_manifold=True)
    # a Moebius strip cannot be oriented: reported, and cleaning leaves it so
    n = 12
    t = np.arange(n) * 2 * np.pi / n
    v = np.concatenate([np.stack([(1 + u * np.cos(t / 2)) * np.cos(t),
                                  (1 + u * np.cos(t / 2)) * np.sin(t),
                                  u * np.sin(t / 2)], 1) for u in (-0.3, 0.3)])
    f = []
    for i in range(n):
        j = (i + 1) % n
        a, b = i, i + n
        c, d = (j, j + n) if j else (n, 0)  # the half twist swaps the sides
        f += [[a, c, d], [a, d, b]]
    r = mesh_report(torch.from_numpy(v), torch.tensor(f).T)
    assert r.num_non_orientable_edges > 0 and not r.is_oriented and r.is_manifold
    assert r.num_inverted_components == 0  # an open, non-orientable component: untouched


def test_obj_errors_name_file_and_line(tmp_path):
    cases = {
        "before_first.obj": ("v 0 0 0\nv 1 0 0\nf 1 2 -3\nv 0 1 0\n", r"line 3.*-3.*before"),
        "continued_eof.obj": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 \\\n", "continued line"),
        "bad_index.obj": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 x/1\n", r"line 4.*'x/1'"),
        "short_v.obj": ("v 0 0 0\nv 1 0\nv 0 1 0\nf 1 2 3\n", r"line 2.*3 coordinates"),
        "word_v.obj": ("v 0 0 0\nv 1 a 0\nv 0 1 0\nf 1 2 3\n", "line 2.*not numbers"),
        "zero.obj": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", "index 0"),
    }
    for name, (text, pattern) in cases.items():
        path = _write(tmp_path, name, text)
        with pytest.raises(ValueError, match=pattern) as info:
            read_mesh(path)
        assert name in str(info.value)
    with pytest.raises(ValueError, match=r"nan_168\.obj.*NaN"):
        read_mesh(_data("pybullet/nan_168.obj"))


def test_obj_large_is_fast(tmp_path):
    import time
    m = trimesh.creation.icosphere(6)  # 81920 triangles
    face = torch.tensor(m.faces.T.copy())
    g = torch.Generator().manual_seed(0)
    flipped = _flip(face, torch.rand(face.size(1), generator=g) < 0.2)
    path = tmp_path / "big.obj"
    write_mesh(path, torch.tensor(m.vertices, dtype=torch.float32), flipped)
    t0 = time.perf_counter()
    data = read_mesh(path, clean=True)
    elapsed = time.perf_counter() - t0
    assert torch.equal(data.face, face)
    assert elapsed < 10.0, elapsed  # about 1 s on one core of the project's machine


# ---------------------------------------------------------------------------
# issue 9: no silent wrong answers on malformed files
# ---------------------------------------------------------------------------

_TET_POS = "0 0 0\n1 0 0\n0 1 0\n0 0 1\n"


@pytest.mark.parametrize("ext,text", [
    ("off", "OFF\n4 4 0\n0 0 0\n1e39 0 0\n0 1 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 1 2 3\n3 0 3 2\n"),
    ("obj", "v 0 0 0\nv 1e39 0 0\nv 0 1 0\nv 0 0 1\nf 1 3 2\nf 1 2 4\nf 2 3 4\nf 1 4 3\n"),
    ("ply", "ply\nformat ascii 1.0\nelement vertex 4\nproperty double x\nproperty double y\n"
            "property double z\nelement face 4\nproperty list uchar int vertex_indices\n"
            "end_header\n0 0 0\n1e39 0 0\n0 1 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 1 2 3\n3 0 3 2\n"),
    ("stl", "solid s\nfacet normal 0 0 0\nouter loop\nvertex 0 0 0\nvertex 1e39 0 0\n"
            "vertex 0 1 0\nendloop\nendfacet\nendsolid s\n"),
])
def test_coordinates_overflowing_the_dtype_raise(tmp_path, ext, text):
    # 1e39 is finite in float64 but inf in float32: checked after the cast
    path = tmp_path / f"big.{ext}"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"1e\+39.*cannot be represented in torch\.float32"
                                         r".*dtype=torch\.float64"):
        read_mesh(path)
    data = read_mesh(path, dtype=torch.float64)
    assert data.pos.dtype == torch.float64 and data.pos.max().item() == 1e39
    with pytest.raises(ValueError, match="torch.float16"):  # 1e39 > 65504 as well
        read_mesh(path, dtype=torch.float16)


def test_ply_attribute_overflowing_the_dtype_raises(tmp_path):
    path = tmp_path / "attr.ply"
    path.write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\n"
                    "property float y\nproperty float z\nproperty double quality\n"
                    "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
                    "0 0 0 1\n1 0 0 1e300\n0 1 0 1\n3 0 1 2\n")
    with pytest.raises(ValueError, match="vertex attribute 'quality'.*float64"):
        read_mesh(path)
    assert read_mesh(path, dtype=torch.float64).quality[1].item() == 1e300


def _grid_obj(n=32):
    # an n x n grid: more than 967 vertices, so a cut index stays in range
    lines = [f"v {i % n} {i // n} 0" for i in range(n * n)]
    for i in range(n - 1):
        for j in range(n - 1):
            a = i * n + j + 1
            lines.append(f"f {a} {a + 1} {a + n}")
            lines.append(f"f {a + 1} {a + n + 1} {a + n}")
    lines[-1] = lines[-1].rsplit(" ", 1)[0] + " 967"  # valid, and cut to 96 below
    return "\n".join(lines) + "\n"


def test_truncated_obj_inside_last_index_raises(tmp_path):
    text = _grid_obj()
    full = tmp_path / "full.obj"
    full.write_text(text)
    assert read_mesh(full).face[:, -1].tolist()[-1] == 966
    cut = tmp_path / "cut.obj"
    cut.write_text(text[:-2])  # "... 967\n" -> "... 96": a valid index, a different mesh
    with pytest.raises(ValueError, match=r"cut\.obj.*without a line break.*f .* 96.*"
                                         r"truncated.*append a newline"):
        read_mesh(cut)
    cut_v = tmp_path / "cut_v.obj"
    cut_v.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\nv 0.5 0.5 0.12")
    with pytest.raises(ValueError, match="without a line break"):
        read_mesh(cut_v)


def test_obj_without_final_newline_after_other_statements_is_read(tmp_path):
    # only a final 'v' / 'f' line can be cut into a different mesh
    for tail in ("# done", "vn 0 0 1", "s off", "usemtl red"):
        path = tmp_path / "ok.obj"
        path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n" + tail)
        data = read_mesh(path)
        assert data.face.tolist() == [[0], [1], [2]]


@pytest.mark.parametrize("face,match", [
    ("f 1/1 2 3", r"mixes corner forms \('v/vt' and 'v'"),
    ("f 1//1 2//1 3/1/1", r"mixes corner forms \('v//vn' and 'v/vt/vn'"),
    ("f 1/1/ 2/1/ 3/1/", "malformed OBJ face corner '1/1/'"),
    ("f 1/ 2/ 3/", "malformed OBJ face corner '1/'"),
    ("f 1/2/3/4 2 3", "malformed OBJ face corner"),
    ("f 1 2", "face 0 has 2 corner"),
])
def test_obj_malformed_face_lines_raise(tmp_path, face, match):
    path = tmp_path / "bad.obj"
    path.write_text(f"v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvn 0 0 1\n{face}\n")
    with pytest.raises(ValueError, match=r"bad\.obj' line 6: .*" + match):
        read_mesh(path)


def test_obj_consistent_corner_forms_are_read(tmp_path):
    path = tmp_path / "ok.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nvt 0 0\nvn 0 0 1\n"
                    "f 1/1/1 2/1/1 3/1/1\nf 2//1 4//1 3//1\nf 1/1 2/1 4/1\n")
    assert read_mesh(path).face.T.tolist() == [[0, 1, 2], [1, 3, 2], [0, 1, 3]]


@pytest.mark.parametrize("ext,text", [
    ("off", "OFF\n4 1 0\n" + _TET_POS + "3 0 1 3"),
    ("ply", "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
            "property float z\nelement face 1\nproperty list uchar int vertex_indices\n"
            "end_header\n" + _TET_POS + "3 0 1 3"),
])
def test_text_mesh_cut_inside_last_number_raises(tmp_path, ext, text):
    # "3 0 1 3" could be "3 0 1 31" cut short: same count, valid indices, other mesh
    path = tmp_path / f"cut.{ext}"
    path.write_text(text)
    with pytest.raises(ValueError, match="without a line break.*append a newline"):
        read_mesh(path)
    path.write_text(text + "\n")
    assert read_mesh(path).face.T.tolist() == [[0, 1, 3]]


def _binary_ply_header(nv, nf):
    return (f"ply\nformat binary_little_endian 1.0\nelement vertex {nv}\nproperty float x\n"
            f"property float y\nproperty float z\nelement face {nf}\n"
            f"property list uchar int vertex_indices\nend_header\n").encode()


def test_ply_header_counts_are_checked_before_allocating(tmp_path):
    body = np.eye(3, dtype=np.float32).tobytes() + b"\x03" + \
        np.arange(3, dtype=np.int32).tobytes()
    ok = tmp_path / "ok.ply"
    ok.write_bytes(_binary_ply_header(3, 1) + body)
    assert read_mesh(ok).face.T.tolist() == [[0, 1, 2]]
    # 2e9 faces in a file of 100-odd bytes: plyfile would first allocate 15 GiB
    path = tmp_path / "huge.ply"
    path.write_bytes(_binary_ply_header(3, 2_000_000_000) + body)
    with pytest.raises(ValueError, match=r"huge\.ply.*declares 2000000000 'face' elements"
                                         r".*only 49 bytes follow the header"):
        read_mesh(path)
    path.write_bytes(_binary_ply_header(2_000_000_000, 1) + body)
    with pytest.raises(ValueError, match="declares 2000000000 'vertex' elements"):
        read_mesh(path)
    ascii_path = tmp_path / "huge_ascii.ply"
    ascii_path.write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\n"
                          "property float y\nproperty float z\nelement face 2000000000\n"
                          "property list uchar int vertex_indices\nend_header\n"
                          "0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    with pytest.raises(ValueError, match="declares 2000000000 'face' elements"):
        read_mesh(ascii_path)
    with pytest.raises(ValueError, match="declares 2000000000 'face' elements"):
        from gdl_pyg.io import read_points
        read_points(ascii_path)


def test_off_header_counts_are_checked(tmp_path):
    path = tmp_path / "huge.off"
    path.write_text("OFF\n4 2000000000 0\n" + _TET_POS + "3 0 1 2\n")
    with pytest.raises(ValueError, match=r"huge\.off.*OFF header declares.*2000000000 faces"
                                         r".*bytes follow the header"):
        read_mesh(path)
    path.write_text("OFF\n2000000000 1 0\n" + _TET_POS + "3 0 1 2\n")
    with pytest.raises(ValueError, match="declares 2000000000 vertices"):
        read_mesh(path)
    path.write_text("OFF\n-4 1 0\n" + _TET_POS + "3 0 1 2\n")
    with pytest.raises(ValueError, match="negative"):
        read_mesh(path)


def test_bow_tie_rejected_with_require_manifold_regression(tmp_path, monkeypatch):
    # the check counts bow-tie vertices (MeshReport.non_manifold_vertices); without
    # that term is_manifold would accept the file
    path = tmp_path / "bowtie.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv -1 0 0\nv 0 -1 0\nf 1 2 3\nf 1 4 5\n")
    data, report = read_mesh(path, return_report=True)
    assert report.non_manifold_vertices == 1 and not report.is_manifold
    with pytest.raises(ValueError, match="bow-ties"):
        read_mesh(path, require_manifold=True)
    monkeypatch.setattr(MeshReport, "is_manifold",
                        property(lambda self: self.non_manifold_edges == 0))
    read_mesh(path, require_manifold=True)  # the broken variant lets it through
