import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.utils import get_laplacian, to_dense_adj

from gdl_pyg.groups import Permutations
from gdl_pyg.testing import assert_equivariant
from gdl_pyg.transforms.positional_encoding import LaplacianPE, RandomWalkPE


def connected_graph(n=15, seed=0, weighted=True):
    gen = torch.Generator().manual_seed(seed)
    ring = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n])
    extra = torch.randint(0, n, (2, n), generator=gen)
    ei = torch.cat([ring, extra], 1)
    ei = ei[:, ei[0] != ei[1]]
    ei = torch.unique(torch.cat([ei, ei.flip(0)], 1), dim=1)
    data = Data(x=torch.randn(n, 3, generator=gen, dtype=torch.float64), edge_index=ei)
    if weighted:  # generic symmetric weights: a simple spectrum
        w = torch.rand(n, n, generator=gen, dtype=torch.float64)
        data.edge_weight = (w + w.t())[ei[0], ei[1]]
    return data


def test_laplacian_pe_values_and_repr():
    data = connected_graph()
    pe = LaplacianPE(4, random_sign_flip=False)
    assert str(pe) == "LaplacianPE(4)"
    out = pe(data.clone()).laplacian_pe
    assert out.shape == (15, 4) and out.dtype == torch.float64
    ei, w = get_laplacian(data.edge_index, data.edge_weight, normalization="sym")
    L = to_dense_adj(ei, edge_attr=w, max_num_nodes=15)[0]
    vals, _ = torch.linalg.eigh(L)
    # columns are unit eigenvectors of the k smallest non-trivial eigenvalues
    assert (L @ out - out * vals[1:5]).abs().max() < 1e-10
    assert (out.t() @ out - torch.eye(4, dtype=torch.float64)).abs().max() < 1e-10
    # a small graph gets zero padding
    small = LaplacianPE(6, random_sign_flip=False)(connected_graph(4).clone()).laplacian_pe
    assert small.shape == (4, 6) and (small[:, 3:] == 0).all()
    with pytest.raises(ValueError, match="positive integer k"):
        LaplacianPE(0)


def test_laplacian_pe_sparse_solver_matches_dense():
    data = connected_graph(120, weighted=True)
    dense = LaplacianPE(3, random_sign_flip=False, sparse_threshold=10**6)(data.clone())
    sparse = LaplacianPE(3, random_sign_flip=False, sparse_threshold=10)(data.clone())
    assert (dense.laplacian_pe - sparse.laplacian_pe).abs().max() < 1e-6


def test_laplacian_pe_sign_flips():
    data = connected_graph()
    canonical = LaplacianPE(4, random_sign_flip=False)(data.clone()).laplacian_pe
    pe = LaplacianPE(4)
    torch.manual_seed(0)
    flipped = [pe(data.clone()).laplacian_pe for _ in range(8)]
    for f in flipped:
        assert (f.abs() - canonical.abs()).abs().max() < 1e-10
        signs = (f * canonical).sum(0)  # +-1 per column
        assert ((signs.abs() - 1).abs() < 1e-10).all()
    assert any(((f - canonical).abs().max() > 1e-3) for f in flipped)
    pe.eval()
    assert (pe(data.clone()).laplacian_pe - canonical).abs().max() < 1e-10
    assert pe.train().training


def test_laplacian_pe_equivariance():
    data = connected_graph()
    pe = LaplacianPE(4, random_sign_flip=False)
    assert_equivariant(pe, data, Permutations(), forward=lambda t, d: t(d.clone()).laplacian_pe)
    flips = LaplacianPE(4)  # equivariant up to sign
    assert_equivariant(flips, data, Permutations(),
                       forward=lambda t, d: t(d.clone()).laplacian_pe.abs())


def test_random_walk_pe():
    data = connected_graph(weighted=False)
    pe = RandomWalkPE(5)
    assert str(pe) == "RandomWalkPE(5)"
    out = pe(data.clone()).random_walk_pe
    A = to_dense_adj(data.edge_index, max_num_nodes=15)[0].double()
    P = A / A.sum(1, keepdim=True)
    M, expected = torch.eye(15, dtype=torch.float64), []
    for _ in range(5):
        M = M @ P
        expected.append(torch.diagonal(M))
    assert (out.double() - torch.stack(expected, 1)).abs().max() < 1e-6
    assert_equivariant(pe, data, Permutations(), forward=lambda t, d: t(d.clone()).random_walk_pe,
                       tol=1e-6)
    with pytest.raises(ValueError, match="walk_length"):
        RandomWalkPE(0)


def test_checker_fails_on_positional_index():
    data = connected_graph()

    def broken(t, d):  # concatenates the node index: not a structural encoding
        out = t(d.clone()).laplacian_pe
        return torch.cat([out, torch.arange(d.num_nodes, dtype=out.dtype).unsqueeze(-1)], 1)

    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(LaplacianPE(4, random_sign_flip=False), data, Permutations(),
                           forward=broken)


@pytest.mark.parametrize("transform", [LaplacianPE(3, random_sign_flip=False), RandomWalkPE(3)])
def test_edge_index_is_validated(transform):
    # issue 9: an out-of-range index is a ValueError naming the transform, not an
    # IndexError inside PyG's utilities
    data = connected_graph()
    name = type(transform).__name__
    bad = data.clone()
    bad.edge_index = data.edge_index.clone()
    bad.edge_index[0, 0] = 15
    with pytest.raises(ValueError, match=rf"'{name}'.*index 15.*only 15 nodes"):
        transform(bad)
    bad.edge_index = data.edge_index.t()
    with pytest.raises(ValueError, match=rf"'{name}'.*transposed"):
        transform(bad)
