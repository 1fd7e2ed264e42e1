import numpy as np
import pytest
import torch
from torch_geometric.data import Data, InMemoryDataset
from torch_geometric.loader import DataLoader
from torch_geometric.transforms import Compose

from gdl_pyg.domains.mesh import laplacian_matrix, mesh_to_data
from gdl_pyg.transforms import MeshGeometry, NormalizeScale

trimesh = pytest.importorskip("trimesh")


def raw_meshes():
    out = []
    for i, m in enumerate([trimesh.creation.icosphere(subdivisions=2),
                           trimesh.creation.torus(major_radius=1.0, minor_radius=0.3,
                                                  major_sections=12, minor_sections=8),
                           trimesh.creation.capsule(height=0.5, radius=0.4, count=[8, 8])]):
        out.append(Data(pos=torch.tensor(np.asarray(m.vertices), dtype=torch.float32) * 3 + i,
                        face=torch.tensor(np.asarray(m.faces).T.copy()),
                        y=torch.tensor([i])))
    return out


class TinyMeshes(InMemoryDataset):
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
        data_list = raw_meshes()
        if self.pre_transform is not None:
            data_list = [self.pre_transform(d) for d in data_list]
        self.save(data_list, self.processed_paths[0])


def test_repr():
    assert str(MeshGeometry()) == "MeshGeometry(method='intrinsic')"
    assert str(MeshGeometry(method="extrinsic", geodesic_radius=0.2)) == \
        "MeshGeometry(method='extrinsic', geodesic_radius=0.2)"


def test_forward_equals_mesh_to_data():
    data = raw_meshes()[1]
    out = MeshGeometry(mass="barycentric")(data.clone())
    ref = mesh_to_data(data.pos, data.face, mass="barycentric")
    for key in ref.keys():
        assert torch.equal(out[key], ref[key]), key
    assert torch.equal(out.y, data.y)
    with pytest.raises(ValueError, match="'pos' and 'face'"):
        MeshGeometry()(Data(pos=data.pos))


def test_pre_transform_in_dataset(tmp_path):
    pre = Compose([NormalizeScale(), MeshGeometry()])
    ds = TinyMeshes(str(tmp_path), pre_transform=pre)
    assert len(ds) == 3
    raw = raw_meshes()
    for i in range(3):
        d = ds[i]
        ref = mesh_to_data(NormalizeScale()(raw[i].clone()).pos, raw[i].face)
        assert d.pos.dtype == torch.float32 and int(d.y) == i
        assert torch.allclose(d.mass, ref.mass) and torch.equal(d.edge_index, ref.edge_index)
        assert float(d.pos.abs().max()) <= 1.0
    # batches hold the block-diagonal Laplacian and shifted edges / faces
    batch = next(iter(DataLoader(ds, batch_size=3)))
    L = laplacian_matrix(batch).to_dense()
    ref = torch.block_diag(*[laplacian_matrix(ds[i]).to_dense() for i in range(3)])
    assert torch.equal(L, ref)
    assert batch.edge_index.size(1) == sum(ds[i].edge_index.size(1) for i in range(3))
    assert batch.edge_logmap.size(0) == batch.edge_index.size(1)
    assert int(batch.face.max()) == batch.num_nodes - 1
    # reloading reads the cache: no recomputation
    ds2 = TinyMeshes(str(tmp_path), pre_transform=pre)
    assert torch.equal(ds2[0].frame, ds[0].frame)
