"""Who ran, where, under which policy: the run's identity and its policy revision.

Identity is fixed for a run, so it is recorded once: in the report's `run`
metadata, in the `run.start` event and as the resource of exported records
(OpenTelemetry attribute names: `service.name`, `host.name`, `process.pid`,
`k8s.*`).  Every event carries only `pid` (already there: forked children
journal with their own) and `policy`, the short id of the policy revision
(12 hex digits), so each line of a log can be traced to the exact policy
that decided it at the cost of one short string.

The policy revision is a SHA-256 of the canonical form of the effective
policy: the sandbox mode, what happens on a denial, whether children inherit
it, and per permission the blanket grant and the sorted allow and deny scopes
(path scopes expanded to absolute paths).  Not the file's bytes: comments,
key order, or the same rules given by a flag instead of a file give the same
revision; a changed rule, or a relative path resolved from another directory,
gives another.
"""
from __future__ import annotations

import os

from ._isolation import isolate_module
from .canonical import dumps

os = isolate_module(os)  # noqa: F811

TYPE_CHECKING = False  # importing typing costs milliseconds of startup
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

#: Kubernetes downward-API variables (set them in the pod spec with `fieldRef`)
#: and the resource attribute each becomes.
K8S_VARIABLES = {
    "K8S_POD_NAME": "k8s.pod.name",
    "K8S_POD_UID": "k8s.pod.uid",
    "K8S_NAMESPACE_NAME": "k8s.namespace.name",
    "K8S_NODE_NAME": "k8s.node.name",
    "K8S_CONTAINER_NAME": "k8s.container.name",
    "K8S_DEPLOYMENT_NAME": "k8s.deployment.name",
}

SHORT = 12  # hex digits of the revision carried by every event


def resource_attributes(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`OTEL_RESOURCE_ATTRIBUTES` (`key=value,key=value`, percent-encoded values), parsed."""
    from urllib.parse import unquote

    value = (os.environ if environ is None else environ).get("OTEL_RESOURCE_ATTRIBUTES", "")
    out: dict[str, str] = {}
    for part in value.split(","):
        key, eq, val = part.partition("=")
        if eq and key.strip():
            out[key.strip()] = unquote(val.strip())
    return out


def default_service(target: Any) -> str:
    """The program's own name: the script without `.py`, the module, or `python`."""
    if target.kind == "script":
        name = os.path.basename(os.path.normpath(target.value))
        return name[:-3] if name.endswith(".py") else name
    if target.kind in ("module", "server"):
        return target.value
    return "python"


def identity(settings: Any, target: Any, pid: int) -> dict[str, Any]:
    """Service name (OTEL_SERVICE_NAME, then `service` in the config, then
    `service.name` in OTEL_RESOURCE_ATTRIBUTES, then the program's name), host,
    pid, and the `k8s.*` attributes the environment gives."""
    environ = os.environ
    resource = resource_attributes(environ) if "OTEL_RESOURCE_ATTRIBUTES" in environ else {}
    service = (environ.get("OTEL_SERVICE_NAME") or settings.get("service") or resource.get("service.name")
               or default_service(target))
    out: dict[str, Any] = {"service.name": service, "host.name": os.uname().nodename, "process.pid": pid}
    for key, value in resource.items():
        if key.startswith("k8s."):
            out[key] = value
    for variable, key in K8S_VARIABLES.items():
        if environ.get(variable):
            out[key] = environ[variable]
    return out


def effective_policy(settings: Any) -> dict[str, Any]:
    """The canonical form of the policy a run is under (see the module's doc)."""
    from .policy import PERMISSIONS, Policy, expand, path_variables

    mode = settings.get("mode")
    if mode == "off":
        return {"mode": "off"}
    policy = Policy.from_settings(settings)
    mode = "watch" if settings.get("sandbox.learn") else mode or ("enforce" if policy.configured else "watch")
    variables = path_variables()
    cwd = os.getcwd()
    permissions: dict[str, Any] = {}
    for perm in PERMISSIONS:
        def scopes(rules: list[Any], perm: str = perm) -> list[str]:
            if perm not in ("read", "write"):
                return sorted({r.scope for r in rules})
            return sorted({r.scope if r.scope == "*" else expand(r.scope, policy.base_dirs.get(r.origin, cwd),
                                                                  variables) for r in rules})

        allow, deny = scopes(policy.allows(perm)), scopes(policy.denies(perm))
        if allow or deny or perm in policy.allow_all:
            permissions[perm] = {"all": perm in policy.allow_all, "allow": allow, "deny": deny}
    return {"mode": mode, "on_deny": settings.get("on_deny", "raise"), "inherit": bool(settings.get("inherit", True)),
            "permissions": permissions}


def policy_revision(settings: Any) -> dict[str, Any]:
    """`{"revision": "sha256:<hex>", "id": <12 hex>, "mode": ..., "source": file or None}`."""
    from .digest import SHA256

    effective = effective_policy(settings)
    digest = SHA256(dumps(effective).encode("ascii")).hexdigest()
    return {"revision": f"sha256:{digest}", "id": digest[:SHORT], "mode": effective["mode"],
            "source": settings.source}
