"""Pulumi.yaml's config schema is complete, and the stack files and the program agree with it."""
from __future__ import annotations

import pytest
import yaml

from tests.unit.infra.program_harness import PROJECT_ROOT, STACKS, run_program, stack_config

PROJECT = yaml.safe_load((PROJECT_ROOT / "Pulumi.yaml").read_text())
SCHEMA = PROJECT["config"]
PYTHON_TYPES = {"string": str, "integer": int, "boolean": bool, "array": list}


def test_project_runs_the_program_in_infra_with_the_venv():
    """Pulumi finds the program in infra/ and runs it with the project's .venv."""
    assert PROJECT["name"] == "fleet"
    assert PROJECT["main"] == "infra/"
    assert PROJECT["runtime"] == {"name": "python", "options": {"virtualenv": ".venv"}}


@pytest.mark.parametrize("key", sorted(SCHEMA))
def test_every_setting_has_type_description_and_a_matching_default(key):
    """Each setting documents itself: a type, a description, and a default of that type."""
    spec = SCHEMA[key]
    assert spec["type"] in PYTHON_TYPES
    assert len(spec["description"]) > 20
    assert "default" in spec
    assert isinstance(spec["default"], PYTHON_TYPES[spec["type"]])
    if spec["type"] == "array":
        assert spec["items"] == {"type": "string"}
        assert all(isinstance(item, str) for item in spec["default"])


@pytest.mark.parametrize("stack", STACKS)
def test_stack_files_set_only_declared_settings(stack):
    """A misspelt key in a stack file would be silently ignored; every fleet: key must be in the schema."""
    stack_file = yaml.safe_load((PROJECT_ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    fleet_keys = {key.split(":", 1)[1] for key in stack_file if key.startswith("fleet:")}
    assert fleet_keys <= set(SCHEMA), fleet_keys - set(SCHEMA)
    assert stack_file["aws:region"] == "us-east-1"
    for key in fleet_keys:
        assert isinstance(stack_file[f"fleet:{key}"], PYTHON_TYPES[SCHEMA[key]["type"]]), key


@pytest.mark.parametrize("key", sorted(SCHEMA))
def test_program_reads_every_declared_setting(key):
    """No dead settings: without any one key the program stops, naming it."""
    config = stack_config("integration")
    del config[f"fleet:{key}"]
    run = run_program("integration", config=config, expect_failure=True)
    assert run.error is not None and f"fleet:{key} is not set" in str(run.error)

