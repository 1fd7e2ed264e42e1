r"""Checking that a module commutes with a group: :math:`f(g \cdot x) = g \cdot f(x)`.

Works for any module and any :class:`~gdl_pyg.groups.Group`: the group acts on
the input ``Data``, the module runs on both, and the group acts on the output
wrapped in a ``Data`` that shares the input's domain (or on a ``Data`` the
module returns, when the output lives on another domain, e.g. after lifting or
pooling). Runs in float64 by default, with a tolerance per dtype.
"""
import copy
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Data

from gdl_pyg.groups.base import Group, num_graphs_of

__all__ = ["assert_equivariant", "equivariance_error", "EquivarianceResult",
           "DEFAULT_TOLERANCE"]

#: Largest admissible error, relative to ``max(1, max |expected|)``, per dtype.
DEFAULT_TOLERANCE: Dict[torch.dtype, float] = {
    torch.float64: 1e-9,
    torch.float32: 1e-4,
    torch.float16: 1e-2,
    torch.bfloat16: 5e-2,
}


@dataclass
class EquivarianceResult:
    r"""The outcome of :func:`equivariance_error`.

    Attributes:
        error (float): the largest error over elements and outputs, relative to
            ``max(1, max |expected|)``.
        abs_error (float): the same, absolute.
        element: the group element where the largest error occurred.
        key (str): the output where it occurred.
        dtype (torch.dtype): the dtype the check ran in.
        num_elements (int): how many group elements were tried.
    """
    error: float
    abs_error: float
    element: Any
    key: str
    dtype: torch.dtype
    num_elements: int


def _cast(data: Data, dtype: torch.dtype) -> Data:
    out = data.clone()
    for key in data.keys():
        v = data[key]
        if isinstance(v, Tensor) and v.is_floating_point():
            out[key] = v.to(dtype)
    return out


def _default_forward(module: Callable, data: Data) -> Any:
    fn = module.forward if isinstance(module, torch.nn.Module) else module
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return module(data)
    params = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD,
                                              p.KEYWORD_ONLY)]
    if len(params) >= 1 and params[0].name in ("data", "batch") and params[0].name not in data:
        return module(data)
    kwargs, missing = {}, []
    for p in params:
        if p.name in data:
            kwargs[p.name] = data[p.name]
        elif p.default is inspect.Parameter.empty:
            missing.append(p.name)
    if missing:
        raise TypeError(f"Cannot call {type(module).__name__} from the 'Data': it has no "
                        f"attribute(s) {missing}. Pass 'forward=lambda module, data: ...'")
    return module(**kwargs)


def _as_data(out: Any, data: Data, output_keys: Optional[Sequence[str]]):
    r"""Wraps a module's output into a ``Data`` the group can act on; returns
    it with the names of the outputs to compare."""
    if isinstance(out, Data):
        return out, list(output_keys) if output_keys is not None else ["x"]
    if isinstance(out, Tensor):
        out = (out,)
    if not isinstance(out, (tuple, list)):
        raise TypeError(f"Expected the module to return a Tensor, a tuple of Tensors or a "
                        f"Data (got {type(out).__name__})")
    if output_keys is None:
        output_keys = ("out",) if len(out) == 1 else ("out", "pos") if len(out) == 2 else None
        if output_keys is None:
            raise ValueError(f"The module returned {len(out)} outputs; name them with "
                             f"'output_keys'")
    if len(output_keys) != len(out):
        raise ValueError(f"Expected {len(output_keys)} outputs named {list(output_keys)} "
                         f"(got {len(out)})")
    res = data.clone()
    n, b = data.num_nodes, num_graphs_of(data)
    for key, value in zip(output_keys, out):
        if not isinstance(value, Tensor):
            raise TypeError(f"Output '{key}' is a {type(value).__name__}, expected a Tensor")
        if value.dim() > 0 and value.size(0) not in (n, b, data.num_edges):
            raise ValueError(
                f"Output '{key}' has {value.size(0)} rows, which is neither the number of "
                f"nodes ({n}), edges ({data.num_edges}) nor graphs ({b}) of the input; return "
                f"a 'Data' describing the output's domain from 'forward'")
        res[key] = value
    res.num_nodes = n
    return res, list(output_keys)


