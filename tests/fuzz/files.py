"""Seed files of every format the readers support, and seeded mutations of them.

Every seed is a small valid file. Text seeds are written here byte by byte
(so header fields sit where the mutations expect them); binary PLY / STL are
packed with :mod:`struct`; the meshio formats and NPY / NPZ come from the
library's own writers or numpy. Real files from tests/data are seeds too.

A mutation is ``(name, bytes, must_raise)``: ``must_raise`` marks inputs no
reader may accept (an empty file, a header count the file cannot hold, a
truncation of a file whose header fixes its length, an OBJ cut inside its
last index), the rest only have to obey the general contract.
"""
import io
import os
import re
import struct
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")

HUGE = b"2000000000"
BAD_COUNTS = [("huge", HUGE), ("negative", b"-7"), ("nonnumeric", b"abc"),
              ("float", b"3.5")]


def _icosahedron():
    t = (1.0 + 5 ** 0.5) / 2.0
    pos = np.array([[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
                    [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]],
                   dtype=np.float64) / np.sqrt(1 + t * t)
    face = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9],
                     [5, 11, 4], [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2],
                     [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10],
                     [8, 6, 7], [9, 8, 1]], dtype=np.int64)
    # the last face ends with a two-digit index in every text format (0- and 1-based)
    face = np.concatenate([face[face.max(1) < 10], face[face.max(1) >= 10]])
    last = face[-1]
    face[-1] = np.roll(last, 2 - int(np.argmax(last)))
    return pos.astype(np.float32), face


POS, FACE = _icosahedron()


def _f(v) -> str:
    return repr(float(v))


def off_text() -> bytes:
    lines = ["OFF", f"{len(POS)} {len(FACE)} 0"]
    lines += [" ".join(_f(c) for c in p) for p in POS]
    lines += ["3 " + " ".join(str(i) for i in f) for f in FACE]
    return ("\n".join(lines) + "\n").encode()


def obj_text() -> bytes:
    lines = ["# icosahedron", "o ico"]
    lines += ["v " + " ".join(_f(c) for c in p) for p in POS]
    lines += ["vn 0 0 1"]
    lines += ["f " + " ".join(str(i + 1) for i in f) for f in FACE[:-1]]
    # one face with normals: every corner of a face has the same form (the OBJ
    # specification; the reader rejects mixed forms, a sign of a cut file)
    lines += ["f " + " ".join(f"{i + 1}//1" for i in FACE[-1])]
    return ("\n".join(lines) + "\n").encode()


def _ply_header(fmt: str, n: int, f: Optional[int], normals: bool = False) -> str:
    h = ["ply", f"format {fmt} 1.0", "comment fuzz seed", f"element vertex {n}",
         "property float x", "property float y", "property float z"]
    if normals:
        h += ["property float nx", "property float ny", "property float nz"]
    if f is not None:
        h += [f"element face {f}", "property list uchar int vertex_indices"]
    h += ["end_header"]
    return "\n".join(h) + "\n"


def ply_ascii(faces: bool = True) -> bytes:
    body = [" ".join(_f(c) for c in p) for p in POS]
    if faces:
        body += ["3 " + " ".join(str(i) for i in f) for f in FACE]
    return (_ply_header("ascii", len(POS), len(FACE) if faces else None)
            + "\n".join(body) + "\n").encode()


def ply_binary(faces: bool = True, normals: bool = False) -> bytes:
    out = io.BytesIO()
    out.write(_ply_header("binary_little_endian", len(POS), len(FACE) if faces else None,
                          normals).encode())
    for p in POS:
        out.write(struct.pack("<3f", *p))
        if normals:
            out.write(struct.pack("<3f", *(p / np.linalg.norm(p))))
    if faces:
        for f in FACE:
            out.write(struct.pack("<B3i", 3, *f))
    return out.getvalue()


def stl_ascii() -> bytes:
    lines = ["solid ico"]
    for f in FACE:
        lines += ["  facet normal 0 0 0", "    outer loop"]
        lines += ["      vertex " + " ".join(_f(c) for c in POS[i]) for i in f]
        lines += ["    endloop", "  endfacet"]
    lines += ["endsolid ico"]
    return ("\n".join(lines) + "\n").encode()


def stl_binary() -> bytes:
    out = io.BytesIO()
    out.write(b"fuzz seed".ljust(80, b" "))
    out.write(struct.pack("<I", len(FACE)))
    for f in FACE:
        out.write(struct.pack("<12fH", 0, 0, 0, *POS[f].reshape(-1), 0))
    return out.getvalue()


def table_text(normals: bool = False) -> bytes:
    rows = []
    for p in POS:
        vals = list(p) + (list(p / np.linalg.norm(p)) if normals else [])
        rows.append(" ".join(_f(v) for v in vals))
    return ("\n".join(rows) + "\n").encode()


def pts_text() -> bytes:
    return f"{len(POS)}\n".encode() + table_text()


def npy_bytes() -> bytes:
    out = io.BytesIO()
    np.save(out, POS.astype(np.float64))
    return out.getvalue()


