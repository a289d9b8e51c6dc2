"""boto3 clients as fleet uses them: standard retries, a fleet user agent.

Endpoint, region and credentials come from the usual AWS environment
(AWS_ENDPOINT_URL, AWS_REGION, AWS_PROFILE, …), which is also how the tests and
the local rehearsal point fleet at a moto server.
"""
from __future__ import annotations

import os
import threading

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from automation import __version__

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, user_agent_appid=f"fleet-{__version__}")
# The environment a session was made from: a session reads it once, so another one needs a new session.
_ENVIRONMENT = (
    "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
)
_sessions: dict[tuple, boto3.session.Session] = {}
_lock = threading.Lock()


def _session() -> boto3.session.Session:
    """One session per process and environment: making a session loads botocore's service
    models again (about 0.2 s per client otherwise)."""
    key = tuple(os.environ.get(name) for name in _ENVIRONMENT)
    with _lock:
        if key not in _sessions:
            _sessions[key] = boto3.session.Session()
        return _sessions[key]


def client(service: str, region: str | None = None):
    session = _session()
    with _lock:  # creating clients from one session is not thread-safe
        return session.client(service, region_name=region, config=_CONFIG)


def error_code(error: ClientError) -> str:
    """The AWS error code of a failed call, e.g. InvalidAMIID.NotFound."""
    return error.response.get("Error", {}).get("Code", "")
