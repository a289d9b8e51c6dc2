"""`fleet graph`: the resources the program declares for a stack and a release state, as a graph.

The program runs in this process under mocks (automation/program_model.py), so no credentials and
no Pulumi CLI are needed. Nodes and edges come from what it registered: references between
resources (the ALB's subnets and security group, a listener's target group, an ASG's target group
and subnets, security group rules) are followed by id and ARN. awsx's Vpc is one opaque resource
under mocks, so its zones, subnets, internet gateway and NAT gateways are derived from the settings
the program passed to it (subnet specs with their CIDRs, NAT strategy, zones) and marked derived.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from botocore.exceptions import BotoCoreError, ClientError

from automation import aws
from automation.errors import BadInput, FleetError
from automation.program_model import AWSX_VPC, ProgramRun, Registration, run_program, stack_config
from automation.release_state import ReleaseGroup, ReleaseState, ReleaseStateError, parameter_name
from automation.state_store import StateStore
from automation.workspace import known_stacks

ANYWHERE = "0.0.0.0/0"
INTERNET = "internet"

LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"
LISTENER = "aws:lb/listener:Listener"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
AUTO_SCALING_GROUP = "aws:autoscaling/group:Group"
RELEASE_GROUP = "fleet:release:ReleaseGroup"

# Edges the terminal tree follows (each node under its first such parent); the others are drawn
# in the diagrams and summarised in the labels.
TREE_EDGES = ("contains", "listens", "forwards", "registers", "has")
DERIVED_NOTE = (
    "zones, subnets, internet gateway and NAT gateways are derived from the settings passed to "
    "awsx's Vpc (one opaque resource without a real engine)"
)
DIAGRAM_SUFFIXES = (".mmd", ".dot", ".svg", ".png")


@dataclass(frozen=True)
class Node:
    id: str
    kind: str
    label: str
    details: dict[str, Any] = field(default_factory=dict)
    derived: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "label": self.label, "details": self.details, "derived": self.derived}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: str
    label: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.target, "kind": self.kind, "label": self.label}


@dataclass
class Graph:
    stack: str
    state_source: str
    state: ReleaseState
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)

    def of_kind(self, kind: str) -> list[Node]:
        return [n for n in self.nodes if n.kind == kind]

    def targets(self, source: str, kind: str) -> list[Node]:
        return [self.node(e.target) for e in self.edges if e.source == source and e.kind == kind]

    def flows(self) -> list[Edge]:
        """Traffic the security groups let through, both sides agreeing."""
        return [e for e in self.edges if e.kind == "allows"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "stateSource": self.state_source,
            "releaseState": self.state.to_dict(),
            "nodes": [n.to_dict() for n in self.nodes],
            "edges": [e.to_dict() for e in self.edges],
            "securityGroupPaths": [" ".join(path) for path in security_paths(self)],
            "notes": list(self.notes),
        }


# -- which release state to draw -------------------------------------------------------------

def check_proposal(release: str | None, ami: str | None, state_file: Path | None) -> None:
    """One way to propose a state: --state FILE, or --release with --ami."""
    if state_file is not None and (release or ami):
        raise BadInput("--state cannot be combined with --release/--ami: expected one way to propose a state")
    if bool(release) != bool(ami):
        raise BadInput("--release and --ami go together: expected both, e.g. --release 1.4.2 --ami ami-0123456789abcdef0")


def read_state_file(path: Path) -> ReleaseState:
    """A release state as automation/release_state.py defines it, from a JSON file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise BadInput(f"release state file {str(path)!r} cannot be read: {error.strerror}") from None
    return _parsed(lambda: ReleaseState.from_json(text), f"release state file {path}")


def with_release(base: ReleaseState, release: str, ami: str) -> ReleaseState:
    """`base` plus one active group for `release` on `ami`, as during a create-before-destroy update."""
    return _parsed(lambda: base.with_groups(base.groups + (ReleaseGroup(release, ami),)), "proposed release")


def _parsed(make: Callable[[], ReleaseState], what: str) -> ReleaseState:
    try:
        return make()
    except ReleaseStateError as error:
        raise BadInput(f"{what}: {error}") from None


def read_stored_state(stack: str, region: str | None) -> ReleaseState:
    """The stack's release state from its SSM parameter (empty when there is none yet)."""
    return StateStore(aws.client("ssm", region)).read(stack)


