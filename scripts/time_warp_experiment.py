r"""Gated vs. plain recurrences under time warping (GDL book, sec. 5.8; Tallec
and Ollivier, "Can recurrent neural networks warp time?", ICLR 2018).

Trains sequence classifiers on *unwarped* event-order sequences (the label is
the symbol of the first event, see
:func:`gdl_pyg.lightning.sequence_data.make_event_sequences`) and measures
their test accuracy when the test sequences are randomly time-warped (every
step repeated 1..m times) for growing maximal warps m. Models:

* ``rnn``: the plain tanh RNN (no gate: its time scale is fixed by training);
* ``gated``: the GRU-style gated recurrence (``GatedRecurrentConv``);
* ``lstm``: the LSTM (``GatedLSTMConv``);
* ``gated+t``: the gated recurrence fed the local warp rate computed from the
  time stamps (``time_aware=True``).

Prints a table of accuracies and saves a plot::

    python scripts/time_warp_experiment.py --out time_warp.png
"""
import argparse
import os
import sys
import time

import torch
from torch_geometric.loader import DataLoader

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gdl_pyg.lightning.sequence_data import make_event_sequences, warp_sequences  # noqa: E402
from gdl_pyg.nn.models.sequence_rnn import SequenceClassifier  # noqa: E402

MODELS = {
    "rnn": dict(cell="rnn"),
    "gated": dict(cell="gated"),
    "lstm": dict(cell="lstm"),
    "gated+t": dict(cell="gated", time_aware=True),
}


def accuracy(model, graphs, batch_size=256):
    model.eval()
    correct = 0
    with torch.no_grad():
        for batch in DataLoader(graphs, batch_size=batch_size):
            correct += int((model(batch).argmax(-1) == batch.y).sum())
    return correct / len(graphs)


def train(model, graphs, epochs, lr, batch_size, seed):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loader = DataLoader(graphs, batch_size=batch_size, shuffle=True)
    for _ in range(epochs):
        model.train()
        for batch in loader:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(batch), batch.y)
            loss.backward()
            opt.step()
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--num-train", type=int, default=2000)
    parser.add_argument("--num-test", type=int, default=1000)
    parser.add_argument("--task", choices=["first", "last"], default="first")
    parser.add_argument("--length", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warps", default="1,2,3,4,6,8",
                        help="maximal repeat counts of the test warps (1 = unwarped)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (small recurrent steps run best on one)")
    parser.add_argument("--out", default="time_warp_experiment.png")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    names = [m for m in args.models.split(",") if m]
    for m in names:
        if m not in MODELS:
            parser.error(f"unknown model {m!r}; expected some of {list(MODELS)}")
    warps = [int(w) for w in args.warps.split(",")]
    gen = torch.Generator().manual_seed(args.seed)
    kw = dict(length=args.length, num_symbols=4, min_events=2, max_events=4, task=args.task,
              noise=0.1)
    train_set = make_event_sequences(args.num_train, generator=gen, **kw)
    test_set = make_event_sequences(args.num_test, generator=gen, **kw)
    test_sets = {w: test_set if w == 1 else warp_sequences(test_set, w, gen) for w in warps}

    results = {}
    for name in names:
        torch.manual_seed(args.seed)
        model = SequenceClassifier(4, args.hidden, 4, **MODELS[name])
        start = time.perf_counter()
        train(model, train_set, args.epochs, args.lr, args.batch_size, args.seed)
        secs = time.perf_counter() - start
        results[name] = [accuracy(model, test_sets[w]) for w in warps]
        print(f"{name:8s} trained in {secs:5.1f} s; test accuracy by max warp "
              + ", ".join(f"{w}: {a:.3f}" for w, a in zip(warps, results[name])), flush=True)

    print("\nmax warp | " + " | ".join(f"{n:>8s}" for n in names))
    for i, w in enumerate(warps):
        print(f"{w:8d} | " + " | ".join(f"{results[n][i]:8.3f}" for n in names))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name in names:
        ax.plot(warps, results[name], marker="o", label=name)
    ax.set_xlabel("max repeat count of the test warp (1 = unwarped)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{args.task}-event task, trained unwarped (T={args.length})")
    ax.axhline(0.25, color="grey", lw=0.5, ls="--")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="center right")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
