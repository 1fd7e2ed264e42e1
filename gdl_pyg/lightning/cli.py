r"""The ``gdl-pyg`` command (also ``python -m gdl_pyg``): Lightning's
:class:`~lightning.pytorch.cli.LightningCLI` with any task and any data module
chosen by ``class_path`` in a YAML config.

.. code-block:: bash

    gdl-pyg fit --config gdl_pyg/configs/gcnn_digits.yaml
    gdl-pyg test --config gdl_pyg/configs/gcnn_digits.yaml --ckpt_path runs/.../best.ckpt
    gdl-pyg fit --help

The shipped configs live in :mod:`gdl_pyg.configs` (see :func:`config_path`).
"""
import os
from typing import List, Optional

from lightning.pytorch.cli import LightningCLI

__all__ = ["main", "config_path", "list_configs"]

_CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "configs")


def list_configs() -> List[str]:
    r"""The names of the configs shipped in ``gdl_pyg/configs`` (without
    ``.yaml``), sorted."""
    if not os.path.isdir(_CONFIG_DIR):
        return []
    return sorted(f[:-5] for f in os.listdir(_CONFIG_DIR) if f.endswith(".yaml"))


def config_path(name: str) -> str:
    r"""The path of a shipped config, by name (``"gcnn_digits"``) or file
    name (``"gcnn_digits.yaml"``)."""
    stem = name[:-5] if name.endswith(".yaml") else name
    path = os.path.join(_CONFIG_DIR, stem + ".yaml")
    if not os.path.isfile(path):
        raise ValueError(f"No shipped config named {name!r}; expected one of {list_configs()}")
    return path


def main(args: Optional[List[str]] = None) -> None:
    r"""Runs the command line: ``main(["fit", "--config", path, ...])``.

    A thin wrapper around :class:`~lightning.pytorch.cli.LightningCLI` with
    ``subclass_mode_model=True`` and ``subclass_mode_data=True`` (the task
    and the data module are given by ``class_path`` / ``init_args``). The
    resolved config is saved as ``config.yaml`` in the run folder
    (overwriting). Returns :obj:`None`, so it can be a console script.

    Args:
        args (list of str, optional): the arguments; :obj:`None` reads
            ``sys.argv``. (default: :obj:`None`)
    """
    LightningCLI(
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=True,
    )


if __name__ == "__main__":
    main()