def npz_bytes() -> bytes:
    out = io.BytesIO()
    np.savez(out, pos=POS, normal=POS / np.linalg.norm(POS, axis=1, keepdims=True))
    return out.getvalue()


def extxyz_text() -> bytes:
    frames = []
    for k in range(2):
        lines = [str(len(POS)),
                 f'Properties=species:S:1:pos:R:3:forces:R:3 energy={-1.5 - k} pbc="F F F"']
        for i, p in enumerate(POS):
            sym = "C" if i % 2 else "H"
            lines.append(" ".join([sym] + [_f(c + k) for c in p] + [_f(0.1 * c) for c in p]))
        frames.append("\n".join(lines))
    return ("\n".join(frames) + "\n").encode()


def _meshio_bytes(ext: str, binary: bool, tmpdir: str) -> bytes:
    import torch

    from gdl_pyg.io import write_mesh
    path = os.path.join(tmpdir, f"seed_{'b' if binary else 'a'}.{ext}")
    write_mesh(path, torch.from_numpy(POS), torch.from_numpy(FACE.T.copy()), binary=binary)
    with open(path, "rb") as f:
        return f.read()


@dataclass
class Seed:
    name: str
    reader: str          # "mesh", "points" or "xyz"
    ext: str
    data: bytes
    counted: bool        # a header fixes the length: every truncation is an error
    header_edits: Tuple[Tuple[str, Callable[[bytes, bytes], bytes]], ...] = ()
    text: bool = True
    #: the edited header field is authoritative (VTU's NumberOfPoints is not:
    #: the arrays carry their own lengths)
    strict_header: bool = True


def _sub_line(pattern: str):
    """Header edit: replace group 1 of the first match of ``pattern``."""
    rx = re.compile(pattern.encode(), re.M)

    def edit(data: bytes, value: bytes) -> bytes:
        m = rx.search(data)
        assert m is not None, pattern
        return data[:m.start(1)] + value + data[m.end(1):]
    return edit


def _stl_count(data: bytes, value: bytes) -> bytes:
    try:
        n = int(value)
    except ValueError:
        n = 0xFFFFFFFF  # not representable: use the largest count
    return data[:80] + struct.pack("<I", n % (1 << 32)) + data[84:]


def _npy_shape(data: bytes, value: bytes) -> bytes:
    return re.sub(rb"'shape': \((\d+),", b"'shape': (" + value + b",", data, count=1)


def seeds(tmpdir: str) -> List[Seed]:
    off_counts = (("vertex_count", _sub_line(r"^OFF\n(\d+) ")),
                  ("face_count", _sub_line(r"^OFF\n\d+ (\d+)")))
    ply_counts = (("vertex_count", _sub_line(r"^element vertex (\d+)")),
                  ("face_count", _sub_line(r"^element face (\d+)")))
    out = [
        Seed("off", "mesh", "off", off_text(), True, off_counts),
        Seed("obj", "mesh", "obj", obj_text(), False,
             (("face_index", _sub_line(r"^f (\d+) ")),)),
        Seed("ply_ascii", "mesh", "ply", ply_ascii(), True, ply_counts),
        Seed("ply_binary", "mesh", "ply", ply_binary(), True, ply_counts, text=False),
        Seed("stl_ascii", "mesh", "stl", stl_ascii(), False),
        Seed("stl_binary", "mesh", "stl", stl_binary(), True,
             (("facet_count", _stl_count),), text=False),
        Seed("vtk_ascii", "mesh", "vtk", _meshio_bytes("vtk", False, tmpdir), False,
             (("point_count", _sub_line(r"^POINTS (\d+)")),)),
        Seed("vtk_binary", "mesh", "vtk", _meshio_bytes("vtk", True, tmpdir), True,
             (("point_count", _sub_line(r"^POINTS (\d+)")),), text=False),
        Seed("vtu", "mesh", "vtu", _meshio_bytes("vtu", False, tmpdir), False,
             (("point_count", _sub_line(r'NumberOfPoints="(\d+)"')),), strict_header=False),
        Seed("msh", "mesh", "msh", _meshio_bytes("msh", False, tmpdir), False,
             (("node_count", _sub_line(r"^\$Nodes\n\d+ (\d+)")),)),
        Seed("medit", "mesh", "mesh", _meshio_bytes("mesh", False, tmpdir), False,
             (("vertex_count", _sub_line(r"^Vertices\n(\d+)")),)),
        Seed("abaqus", "mesh", "inp", _meshio_bytes("inp", False, tmpdir), False),
        Seed("points_ply_ascii", "points", "ply", ply_ascii(faces=False), True,
             (("vertex_count", _sub_line(r"^element vertex (\d+)")),)),
        Seed("points_ply_binary", "points", "ply", ply_binary(faces=False, normals=True),
             True, (("vertex_count", _sub_line(r"^element vertex (\d+)")),), text=False),
        Seed("points_xyz", "points", "xyz", table_text(), False),
        Seed("points_txt6", "points", "txt", table_text(normals=True), False),
        Seed("points_pts", "points", "pts", pts_text(), True,
             (("point_count", _sub_line(r"^(\d+)\n")),)),
        Seed("points_npy", "points", "npy", npy_bytes(), True,
             (("shape", _npy_shape),), text=False),
        Seed("points_npz", "points", "npz", npz_bytes(), False, text=False),
        Seed("extxyz", "xyz", "xyz", extxyz_text(), True,
             (("atom_count", _sub_line(r"^(\d+)\n")),)),
    ]
    for sub in ("pybullet", "pyvista"):
        folder = os.path.join(DATA, sub)
        for fn in sorted(os.listdir(folder)):
            ext = fn.rsplit(".", 1)[-1]
            with open(os.path.join(folder, fn), "rb") as f:
                data = f.read()
            binary = b"\0" in data[:4096] or b"binary" in data[:200]
            counted = ext in ("ply", "off") or (ext == "stl" and binary)
            out.append(Seed(f"{sub}_{fn.replace('.', '_')}", "mesh", ext, data, counted,
                            text=not binary))
    return out


