r"""Safe checkpoint loading for the ``gdl-pyg`` command and for Python users.

Lightning checkpoints of ``gdl_pyg`` tasks hold only tensors, numbers,
strings, lists and dicts (the model is rebuilt from ``class_path`` /
``init_args`` in ``hyper_parameters``), so they load with
``torch.load(..., weights_only=True)``, which cannot run code. A file that
needs anything else is refused instead of unpickled, and a truncated or
corrupt file gives one clear :class:`CheckpointError` instead of
``PytorchStreamReader failed``, ``EOFError`` or ``KeyError``.
"""
import os
import pickle
import zipfile
from typing import Any, Dict, Optional

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

__all__ = ["CheckpointError", "load_checkpoint", "SafeCheckpointIO"]


class CheckpointError(ValueError):
    r"""A checkpoint that does not exist, is not a Lightning checkpoint, is
    truncated or corrupt, or would need unsafe unpickling to load."""


def _safe_globals():
    out = []
    try:
        from lightning.fabric.utilities.data import AttributeDict
        out.append(AttributeDict)
    except ImportError:  # pragma: no cover
        pass
    return out


def load_checkpoint(path, map_location: Any = None,
                    weights_only: Optional[bool] = True) -> Dict[str, Any]:
    r"""Loads a Lightning checkpoint with ``torch.load(...,
    weights_only=True)`` (unless :obj:`weights_only` is :obj:`False`).

    Args:
        path (str): the ``.ckpt`` file.
        map_location: passed to :func:`torch.load`.
        weights_only (bool, optional): :obj:`False` allows full unpickling,
            only for files you trust. (default: :obj:`True`)

    Raises:
        CheckpointError: the file is missing, is truncated or corrupt, is not
            a Lightning checkpoint, or would run code when unpickled.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint file at {path!r}")
    if weights_only is None:
        weights_only = True
    try:
        if weights_only:
            with torch.serialization.safe_globals(_safe_globals()):
                ckpt = torch.load(path, map_location=map_location, weights_only=True)
        else:
            ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()
        detail = next((line for line in first if "GLOBAL" in line or "Unsupported" in line),
                      first[0] if first else "")
        raise CheckpointError(
            f"refusing to load checkpoint {path!r}: it holds objects that only full "
            f"unpickling could rebuild, which can run arbitrary code ({detail.strip()}). "
            f"gdl_pyg checkpoints never need that. If you trust the file, load it with "
            f"--weights_only false (Python: weights_only=False).") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, KeyError, ValueError,
            IndexError, TypeError, AttributeError, MemoryError) as err:
        size = os.path.getsize(path)
        raise CheckpointError(
            f"checkpoint {path!r} ({size} bytes) is truncated or corrupt and cannot be read "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
            f"Use another checkpoint of the run (e.g. --ckpt_path last or best) or train "
            f"again.") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt \
            or "pytorch-lightning_version" not in ckpt:
        keys = sorted(map(str, ckpt))[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path!r} is not a Lightning checkpoint: expected a dict with "
                              f"'state_dict' and 'pytorch-lightning_version' (got {keys}); "
                              f"a bare state dict loads with model.load_state_dict instead")
    return ckpt


class SafeCheckpointIO(TorchCheckpointIO):
    r""":class:`~lightning.fabric.plugins.io.torch_io.TorchCheckpointIO` that
    loads with :func:`load_checkpoint` (``weights_only=True`` unless asked
    otherwise). ``gdl-pyg`` installs it in every :class:`~lightning.pytorch.
    Trainer`; pass ``plugins=[SafeCheckpointIO()]`` to your own."""

    def load_checkpoint(self, path, map_location: Any = None,
                        weights_only: Optional[bool] = None) -> Dict[str, Any]:
        if map_location is None:
            map_location = lambda storage, loc: storage  # noqa: E731 - as Lightning's
        return load_checkpoint(path, map_location=map_location,
                               weights_only=True if weights_only is None else weights_only)
