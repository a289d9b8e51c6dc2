"""`fleet graph`: what the program declares for each stack and release state, drawn as tree, Mermaid and DOT."""
from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest
from botocore.exceptions import EndpointConnectionError
from pulumi.runtime.config import set_all_config
from pulumi.runtime.settings import set_root_resource

from automation import graph
from automation.aws import client
from automation.cli import main
from automation.program_model import PROJECT_ROOT, run_program
from automation.release_state import PROPOSED_STATE_ENV, ReleaseState
from automation.state_store import StateStore
from tests.unit.infra.states import AMI_NEW, AMI_OLD, in_flight, one_group, with_standby

EXPECTED = {
    "integration": {"vpc": "10.1.0.0/16", "public": ["10.1.1.0/24", "10.1.2.0/24"],
                    "private": ["10.1.11.0/24", "10.1.12.0/24"], "nat_zones": ["us-east-1a"]},
    "staging": {"vpc": "10.2.0.0/16", "public": ["10.2.1.0/24", "10.2.2.0/24"],
                "private": ["10.2.11.0/24", "10.2.12.0/24"], "nat_zones": ["us-east-1a"]},
    "production": {"vpc": "10.3.0.0/16", "public": ["10.3.1.0/24", "10.3.2.0/24"],
                   "private": ["10.3.11.0/24", "10.3.12.0/24"], "nat_zones": ["us-east-1a", "us-east-1b"]},
}
ZONES = ["us-east-1a", "us-east-1b"]
STATES = {"empty": ReleaseState(), "one group": one_group(), "two groups": in_flight()}
CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/0f0e0d0c-0b0a-0908-0706-050403020100"


@pytest.fixture(autouse=True)
def isolated_pulumi_runtime(monkeypatch: pytest.MonkeyPatch):
    """No proposed state from the shell, and no Pulumi config or root stack left for the next test."""
    monkeypatch.delenv(PROPOSED_STATE_ENV, raising=False)
    yield
    set_all_config({})
    set_root_resource(None)


def drawn(stack: str, state: ReleaseState | None, **overrides) -> graph.Graph:
    run = run_program(stack, proposed_state=state, overrides=overrides)
    return graph.build_graph(run, stack, "test")


def children(g: graph.Graph, node: graph.Node, kind: str = "contains") -> list[graph.Node]:
    return g.targets(node.id, kind)


@pytest.mark.parametrize("state_name", list(STATES))
@pytest.mark.parametrize("stack", list(EXPECTED))
def test_network_per_stack(stack: str, state_name: str):
    """The VPC's CIDR, one public and one private subnet per zone with the stack's CIDRs, and its NAT count."""
    g, expected = drawn(stack, STATES[state_name]), EXPECTED[stack]
    [vpc] = g.of_kind("vpc")
    assert vpc.details["cidr"] == expected["vpc"]
    zones = [n for n in children(g, vpc) if n.kind == "zone"]
    assert [z.label for z in zones] == ZONES
    for index, zone in enumerate(zones):
        subnets = {s.details["tier"]: s.details["cidr"] for s in children(g, zone)}
        assert subnets == {"public": expected["public"][index], "private": expected["private"][index]}
    nats = g.of_kind("nat_gateway")
    assert sorted(n.details["zone"] for n in nats) == expected["nat_zones"]
    for nat in nats:  # each NAT sits in its zone's public subnet
        [holder] = [n for n in g.of_kind("subnet") if nat in children(g, n)]
        assert (holder.details["tier"], holder.details["zone"]) == ("public", nat.details["zone"])
    for private in [s for s in g.of_kind("subnet") if s.details["tier"] == "private"]:
        [nat] = children(g, private, "outbound via")
        assert nat.details["zone"] == (private.details["zone"] if len(nats) > 1 else "us-east-1a")
    assert all(n.derived for n in g.of_kind("subnet") + nats + [vpc])


