"""``python -m bielik``: the same entry point as the ``bielik`` command."""

from bielik.cli import main

if __name__ == "__main__":
    main()
