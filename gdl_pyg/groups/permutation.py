r"""The symmetric group acting on nodes (graphs, sets, point clouds)."""
from typing import Any, Mapping, Optional

import torch
from torch import Tensor
from torch_geometric.data import Data

from gdl_pyg.groups.base import TRIVIAL, Group, permute_nodes


class Permutations(Group):
    r"""Node permutations :math:`\Sigma_n`, the symmetry of graphs and sets.

    An element is a ``LongTensor`` ``perm`` of length ``num_nodes``: node
    ``i`` of the permuted graph is node ``perm[i]`` of the original.
    :meth:`sample` permutes within each graph of a batch, so ``batch`` stays
    sorted and graph ``b`` stays graph ``b`` (graph-level outputs are
    invariant). Features only have the trivial fibre representation.
    """
    name = "S_n"

    def sample(self, data: Optional[Data] = None,
               generator: Optional[torch.Generator] = None) -> Tensor:
        if data is None:
            raise ValueError("'Permutations.sample' needs the 'data' whose nodes it permutes")
        n = data.num_nodes
        if "batch" not in data or data.batch is None:
            return torch.randperm(n, generator=generator)
        batch = data.batch.cpu()
        keys = torch.rand(n, generator=generator, dtype=torch.float64) + batch.to(torch.float64)
        return torch.argsort(keys)

    def identity(self, data: Optional[Data] = None) -> Tensor:
        return torch.arange(data.num_nodes)

    def act(self, g: Tensor, data: Data, fields: Optional[Mapping[str, Any]] = None) -> Data:
        fields = self._fields(fields)
        for key, rep in fields.items():
            if rep not in TRIVIAL:
                raise ValueError(f"'Permutations' acts trivially on fibres; field '{key}' "
                                 f"was declared with representation {rep!r}")
        return permute_nodes(data, torch.as_tensor(g))
