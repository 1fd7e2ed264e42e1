r"""A generated sequence task for time-warping invariance (section 5.8 of the
GDL book, after Tallec and Ollivier, `"Can Recurrent Neural Networks Warp
Time?" <https://arxiv.org/abs/1804.11188>`_)."""
from typing import List, Literal, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Data

from gdl_pyg.domains.sequence import sequence_to_data
from gdl_pyg.groups.time_warping import TimeWarping, path_edge_index
from gdl_pyg.lightning.data import GraphDataModule

__all__ = ["TimeWarpDataModule", "make_event_sequences", "warp_sequences"]


def _check_positive_int(owner: str, name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"'{owner}' expected '{name}' to be an integer >= {minimum} "
                         f"(got {value!r})")


def make_event_sequences(num: int, length: int = 20, num_symbols: int = 4,
                         min_events: int = 2, max_events: int = 4,
                         task: Literal["first", "last"] = "first", noise: float = 0.1,
                         generator: Optional[torch.Generator] = None) -> List[Data]:
    r"""Random sequences of symbol *events* on a noisy blank background,
    labelled by the symbol of their first (or last) event.

    Every sequence has :obj:`length` steps and ``x [length, num_symbols]``:
    between :obj:`min_events` and :obj:`max_events` events at distinct random
    times, each the one-hot code of a random symbol, plus Gaussian noise of
    standard deviation :obj:`noise` everywhere. The label ``y [1]`` depends
    on the *order* of the events, not on when they happen, so it is
    invariant to time warping; a model must keep the answer in its state
    across the blank gaps, which a warp lengthens.

    Returns a list of sequence ``Data`` (:func:`~gdl_pyg.domains.sequence_to_data`)
    with ``y``.
    """
    _check_positive_int("make_event_sequences", "num", num)
    _check_positive_int("make_event_sequences", "num_symbols", num_symbols, minimum=2)
    _check_positive_int("make_event_sequences", "min_events", min_events)
    if isinstance(max_events, bool) or not isinstance(max_events, int) or \
            not min_events <= max_events <= length:
        raise ValueError(f"'make_event_sequences' expected min_events <= max_events <= "
                         f"length (got {min_events}, {max_events}, {length})")
    if task not in ("first", "last"):
        raise ValueError(f"'make_event_sequences' expected task 'first' or 'last' "
                         f"(got {task!r})")
    if not noise >= 0:
        raise ValueError(f"'make_event_sequences' expected a non-negative noise (got {noise!r})")
    num_events = torch.randint(min_events, max_events + 1, (num,), generator=generator)
    # distinct random event times: the steps ranked below num_events in a random order
    rank = torch.rand(num, length, generator=generator).argsort(dim=1).argsort(dim=1)
    is_event = rank < num_events.view(-1, 1)  # [num, length]
    symbols = torch.randint(0, num_symbols, (num, length), generator=generator)
    x = noise * torch.randn(num, length, num_symbols, generator=generator)
    x += torch.nn.functional.one_hot(symbols, num_symbols).to(x.dtype) * is_event.unsqueeze(-1)
    steps = torch.arange(length).expand(num, length)
    if task == "first":
        when = torch.where(is_event, steps, length).min(dim=1).values
    else:
        when = torch.where(is_event, steps, -1).max(dim=1).values
    labels = symbols.gather(1, when.view(-1, 1))  # [num, 1]
    template = sequence_to_data(x[0])  # every sequence has the same path graph
    graphs = [Data(x=x[b], edge_index=template.edge_index, t=template.t, y=labels[b])
              for b in range(num)]
    return graphs


def warp_sequences(graphs: Sequence[Data], max_repeat: int,
                   generator: Optional[torch.Generator] = None) -> List[Data]:
    r"""Applies an independent random :class:`~gdl_pyg.groups.TimeWarping`
    (every step repeated ``1..max_repeat`` times) to every sequence; the
    time stamps ``t`` keep the original clock."""
    group = TimeWarping(max_repeat)
    out = []
    for data in graphs:
        counts = group.sample(data, generator=generator)
        # the action of TimeWarping on a single sequence, as one gather per attribute
        # (searchsorted, not repeat_interleave, which is slow on small tensors when
        # several processes share the CPU)
        ends = counts.cumsum(0)
        idx = torch.searchsorted(ends, torch.arange(int(ends[-1])), right=True)
        warped = Data()
        for key, value in data.items():
            if key == "edge_index" or (isinstance(value, Tensor) and "edge" in key):
                continue
            if isinstance(value, Tensor) and value.dim() > 0 and \
                    value.size(0) == data.num_nodes and key != "y":
                warped[key] = value[idx.to(value.device)]
            else:
                warped[key] = value
        warped.edge_index = path_edge_index(torch.zeros_like(idx))
        out.append(warped)
    return out


