"""Unit tests of the Pulumi program: each test evaluates it under fresh mocks and config."""
from __future__ import annotations

import pytest
from pulumi.runtime.config import set_all_config
from pulumi.runtime.settings import set_root_resource

from automation.release_state import PROPOSED_STATE_ENV


@pytest.fixture(autouse=True)
def isolated_pulumi_runtime(monkeypatch: pytest.MonkeyPatch):
    """No proposed state from the developer's shell, and no config or stack left over for the next test.

    run_program() sets the mocks and the stack's config itself, per evaluation.
    """
    monkeypatch.delenv(PROPOSED_STATE_ENV, raising=False)
    yield
    set_all_config({})
    set_root_resource(None)
