#!/usr/bin/env python
r"""Generates the small datasets shipped in ``datasets/`` (see ``datasets/README.md``).

    python scripts/make_datasets.py                 # all three, into ./datasets, seed 0
    python scripts/make_datasets.py --out /tmp/ds --only shapes --seed 1

* ``shapes/raw/<class>/*.off|*.ply``: meshes of 5 classes (box, capsule, cone,
  sphere, torus), each instance with random resolution, non-uniform scaling,
  normal noise and a random rotation;
* ``deform/raw/*.ply``: near-isometric poses of one articulated tube (4 parts,
  3 joints bent with smooth skinning) sharing vertex order, with the per-vertex
  part label as the PLY vertex property ``part``; ``deform/poses.csv`` lists
  the joint angles;
* ``points/raw/<class>/*.xyz``: points with normals sampled uniformly on the
  surfaces of the same 5 classes.

Everything is deterministic given ``--seed`` (numpy ``default_rng``).
"""
import argparse
import csv
import os
import os.path as osp
import shutil
import sys
from typing import Dict, List, Optional

import numpy as np
import torch
import trimesh
from scipy.spatial.transform import Rotation
from torch_geometric.data import Data

try:
    from gdl_pyg.io import read_mesh, write_mesh, write_points
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
    from gdl_pyg.io import read_mesh, write_mesh, write_points

CLASSES = ("box", "capsule", "cone", "sphere", "torus")


def _primitive(name: str, rng: np.random.Generator) -> trimesh.Trimesh:
    r"""A clean, closed primitive of class ``name`` with a random resolution."""
    if name == "box":
        mesh = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
        for _ in range(3):
            mesh = mesh.subdivide()
    elif name == "capsule":
        c = int(rng.integers(14, 22))
        mesh = trimesh.creation.capsule(height=float(rng.uniform(0.8, 1.6)), radius=0.5,
                                        count=[c, c])
    elif name == "cone":
        mesh = trimesh.creation.cone(radius=0.6, height=float(rng.uniform(1.0, 1.6)),
                                     sections=int(rng.integers(16, 28)))
        for _ in range(2):
            mesh = mesh.subdivide()
    elif name == "sphere":
        c = int(rng.integers(14, 22))
        mesh = trimesh.creation.uv_sphere(radius=0.7, count=[c, c])
    elif name == "torus":
        mesh = trimesh.creation.torus(major_radius=0.7,
                                      minor_radius=float(rng.uniform(0.18, 0.35)),
                                      major_sections=int(rng.integers(24, 36)),
                                      minor_sections=int(rng.integers(10, 16)))
    else:  # pragma: no cover
        raise ValueError(name)
    mesh.merge_vertices()
    mesh.remove_unreferenced_vertices()
    return mesh


def _randomise(mesh: trimesh.Trimesh, rng: np.random.Generator, noise: float
               ) -> trimesh.Trimesh:
    r"""Non-uniform scaling, noise along vertex normals, then a random rotation."""
    v = np.asarray(mesh.vertices, dtype=np.float64)
    v = v - v.mean(axis=0)
    v = v * rng.uniform(0.7, 1.3, size=3)
    scaled = trimesh.Trimesh(v, mesh.faces, process=False)
    v = v + scaled.vertex_normals * rng.normal(0.0, noise, size=(v.shape[0], 1))
    v = v @ Rotation.random(random_state=rng).as_matrix().T
    return trimesh.Trimesh(v, mesh.faces, process=False)


def _check(path: str) -> None:
    _, report = read_mesh(path, return_report=True)
    if not report.is_clean or not report.is_manifold:
        raise RuntimeError(f"generated mesh '{path}' is not clean: {report}")


def make_shapes(out: str, seed: int, per_class: int = 8) -> List[str]:
    rng = np.random.default_rng(seed)
    files = []
    for name in CLASSES:
        folder = osp.join(out, "shapes", "raw", name)
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            mesh = _randomise(_primitive(name, rng), rng, noise=0.01)
            ext = "off" if i % 2 == 0 else "ply"
            path = osp.join(folder, f"{name}_{i:02d}.{ext}")
            write_mesh(path, torch.from_numpy(mesh.vertices).float(),
                       torch.from_numpy(mesh.faces.T.copy()))
            _check(path)
            files.append(path)
    return files


