"""Release states the program tests declare."""
from __future__ import annotations

from automation.release_state import STANDBY, ReleaseGroup, ReleaseState

AMI_OLD = "ami-0aaaaaaaaaaaaaaa1"
AMI_NEW = "ami-0bbbbbbbbbbbbbbb2"


def one_group(release: str = "1.0.0", ami: str = AMI_OLD, **kwargs) -> ReleaseState:
    return ReleaseState(groups=(ReleaseGroup(release, ami, **kwargs),))


def in_flight(old: str = "1.0.0", new: str = "1.1.0") -> ReleaseState:
    """The state during a release: the old group and the new one, both active."""
    return ReleaseState(groups=(ReleaseGroup(old, AMI_OLD), ReleaseGroup(new, AMI_NEW)))


def with_standby(active: str = "1.1.0", standby: str = "1.0.0") -> ReleaseState:
    return ReleaseState(
        groups=(ReleaseGroup(active, AMI_NEW), ReleaseGroup(standby, AMI_OLD, role=STANDBY, capacity=1))
    )
