"""A small JSON service with bugs on some paths, to try `pyward run --heal` on.

    pyward run --heal examples/servers/app.py [PORT]     # default port 8000
    python examples/servers/try.py [PORT]                # send it a few requests

Without pyward, a request on a buggy path gets its connection dropped
(http.server's behaviour on an exception).  Under `pyward run --heal`, the
handler is patched and the request answered; see README "Keep a service up".
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

USERS = {
    "ada": {"name": "Ada", "profile": {"bio": "mathematician"}, "visits": 12, "days": 4},
    "bob": {"name": "Bob", "profile": None, "visits": 3, "days": 0},
}
ORDERS = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        parts = self.path.strip("/").split("/")
        if parts[0] == "bio":             # bob has no profile: subscript of None
            user = USERS[parts[1]]
            self.reply(200, {"bio": user["profile"]["bio"]})
        elif parts[0] == "rate":          # bob has 0 days: division by zero
            user = USERS[parts[1]]
            self.reply(200, {"visits_per_day": user["visits"] / user["days"]})
        else:
            self.reply(404, {"error": "no such page"})

    def do_POST(self):                    # an order without "qty": missing key, after the order was recorded
        order = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ORDERS.append(order)
        self.reply(201, {"orders": len(ORDERS), "qty": order["qty"]})

    def log_message(self, format, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    print(f"serving on http://127.0.0.1:{port}", flush=True)
    try:
        ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
    except KeyboardInterrupt:  # Ctrl-C: a clean stop
        pass
