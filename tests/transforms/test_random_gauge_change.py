import math

import pytest
import torch
from torch_geometric.data import Data

from gdl_pyg.domains.mesh import mesh_to_data
from gdl_pyg.transforms import RandomGaugeChange

trimesh = pytest.importorskip("trimesh")


def wrap(x):
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


def test_repr_and_errors():
    assert str(RandomGaugeChange()) == "RandomGaugeChange(max_angle=3.14)"
    assert str(RandomGaugeChange(0.5)) == "RandomGaugeChange(max_angle=0.5)"
    with pytest.raises(ValueError, match="'frame'"):
        RandomGaugeChange()(Data(pos=torch.zeros(3, 3)))


def test_gauge_change_keeps_geometry_consistent():
    m = trimesh.creation.icosphere(subdivisions=2)
    pos, face = torch.tensor(m.vertices), torch.tensor(m.faces.T.copy())
    data = mesh_to_data(pos, face)
    data.x = torch.randn(pos.size(0), 3, dtype=torch.float64)  # gauge:0,1
    # tangent vector field (extrinsic) and its coordinates in the frame
    vec = torch.randn(pos.size(0), 3, dtype=torch.float64)
    data.x[:, 1:] = torch.einsum("nkc,nc->nk", data.frame, vec)
    torch.manual_seed(0)
    out = RandomGaugeChange(fields={"x": "gauge:0,1"})(data.clone())
    src, dst = data.edge_index
    # the frame turned, the tangent vector did not: same coordinates in the new frame
    assert not torch.allclose(out.frame, data.frame)
    assert float((out.x[:, 1:] - torch.einsum("nkc,nc->nk", out.frame, vec)).abs().max()) \
        < 1e-10
    assert torch.equal(out.x[:, 0], data.x[:, 0])
    # the edge direction in the frame: the log-map angle moved by -theta_i
    theta = torch.atan2((out.frame[:, 0] * data.frame[:, 1]).sum(1),
                        (out.frame[:, 0] * data.frame[:, 0]).sum(1))
    assert float(wrap(out.edge_logmap[:, 1] - data.edge_logmap[:, 1] + theta[dst]).abs().max()) \
        < 1e-10
    assert float(wrap(out.edge_connection - data.edge_connection - theta[src] + theta[dst])
                 .abs().max()) < 1e-10
    assert torch.equal(out.edge_logmap[:, 0], data.edge_logmap[:, 0])
    # gauge invariant: phi_i(j) - phi_j(i) - c_ji = pi (mod 2 pi)
    lk = {(j, i): e for e, (j, i) in enumerate(data.edge_index.t().tolist())}
    rev = torch.tensor([lk[(i, j)] for j, i in data.edge_index.t().tolist()])
    inv = out.edge_logmap[:, 1] - out.edge_logmap[rev, 1] - out.edge_connection
    assert float(wrap(inv - math.pi).abs().max()) < 1e-10
