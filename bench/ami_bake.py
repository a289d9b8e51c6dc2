"""Figures for one `fleet ami bake` against a moto server this script starts itself:
AWS API calls by kind, and wall time spent outside waits (moto answers every state at
once, so this is fleet's own overhead plus the API round trips)."""
from __future__ import annotations

import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from automation import ami_bake  # noqa: E402
from automation.waiting import wait_for  # noqa: E402
from tests.aws.ami_world import make_world, script_request  # noqa: E402
from automation.local_aws import start_moto_server  # noqa: E402


def main() -> None:
    server = start_moto_server()
    os.environ.update(server.env())
    try:
        world = make_world()
        calls: Counter[str] = Counter()
        for name in ("ec2", "ssm", "iam"):
            service_client = getattr(world.clients, name)
            service_client.meta.events.register(
                "before-call", lambda model, _service=name, **_: calls.update([f"{_service}:{model.name}"])
            )
        waited = 0.0

        def timed_wait(check, **kwargs):
            nonlocal waited
            started = time.perf_counter()
            try:
                return wait_for(check, **kwargs)
            finally:
                waited += time.perf_counter() - started

        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            result = ami_bake.bake(world.clients, script_request(Path(tmp)), progress=lambda message: None, wait=timed_wait)
            total = time.perf_counter() - started
    finally:
        server.stop()

    print(f"baked {result.ami.image_id} against moto")
    print(f"{'api call':<40} count")
    for kind, count in sorted(calls.items()):
        print(f"{kind:<40} {count}")
    print(f"{'total':<40} {sum(calls.values())}")
    print(f"wall time total        {total * 1000:8.1f} ms")
    print(f"wall time in waits     {waited * 1000:8.1f} ms")
    print(f"wall time outside waits{(total - waited) * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
