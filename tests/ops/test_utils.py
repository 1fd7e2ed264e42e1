import inspect

import pytest
import torch

from gdl_pyg import ops
from gdl_pyg.utils import _eager

# every public op, called on a small batched point cloud
CASES = {
    "knn": lambda x, b: ops.knn(x, x[:7], 3, b, b[:7]),
    "knn_graph": lambda x, b: ops.knn_graph(x, 4, b),
    "nearest": lambda x, b: ops.nearest(x, x[::5], b, b[::5]),
    "radius": lambda x, b: ops.radius(x, x[:7], 0.4, b, b[:7]),
    "radius_graph": lambda x, b: ops.radius_graph(x, 0.4, b),
    "fps": lambda x, b: ops.fps(x, b, ratio=0.5, random_start=False),
    "grid_cluster": lambda x, b: ops.grid_cluster(x, torch.tensor([0.3, 0.3, 0.3])),
    "voxel_grid": lambda x, b: ops.voxel_grid(x, 0.3, b),
}


def cloud():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(40, 3, generator=gen, dtype=torch.float64)
    return x, torch.arange(2).repeat_interleave(20)


@pytest.mark.parametrize("name", sorted(CASES))
def test_ops_run_eagerly_inside_compiled_code(name):
    # data-dependent output sizes (and torch_cluster's operators, which have
    # no fake implementation): each op is one graph break, with eager results
    x, batch = cloud()
    call = CASES[name]
    ref = call(x, batch)
    torch._dynamo.reset()
    explain = torch._dynamo.explain(call)(x, batch)
    assert explain.graph_count == 0 or explain.graph_break_count >= 1 or \
        explain.break_reasons
    out = torch.compile(call, backend="aot_eager")(x, batch)
    assert torch.equal(out, ref)


def test_eager_keeps_the_signature_and_the_docstring():
    def f(x: torch.Tensor, k: int = 2) -> torch.Tensor:
        r"""Doc."""
        return x * k

    g = _eager(f)
    assert g.__name__ == "f" and g.__doc__ == "Doc."
    assert inspect.signature(g) == inspect.signature(f)
    assert torch.equal(g(torch.ones(2)), torch.full((2,), 2.0))
    for name in CASES:
        fn = getattr(ops, name)
        assert fn.__name__ == name and fn.__doc__ == fn.__wrapped__.__doc__
        assert inspect.signature(fn) == inspect.signature(fn.__wrapped__)
        assert list(inspect.signature(fn).parameters)[0] in ("x", "pos")
