"""The sample application in examples/app: the service as a real process, its systemd unit,
and the install script that `fleet ami bake --script` runs on the builder."""
from __future__ import annotations

import ast
import configparser
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from automation.waiting import wait_for
from automation.local_aws import free_port

APP_DIR = Path(__file__).resolve().parents[2] / "examples" / "app"
APP = APP_DIR / "app.py"
UNIT = APP_DIR / "fleet-app.service"
INSTALL = APP_DIR / "install.sh"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0


class RunningApp:
    def __init__(self, process: subprocess.Popen, port: int):
        self.process = process
        self.port = port

    def get(self, path: str) -> tuple[int, str, str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()

    def answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"app exited with {self.process.returncode} before answering: {self.process.stdout.read()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False


def start_app(script: Path, env: dict[str, str]) -> RunningApp:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(script)],
        env={**os.environ, "FLEET_APP_HOST": "127.0.0.1", "FLEET_APP_PORT": str(port), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    app = RunningApp(process, port)
    wait_for(app.answers, what=f"the sample app on port {port}", timeout_s=START_TIMEOUT_S,
             first_delay_s=0.02, max_delay_s=0.2)
    return app


@pytest.fixture
def running_app():
    started: list[RunningApp] = []

    def start(script: Path = APP, **env: str) -> RunningApp:
        started.append(start_app(script, env))
        return started[-1]

    yield start
    for app in started:
        if app.process.poll() is None:
            app.process.kill()
            app.process.wait()


def test_healthz_and_page_report_the_version(running_app):
    """/healthz is what the ALB checks and / what people see: both must name the running version."""
    app = running_app(FLEET_APP_VERSION="2.4.1")
    status, content_type, body = app.get("/healthz")
    assert status == 200
    assert content_type == "application/json"
    assert json.loads(body) == {"status": "ok", "version": "2.4.1"}
    status, content_type, body = app.get("/")
    assert status == 200
    assert content_type.startswith("text/html")
    assert "2.4.1" in body


def test_unknown_path_is_404(running_app):
    """Only / and /healthz exist; anything else must not look healthy."""
    app = running_app(FLEET_APP_VERSION="1")
    with pytest.raises(urllib.error.HTTPError) as error:
        app.get("/nope")
    assert error.value.code == 404


def test_version_comes_from_the_installed_version_file(running_app, tmp_path, monkeypatch):
    """On an instance the version is the VERSION file install.sh writes next to app.py."""
    shutil.copy(APP, tmp_path / "app.py")
    (tmp_path / "VERSION").write_text("20250101.120000-abc1234\n")
    monkeypatch.delenv("FLEET_APP_VERSION", raising=False)
    app = running_app(tmp_path / "app.py")
    assert json.loads(app.get("/healthz")[2])["version"] == "20250101.120000-abc1234"


def test_sigterm_exits_zero(running_app):
    """systemd stops the service with SIGTERM; a clean stop must exit 0 so it is not counted a failure."""
    app = running_app(FLEET_APP_VERSION="1")
    app.process.send_signal(signal.SIGTERM)
    assert app.process.wait(timeout=STOP_TIMEOUT_S) == 0


def test_sigterm_finishes_the_request_in_flight(running_app):
    """A request that has started when SIGTERM arrives is answered in full before the process exits."""
    app = running_app(FLEET_APP_VERSION="7")
    in_flight = socket.create_connection(("127.0.0.1", app.port), timeout=5)
    in_flight.sendall(b"GET /healthz HTTP/1.0\r\n")  # headers not finished: the request is in progress
    # The server accepts connections in order; once a later one is answered, the first is being handled.
    assert app.get("/healthz")[0] == 200
    app.process.send_signal(signal.SIGTERM)
    # Once the listener is closed the server is shutting down; only then finish the request.
    wait_for(lambda: not app.answers(), what="the app to stop listening", timeout_s=STOP_TIMEOUT_S,
             first_delay_s=0.02, max_delay_s=0.2)
    in_flight.sendall(b"Host: test\r\n\r\n")
    response = b""
    while chunk := in_flight.recv(65536):
        response += chunk
    in_flight.close()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200")
    assert json.loads(body) == {"status": "ok", "version": "7"}
    assert app.process.wait(timeout=STOP_TIMEOUT_S) == 0


def test_bad_port_is_a_one_line_error():
    """A bad FLEET_APP_PORT fails at start with a line naming the value, not a traceback."""
    result = subprocess.run(
        [sys.executable, str(APP)], env={**os.environ, "FLEET_APP_PORT": "80x"},
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "fleet-app: FLEET_APP_PORT '80x' is invalid: expected a port number 1-65535"
    ]


def test_app_parses_as_python_3_9():
    """Amazon Linux 2023's python3 is 3.9: newer syntax would break the service on the instance."""
    ast.parse(APP.read_text(), feature_version=(3, 9))


# -- systemd unit ---------------------------------------------------------------


def read_unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read_string(UNIT.read_text())
    return unit


def test_unit_runs_the_app_as_an_unprivileged_restarting_service():
    """The service runs as its own user, from the installed path, and comes back after a crash."""
    service = read_unit()["Service"]
    assert service["User"] == "fleet-app" and service["Group"] == "fleet-app"
    assert service["ExecStart"] == "/usr/bin/python3 /opt/fleet-app/app.py"
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert read_unit()["Install"]["WantedBy"] == "multi-user.target"


def test_unit_is_hardened():
    """The sandbox options that keep a compromised app from changing the host."""
    service = read_unit()["Service"]
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
    }
    assert {key: service.get(key) for key in expected} == expected


