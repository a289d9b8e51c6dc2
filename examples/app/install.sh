#!/usr/bin/env bash
# Installs the fleet sample application on an Amazon Linux 2023 AMI builder.
#
# Contract with `fleet ami bake VERSION --script examples/app/install.sh`:
#   - runs once on the builder instance, as root, through SSM Run Command
#     (the script's text is sent; it cannot read other files of this repository,
#     so the application and its unit are embedded below by bundle.py);
#   - FLEET_VERSION holds the version being baked (required; same format as a
#     fleet release: 1-48 letters, digits, '.', '_' or '-');
#   - exit 0 means the image may be created; any other exit fails the bake and
#     the command's output tail is shown.
# Re-running it is safe: every file is replaced whole and every step checks first.
#
# It installs /opt/fleet-app/{app.py,VERSION}, a dedicated system user
# fleet-app, the systemd unit fleet-app.service (enabled, so instances launched
# from the image serve on boot), starts it and checks /healthz answers.
#
# FLEET_INSTALL_ROOT (default empty) prefixes every path written; only for
# staging the files in a scratch directory, e.g. in tests.
#
# DO NOT EDIT the embedded files here: edit app.py or fleet-app.service next to
# this script, then run `python3 examples/app/bundle.py`.
set -euo pipefail

ROOT="${FLEET_INSTALL_ROOT:-}"
APP_DIR="$ROOT/opt/fleet-app"
UNIT_PATH="$ROOT/etc/systemd/system/fleet-app.service"
SERVICE_USER=fleet-app
PORT="${FLEET_APP_PORT:-8080}"
VERSION="${FLEET_VERSION:-}"

fail() { echo "install.sh: $1" >&2; exit "${2:-1}"; }

if [[ -z "$VERSION" ]]; then
    fail "FLEET_VERSION is not set: expected the version being baked (fleet ami bake sets it)" 2
fi
if [[ ! "$VERSION" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$ ]]; then
    fail "FLEET_VERSION '$VERSION' is malformed: expected 1-48 letters, digits, '.', '_' or '-', starting with a letter or digit" 2
fi
if [[ "$(id -u)" -ne 0 ]]; then
    fail "must run as root (fleet ami bake runs it as root through SSM)" 2
fi

# Write stdin to a file whole (temporary file, then rename), so a crash never
# leaves half a file behind.
write_file() {
    local path="$1" mode="$2"
    mkdir -p "$(dirname "$path")"
    cat >"$path.partial"
    chmod "$mode" "$path.partial"
    mv -f "$path.partial" "$path"
}

echo "install.sh: installing fleet sample app version $VERSION"

if ! command -v python3 >/dev/null; then
    dnf install -y python3
fi

if ! getent passwd "$SERVICE_USER" >/dev/null; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /sbin/nologin "$SERVICE_USER"
fi

# Code and unit belong to root: the service user can read, not change, them.
write_file "$APP_DIR/app.py" 0644 <<'FLEET_EMBEDDED_APP_PY'
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
FLEET_EMBEDDED_APP_PY

printf '%s\n' "$VERSION" | write_file "$APP_DIR/VERSION" 0644

write_file "$UNIT_PATH" 0644 <<'FLEET_EMBEDDED_SERVICE'
# fleet sample application, installed by examples/app/install.sh.
# The port comes from FLEET_APP_PORT; user data may override it in /etc/fleet-app/env.
[Unit]
Description=fleet sample web application
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
User=fleet-app
Group=fleet-app
Environment=FLEET_APP_PORT=8080
EnvironmentFile=-/etc/fleet-app/env
ExecStart=/usr/bin/python3 /opt/fleet-app/app.py
Restart=on-failure
RestartSec=2
# SIGTERM lets requests in flight finish; the load balancer has drained the
# instance before it stops, so this bound is generous.
KillSignal=SIGTERM
TimeoutStopSec=30

# Hardening: the service reads its code and answers HTTP, nothing else.
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
CapabilityBoundingSet=
AmbientCapabilities=
UMask=0077

[Install]
WantedBy=multi-user.target
FLEET_EMBEDDED_SERVICE

systemctl daemon-reload
systemctl enable fleet-app.service
systemctl restart fleet-app.service

# The bake fails here, not at the first deploy, when the app does not come up.
# curl's own retries bound the wait (about 30 s).
health=$(curl --silent --show-error --fail --max-time 5 \
    --retry 30 --retry-delay 1 --retry-connrefused \
    "http://127.0.0.1:$PORT/healthz") || fail "the app did not answer on 127.0.0.1:$PORT/healthz; see: journalctl -u fleet-app"
if [[ "$health" != *"\"version\": \"$VERSION\""* ]]; then
    fail "the app answered $health, expected version $VERSION"
fi
echo "install.sh: fleet sample app $VERSION installed and healthy on port $PORT"
