"""A moto server process on 127.0.0.1 standing in for AWS: the local rehearsal,
the aws test layer and the e2e suite start it here.

It listens on a free port; the standard AWS environment variables from env()
send every boto3 client (and the aws CLI) to it, so fleet runs unchanged.
The credentials in env() are moto's placeholders, not secrets.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

REGION = "us-east-1"
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class MotoServer:
    # None for a server someone else runs (e.g. CI's service container): never stopped here.
    process: subprocess.Popen | None
    endpoint: str

    @classmethod
    def running_at(cls, endpoint: str) -> "MotoServer":
        return cls(None, endpoint.rstrip("/"))

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=30).read()

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    def env(self, region: str = REGION) -> dict[str, str]:
        """Environment that sends every boto3 client to this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
        }

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_moto_server() -> MotoServer:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MOTO_CALL_RESET_API": "true"},
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with code {process.returncode} before it answered")
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).read()
            return MotoServer(process, endpoint)
        except (urllib.error.URLError, ConnectionError, OSError):
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"moto server on {endpoint} did not answer within {START_TIMEOUT_S:.0f}s")
            time.sleep(0.1)  # readiness poll of an external process, bounded by the deadline