def draw(
    stack: str,
    *,
    project_dir: Path,
    release: str | None = None,
    ami: str | None = None,
    state_file: Path | None = None,
    offline: bool = False,
    read_stored: Callable[[str, str | None], ReleaseState] = read_stored_state,
) -> Graph:
    """The graph of what the program declares for `stack` with its current or a proposed release state."""
    stacks = known_stacks(project_dir)
    if stack not in stacks:
        raise BadInput(f"stack {stack!r} is unknown: expected one of {', '.join(stacks) or '(no Pulumi.<stack>.yaml found)'}")
    check_proposal(release, ami, state_file)
    notes: tuple[str, ...] = ()
    if state_file is not None:
        state, source = read_state_file(state_file), f"proposed, from {state_file}"
    else:
        state, source, notes = _current_state(stack, offline, read_stored, project_dir)
        if release and ami:
            state = with_release(state or ReleaseState(), release, ami)
            source = f"{source} plus proposed release {release} ({ami})"
        elif state is None:
            source = f"{source}: the foundation only"
    return build_graph(model_stack(stack, project_dir, state), stack, source, notes)


def _current_state(
    stack: str, offline: bool, read_stored: Callable[[str, str | None], ReleaseState], project_dir: Path
) -> tuple[ReleaseState | None, str, tuple[str, ...]]:
    """The stored state and where it came from, or None and a note saying plainly why it is unknown."""
    if offline:
        reason = "--offline"
    else:
        try:
            state = read_stored(stack, stack_config(stack, project_dir).get("aws:region"))
        except (BotoCoreError, ClientError, ReleaseStateError) as error:
            reason = str(error).splitlines()[0]
        else:
            return state, f"current, from SSM parameter {parameter_name(stack)}", ()
    note = f"the current release state could not be read ({reason}): showing no current release groups"
    return None, "current state unknown", (note,)


# -- building the graph from a program run ---------------------------------------------------

def model_stack(stack: str, project_dir: Path, state: ReleaseState | None) -> ProgramRun:
    """Run the program for `stack` with `state` (None: no state, foundation only); bad settings are BadInput."""
    run = run_program(stack, project_dir=project_dir, proposed_state=state, expect_failure=True)
    if run.error is not None:
        raise BadInput(f"the program refused stack {stack}'s settings: {run.error}")
    return run


def build_graph(run: ProgramRun, stack: str, state_source: str, notes: tuple[str, ...] = ()) -> Graph:
    state = ReleaseState.from_dict(run.outputs["releaseState"])
    builder = _Builder(run, Graph(stack, state_source, state, notes=[*notes, DERIVED_NOTE]))
    builder.network()
    builder.security_groups()
    builder.load_balancer()
    builder.release_groups()
    return builder.graph


