"""SHA-256 as pyward computes it: reports, checkpoints, policy revisions, heal's recipes.

CPython's own implementation, not hashlib's: hashlib loads OpenSSL, ~2.5 ms of
every run's start-up.  Bound when pyward starts, before the program runs, so a
program that mocks `hashlib.sha256` (a test's patch) does not reach pyward's hashes.
"""
try:
    from _sha2 import sha256 as SHA256  # type: ignore[import-not-found]  # 3.12+
except ImportError:
    try:
        from _sha256 import sha256 as SHA256  # type: ignore[import-not-found]  # 3.11
    except ImportError:  # a build without them
        from hashlib import sha256 as SHA256

__all__ = ["SHA256"]