class TimeWarpDataModule(GraphDataModule):
    r"""Event-order classification (:func:`make_event_sequences`), trained
    and validated on unwarped sequences and tested on the same test
    sequences unwarped (test loader ``"unwarped"``) and randomly time-warped
    (loader ``"warped"``, every step repeated ``1..max_warp`` times).

    A plain RNN must *learn* how fast to forget, on the time scale of the
    training data, and loses accuracy when warps lengthen the gaps; a gated
    recurrence can learn to hold its state on blank steps, which makes it
    robust to warps (Tallec and Ollivier).

    Args:
        num_train (int, optional): training sequences. (default: :obj:`2000`)
        num_val (int, optional): validation sequences. (default: :obj:`500`)
        num_test (int, optional): test sequences. (default: :obj:`500`)
        length (int, optional): steps per unwarped sequence. (default: :obj:`20`)
        num_symbols (int, optional): symbols = classes = channels.
            (default: :obj:`4`)
        min_events (int, optional): fewest events per sequence. (default: :obj:`2`)
        max_events (int, optional): most events per sequence. (default: :obj:`4`)
        task (str, optional): label by the ``"first"`` or ``"last"`` event.
            (default: :obj:`"first"`)
        noise (float, optional): standard deviation of the background noise.
            (default: :obj:`0.1`)
        max_warp (int, optional): the largest repeat count of the test warps.
            (default: :obj:`4`)
        batch_size (int, optional): sequences per mini-batch. (default: :obj:`64`)
        seed (int, optional): seeds the data; the splits are a deterministic
            function of the arguments. (default: :obj:`0`)
        num_workers (int, optional): dataloader worker processes.
            (default: :obj:`0`)
    """

    def __init__(self, num_train: int = 2000, num_val: int = 500, num_test: int = 500,
                 length: int = 20, num_symbols: int = 4, min_events: int = 2,
                 max_events: int = 4, task: Literal["first", "last"] = "first",
                 noise: float = 0.1, max_warp: int = 4, batch_size: int = 64, seed: int = 0,
                 num_workers: int = 0):
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        name = type(self).__name__
        for key, value in (("num_train", num_train), ("num_val", num_val),
                           ("num_test", num_test), ("length", length), ("max_warp", max_warp),
                           ("min_events", min_events)):
            _check_positive_int(name, key, value)
        _check_positive_int(name, "num_symbols", num_symbols, minimum=2)
        if isinstance(max_events, bool) or not isinstance(max_events, int) or \
                not min_events <= max_events <= length:
            raise ValueError(f"'{name}' expected min_events <= max_events <= length "
                             f"(got {min_events}, {max_events}, {length})")
        if task not in ("first", "last"):
            raise ValueError(f"'{name}' expected task 'first' or 'last' (got {task!r})")
        if not isinstance(noise, (int, float)) or not noise >= 0:
            raise ValueError(f"'{name}' expected a non-negative noise (got {noise!r})")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"'{name}' expected an integer seed (got {type(seed).__name__})")
        self.num_train, self.num_val, self.num_test = num_train, num_val, num_test
        self.length = length
        self.num_symbols = num_symbols
        self.min_events, self.max_events = min_events, max_events
        self.task = task
        self.noise = float(noise)
        self.max_warp = max_warp
        self.seed = seed
        self.save_hyperparameters()

    @property
    def num_classes(self) -> int:
        r"""The number of classes (one per symbol)."""
        return self.num_symbols

    @property
    def num_features(self) -> int:
        r"""Input channels per step (one per symbol)."""
        return self.num_symbols

    def _make(self, num: int, offset: int) -> List[Data]:
        gen = torch.Generator().manual_seed(self.seed * 1000 + offset)
        return make_event_sequences(num, self.length, self.num_symbols, self.min_events,
                                    self.max_events, self.task, self.noise, generator=gen)

    def setup(self, stage: Optional[str] = None) -> None:
        if stage in (None, "fit", "validate") and self.train_dataset is None:
            self.train_dataset = self._make(self.num_train, 0)
            self.val_dataset = self._make(self.num_val, 1)
        if stage in (None, "test", "predict") and not self.test_datasets:
            test = self._make(self.num_test, 2)
            gen = torch.Generator().manual_seed(self.seed * 1000 + 3)
            self.test_datasets = {"unwarped": test,
                                  "warped": warp_sequences(test, self.max_warp, gen)}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(task={self.task!r}, length={self.length}, "
                f"max_warp={self.max_warp}, batch_size={self.batch_size}, seed={self.seed})")
