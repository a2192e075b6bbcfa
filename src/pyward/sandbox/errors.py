"""pyward.AccessDenied: what a program sees when the sandbox denies an operation."""


class AccessDenied(PermissionError):
    """An operation the sandbox's policy does not allow.

    Raised at the program's call site (the `open()`, `connect()`,
    `subprocess.run()`...), so the program may catch it like any
    PermissionError.  The message names the operation, the resource and the
    flag or policy line that would allow it.
    """


AccessDenied.__module__ = "pyward"  # how users name it: tracebacks say pyward.AccessDenied


class ImportDenied(ImportError):
    """An import the sandbox's policy does not allow (the "import" permission).

    An ImportError rather than a PermissionError, because that is what
    programs catch when they probe for optional modules
    (`try: import ujson except ImportError: import json`).
    """


ImportDenied.__module__ = "pyward"
