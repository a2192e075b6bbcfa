import pathlib
import sys

# tests/helpers.py is imported as a plain module by the test files.
sys.path.insert(0, str(pathlib.Path(__file__).parent))
