"""Changes to the environment: which variables are news, and how values are shown.

A variable that changes what code runs, where it is found or whom it trusts
(or that looks like a secret) is news; a secret-looking value is never
written to the journal.
"""
from __future__ import annotations

from .._isolation import isolate_builtins

isolate_builtins(globals())

SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASS", "PWD", "CREDENTIAL", "AUTH", "COOKIE", "SESSION", "PRIVATE")
#: Variables that change what code runs, where it is found or whom it trusts:
#: a change to one of them (or to a secret-looking one) is news; a program's
#: other changes to its own environment are journaled at `info`.
SENSITIVE_ENV = ("PATH", "LD_", "DYLD_", "PYTHON", "SSL_CERT_", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


_SECRET: dict[str, bool] = {}  # names repeat (a test suite sets one variable per test): decide each once


def is_secret(name: str) -> bool:
    secret = _SECRET.get(name)
    if secret is None:
        upper = name.upper()
        secret = _SECRET[name] = any(w in upper for w in SECRET_WORDS)
    return secret


_SENSITIVE: dict[str, bool] = {}


def env_is_sensitive(name: str) -> bool:
    sensitive = _SENSITIVE.get(name)
    if sensitive is None:
        upper = name.upper()
        sensitive = _SENSITIVE[name] = upper.startswith(SENSITIVE_ENV) or "PROXY" in upper or is_secret(name)
    return sensitive


def redact(name: str, value: str | None) -> str:
    if value is None:
        return "<unset>"
    return "<redacted>" if is_secret(name) else repr(value)
