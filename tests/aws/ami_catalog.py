"""A moto server seeded with a catalog of images in every state fleet must handle.

moto makes every image available at once and owned by the caller; the states a real
account shows (pending, failed), other owners, architectures and creation dates come
from moto's MOTO_AMIS_PATH seed file, served by a second moto server process.
"""
from __future__ import annotations

import json
import os
from unittest import mock

import pytest

from automation.local_aws import MotoServer, start_moto_server

ACCOUNT = "123456789012"  # moto's default caller account
FOREIGN_ACCOUNT = "999988887777"


def image(number: int, version: str, created: str, *, state: str = "available", arch: str = "x86_64",
          owner: str = ACCOUNT, app: str = "web") -> dict:
    return {
        "ami_id": f"ami-0a{number:015x}",
        "name": f"{app}-{version}-{number}",
        "state": state,
        "architecture": arch,
        "owner_id": owner,
        "creation_date": f"{created}T00:00:00.000Z",
        "virtualization_type": "hvm",
        "root_device_type": "ebs",
        "root_device_name": "/dev/xvda",
        "tags": {"fleet:app": app, "fleet:version": version, "fleet:managed-by": "fleet"},
    }


CATALOG = [
    image(1, "1.0.0", "2024-01-01"),
    image(2, "1.1.0", "2024-02-01"),
    image(3, "1.2.0", "2024-03-01"),
    image(4, "1.3.0", "2024-04-01"),
    image(5, "1.4.0", "2024-05-01"),
    image(6, "2.0.0", "2024-06-01", state="pending"),
    image(7, "1.5.0", "2024-05-15", state="failed"),
    image(8, "1.6.0", "2024-05-20", arch="arm64"),
    image(9, "1.7.0", "2024-05-10"),
    image(10, "1.7.0", "2024-05-11"),
    image(11, "1.4.0", "2024-05-02", owner=FOREIGN_ACCOUNT),
    image(12, "1.0.0", "2024-05-03", app="api"),
]


def ami_id(number: int) -> str:
    return f"ami-0a{number:015x}"


@pytest.fixture(scope="session")
def catalog_server(tmp_path_factory):
    seed = tmp_path_factory.mktemp("amis") / "amis.json"
    seed.write_text(json.dumps(CATALOG))
    with mock.patch.dict(os.environ, {"MOTO_AMIS_PATH": str(seed)}):
        server = start_moto_server()
    yield server
    server.stop()


@pytest.fixture
def catalog(aws: MotoServer, catalog_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """The seeded moto server, reset; the AWS environment of `aws`, pointed at it instead."""
    catalog_server.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", catalog_server.endpoint)
    return catalog_server
