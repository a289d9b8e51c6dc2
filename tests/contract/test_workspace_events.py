"""Engine events from preview and up, turned into PreviewResult, UpResult and progress."""
from __future__ import annotations

from automation.workspace import ResourceChange, StackWorkspace
from tests.support.recording_pulumi import prelude, step, step_done, summary, urn

ASG = "aws:autoscaling/group:Group"
LT = "aws:ec2/launchTemplate:LaunchTemplate"
GROUP = "fleet:release:Group"
SG = "aws:ec2/securityGroup:SecurityGroup"
TG = "aws:lb/targetGroup:TargetGroup"

NEW_GROUP = urn("staging", GROUP, "web-1.4.2")
NEW_ASG = urn("staging", ASG, "web-1.4.2-asg", parent_type=GROUP)
NEW_LT = urn("staging", LT, "web-1.4.2-lt", parent_type=GROUP)
OLD_GROUP = urn("staging", GROUP, "web-1.4.1")
OLD_ASG = urn("staging", ASG, "web-1.4.1-asg", parent_type=GROUP)
APP_SG = urn("staging", SG, "app-sg")
TARGETS = urn("staging", TG, "web-tg")

# A release preview: a new group is created, the old one deleted, the target group
# replaced create-before-destroy, a security group updated in place, the rest unchanged.
RELEASE_PREVIEW = [
    prelude(),
    step("same", "pulumi:pulumi:Stack", urn("staging", "pulumi:pulumi:Stack", "fleet-staging")),
    step("create", GROUP, NEW_GROUP),
    step("create", LT, NEW_LT),
    step("create", ASG, NEW_ASG),
    step("update", SG, APP_SG, diffs=["ingress", "tags"], detailed={"ingress[0].cidrBlocks": "update", "tags.Name": "add"}),
    step("create-replacement", TG, TARGETS, diffs=["port"], detailed={"port": "update-replace"}),
    step("replace", TG, TARGETS, diffs=["port"], detailed={"port": "update-replace"}),
    step("delete", ASG, OLD_ASG),
    step("delete", GROUP, OLD_GROUP),
    step("delete-replaced", TG, TARGETS),
    summary({"create": 3, "update": 1, "replace": 1, "delete": 2, "same": 9}),
]


def test_preview_events_become_changes_and_counts(project_dir, any_transport_pulumi):
    """Creates, in-place updates with their top-level properties, create-before-destroy
    replacements (create-replacement, replace, delete-replaced) and deletes are parsed,
    "same" left out, counts taken from the summary; over gRPC and from the log file alike."""
    any_transport_pulumi.events["preview"] = RELEASE_PREVIEW
    result = StackWorkspace("staging", project_dir=project_dir, pulumi_command=any_transport_pulumi).preview()

    assert [(c.op, c.name, c.diffs) for c in result.changes] == [
        ("create", "web-1.4.2", ()),
        ("create", "web-1.4.2-lt", ()),
        ("create", "web-1.4.2-asg", ()),
        ("update", "app-sg", ("ingress", "tags")),
        ("create-replacement", "web-tg", ("port",)),
        ("replace", "web-tg", ("port",)),
        ("delete", "web-1.4.1-asg", ()),
        ("delete", "web-1.4.1", ()),
        ("delete-replaced", "web-tg", ()),
    ]
    assert result.changes[2] == ResourceChange(op="create", type=ASG, name="web-1.4.2-asg", urn=NEW_ASG, diffs=())
    assert result.counts == {"create": 3, "update": 1, "replace": 1, "delete": 2, "same": 9}


def test_preview_operations_are_sorted_for_plan_comparison(project_dir, pulumi):
    """operations() is the same list whatever order the engine emitted the steps in."""
    pulumi.events["preview"] = RELEASE_PREVIEW
    forward = StackWorkspace("staging", project_dir=project_dir, pulumi_command=pulumi).preview()
    steps = RELEASE_PREVIEW[1:-1]
    pulumi.events["preview"] = [RELEASE_PREVIEW[0], *reversed(steps), RELEASE_PREVIEW[-1]]
    backward = StackWorkspace("staging", project_dir=project_dir, pulumi_command=pulumi).preview()

    assert forward.operations() == backward.operations()
    assert forward.operations()[:3] == [
        ("create", ASG, "web-1.4.2-asg"),
        ("create", LT, "web-1.4.2-lt"),
        ("create", GROUP, "web-1.4.2"),
    ]
    assert ("delete-replaced", TG, "web-tg") in forward.operations()


def test_preview_to_dict_has_stable_fields(project_dir, pulumi):
    """to_dict() is what --json and plan files carry: fixed field names, plain JSON types."""
    pulumi.events["preview"] = [prelude(), step("update", SG, APP_SG, diffs=["ingress"]), summary({"update": 1})]
    data = StackWorkspace("staging", project_dir=project_dir, pulumi_command=pulumi).preview().to_dict()
    assert data == {
        "changes": [{"op": "update", "type": SG, "name": "app-sg", "urn": APP_SG, "diffs": ["ingress"]}],
        "counts": {"update": 1},
    }


def test_up_reports_progress_and_counts(project_dir, any_transport_pulumi):
    """During up, on_change sees each step start ("pre") and finish ("done"), in order,
    without unchanged resources; UpResult carries the summary counts and the outputs."""
    any_transport_pulumi.events["up"] = [
        prelude(),
        step("same", SG, APP_SG, planning=False),
        step("create", ASG, NEW_ASG, planning=False),
        step_done("create", ASG, NEW_ASG, planning=False),
        step("delete", ASG, OLD_ASG, planning=False),
        step_done("delete", ASG, OLD_ASG, planning=False),
        summary({"create": 1, "delete": 1, "same": 10}),
    ]
    any_transport_pulumi.outputs = {"url": ("https://staging.example.com", False), "token": ("t0k3n", True)}
    seen: list[tuple[str, str, str]] = []
    workspace = StackWorkspace(
        "staging", project_dir=project_dir, pulumi_command=any_transport_pulumi,
        on_change=lambda change, phase: seen.append((phase, change.op, change.name)),
    )
    result = workspace.up()

    assert seen == [
        ("pre", "create", "web-1.4.2-asg"),
        ("done", "create", "web-1.4.2-asg"),
        ("pre", "delete", "web-1.4.1-asg"),
        ("done", "delete", "web-1.4.1-asg"),
    ]
    assert result.counts == {"create": 1, "delete": 1, "same": 10}
    assert result.outputs == {"url": "https://staging.example.com", "token": "[secret]"}
