"""Shared fixtures. Layer-specific fixtures live in each layer's conftest."""
from __future__ import annotations

import pytest

from automation.local_aws import MotoServer, start_moto_server


@pytest.fixture(scope="session")
def moto_server():
    server = start_moto_server()
    yield server
    server.stop()


@pytest.fixture
def aws(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """A freshly reset moto server with the AWS environment pointing at it."""
    moto_server.reset()
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in moto_server.env().items():
        monkeypatch.setenv(name, value)
    return moto_server
