"""Who is making a change: a person's login, or the CI job and its commit."""
from __future__ import annotations

import getpass
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    by: str
    commit: str = ""


def current_actor(environ: dict[str, str] | None = None) -> Actor:
    env = os.environ if environ is None else environ
    commit = env.get("GITHUB_SHA") or env.get("CI_COMMIT_SHA") or env.get("FLEET_COMMIT", "")
    if env.get("GITHUB_ACTIONS") == "true":
        by = f"ci:{env.get('GITHUB_REPOSITORY', 'github')}#{env.get('GITHUB_RUN_ID', '?')} ({env.get('GITHUB_ACTOR', '?')})"
    elif env.get("CI"):
        by = f"ci:{env.get('CI_JOB_ID') or env.get('BUILD_ID') or 'unknown-job'}"
    else:
        try:
            by = getpass.getuser()
        except (KeyError, OSError):
            by = "unknown"
    return Actor(by=by, commit=commit)