# -- install.sh -----------------------------------------------------------------


def test_install_script_parses():
    """bash -n: a syntax error would only show on the builder, after an instance was launched."""
    subprocess.run(["bash", "-n", str(INSTALL)], check=True)


def test_install_script_carries_the_current_app_and_unit():
    """install.sh embeds app.py and the unit; bundle.py --check fails when they drifted apart."""
    result = subprocess.run([sys.executable, str(APP_DIR / "bundle.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


STAND_INS = {
    # Stand-ins for the root-only commands the script calls, recording their arguments.
    "id": 'echo 0',
    "getent": '[ -e "$STAND_IN_LOG.user" ]',
    "useradd": 'echo "useradd $*" >>"$STAND_IN_LOG"; touch "$STAND_IN_LOG.user"',
    "systemctl": 'echo "systemctl $*" >>"$STAND_IN_LOG"',
    "curl": 'printf \'{"status": "ok", "version": "%s"}\' "${STAND_IN_HEALTH_VERSION:-$FLEET_VERSION}"',
}


@pytest.fixture
def install(tmp_path):
    """Run install.sh with stand-in root commands, staging its files under a scratch root."""
    bin_dir = tmp_path / "stand-in-bin"
    bin_dir.mkdir()
    for name, body in STAND_INS.items():
        (bin_dir / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    root = tmp_path / "root"
    log = tmp_path / "calls.log"

    def run(**env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(INSTALL)],
            env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "FLEET_INSTALL_ROOT": str(root),
                 "STAND_IN_LOG": str(log), **env},
            capture_output=True, text=True, timeout=60,
        )

    run.root = root
    run.calls = lambda: log.read_text().splitlines() if log.exists() else []
    return run


def test_install_writes_app_version_and_unit_and_enables_the_service(install):
    """What the image must contain: the app, its version, the unit, a service user, the service enabled."""
    result = install(FLEET_VERSION="3.1.0")
    assert result.returncode == 0, result.stderr
    assert (install.root / "opt/fleet-app/app.py").read_text() == APP.read_text()
    assert (install.root / "opt/fleet-app/VERSION").read_text() == "3.1.0\n"
    assert (install.root / "etc/systemd/system/fleet-app.service").read_text() == UNIT.read_text()
    calls = install.calls()
    assert calls[0].startswith("useradd --system") and calls[0].endswith(" fleet-app")
    assert calls[1:] == ["systemctl daemon-reload", "systemctl enable fleet-app.service", "systemctl restart fleet-app.service"]


def test_install_is_idempotent(install):
    """A second run (a retried bake) succeeds, creates no second user and installs the new version."""
    assert install(FLEET_VERSION="3.1.0").returncode == 0
    second = install(FLEET_VERSION="3.1.1")
    assert second.returncode == 0, second.stderr
    assert sum(call.startswith("useradd") for call in install.calls()) == 1
    assert (install.root / "opt/fleet-app/VERSION").read_text() == "3.1.1\n"
    assert not list(install.root.rglob("*.partial"))


@pytest.mark.parametrize("env, fragment", [
    ({}, "FLEET_VERSION is not set"),
    ({"FLEET_VERSION": "1.0 beta"}, "FLEET_VERSION '1.0 beta' is malformed"),
])
def test_install_refuses_a_missing_or_malformed_version(install, env, fragment):
    """Without a valid FLEET_VERSION the script stops with exit 2 before touching anything."""
    result = install(**env)
    assert result.returncode == 2
    assert fragment in result.stderr
    assert not install.root.exists() and install.calls() == []


def test_install_fails_when_the_app_reports_another_version(install):
    """The bake fails if the started service does not serve the version just installed."""
    result = install(FLEET_VERSION="3.1.0", STAND_IN_HEALTH_VERSION="3.0.9")
    assert result.returncode == 1
    assert "expected version 3.1.0" in result.stderr
