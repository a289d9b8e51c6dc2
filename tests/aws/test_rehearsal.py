"""The local rehearsal up to the point that needs the Pulumi CLI, against the moto server
it starts itself.

The CLI lookup and the installer are test doubles: `no_pulumi_on_this_machine` (as on a
machine without the CLI) and `installer_without_internet` (fails the way the installer
does when it cannot download). The moto server is the real one the rehearsal starts; the
test only keeps a handle on it to look inside while it runs and to check it is gone.
"""
from __future__ import annotations

import os
import socket
import time

import boto3
import pytest
import yaml

from automation import ami
from automation.errors import ExitCode
from automation.local_aws import MotoServer, start_moto_server
from automation.local_stack import ENDPOINT_SERVICES
from automation.rehearsal import VERSIONS, PulumiUnavailable, install_pulumi, rehearse

pytestmark = pytest.mark.aws

NO_INTERNET = "urllib.error.URLError: <urlopen error [Errno -3] Temporary failure in name resolution>"


class ObservedRun:
    """Starts the moto server exactly as the rehearsal would, and keeps a handle on it."""

    def __init__(self):
        self.servers: list[MotoServer] = []
        self.images_while_running: list[dict] = []
        self.install_roots: list = []
        self.lines: list[str] = []

    def start_server(self) -> MotoServer:
        server = start_moto_server()
        self.servers.append(server)
        return server

    def no_pulumi_on_this_machine(self, pulumi_root):
        return None

    def installer_without_internet(self, pulumi_root, timeout_s):
        """Looks at what the bakes left in moto (the server is still up), then fails
        as the real installer does without internet."""
        server = self.servers[-1]
        ec2 = boto3.client(
            "ec2", endpoint_url=server.endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )
        self.images_while_running = ec2.describe_images(Owners=["self"])["Images"]
        self.install_roots.append(pulumi_root)
        raise PulumiUnavailable(NO_INTERNET)

    def run(self, tmp_path):
        return rehearse(
            work_dir=tmp_path / "rehearsal",
            pulumi_root=tmp_path / "pulumi",
            find_cli=self.no_pulumi_on_this_machine,
            install_cli=self.installer_without_internet,
            start_server=self.start_server,
            say=self.lines.append,
        )


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for a parent that may never reap it (Linux /proc)."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def assert_stopped(server: MotoServer) -> None:
    assert server.process.poll() is not None, "the rehearsal's moto server is still running"
    assert not listening(server.port), f"something still listens on port {server.port}"


