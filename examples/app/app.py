#!/usr/bin/env python3
"""fleet sample application: a page with its version and a health endpoint.

Standard library only, and Python 3.9 compatible: Amazon Linux 2023 ships
python3 3.9 and nothing else is installed on the image.

  GET /         an HTML page naming the version and the host that answered
  GET /healthz  200 {"status": "ok", "version": ...}: the ALB health check

Settings (environment):
  FLEET_APP_PORT     port to listen on (default 8080, the stack setting appPort)
  FLEET_APP_HOST     address to bind (default 0.0.0.0; the security group admits
                     the port only from the load balancer)
  FLEET_APP_VERSION  the version to report (default: the VERSION file next to
                     this script, written by install.sh; else "dev")

SIGTERM or SIGINT stops accepting connections, lets requests in flight finish,
then exits 0, so an instance drained by the load balancer loses no request.
"""
from __future__ import annotations

import html
import json
import os
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DEFAULT_PORT = 8080
# A client that goes silent cannot hold a request thread (and so shutdown) for longer.
REQUEST_TIMEOUT_S = 10


def read_version() -> str:
    explicit = os.environ.get("FLEET_APP_VERSION", "").strip()
    if explicit:
        return explicit
    version_file = Path(__file__).resolve().with_name("VERSION")
    try:
        return version_file.read_text().strip() or "dev"
    except OSError:
        return "dev"


def read_port() -> int:
    raw = os.environ.get("FLEET_APP_PORT", str(DEFAULT_PORT))
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise SystemExit(f"fleet-app: FLEET_APP_PORT {raw!r} is invalid: expected a port number 1-65535")
    return port


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so no idle keep-alive connection
    # holds a thread open after shutdown has begun.
    protocol_version = "HTTP/1.0"
    timeout = REQUEST_TIMEOUT_S
    server_version = "fleet-app"
    version = "dev"  # set by make_server()

    def do_GET(self) -> None:  # noqa: N802 (the name http.server dispatches to)
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self.send_body(200, "application/json", json.dumps({"status": "ok", "version": self.version}))
        elif path == "/":
            page = (
                "<!doctype html><html><head><title>fleet sample app</title></head><body>"
                f"<h1>fleet sample app</h1><p>version <strong>{html.escape(self.version)}</strong></p>"
                f"<p>served by {html.escape(socket.gethostname())}</p></body></html>\n"
            )
            self.send_body(200, "text/html; charset=utf-8", page)
        else:
            self.send_body(404, "application/json", json.dumps({"status": "not found", "path": path}))

    def send_body(self, status: int, content_type: str, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (signature of the base class)
        # One line per request on stdout, which journald keeps.
        print(f"{self.address_string()} {format % args}", flush=True)


def make_server(host: str, port: int, version: str) -> ThreadingHTTPServer:
    handler = type("VersionedHandler", (Handler,), {"version": version})
    server = ThreadingHTTPServer((host, port), handler)
    # Track request threads so server_close() waits for those in flight.
    server.daemon_threads = False
    server.block_on_close = True
    return server


def serve(server: ThreadingHTTPServer) -> None:
    def stop(signum, _frame) -> None:
        print(f"fleet-app: {signal.Signals(signum).name}: finishing requests in flight, then exiting", flush=True)
        # shutdown() waits for serve_forever() to return, which runs in this
        # (the main) thread: call it from another one.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever()
    finally:
        server.server_close()  # joins the request threads still running


def main() -> int:
    host = os.environ.get("FLEET_APP_HOST", "0.0.0.0")
    port = read_port()
    version = read_version()
    server = make_server(host, port, version)
    print(f"fleet-app: version {version} listening on {host}:{port}", flush=True)
    serve(server)
    print("fleet-app: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