@pytest.mark.parametrize("state_name", list(STATES))
@pytest.mark.parametrize("stack", list(EXPECTED))
def test_load_balancer_target_group_and_release_groups(stack: str, state_name: str):
    """ALB in the public subnets → HTTP listener → target group → one release group per active group."""
    state = STATES[state_name]
    g = drawn(stack, state)
    [alb] = g.of_kind("load_balancer")
    assert sorted(s.details["tier"] for s in children(g, alb, "placed in")) == ["public", "public"]
    [listener] = children(g, alb, "listens")
    assert (listener.details["protocol"], listener.details["port"]) == ("HTTP", 80)
    [target_group] = children(g, listener, "forwards")
    assert (target_group.details["port"], target_group.details["health_check_path"]) == (8080, "/healthz")
    registered = children(g, target_group, "registers")
    assert sorted(n.details["release"] for n in registered) == sorted(group.release for group in state.groups)
    for group in registered:
        parts = sorted(n.kind for n in children(g, group, "has"))
        assert parts == ["auto_scaling_group", "launch_template"]
        [asg] = [n for n in children(g, group, "has") if n.kind == "auto_scaling_group"]
        assert sorted(s.details["tier"] for s in children(g, asg, "placed in")) == ["private", "private"]
    assert {n.details["ami"] for n in g.of_kind("launch_template")} == {group.ami for group in state.groups}


def test_standby_group_is_drawn_outside_the_target_group():
    """A standby group has its launch template and ASG but is not registered in the target group."""
    g = drawn("staging", with_standby())
    [target_group] = g.of_kind("target_group")
    assert [n.details["release"] for n in children(g, target_group, "registers")] == ["1.1.0"]
    standby = next(n for n in g.of_kind("release_group") if n.details["release"] == "1.0.0")
    assert standby.details["role"] == "standby" and len(children(g, standby, "has")) == 2
    tree = graph.render_tree(g)
    assert "\nrelease 1.0.0 (standby" in tree  # a root of its own, not under the target group


@pytest.mark.parametrize("stack", list(EXPECTED))
def test_security_group_path(stack: str):
    """internet → ALB SG :80 → app SG :8080, and the app SG out to the internet on 443 only."""
    g = drawn(stack, one_group())
    flows = {(g.node(f.source).label, g.node(f.target).label, f.label) for f in g.flows()}
    assert flows == {
        ("internet", "load balancer SG web-sg", "tcp :80"),
        ("load balancer SG web-sg", "app SG instances-sg", "tcp :8080"),
        ("app SG instances-sg", "internet", "tcp :443"),
    }
    assert [" ".join(p) for p in graph.security_paths(g)] == [
        "internet —tcp :80→ load balancer SG web-sg —tcp :8080→ app SG instances-sg",
        "app SG instances-sg —tcp :443→ internet",
    ]
    [template] = g.of_kind("launch_template")
    assert [n.label for n in children(g, template, "guarded by")] == ["app SG instances-sg"]


def test_https_listeners_and_paths_follow_the_certificate_setting():
    """With a certificate: 443 forwards, 80 redirects, and the internet reaches the ALB SG on both."""
    g = drawn("production", one_group(), **{"fleet:certificateArn": CERTIFICATE, "fleet:appPort": 9000})
    [alb] = g.of_kind("load_balancer")
    listeners = {n.details["port"]: n for n in children(g, alb, "listens")}
    assert set(listeners) == {80, 443}
    assert children(g, listeners[80], "forwards") == [] and "redirect to HTTPS :443" in listeners[80].label
    assert [n.kind for n in children(g, listeners[443], "forwards")] == ["target_group"]
    assert sorted(" ".join(p) for p in graph.security_paths(g))[1:] == [
        "internet —tcp :443→ load balancer SG web-sg —tcp :9000→ app SG instances-sg",
        "internet —tcp :80→ load balancer SG web-sg —tcp :9000→ app SG instances-sg",
    ]


