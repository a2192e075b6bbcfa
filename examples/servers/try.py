"""Send examples/servers/app.py a few requests and show what came back.

    python examples/servers/try.py [PORT]
"""
import http.client
import sys

port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
for method, path, body in [("GET", "/bio/ada", None), ("GET", "/bio/bob", None), ("GET", "/bio/bob", None),
                           ("GET", "/rate/bob", None), ("POST", "/order", b'{"item": "tea"}'),
                           ("POST", "/order", b'{"item": "cake"}')]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        healed = response.getheader("X-Pyward-Healed")
        print(f"{method} {path} -> {response.status} {response.read().decode()}"
              + (f"  [X-Pyward-Healed: {healed}]" if healed else ""))
    except (ConnectionError, http.client.HTTPException) as exc:
        print(f"{method} {path} -> no response ({type(exc).__name__})")
    finally:
        conn.close()
