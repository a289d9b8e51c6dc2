"""Where the program gets the stack's release state: a proposed state, or the one the CLI stored.

A preview or update of a proposed state hands it over in PROPOSED_STATE_ENV, so it is never
persisted by the program. Otherwise the stored state is read from the stack's SSM parameter on
every run, so a plain `pulumi up` converges to the last release made, never to a stale copy.
"""
from __future__ import annotations

import os
from typing import Mapping

import pulumi
import pulumi_aws as aws

from automation.release_state import (
    PROPOSED_STATE_ENV,
    ReleaseState,
    ReleaseStateError,
    parameter_name,
    parameter_path,
)
from infra.settings import SettingsError


def read_release_state(stack: str, environ: Mapping[str, str] = os.environ) -> ReleaseState:
    """The release state to declare; raises SettingsError (one line) when it is malformed."""
    proposed = environ.get(PROPOSED_STATE_ENV)
    if proposed is not None:
        state = _parse(proposed, f"the proposed release state in {PROPOSED_STATE_ENV}")
        source = f"the proposed release state ({PROPOSED_STATE_ENV})"
    else:
        stored = _stored_state_json(stack)
        if stored is None:
            pulumi.log.info(
                f"no release state at SSM parameter {parameter_name(stack)} yet: "
                "declaring the foundation (network, load balancer) without instances"
            )
            return ReleaseState()
        state = _parse(stored, f"the release state in SSM parameter {parameter_name(stack)}")
        source = f"SSM parameter {parameter_name(stack)}"
    if state.is_empty:
        pulumi.log.info(f"the release state from {source} lists no release groups: declaring no instances")
    return state


def _stored_state_json(stack: str) -> str | None:
    # The by-path read answers with empty lists (not an error) while the parameter does not exist.
    found = aws.ssm.get_parameters_by_path(path=parameter_path(stack), with_decryption=True)
    values = dict(zip(found.names or [], found.values or []))
    return values.get(parameter_name(stack))


def _parse(text: str, what: str) -> ReleaseState:
    try:
        return ReleaseState.from_json(text)
    except ReleaseStateError as error:
        raise SettingsError(f"{what} is malformed: {error}") from None