def _last_token_cut(data: bytes) -> Tuple[Optional[int], bool]:
    """An offset inside the last token (of at least two characters), and
    whether it falls inside the token's leading number of two or more digits
    (the cut then changes that number: OBJ's ``967`` read as ``96``)."""
    m = None
    for m in re.finditer(rb"\S+", data):
        pass
    if m is None or m.end() - m.start() < 2:
        return None, False
    digits = re.match(rb"\d+", m.group(0))
    if digits is not None and digits.end() >= 2:
        return m.start() + digits.end() // 2, True
    return m.start() + (m.end() - m.start()) // 2, False


def _last_token_start(data: bytes) -> int:
    m = None
    for m in re.finditer(rb"\S+", data):
        pass
    return len(data) if m is None else m.start()


def mutations(seed: Seed, rng: np.random.Generator, real: bool = False
              ) -> List[Tuple[str, bytes, bool]]:
    data = seed.data
    n = len(data)
    out = [("empty", b"", True)]
    last_start = _last_token_start(data) if seed.text else len(data.rstrip())
    cuts = {1, n // 3, n // 2, n - 1} | {int(c) for c in rng.integers(1, n, 1 if real else 3)}
    for c in sorted(cuts):
        if 0 < c < n:
            # cutting whitespace only at the end of a text file changes nothing
            strict = seed.counted and (c <= last_start if seed.text else c < last_start)
            out.append((f"truncate@{c}", data[:c], strict))
    cut, in_number = _last_token_cut(data) if seed.text else (None, False)
    if cut is not None:
        out.append((f"truncate_in_last_token@{cut}", data[:cut],
                    seed.ext == "obj" and in_number))
    if real:
        return out
    for k in range(3):
        b = bytearray(data)
        for _ in range(int(rng.integers(1, 5))):
            b[int(rng.integers(0, n))] = int(rng.integers(0, 256))
        out.append((f"byteflip{k}", bytes(b), False))
    out.append(("random_bytes", rng.integers(0, 256, n, dtype=np.uint8).tobytes(), False))
    if seed.text:
        lines = data.split(b"\n")
        for k in range(2):
            i = int(rng.integers(0, max(1, len(lines) - 1)))
            dup = lines[:i + 1] + [lines[i]] + lines[i + 1:]
            drop = lines[:i] + lines[i + 1:]
            out.append((f"duplicate_line{i}", b"\n".join(dup), False))
            out.append((f"drop_line{i}", b"\n".join(drop), False))
        toks = list(re.finditer(rb"(?<![\w.+-])\d+(?![\w.])", data))
        for k, (label, value) in enumerate(BAD_COUNTS[:3]):
            if toks:
                m = toks[int(rng.integers(0, len(toks)))]
                out.append((f"int_token_{label}@{m.start()}",
                            data[:m.start()] + value + data[m.end():], False))
        m = re.search(rb"-?\d+\.\d+", data[n // 2:])
        if m is not None:
            s = n // 2 + m.start()
            for label, value in (("nan", b"nan"), ("inf", b"inf"), ("1e39", b"1e39")):
                out.append((f"float_token_{label}@{s}",
                            data[:s] + value + data[n // 2 + m.end():], label != "1e39"
                            and seed.reader == "mesh"))
    for field, edit in seed.header_edits:
        for label, value in BAD_COUNTS:
            # OBJ's negative indices are relative ("-7": the 7th vertex back)
            strict = seed.strict_header and not (field == "face_index" and label == "negative")
            out.append((f"{field}={label}", edit(data, value), strict))
        for delta in (-1, 1):
            if seed.ext == "stl" and not seed.text:
                cnt = struct.unpack("<I", data[80:84])[0]
            else:
                probe = edit(data, b"\xfe<count>\xfe")
                i = probe.index(b"\xfe<count>\xfe")
                cnt = int(re.match(rb"\d+", data[i:]).group(0))
            # a count one too large promises data the file does not hold; one too
            # small leaves data over, which a reader may ignore
            out.append((f"{field}{delta:+d}", edit(data, str(cnt + delta).encode()),
                        seed.counted and seed.strict_header and delta > 0
                        and field != "face_index"))
    return out
