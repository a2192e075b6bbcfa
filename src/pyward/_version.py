"""pyward's version, in a module of its own so that pyward's modules can read it
without importing the package face (which loads the engines' public names)."""
__version__ = "0.1.0"
