r"""Fixtures shared by the tests of every package."""
import pytest
import torch


@pytest.fixture
def compile_one_graph():
    r"""``compile_one_graph(module, *args, **kwargs)``: asserts that dynamo
    captures ``module(*args, **kwargs)`` as one graph without a break
    (:func:`torch._dynamo.explain`), then returns the output of
    ``torch.compile(module, fullgraph=True, backend="aot_eager")`` on the same
    inputs (``aot_eager``: the traced graphs without inductor's kernel builds,
    which take minutes on a cold cache)."""
    def run(module, *args, **kwargs):
        torch._dynamo.reset()
        explain = torch._dynamo.explain(module)(*args, **kwargs)
        assert explain.graph_break_count == 0, explain.break_reasons
        assert explain.graph_count == 1
        return torch.compile(module, fullgraph=True, backend="aot_eager")(*args, **kwargs)
    return run