class _Builder:
    def __init__(self, run: ProgramRun, graph: Graph):
        self.run = run
        self.graph = graph
        self.by_reference: dict[str, str] = {}  # a resource's id or ARN -> its node id
        self.used_ids: set[str] = set()

    def add(self, key: str, kind: str, label: str, *, refs: tuple[str, ...] = (), derived: bool = False, **details) -> str:
        node_id = base = re.sub(r"[^A-Za-z0-9]+", "_", key).strip("_")
        suffix = 2
        while node_id in self.used_ids:
            node_id, suffix = f"{base}_{suffix}", suffix + 1
        self.used_ids.add(node_id)
        self.graph.nodes.append(Node(node_id, kind, label, details, derived))
        for ref in refs:
            if ref:
                self.by_reference[ref] = node_id
        return node_id

    def link(self, source: str | None, target: str | None, kind: str, label: str = "") -> None:
        if source and target:
            self.graph.edges.append(Edge(source, target, kind, label))

    def ref(self, value: Any) -> str | None:
        return self.by_reference.get(value) if isinstance(value, str) else None

    def add_resource(self, resource: Registration, kind: str, label: str, **details) -> str:
        return self.add(resource.name, kind, label, refs=(resource.id, resource.outputs.get("arn")), **details)

    # The VPC, derived from awsx's inputs: one subnet per zone and spec, CIDRs in zone order.
    def network(self) -> None:
        vpc = self.run.one(AWSX_VPC)
        inputs, outputs = vpc.inputs, vpc.outputs
        zones = list(inputs.get("availabilityZoneNames") or [])
        vpc_id = self.add("vpc", "vpc", f"VPC {inputs.get('cidrBlock')}", refs=(outputs.get("vpcId"),),
                          derived=True, cidr=inputs.get("cidrBlock"), zones=zones)
        igw = self.add("internet_gateway", "internet_gateway", "internet gateway", derived=True)
        self.link(vpc_id, igw, "contains")
        zone_ids = {zone: self.add(f"zone {zone}", "zone", zone, derived=True, zone=zone) for zone in zones}
        for zone_id in zone_ids.values():
            self.link(vpc_id, zone_id, "contains")
        subnets: dict[str, dict[str, str]] = {"public": {}, "private": {}}
        for spec in inputs.get("subnetSpecs") or []:
            tier = str(spec.get("type", "")).lower()
            cidrs = list(spec.get("cidrBlocks") or [])
            ids = list(outputs.get(f"{tier}SubnetIds") or [])
            for index, zone in enumerate(zones):
                cidr = cidrs[index] if index < len(cidrs) else "CIDR chosen by awsx"
                subnet = self.add(
                    f"subnet {tier} {zone}", "subnet", f"{tier} subnet {cidr}",
                    refs=(ids[index] if index < len(ids) else "",), derived=True, tier=tier, zone=zone, cidr=cidr,
                )
                self.link(zone_ids[zone], subnet, "contains")
                subnets.setdefault(tier, {})[zone] = subnet
        strategy = (inputs.get("natGateways") or {}).get("strategy", "Single")
        nat_zones = {"OnePerAz": zones, "Single": zones[:1]}.get(strategy, [])
        nats = {}
        for zone in nat_zones:
            nats[zone] = self.add(f"nat {zone}", "nat_gateway", f"NAT gateway ({zone})", derived=True, zone=zone)
            self.link(subnets["public"].get(zone), nats[zone], "contains")
            self.link(nats[zone], igw, "outbound via")
        for zone, subnet in subnets["private"].items():
            self.link(subnet, nats.get(zone) or next(iter(nats.values()), None), "outbound via")

    def security_groups(self) -> None:
        roles = {
            self.run.outputs.get("albSecurityGroupId"): "load balancer SG",
            self.run.outputs.get("appSecurityGroupId"): "app SG",
        }
        for group in self.run.of_type(SECURITY_GROUP):
            role = roles.get(group.id, "security group")
            self.add_resource(group, "security_group", f"{role} {group.name}", role=role)
        self.add(INTERNET, "internet", "internet")
        rules = [
            _Rule.of(rule, "ingress" if rule.type == INGRESS_RULE else "egress", self)
            for rule in self.run.of_type(INGRESS_RULE) + self.run.of_type(EGRESS_RULE)
        ]
        for rule in rules:
            if rule.peer != INTERNET and rule.counterpart(rules) is None:
                self.graph.notes.append(
                    f"security group rule {rule.name} has no matching {rule.other_direction} rule on the peer: "
                    "no traffic flows through it"
                )
                continue
            source, target = (rule.peer, rule.group) if rule.direction == "ingress" else (rule.group, rule.peer)
            if rule.direction == "egress" and rule.peer != INTERNET:
                continue  # the same flow as the peer's ingress rule, drawn once
            self.link(source, target, "allows", f"tcp :{rule.port}")

    def load_balancer(self) -> None:
        for balancer in self.run.of_type(LOAD_BALANCER):
            inputs = balancer.inputs
            scheme = "internal" if inputs.get("internal") else "internet-facing"
            alb = self.add_resource(balancer, "load_balancer", f"ALB {balancer.name} ({scheme})", scheme=scheme)
            for subnet in inputs.get("subnets") or []:
                self.link(alb, self.ref(subnet), "placed in")
            for group in inputs.get("securityGroups") or []:
                self.link(alb, self.ref(group), "guarded by")
        for target_group in self.run.of_type(TARGET_GROUP):
            inputs = target_group.inputs
            port, path = _whole(inputs.get("port")), (inputs.get("healthCheck") or {}).get("path")
            self.add_resource(
                target_group, "target_group",
                f"target group {target_group.name} ({inputs.get('protocol')} :{port}, health {path})",
                port=port, health_check_path=path, deregistration_delay=_whole(inputs.get("deregistrationDelay")),
            )
        for listener in self.run.of_type(LISTENER):
            inputs = listener.inputs
            port, protocol = _whole(inputs.get("port")), inputs.get("protocol")
            actions = inputs.get("defaultActions") or []
            redirect = next((a.get("redirect") for a in actions if a.get("type") == "redirect"), None)
            what = f"redirect to {redirect.get('protocol')} :{redirect.get('port')}" if redirect else "forward"
            node = self.add_resource(listener, "listener", f"listener {protocol} :{port} → {what}",
                                     port=port, protocol=protocol)
            self.link(self.ref(inputs.get("loadBalancerArn")), node, "listens")
            for action in actions:
                self.link(node, self.ref(action.get("targetGroupArn")), "forwards")

    def release_groups(self) -> None:
        for component in self.run.of_type(RELEASE_GROUP):
            children = self.run.children_of(component)
            template = next(c for c in children if c.type == LAUNCH_TEMPLATE)
            asg = next(c for c in children if c.type == AUTO_SCALING_GROUP)
            release = template.inputs["tags"]["fleet:release"]
            exported = self.run.outputs["releaseGroups"][release]
            group = self.add_resource(
                component, "release_group",
                f"release {release} ({exported['role']}, {exported['ami']}, {exported['capacity']} × {exported['instanceType']})",
                release=release, role=exported["role"], ami=exported["ami"],
                capacity=exported["capacity"], instance_type=exported["instanceType"],
            )
            lt_inputs = template.inputs
            imds = "IMDSv2" if (lt_inputs.get("metadataOptions") or {}).get("httpTokens") == "required" else "IMDSv1"
            lt = self.add_resource(
                template, "launch_template",
                f"launch template {template.name} ({lt_inputs.get('imageId')}, {lt_inputs.get('instanceType')}, {imds})",
                ami=lt_inputs.get("imageId"), instance_type=lt_inputs.get("instanceType"),
            )
            asg_inputs = asg.inputs
            size = f"{_whole(asg_inputs.get('desiredCapacity'))} (min {_whole(asg_inputs.get('minSize'))}, max {_whole(asg_inputs.get('maxSize'))})"
            asg_node = self.add_resource(asg, "auto_scaling_group", f"auto scaling group {asg.name}: {size}",
                                         desired=_whole(asg_inputs.get("desiredCapacity")))
            self.link(group, lt, "has")
            self.link(group, asg_node, "has")
            self.link(asg_node, lt, "launches", f"launches version {(asg_inputs.get('launchTemplate') or {}).get('version')}")
            for interface in lt_inputs.get("networkInterfaces") or []:
                for security_group in interface.get("securityGroups") or []:
                    self.link(lt, self.ref(security_group), "guarded by")
            for subnet in asg_inputs.get("vpcZoneIdentifiers") or []:
                self.link(asg_node, self.ref(subnet), "placed in")
            for target_group in asg_inputs.get("targetGroupArns") or []:
                self.link(self.ref(target_group), group, "registers")


