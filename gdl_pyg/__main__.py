"""``python -m gdl_pyg`` is the ``gdl-pyg`` command."""
from gdl_pyg.lightning.cli import main

if __name__ == "__main__":
    main()
