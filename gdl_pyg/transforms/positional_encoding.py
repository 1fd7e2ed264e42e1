r"""Positional encodings of graph nodes: Laplacian eigenvectors and random-walk
return probabilities (used by graph Transformers, Bronstein et al. 2021,
sec. 5.3, to break the symmetry of the complete graph with graph structure).
"""
import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.transforms import AddRandomWalkPE, BaseTransform
from torch_geometric.utils import get_laplacian, to_scipy_sparse_matrix, to_undirected

from gdl_pyg.utils import check_edge_index

__all__ = ["LaplacianPE", "RandomWalkPE"]


def _canonical_sign(vecs: torch.Tensor) -> torch.Tensor:
    r"""Flips each column so that its first non-vanishing odd moment
    (:math:`\sum v`, :math:`\sum v^3`, :math:`\sum v^5`) is positive: a
    choice that does not depend on the node order."""
    sign = torch.zeros(vecs.size(1), dtype=vecs.dtype)
    for p in (1, 3, 5):
        m = (vecs**p).sum(0)
        tiny = m.abs() <= 1e-8 * vecs.abs().pow(p).sum(0).clamp_min(1e-300)
        sign = torch.where((sign == 0) & ~tiny, torch.sign(m), sign)
    sign[sign == 0] = 1
    return vecs * sign


class LaplacianPE(BaseTransform):
    r"""Adds the eigenvectors of the :obj:`k` smallest non-trivial eigenvalues
    of the symmetrically normalised Laplacian :math:`\mathbf{I} -
    \mathbf{D}^{-1/2}\mathbf{A}\mathbf{D}^{-1/2}` (of the undirected graph,
    with :obj:`edge_weight` if present) as node attribute :obj:`attr_name`,
    from the `"Benchmarking Graph Neural Networks"
    <https://arxiv.org/abs/2003.00982>`_ paper.

    Eigenvectors are defined up to sign: they are first put in a canonical
    sign (independent of the node order), and with :obj:`random_sign_flip`
    (in training mode, see :meth:`train`) each one is flipped with
    probability 1/2 on every call, so a model learns to ignore the sign.
    Graphs with fewer than :obj:`k + 1` nodes get zero columns. Apply it to
    single connected graphs (as a dataset transform), not to a batch: a
    disconnected graph has several zero eigenvalues and only the first
    eigenvector is dropped.

    Args:
        k (int): the number of eigenvectors.
        random_sign_flip (bool, optional): random sign flips in training mode.
            (default: :obj:`True`)
        attr_name (str, optional): the attribute to write.
            (default: :obj:`"laplacian_pe"`)
        sparse_threshold (int, optional): graphs with at least this many
            nodes use :func:`scipy.sparse.linalg.eigsh`, smaller ones a dense
            :func:`numpy.linalg.eigh`. (default: :obj:`100`)
    """

    def __init__(self, k: int, random_sign_flip: bool = True,
                 attr_name: str = "laplacian_pe", sparse_threshold: int = 100):
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"'LaplacianPE' expected a positive integer k (got {k!r})")
        self.k = k
        self.random_sign_flip = random_sign_flip
        self.attr_name = attr_name
        self.sparse_threshold = sparse_threshold
        self.training = True

    def train(self, mode: bool = True) -> "LaplacianPE":
        r"""Sets training mode (random sign flips, if enabled)."""
        self.training = mode
        return self

    def eval(self) -> "LaplacianPE":
        r"""Sets evaluation mode (canonical signs only)."""
        return self.train(False)

    def forward(self, data: Data) -> Data:
        if data.edge_index is None:
            raise ValueError("'LaplacianPE' needs 'edge_index' (got None)")
        N = data.num_nodes
        check_edge_index(data.edge_index, N, "LaplacianPE")
        edge_weight = data.get("edge_weight")
        edge_index, edge_weight = to_undirected(data.edge_index, edge_weight, N, reduce="max")
        edge_index, edge_weight = get_laplacian(edge_index, edge_weight, normalization="sym",
                                                num_nodes=N)
        L = to_scipy_sparse_matrix(edge_index, edge_weight, N).astype(np.float64)
        m = min(self.k + 1, N)
        if N < self.sparse_threshold or m >= N - 1:
            vals, vecs = np.linalg.eigh(L.toarray())
        else:
            from scipy.sparse.linalg import eigsh
            vals, vecs = eigsh(L, k=m, which="SA", tol=1e-10)
        order = np.argsort(vals)
        vecs = torch.from_numpy(np.ascontiguousarray(vecs[:, order[1:m]]))
        vecs = _canonical_sign(vecs)
        if vecs.size(1) < self.k:
            vecs = torch.cat([vecs, vecs.new_zeros(N, self.k - vecs.size(1))], dim=1)
        if self.random_sign_flip and self.training:
            vecs = vecs * (2 * torch.randint(0, 2, (1, self.k)) - 1).to(vecs.dtype)
        dtype = data.x.dtype if isinstance(data.get("x"), torch.Tensor) and \
            data.x.is_floating_point() else torch.get_default_dtype()
        data[self.attr_name] = vecs.to(dtype)
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.k})"


class RandomWalkPE(BaseTransform):
    r"""Adds the random-walk return probabilities :math:`[(\mathbf{D}^{-1}
    \mathbf{A})^t_{ii}]_{t=1}^{T}` of every node as node attribute
    :obj:`attr_name`, from the `"Graph Neural Networks with Learnable
    Structural and Positional Representations"
    <https://arxiv.org/abs/2110.07875>`_ paper (a wrapper of
    :class:`torch_geometric.transforms.AddRandomWalkPE`, which needs no
    pyg-lib). Permutation equivariant and sign-free.

    Args:
        walk_length (int): the number of steps :math:`T`.
        attr_name (str, optional): the attribute to write.
            (default: :obj:`"random_walk_pe"`)
    """

    def __init__(self, walk_length: int, attr_name: str = "random_walk_pe"):
        if not isinstance(walk_length, int) or walk_length < 1:
            raise ValueError(f"'RandomWalkPE' expected a positive integer walk_length "
                             f"(got {walk_length!r})")
        self.walk_length = walk_length
        self.attr_name = attr_name
        self._pyg = AddRandomWalkPE(walk_length, attr_name=attr_name)

    def forward(self, data: Data) -> Data:
        if data.edge_index is None:
            raise ValueError("'RandomWalkPE' needs 'edge_index' (got None)")
        check_edge_index(data.edge_index, data.num_nodes, "RandomWalkPE")
        out = self._pyg(data)
        # PyG computes in float32 whatever the input: follow x's dtype like LaplacianPE
        x = data.get("x")
        pe = out[self.attr_name]
        if isinstance(x, torch.Tensor) and x.is_floating_point() and pe.dtype != x.dtype:
            out[self.attr_name] = pe.to(x.dtype)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.walk_length})"
