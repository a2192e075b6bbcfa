"""`python -m pyward` is the same CLI as `pyward`."""
import sys

from pyward.cli import main

if __name__ == "__main__":
    sys.exit(main())
