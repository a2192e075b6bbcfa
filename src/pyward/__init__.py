"""pyward: run any Python program under a guard.

    pyward run app.py [args...]

The public API grows with the engines (sandbox, tamper, heal); this module
stays cheap to import because it is imported before the guarded program.
"""
__version__ = "0.1.0"
