import math

import pytest
import torch
from torch_geometric.data import Data

from gdl_pyg.transforms import SampleSurface

trimesh = pytest.importorskip("trimesh")


def test_repr_and_errors():
    assert str(SampleSurface(1024)) == "SampleSurface(1024)"
    with pytest.raises(ValueError, match="positive number"):
        SampleSurface(0)
    pos = torch.rand(4, 3)
    with pytest.raises(ValueError, match="'pos' and 'face'"):
        SampleSurface(8)(Data(pos=pos))
    with pytest.raises(ValueError, match=r"Expected 'face' tensor with shape \[3, num_faces\] "
                                         r"\(got \[4, 10\]\)"):
        SampleSurface(8)(Data(pos=pos, face=torch.zeros(4, 10, dtype=torch.long)))
    with pytest.raises(ValueError, match="indices"):
        SampleSurface(8)(Data(pos=pos, face=torch.tensor([[0], [1], [7]])))
    with pytest.raises(ValueError, match="NaN"):
        SampleSurface(8)(Data(pos=pos * float("nan"), face=torch.tensor([[0], [1], [2]])))


def test_area_weighting_and_normals():
    # two triangles in the plane z = 0 with areas 1 and 3
    pos = torch.tensor([[0.0, 0, 0], [2, 0, 0], [0, 1, 0],
                        [10, 0, 0], [13, 0, 0], [10, 2, 0]], dtype=torch.float64)
    face = torch.tensor([[0, 1, 2], [3, 5, 4]]).T  # the second one faces down
    torch.manual_seed(0)
    out = SampleSurface(20000)(Data(pos=pos, face=face))
    assert out.pos.shape == (20000, 3) and "face" not in out
    second = out.pos[:, 0] >= 10
    frac = float(second.double().mean())
    assert abs(frac - 0.75) < 0.015  # binomial std 0.003
    assert torch.allclose(out.normal[~second], torch.tensor([0.0, 0, 1], dtype=torch.float64))
    assert torch.allclose(out.normal[second], torch.tensor([0.0, 0, -1], dtype=torch.float64))
    # inside the triangles: barycentric coordinates in [0, 1]
    p = out.pos[~second]
    assert bool(((p[:, 0] / 2 + p[:, 1]) <= 1 + 1e-12).all())
    assert bool((p[:, :2] >= -1e-12).all())


def test_sphere_points_lie_on_the_surface():
    m = trimesh.creation.icosphere(subdivisions=2)
    data = Data(pos=torch.tensor(m.vertices), face=torch.tensor(m.faces.T.copy()))
    out = SampleSurface(2000, remove_faces=False)(data)
    r = out.pos.norm(dim=1)
    inner = float(m.bounding_sphere.primitive.radius) * math.cos(0.35)
    assert float(r.max()) <= 1 + 1e-9 and float(r.min()) > inner
    assert "face" in out
    assert float((out.normal * out.pos / r[:, None]).sum(1).min()) > 0.95
