"""The SSM-backed release state store, against the moto server."""
import pytest

from automation.aws import client
from automation.release_state import ReleaseGroup, ReleaseRecord, ReleaseState
from automation.state_store import StateStore

pytestmark = pytest.mark.aws


def state(release: str, outcome: str = "released") -> ReleaseState:
    return ReleaseState(groups=(ReleaseGroup(release, "ami-0123456789abcdef0"),), record=ReleaseRecord(outcome=outcome))


def test_absent_state_reads_as_empty(aws):
    """A stack that never had a release is a foundation: empty state, not an error."""
    assert StateStore(client("ssm")).read("integration").is_empty


def test_write_read_and_history_newest_first(aws):
    """Each write is a new version; history lists all of them, newest first."""
    store = StateStore(client("ssm"))
    assert store.write("staging", state("1.0.0")) == 1
    assert store.write("staging", state("1.1.0", "in-flight")) == 2
    assert store.read("staging") == state("1.1.0", "in-flight")
    history = store.history("staging")
    assert [s.version for s in history] == [2, 1]
    assert [s.state.groups[0].release for s in history] == ["1.1.0", "1.0.0"]
    assert store.history("production") == []


def test_all_states_lists_every_stack(aws):
    """prune and promote see the state of every stack under /fleet."""
    store = StateStore(client("ssm"))
    store.write("integration", state("2.0.0"))
    store.write("production", state("1.0.0"))
    client("ssm").put_parameter(Name="/fleet/integration/other", Value="x", Type="String")
    assert {k: v.groups[0].release for k, v in store.all_states().items()} == {"integration": "2.0.0", "production": "1.0.0"}