@pytest.fixture
def outside_env(monkeypatch):
    """No AWS endpoint in the test's own environment: the rehearsal must set up its own."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "FLEET_PROJECT_DIR"):
        monkeypatch.delenv(name, raising=False)
    return without_pytest(os.environ)


def without_pytest(env) -> dict[str, str]:
    return {name: value for name, value in env.items() if name != "PYTEST_CURRENT_TEST"}


def test_rehearsal_bakes_both_versions_then_stops_plainly_where_the_cli_cannot_be_installed(tmp_path, outside_env):
    """Without the CLI and without internet: two AMIs baked and tagged for the sample app,
    a plain three-part message, exit code 3, the local stack prepared, moto stopped."""
    observed = ObservedRun()

    outcome = observed.run(tmp_path)

    assert outcome.exit_code == ExitCode.BLOCKED == 3
    (server,) = observed.servers
    images = {ami.tags_of(image)["fleet:version"]: image for image in observed.images_while_running}
    assert sorted(images) == sorted(VERSIONS)
    for version, image in images.items():
        tags = ami.tags_of(image)
        assert image["State"] == "available"
        assert tags["fleet:app"] == "web" and tags["fleet:managed-by"] == "fleet"
        assert tags["fleet:source-ami"].startswith("ami-") and tags["fleet:baked-at"].endswith("Z")
        assert outcome.amis[version] == image["ImageId"]
    assert observed.install_roots == [tmp_path / "pulumi"]

    message = outcome.message
    assert message in observed.lines
    assert f"done: started a moto server on {server.endpoint}" in message
    assert all(f"{version} {image}" in message for version, image in outcome.amis.items())
    assert f"not done: installing the Pulumi CLI failed: {NO_INTERNET}" in message
    assert "to continue:" in message and "re-run `./dev rehearse`" in message and "(exit code 3)" in message

    assert_stopped(server)
    assert observed.lines[-1].startswith("moto server stopped")

    work_dir = tmp_path / "rehearsal"
    config = yaml.safe_load((work_dir / "Pulumi.local.yaml").read_text())["config"]
    assert config["aws:endpoints"] == [{service: server.endpoint for service in ENDPOINT_SERVICES}]
    assert config["aws:skipCredentialsValidation"] is True
    assert (work_dir / "Pulumi.yaml").exists() and (work_dir / "infra").is_symlink() and (work_dir / "state").is_dir()
    assert without_pytest(os.environ) == outside_env, "the rehearsal left its environment behind in the caller's"


def test_a_rerun_starts_from_a_fresh_server_and_a_fresh_state_folder(tmp_path, outside_env):
    """Re-running reuses the work dir: the local stack points at the new server, state of the
    old server is gone, the same versions bake again, and no server of either run is left."""
    observed = ObservedRun()
    first = observed.run(tmp_path)
    stale = tmp_path / "rehearsal" / "state" / ".pulumi"
    stale.mkdir(parents=True)
    (stale / "left-by-the-first-run").write_text("{}")

    second = observed.run(tmp_path)

    assert first.exit_code == second.exit_code == ExitCode.BLOCKED
    old, new = observed.servers
    assert old.endpoint != new.endpoint
    assert sorted(ami.tags_of(image)["fleet:version"] for image in observed.images_while_running) == sorted(VERSIONS)
    assert not stale.exists()
    config = yaml.safe_load((tmp_path / "rehearsal" / "Pulumi.local.yaml").read_text())["config"]
    assert set(config["aws:endpoints"][0].values()) == {new.endpoint}
    assert_stopped(old)
    assert_stopped(new)


def test_a_failure_inside_the_rehearsal_still_stops_the_moto_server(tmp_path, outside_env):
    """An unexpected error (here from the CLI lookup) propagates, and the server is stopped anyway."""
    observed = ObservedRun()

    def broken_lookup(pulumi_root):
        raise RuntimeError("lookup broke")

    with pytest.raises(RuntimeError, match="lookup broke"):
        rehearse(
            work_dir=tmp_path / "rehearsal", pulumi_root=tmp_path / "pulumi", find_cli=broken_lookup,
            install_cli=observed.installer_without_internet, start_server=observed.start_server, say=observed.lines.append,
        )

    assert_stopped(observed.servers[0])
    assert without_pytest(os.environ) == outside_env


def test_the_installer_is_stopped_at_its_deadline_with_its_children(tmp_path):
    """A download that hangs cannot hold the rehearsal: at the deadline the installer and
    what it started are killed and the reason names the time limit."""
    pid_file = tmp_path / "child.pid"
    # Stands in for the installer: starts a child (as install.sh starts curl) and hangs.
    hanging = (
        "import subprocess, sys, time, pathlib; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
        f"pathlib.Path({str(pid_file)!r}).write_text(str(child.pid)); time.sleep(600)"
    )
    started = time.monotonic()

    # The deadline leaves the stand-in ample time to start its child even on a loaded machine.
    with pytest.raises(PulumiUnavailable, match="did not finish within 8s"):
        install_pulumi(tmp_path / "pulumi", 8, program=hanging)

    assert time.monotonic() - started < 60
    assert pid_file.exists(), "the stand-in installer never started its child: the test proved nothing"
    assert not alive(int(pid_file.read_text())), "the installer's child outlived the deadline"


def test_an_installer_that_fails_reports_its_last_line(tmp_path):
    """The reason shown to people is the installer's own last line, e.g. the download error."""
    failing = f"import sys; print('downloading…'); sys.exit({NO_INTERNET!r})"

    with pytest.raises(PulumiUnavailable) as raised:
        install_pulumi(tmp_path / "pulumi", 30, program=failing)

    assert raised.value.reason == NO_INTERNET
