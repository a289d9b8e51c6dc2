"""Text for people: diffs, status and history as the CLI prints them (no logic)."""
from __future__ import annotations

from typing import Any

from automation.plan import Plan, describe_groups
from automation.timeline import Timeline

SYMBOLS = {
    "create": "+", "create-replacement": "++", "update": "~", "replace": "+-",
    "delete": "-", "delete-replaced": "--", "read": ">", "refresh": ">",
}


def render_change(change, phase: str = "") -> str:
    mark = SYMBOLS.get(change.op, "*")
    props = f" [{', '.join(change.diffs)}]" if change.diffs else ""
    status = {"": "", "pre": "", "done": " done", "failed": " FAILED"}.get(phase, f" {phase}")
    return f"  {mark} {change.op} {change.type} {change.name}{props}{status}"


def render_plan(plan: Plan) -> str:
    lines = [
        f"stack {plan.stack}",
        f"  now:      {describe_groups(plan.base)}",
        f"  proposed: {describe_groups(plan.proposed)}",
        "resource changes:",
    ]
    if not plan.changes:
        lines.append("  (none)")
    for change in plan.changes:
        mark = SYMBOLS.get(change["op"], "*")
        props = f" [{', '.join(change.get('diffs', ()))}]" if change.get("diffs") else ""
        lines.append(f"  {mark} {change['op']} {change['type']} {change['name']}{props}")
    counts: dict[str, int] = {}
    for op, _, _ in plan.operations:
        counts[op] = counts.get(op, 0) + 1
    lines.append("summary: " + (", ".join(f"{n} to {op}" for op, n in sorted(counts.items())) or "no changes"))
    phases = plan.extra.get("phases") or []
    if len(phases) > 1:
        lines.append(f"strategy {plan.extra.get('strategy')}: " + " -> ".join(p["name"] for p in phases)
                     + " (the diff above is the first phase's update)")
    for key, title in (("timeline", "release timeline"), ("rollback_timeline", "rollback timeline")):
        if plan.extra.get(key):
            timeline = Timeline.from_dict(plan.extra[key])
            lines.append(timeline.render(title))
            lines.extend(f"  assumes {a}" for a in timeline.assumptions if key == "timeline")
    return "\n".join(lines)


def render_status(status: dict[str, Any]) -> str:
    lines = [f"stack {status['stack']}  url: {status.get('url') or '-'}"]
    if not status["groups"]:
        lines.append("  no release groups (foundation only)")
    health = {h["release"]: h for h in status["health"]}
    for group in status["groups"]:
        h = health.get(group["release"])
        counts = f"{h['in_service']}/{h['expected']} in service, {h['healthy']}/{h['expected']} healthy" if h else "no health data"
        extra = f" until {group['expires_at']}" if group.get("expires_at") else ""
        lines.append(
            f"  {group['release']:<16} {group['role']}{extra}  {group['ami']}  asg {group.get('asgName', '-')}  {counts}"
        )
        for problem in (h or {}).get("problems", []):
            lines.append(f"    ! {problem}")
    last = status.get("last") or {}
    lines.append(f"last change: {last.get('outcome', '-')} {last.get('note', '')} at {last.get('at', '-')} by {last.get('by', '-')}")
    if status.get("pending"):
        lines.append("PENDING: a change did not finish; re-run the same command to resume it, or `fleet rollback`.")
    orphans = {k: v for k, v in (status.get("orphans") or {}).items() if v}
    if orphans:
        lines.append(f"ORPHANS (tagged for this stack, unknown to its state): {orphans}")
    return "\n".join(lines)


def render_history(stack: str, entries: list[dict[str, Any]]) -> str:
    if not entries:
        return f"stack {stack} has no release history"
    lines = [f"{'at':<21} {'outcome':<12} {'releases':<20} {'by':<24} note"]
    for e in entries:
        releases = ",".join(e["releases"]) or "(none)"
        by = e["by"] + (f" @{e['commit'][:12]}" if e.get("commit") else "")
        lines.append(f"{e['at']:<21} {e['outcome']:<12} {releases:<20} {by:<24} {e['note']}")
    return "\n".join(lines)