def equivariance_error(
    module: Callable,
    data: Data,
    group: Group,
    fields: Optional[Mapping[str, Any]] = None,
    out_fields: Optional[Mapping[str, Any]] = None,
    forward: Optional[Callable[[Callable, Data], Any]] = None,
    output_keys: Optional[Sequence[str]] = None,
    elements: Optional[Sequence[Any]] = None,
    num_samples: int = 4,
    dtype: Optional[torch.dtype] = torch.float64,
    seed: int = 0,
) -> EquivarianceResult:
    r"""Measures how far ``module`` is from commuting with ``group``.

    Args:
        module (callable): a :class:`torch.nn.Module` (copied and cast to
            :obj:`dtype`) or any function.
        data (Data): the input.
        group (Group): the symmetry.
        fields (dict, optional): representations of the input attributes,
            e.g. ``{"x": "4x0e + 2x1o"}`` (merged over the group's defaults).
        out_fields (dict, optional): representations of the outputs, by the
            names in :obj:`output_keys`.
        forward (callable, optional): ``forward(module, data)`` returning a
            Tensor, a tuple of Tensors or a ``Data``. By default the module is
            called with the attributes of ``data`` named like its ``forward``
            arguments (or with ``data`` itself if its first argument is
            ``data``).
        output_keys (list of str, optional): names of the outputs (default
            ``["out"]``, or ``["out", "pos"]`` for a pair ``(x, pos)``).
        elements (list, optional): the elements to try; by default all elements
            of a finite group, else :obj:`num_samples` random ones.
        num_samples (int, optional): random elements for infinite groups.
        dtype (torch.dtype, optional): cast module and floating inputs to this
            dtype (:obj:`None` keeps them). (default: :obj:`torch.float64`)
        seed (int, optional): seeds the sampling of group elements.
    """
    if not isinstance(group, Group):
        raise TypeError(f"Expected a 'gdl_pyg.groups.Group' (got {type(group).__name__})")
    if not isinstance(data, Data):
        raise TypeError(f"Expected a torch_geometric 'Data' (got {type(data).__name__})")
    if isinstance(module, torch.nn.Module):
        module = copy.deepcopy(module)
        if dtype is not None:
            module = module.to(dtype)
        module.eval()
    if dtype is not None:
        data = _cast(data, dtype)
    run = forward if forward is not None else _default_forward
    gen = torch.Generator().manual_seed(seed)
    if elements is None:
        try:
            elements = group.elements(data)
        except NotImplementedError:
            elements = [group.sample(data, generator=gen) for _ in range(num_samples)]
    if len(elements) == 0:
        raise ValueError("No group elements to check")

    with torch.no_grad():
        out, keys = _as_data(run(module, data), data, output_keys)
        worst = (-1.0, 0.0, None, "")
        for g in elements:
            data_g = group.act(g, data, fields)
            out_g, _ = _as_data(run(module, data_g), data_g, output_keys)
            expected = group.act(g, out, out_fields)
            for key in keys:
                if key not in out_g or key not in expected:
                    raise ValueError(f"The module's output has no attribute '{key}'")
                a, e = out_g[key], expected[key]
                if a.shape != e.shape:
                    raise ValueError(f"Output '{key}' changed shape under {group.name}: "
                                     f"{list(e.shape)} -> {list(a.shape)}")
                if a.numel() == 0:
                    continue
                abs_err = float((a - e).abs().max())
                scale = max(1.0, float(e.abs().max()))
                rel = abs_err / scale
                if rel != rel:  # NaN
                    rel = float("inf")
                if rel > worst[0]:
                    worst = (rel, abs_err, g, key)
    return EquivarianceResult(worst[0], worst[1], worst[2], worst[3],
                              dtype if dtype is not None else torch.get_default_dtype(),
                              len(elements))


def assert_equivariant(
    module: Callable,
    data: Data,
    group: Group,
    fields: Optional[Mapping[str, Any]] = None,
    out_fields: Optional[Mapping[str, Any]] = None,
    forward: Optional[Callable[[Callable, Data], Any]] = None,
    output_keys: Optional[Sequence[str]] = None,
    elements: Optional[Sequence[Any]] = None,
    num_samples: int = 4,
    dtype: Optional[torch.dtype] = torch.float64,
    tol: Optional[float] = None,
    seed: int = 0,
) -> EquivarianceResult:
    r"""Asserts :math:`f(g \cdot x) = g \cdot f(x)` for elements of ``group``.

    Takes the arguments of :func:`equivariance_error`, plus ``tol``: the
    largest admissible error relative to ``max(1, max |expected|)`` (default
    :obj:`DEFAULT_TOLERANCE` of the dtype: ``1e-9`` in float64, ``1e-4`` in
    float32). Raises :class:`AssertionError` naming the largest error, the
    group element and the output; returns the :class:`EquivarianceResult`.
    """
    res = equivariance_error(module, data, group, fields=fields, out_fields=out_fields,
                             forward=forward, output_keys=output_keys, elements=elements,
                             num_samples=num_samples, dtype=dtype, seed=seed)
    if tol is None:
        tol = DEFAULT_TOLERANCE.get(res.dtype, 1e-4)
    name = type(module).__name__ if isinstance(module, torch.nn.Module) else getattr(
        module, "__name__", repr(module))
    if not res.error <= tol:
        g = res.element
        if isinstance(g, Tensor) and g.numel() > 12:
            g = f"tensor of shape {list(g.shape)}: {g.flatten()[:6].tolist()}..."
        raise AssertionError(
            f"'{name}' is not equivariant to {group.name}: largest error {res.error:.3e} "
            f"(absolute {res.abs_error:.3e}, tolerance {tol:.1e} in {res.dtype}) on output "
            f"'{res.key}' at group element {g}")
    return res
