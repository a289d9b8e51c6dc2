"""Plan files and the comparison that gates production deploys."""
import pytest

from automation.errors import BadInput
from automation.plan import Plan, operation_mismatches, plan_mismatches
from automation.release_state import ReleaseGroup, ReleaseState

V1 = ReleaseState(groups=(ReleaseGroup("1.0.0", "ami-00000001"),))
V2 = ReleaseState(groups=(ReleaseGroup("2.0.0", "ami-00000002"),))
OPS = (("create", "fleet:index:ReleaseGroup", "release-2.0.0"), ("delete", "fleet:index:ReleaseGroup", "release-1.0.0"))


def plan(**overrides) -> Plan:
    fields = dict(stack="production", proposed=V2, base=V1, settings_hash="h1", operations=OPS, created_by="alice")
    fields.update(overrides)
    return Plan(**fields)


def test_saved_plan_loads_identically(tmp_path):
    """What preview writes is what deploy reads back."""
    path = tmp_path / "p.json"
    original = plan(extra={"timeline": {"total_seconds": 10}})
    original.save(path)
    loaded = Plan.load(path)
    assert loaded == original
    assert not (tmp_path / "p.json.partial").exists()


def test_matching_plan_has_no_mismatch():
    assert plan_mismatches(plan(), stack="production", proposed=V2, base=V1, settings_hash="h1") == []


@pytest.mark.parametrize(
    "deploy, expected",
    [
        (dict(stack="staging"), "for stack 'production', not 'staging'"),
        (dict(proposed=V1), "this deploy proposes 1.0.0"),
        (dict(base=V2), "the stack now runs 2.0.0"),
        (dict(settings_hash="h2"), "settings changed"),
    ],
)
def test_each_mismatch_is_named(deploy, expected):
    """A stale or foreign plan is refused with the difference spelled out."""
    arguments = dict(stack="production", proposed=V2, base=V1, settings_hash="h1")
    arguments.update(deploy)
    problems = plan_mismatches(plan(), **arguments)
    assert len(problems) == 1 and expected in problems[0]


def test_operations_must_be_reproduced_by_a_fresh_preview():
    fresh = [OPS[0], ("replace", "aws:lb/targetGroup:TargetGroup", "app")]
    problems = operation_mismatches(OPS, fresh)
    assert problems == [
        "the approved plan had delete fleet:index:ReleaseGroup release-1.0.0, a fresh preview does not",
        "a fresh preview has replace aws:lb/targetGroup:TargetGroup app, the approved plan did not",
    ]
    assert operation_mismatches(OPS, list(OPS)) == []


@pytest.mark.parametrize(
    "content, fragment",
    [
        (None, "does not exist"),
        ("{not json", "not readable JSON"),
        ('{"format": 9}', "not a fleet plan"),
        ('{"format": 1, "stack": "x"}', "lacks the field 'proposed'"),
        (
            '{"format": 1, "stack": "x", "proposed": {"schema": 1, "groups": [{"release": "a b", "ami": "ami-00000001"}]},'
            ' "base": {"schema": 1}, "settings_hash": "h", "operations": []}',
            "is malformed",
        ),
    ],
)
def test_bad_plan_file_is_bad_input(tmp_path, content, fragment):
    """A missing or broken plan file is exit 2 with one line naming the file."""
    path = tmp_path / "plan.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(BadInput) as error:
        Plan.load(path)
    assert fragment in error.value.reason and str(path) in error.value.reason and "\n" not in error.value.reason
