import math

import pytest
import torch
from torch_geometric.data import Data, InMemoryDataset
from torch_geometric.transforms import Compose

from gdl_pyg.domains.points import points_to_data
from gdl_pyg.transforms import PointCloudGraph, SampleSurface

trimesh = pytest.importorskip("trimesh")


def sphere_mesh():
    m = trimesh.creation.icosphere(subdivisions=3)
    return Data(pos=torch.tensor(m.vertices, dtype=torch.float64),
                face=torch.tensor(m.faces.T.copy()), y=torch.tensor([0]))


class TinyClouds(InMemoryDataset):
    def __init__(self, root, transform=None, pre_transform=None):
        super().__init__(root, transform, pre_transform)
        self.load(self.processed_paths[0])

    @property
    def raw_file_names(self):
        return []

    @property
    def processed_file_names(self):
        return ["data.pt"]

    def download(self):
        pass

    def process(self):
        data_list = [sphere_mesh(), sphere_mesh()]
        if self.pre_transform is not None:
            data_list = [self.pre_transform(d) for d in data_list]
        self.save(data_list, self.processed_paths[0])


def test_repr_and_arguments():
    assert str(PointCloudGraph(k=16)) == "PointCloudGraph(k=16)"
    assert str(PointCloudGraph(r=0.1)) == "PointCloudGraph(r=0.1)"
    with pytest.raises(ValueError, match="exactly one"):
        PointCloudGraph()
    with pytest.raises(ValueError, match="exactly one"):
        PointCloudGraph(k=3, r=0.2)
    with pytest.raises(ValueError, match="'pos'"):
        PointCloudGraph(k=3)(Data(x=torch.zeros(3, 1)))


def test_forward_uses_normals_and_batch():
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(400, 3, generator=g, dtype=torch.float64)
    pos = pos / pos.norm(dim=1, keepdim=True)
    data = Data(pos=pos, normal=-pos, x=torch.ones(400, 2))
    out = PointCloudGraph(k=8)(data.clone())
    assert torch.allclose(out.normal, -pos)  # the given normals, kept
    assert torch.equal(out.x, data.x)
    ref = points_to_data(pos, k=8, normal=-pos)
    assert torch.equal(out.edge_connection, ref.edge_connection)
    est = PointCloudGraph(k=8, use_normal=False)(data.clone())
    assert float((est.normal * pos).sum(1).min()) > math.cos(math.radians(10))
    data.batch = torch.arange(400) // 200
    out = PointCloudGraph(k=8)(data)
    assert torch.equal(data.batch[out.edge_index[0]], data.batch[out.edge_index[1]])


def test_pre_transform_in_dataset(tmp_path):
    torch.manual_seed(0)
    ds = TinyClouds(str(tmp_path), pre_transform=Compose([SampleSurface(512),
                                                          PointCloudGraph(k=8)]))
    d = ds[0]
    assert d.pos.shape == (512, 3) and "face" not in d
    assert d.edge_index.shape == (2, 8 * 512) and d.edge_logmap.shape == (8 * 512, 2)
    # sampled normals are the (outward) face normals: nearly radial
    assert float((d.normal * d.pos / d.pos.norm(dim=1, keepdim=True)).sum(1).min()) > 0.98
