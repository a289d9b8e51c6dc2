"""Runs infra/__main__.py under Pulumi mocks with a stack's real config files, and records the result.

The mock machinery is automation/program_model.py, the same one `fleet graph` uses: its
ModelEngine is the test double standing in for the Pulumi engine and the AWS provider (computed ids,
ARNs, the launch template's version, and the SSM read answered with a stored release state), and
its RecordingMonitor records every registration with the options that reach the engine (protect,
replaceOnChanges, ...). This module names what the unit tests and bench/program_eval.py use.
"""
from __future__ import annotations

from automation.program_model import (  # noqa: F401 re-exported for the tests
    PROJECT_ROOT,
    SSM_READ,
    ProgramRun,
    Registration,
    encode_config_value,
    program_path,
    run_program,
    stack_config,
)

PROGRAM = program_path(PROJECT_ROOT)
STACKS = ("integration", "staging", "production")
