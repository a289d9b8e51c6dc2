"""The release state of each stack, kept as one SSM parameter (JSON) per stack.

Only the release CLI writes it; the Pulumi program reads it. Every write is a
new parameter version, so get_parameter_history is the release audit log.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from automation.release_state import (
    PARAMETER_PREFIX,
    STATE_PARAMETER_LEAF,
    ReleaseState,
    parameter_name,
)


@dataclass(frozen=True)
class StoredState:
    """One version of a stack's release state as SSM holds it."""

    version: int
    modified_at: datetime
    modified_by: str
    state: ReleaseState


class StateStore:
    def __init__(self, ssm_client):
        self.ssm = ssm_client

    def read(self, stack: str) -> ReleaseState:
        """The current state; an empty state when the stack has never had a release."""
        try:
            parameter = self.ssm.get_parameter(Name=parameter_name(stack))["Parameter"]
        except self.ssm.exceptions.ParameterNotFound:
            return ReleaseState()
        return ReleaseState.from_json(parameter["Value"])

    def write(self, stack: str, state: ReleaseState) -> int:
        """Store state as the stack's new current version and return that version."""
        response = self.ssm.put_parameter(
            Name=parameter_name(stack),
            Value=state.to_json(),
            Type="String",
            Overwrite=True,
            Description=f"fleet release state of stack {stack}",
        )
        return int(response["Version"])

    def history(self, stack: str) -> list[StoredState]:
        """Every stored version of the stack's state, newest first."""
        versions: list[StoredState] = []
        paginator = self.ssm.get_paginator("get_parameter_history")
        try:
            for page in paginator.paginate(Name=parameter_name(stack)):
                for entry in page["Parameters"]:
                    versions.append(
                        StoredState(
                            version=int(entry["Version"]),
                            modified_at=entry["LastModifiedDate"],
                            modified_by=entry.get("LastModifiedUser", ""),
                            state=ReleaseState.from_json(entry["Value"]),
                        )
                    )
        except self.ssm.exceptions.ParameterNotFound:
            return []
        return sorted(versions, key=lambda stored: stored.version, reverse=True)

    def all_states(self) -> dict[str, ReleaseState]:
        """The current state of every stack that has one, by stack name."""
        states: dict[str, ReleaseState] = {}
        paginator = self.ssm.get_paginator("get_parameters_by_path")
        for page in paginator.paginate(Path=PARAMETER_PREFIX, Recursive=True):
            for parameter in page["Parameters"]:
                stack, _, leaf = parameter["Name"][len(PARAMETER_PREFIX) + 1 :].rpartition("/")
                if leaf == STATE_PARAMETER_LEAF and stack:
                    states[stack] = ReleaseState.from_json(parameter["Value"])
        return states