@dataclass(frozen=True)
class _Rule:
    name: str
    direction: str
    group: str
    peer: str
    port: int

    @property
    def other_direction(self) -> str:
        return "egress" if self.direction == "ingress" else "ingress"

    @classmethod
    def of(cls, rule: Registration, direction: str, builder: _Builder) -> "_Rule":
        inputs = rule.inputs
        peer = builder.ref(inputs.get("referencedSecurityGroupId"))
        if peer is None and inputs.get("cidrIpv4") == ANYWHERE:
            peer = INTERNET
        return cls(rule.name, direction, builder.ref(inputs.get("securityGroupId")) or "?",
                   peer or str(inputs.get("cidrIpv4")), _whole(inputs.get("fromPort")))

    def counterpart(self, rules: list["_Rule"]) -> "_Rule | None":
        return next(
            (r for r in rules if r.direction == self.other_direction and r.group == self.peer
             and r.peer == self.group and r.port == self.port),
            None,
        )


def _whole(value: Any) -> Any:
    """Numbers arrive as floats through the engine's protobuf; show 8080, not 8080.0."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# -- rendering -------------------------------------------------------------------------------

def security_paths(graph: Graph) -> list[list[str]]:
    """Every chain of allowed flows from the internet, and from each group out to the internet."""
    flows = graph.flows()
    paths: list[list[str]] = []

    def walk(node: str, path: list[str], seen: set[str]) -> None:
        onward = [f for f in flows if f.source == node and f.target not in seen and f.target != INTERNET]
        if not onward and len(path) > 1:
            paths.append(path)
        for flow in onward:
            walk(flow.target, [*path, f"—{flow.label}→", graph.node(flow.target).label], seen | {flow.target})

    walk(INTERNET, [graph.node(INTERNET).label], {INTERNET})
    for flow in flows:
        if flow.target == INTERNET:
            paths.append([graph.node(flow.source).label, f"—{flow.label}→", graph.node(INTERNET).label])
    return paths


def render_tree(graph: Graph) -> str:
    children: dict[str, list[str]] = {}
    has_parent: set[str] = set()
    for edge in graph.edges:
        if edge.kind in TREE_EDGES and edge.target not in has_parent:
            children.setdefault(edge.source, []).append(edge.target)
            has_parent.add(edge.target)
    lines = [f"stack {graph.stack} — release state: {graph.state_source}"]
    roots = [n for n in graph.nodes if n.id not in has_parent and n.kind not in ("internet", "security_group")]

    def extra(node: Node) -> str:
        placed = [graph.node(e.target) for e in graph.edges if e.source == node.id and e.kind == "placed in"]
        guards = [graph.node(e.target).label for e in graph.edges if e.source == node.id and e.kind == "guarded by"]
        parts = []
        if placed:
            parts.append("in " + ", ".join(f"{p.details.get('tier')} {p.details.get('zone')}" for p in placed))
        if guards:
            parts.append(", ".join(guards))
        return f"  [{'; '.join(parts)}]" if parts else ""

    def draw(node_id: str, prefix: str, last: bool, top: bool) -> None:
        node = graph.node(node_id)
        branch = "" if top else ("└── " if last else "├── ")
        lines.append(f"{prefix}{branch}{node.label}{extra(node)}")
        below = children.get(node_id, [])
        deeper = prefix if top else prefix + ("    " if last else "│   ")
        for index, child in enumerate(below):
            draw(child, deeper, index == len(below) - 1, False)

    for root in roots:
        draw(root.id, "", True, True)
    if not graph.of_kind("release_group"):
        lines.append("(no release groups: the foundation only)")
    lines.append("security group paths:")
    lines.extend(f"  {' '.join(path)}" for path in security_paths(graph))
    lines.extend(f"note: {note}" for note in graph.notes)
    return "\n".join(lines)


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;")


def to_mermaid(graph: Graph) -> str:
    lines = ["flowchart LR"]
    for node in graph.nodes:
        lines.append(f'    {node.id}["{_mermaid_text(node.label)}"]')
    for edge in graph.edges:
        arrow = "-->" if edge.kind in TREE_EDGES or edge.kind == "allows" else "-.->"
        label = _mermaid_text(edge.label or edge.kind)
        lines.append(f'    {edge.source} {arrow}|"{label}"| {edge.target}')
    return "\n".join(lines) + "\n"


def _dot_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(graph: Graph) -> str:
    lines = [f"digraph {_dot_text('fleet ' + graph.stack)} {{", "    rankdir=LR;", "    node [shape=box];"]
    for node in graph.nodes:
        style = ", style=dashed" if node.derived else ""
        lines.append(f"    {node.id} [label={_dot_text(node.label)}{style}];")
    for edge in graph.edges:
        style = "" if edge.kind in TREE_EDGES or edge.kind == "allows" else ", style=dashed"
        lines.append(f"    {edge.source} -> {edge.target} [label={_dot_text(edge.label or edge.kind)}{style}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def check_diagram_path(out: Path, *, which: Callable[[str], str | None] = shutil.which) -> None:
    """Refuse, before any work, a suffix we cannot write or an image without Graphviz's dot."""
    suffix = out.suffix.lower()
    if suffix not in DIAGRAM_SUFFIXES:
        raise BadInput(f"--out {str(out)!r} has an unknown suffix: expected one of {', '.join(DIAGRAM_SUFFIXES)}")
    if suffix in (".svg", ".png") and which("dot") is None:
        raise BadInput(
            f"--out {out}: Graphviz's dot is not installed (needed for {suffix}): "
            f"install graphviz, or write --out {out.with_suffix('.mmd').name} (Mermaid) or {out.with_suffix('.dot').name}"
        )


def write_diagram(
    graph: Graph, out: Path, *, which: Callable[[str], str | None] = shutil.which,
    run: Callable[..., Any] = subprocess.run,
) -> None:
    """Write the diagram `out`'s suffix names: .mmd Mermaid, .dot DOT, .svg/.png through Graphviz's dot."""
    check_diagram_path(out, which=which)
    suffix = out.suffix.lower()
    if suffix == ".mmd":
        out.write_text(to_mermaid(graph), encoding="utf-8")
        return
    if suffix == ".dot":
        out.write_text(to_dot(graph), encoding="utf-8")
        return
    done = run([which("dot"), f"-T{suffix[1:]}", "-o", str(out)], input=to_dot(graph).encode(), capture_output=True)
    if done.returncode != 0:
        reason = (done.stderr.decode(errors="replace").strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise FleetError(f"--out {out}: Graphviz's dot failed: {reason}")