def test_tree_names_each_layer():
    """The terminal tree shows VPC → zone → subnets → NAT, and ALB → listener → target group → release → LT/ASG."""
    tree = graph.render_tree(drawn("production", one_group()))
    order = ["VPC 10.3.0.0/16", "us-east-1a", "public subnet 10.3.1.0/24", "NAT gateway (us-east-1a)",
             "private subnet 10.3.11.0/24", "ALB web-alb", "listener HTTP :80", "target group web-tg",
             "release 1.0.0 (active", "launch template release-1.0.0-lt", "auto scaling group release-1.0.0-asg",
             "security group paths:"]
    positions = [tree.index(text) for text in order]
    assert positions == sorted(positions)
    assert "note: zones, subnets" in tree


NODE = re.compile(r'^    (\w+)\["[^"]*"\]$')
EDGE = re.compile(r'^    (\w+) (-->|-\.->)\|"[^"]*"\| (\w+)$')


def test_mermaid_edges_name_declared_nodes():
    """Every Mermaid line is a node or an edge, and every edge joins declared nodes."""
    g = drawn("production", in_flight())
    lines = graph.to_mermaid(g).splitlines()
    assert lines[0] == "flowchart LR"
    nodes = [NODE.match(line).group(1) for line in lines[1:] if NODE.match(line)]
    edges = [EDGE.match(line).groups() for line in lines[1:] if EDGE.match(line)]
    assert len(nodes) + len(edges) == len(lines) - 1, "a line that is neither node nor edge"
    assert len(nodes) == len(set(nodes)) == len(g.nodes)
    assert len(edges) == len(g.edges)
    assert all(source in nodes and target in nodes for source, _, target in edges)


DOT_NODE = re.compile(r'^    (\w+) \[label="(?:[^"\\]|\\.)*"(, style=dashed)?\];$')
DOT_EDGE = re.compile(r'^    (\w+) -> (\w+) \[label="(?:[^"\\]|\\.)*"(, style=dashed)?\];$')


def test_dot_edges_name_declared_nodes():
    """The DOT text is one digraph whose edges all join declared nodes."""
    g = drawn("staging", with_standby())
    lines = graph.to_dot(g).splitlines()
    assert lines[0] == 'digraph "fleet staging" {' and lines[-1] == "}"
    body = [line for line in lines[1:-1] if not line.strip().startswith(("rankdir", "node "))]
    nodes = [DOT_NODE.match(line).group(1) for line in body if DOT_NODE.match(line)]
    edges = [DOT_EDGE.match(line).groups()[:2] for line in body if DOT_EDGE.match(line)]
    assert len(nodes) + len(edges) == len(body)
    assert len(set(nodes)) == len(g.nodes) and len(edges) == len(g.edges)
    assert all(source in nodes and target in nodes for source, target in edges)


# -- the command -----------------------------------------------------------------------------