def _tube(radius: float, length: float, rings: int, sections: int, cap_rings: int,
          top_radius: Optional[float] = None) -> trimesh.Trimesh:
    r"""A closed capsule-shaped tube along ``z`` with ``rings`` rings on its
    straight part (so it can bend), from ``z = 0`` to ``z = length``; the
    radius tapers linearly from :obj:`radius` to :obj:`top_radius` (a cone
    frustum closed by hemispheres of the two end radii), so the two ends differ
    intrinsically (their caps have different Gaussian curvature)."""
    r1 = radius if top_radius is None else top_radius
    cap = np.linspace(-np.pi / 2, 0.0, cap_rings + 1)
    bottom = np.stack([radius * np.cos(cap), radius * np.sin(cap)], axis=1)  # z from -r to 0
    straight_z = np.linspace(0.0, length, rings)[1:-1]
    straight = np.stack([radius + (r1 - radius) * straight_z / length, straight_z], axis=1)
    top = np.stack([r1 * np.cos(-cap[::-1]), length - r1 * np.sin(cap[::-1])], axis=1)
    profile = np.concatenate([bottom, straight, top], axis=0)
    profile[0, 0] = profile[-1, 0] = 0.0  # poles on the axis
    mesh = trimesh.creation.revolve(profile, sections=sections)
    mesh.merge_vertices()
    mesh.remove_unreferenced_vertices()
    mesh.fix_normals()
    return mesh


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def make_deform(out: str, seed: int, num_poses: int = 24) -> Dict[str, float]:
    rng = np.random.default_rng(seed + 1)
    length, radius, top_radius = 3.0, 0.24, 0.12
    base = _tube(radius, length, rings=49, sections=20, cap_rings=5, top_radius=top_radius)
    rest = np.asarray(base.vertices, dtype=np.float64)
    joints = np.array([0.75, 1.5, 2.25])  # z of the 3 joints; 4 parts
    part = np.searchsorted(joints, rest[:, 2]).astype(np.uint8)
    width = 0.6  # length of the bending zone around each joint
    folder = osp.join(out, "deform", "raw")
    os.makedirs(folder, exist_ok=True)
    edges = base.edges_unique
    rest_len = np.linalg.norm(rest[edges[:, 0]] - rest[edges[:, 1]], axis=1)
    rows, distortion = [], []
    for k in range(num_poses):
        if k == 0:
            angles, phis, rot = np.zeros(3), np.zeros(3), np.eye(3)
        else:
            angles = rng.uniform(-50.0, 50.0, size=3)
            phis = rng.uniform(0.0, 360.0, size=3)
            # drawn to keep the joint angles of earlier versions; not applied: the
            # poses stay upright; the mesh data modules rotate test copies
            Rotation.random(random_state=rng)
            rot = np.eye(3)
        v = rest.copy()
        # forward kinematics with rest-pose joint centres, topmost joint first
        for j in reversed(range(3)):
            centre = np.array([0.0, 0.0, joints[j]])
            axis = np.array([np.cos(np.radians(phis[j])), np.sin(np.radians(phis[j])), 0.0])
            w = _smoothstep((rest[:, 2] - joints[j]) / width + 0.5)
            rv = Rotation.from_rotvec(np.radians(angles[j]) * w[:, None] * axis[None, :])
            v = centre + rv.apply(v - centre)
        v = v @ rot.T
        new_len = np.linalg.norm(v[edges[:, 0]] - v[edges[:, 1]], axis=1)
        distortion.append(np.abs(new_len / rest_len - 1.0))
        path = osp.join(folder, f"pose_{k:03d}.ply")
        write_mesh(path, Data(pos=torch.from_numpy(v).float(),
                              face=torch.from_numpy(base.faces.T.copy()),
                              part=torch.from_numpy(part)), vertex_attrs=("part",))
        _check(path)
        rows.append([f"pose_{k:03d}.ply"] + [f"{a:.3f}" for a in angles]
                    + [f"{p:.3f}" for p in phis])
    with open(osp.join(out, "deform", "poses.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "angle_1", "angle_2", "angle_3", "axis_1", "axis_2", "axis_3"])
        writer.writerows(rows)
    d = np.concatenate(distortion)
    return {"num_vertices": int(rest.shape[0]), "num_faces": int(base.faces.shape[0]),
            "edge_rel_change_mean": float(d.mean()), "edge_rel_change_max": float(d.max())}


def make_points(out: str, seed: int, per_class: int = 6, num_points: int = 512) -> None:
    rng = np.random.default_rng(seed + 2)
    for name in CLASSES:
        folder = osp.join(out, "points", "raw", name)
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            mesh = _randomise(_primitive(name, rng), rng, noise=0.0)
            pts, face_idx = trimesh.sample.sample_surface(mesh, num_points,
                                                          seed=int(rng.integers(2 ** 31)))
            normals = mesh.face_normals[face_idx]
            write_points(osp.join(folder, f"{name}_{i:02d}.xyz"),
                         Data(pos=torch.from_numpy(pts).float(),
                              normal=torch.from_numpy(normals).float()), precision=6)


def _size(folder: str) -> int:
    return sum(osp.getsize(osp.join(d, f)) for d, _, fs in os.walk(folder) for f in fs)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=osp.join(osp.dirname(osp.dirname(
        osp.abspath(__file__))), "datasets"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", choices=["shapes", "deform", "points"],
                        default=["shapes", "deform", "points"])
    args = parser.parse_args(argv)
    for name in args.only:  # regenerate from scratch (also drops stale processed caches)
        shutil.rmtree(osp.join(args.out, name), ignore_errors=True)
    if "shapes" in args.only:
        files = make_shapes(args.out, args.seed)
        print(f"shapes: {len(files)} meshes, {_size(osp.join(args.out, 'shapes'))} bytes")
    if "deform" in args.only:
        stats = make_deform(args.out, args.seed)
        print(f"deform: {stats}, {_size(osp.join(args.out, 'deform'))} bytes")
    if "points" in args.only:
        make_points(args.out, args.seed)
        print(f"points: {_size(osp.join(args.out, 'points'))} bytes")


if __name__ == "__main__":
    main()
