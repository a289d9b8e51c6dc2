"""boto3 clients as fleet uses them: standard retries, a fleet user agent.

Endpoint, region and credentials come from the usual AWS environment
(AWS_ENDPOINT_URL, AWS_REGION, AWS_PROFILE, …), which is also how the tests and
the local rehearsal point fleet at a moto server.
"""
from __future__ import annotations

import boto3
from botocore.config import Config

from automation import __version__

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, user_agent_appid=f"fleet-{__version__}")


def client(service: str, region: str | None = None):
    return boto3.session.Session().client(service, region_name=region, config=_CONFIG)