def test_missing_dot_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    """--out x.svg without Graphviz: exit 2, one line naming the Mermaid and DOT alternatives, nothing written."""
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without dot
    out = tmp_path / "fleet.svg"
    assert main(["graph", "integration", "--offline", "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "dot is not installed" in error and "fleet.mmd" in error and "fleet.dot" in error
    assert not out.exists()


def test_image_goes_through_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """--out x.png runs `dot -Tpng -o x.png` with the DOT text on stdin (a stand-in dot double records it)."""
    fake_dot = tmp_path / "dot"
    fake_dot.write_text('#!/bin/sh\necho "$@" > "$(dirname "$0")/argv"\ncat > "$3"\n')
    fake_dot.chmod(fake_dot.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "fleet.png"
    assert main(["graph", "staging", "--offline", "--out", str(out)]) == 0
    assert (tmp_path / "argv").read_text().split() == ["-Tpng", "-o", str(out)]
    assert out.read_text().startswith('digraph "fleet staging" {')


def test_mermaid_and_json_from_a_state_file(tmp_path: Path, capsys):
    """--state FILE draws that state; --out .mmd writes Mermaid; --json prints the graph for CI."""
    state_file = tmp_path / "state.json"
    state_file.write_text(in_flight().to_json())
    out = tmp_path / "fleet.mmd"
    assert main(["graph", "staging", "--state", str(state_file), "--out", str(out), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["stateSource"] == f"proposed, from {state_file}"
    assert sorted(n["details"]["release"] for n in document["nodes"] if n["kind"] == "release_group") == ["1.0.0", "1.1.0"]
    assert out.read_text().startswith("flowchart LR")


def test_offline_release_and_ami_adds_one_group(capsys):
    """--offline says plainly the current state was not read; --release/--ami adds one group, AMI not looked up."""
    assert main(["graph", "production", "--offline", "--release", "2.0.0", "--ami", AMI_NEW]) == 0
    text = capsys.readouterr().out
    assert "the current release state could not be read (--offline)" in text
    assert f"release 2.0.0 (active, {AMI_NEW}, 3 × t3.micro)" in text


@pytest.mark.parametrize(
    "args, names",
    [
        (["nope"], "'nope'"),
        (["staging", "--release", "2.0.0"], "--ami"),
        (["staging", "--release", "2.0.0", "--ami", AMI_NEW, "--state", "x.json"], "--state"),
        (["staging", "--state", "/no/such/state.json"], "/no/such/state.json"),
        (["staging", "--offline", "--release", "2.0.0", "--ami", "ami-nothex"], "ami-nothex"),
        (["staging", "--offline", "--out", "fleet.pdf"], "fleet.pdf"),
    ],
)
def test_bad_input_is_exit_2_naming_the_value(args: list[str], names: str, capsys):
    """Each bad argument: exit 2 and one line naming it."""
    assert main(["graph", *args]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and names in error


def test_bad_settings_are_exit_2_with_the_program_s_line(tmp_path: Path, capsys):
    """A stack file the program refuses: exit 2 with the program's one-line reason."""
    for path in PROJECT_ROOT.glob("Pulumi*.yaml"):
        text = path.read_text()
        (tmp_path / path.name).write_text(text.replace("natStrategy: Single", "natStrategy: Double"))
    (tmp_path / "infra").symlink_to(PROJECT_ROOT / "infra")
    with pytest.raises(graph.BadInput, match="fleet:natStrategy = 'Double'"):
        graph.draw("staging", project_dir=tmp_path, offline=True)


def test_unreachable_aws_is_said_plainly_and_shows_the_foundation():
    """When SSM cannot be reached, the graph says so and shows the foundation without release groups."""
    def unreachable(stack, region):
        raise EndpointConnectionError(endpoint_url="https://ssm.us-east-1.amazonaws.com/")

    g = graph.draw("integration", project_dir=PROJECT_ROOT, read_stored=unreachable)
    assert g.of_kind("release_group") == []
    assert any("could not be read (Could not connect to the endpoint URL" in note for note in g.notes)
    assert g.state_source.startswith("current state unknown")


@pytest.mark.aws
def test_current_state_is_read_from_ssm(aws):
    """Without a proposal the graph draws the state stored in the stack's SSM parameter."""
    StateStore(client("ssm")).write("staging", one_group("1.4.2", AMI_OLD))
    g = graph.draw("staging", project_dir=PROJECT_ROOT)
    assert [n.details["release"] for n in g.of_kind("release_group")] == ["1.4.2"]
    assert g.state_source == "current, from SSM parameter /fleet/staging/release-state"
    proposed = graph.draw("staging", project_dir=PROJECT_ROOT, release="1.5.0", ami=AMI_NEW)
    assert sorted(n.details["release"] for n in proposed.of_kind("release_group")) == ["1.4.2", "1.5.0"]
