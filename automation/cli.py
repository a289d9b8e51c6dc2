"""The `fleet` command line: parse, call, print, exit code. No release logic here.

Exit codes (automation.errors.ExitCode): 0 ok, 1 failed (previous release
restored or nothing changed), 2 bad input, 3 blocked by a gate or a lock,
4 the automatic rollback failed and a person is needed.
"""
from __future__ import annotations

import sys
import traceback
from pathlib import Path

import typer

from automation import __version__
from automation.cli_ami import ami_app
from automation.cli_graph import graph_command
from automation import services
from automation.errors import Blocked, ExitCode, FleetError
from automation.output import Output
from automation.plan import Plan
from automation.release_state import ReleaseStateError
from automation.render import render_history, render_plan, render_status
from automation.release_state import REPLACE
from automation.rollout import DEFAULT_VERIFY_TIMEOUT_S, Strategy, choose_group, promotable_group

app = typer.Typer(
    name="fleet",
    help="Zero-downtime releases of EC2 web fleets: bake, preview, deploy, verify, roll back, promote.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(ami_app, name="ami")
app.command(name="graph")(graph_command)

_debug = False


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"fleet {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of errors."),
) -> None:
    global _debug
    _debug = debug


# -- release commands ---------------------------------------------------------------

StackArgument = typer.Argument(..., help="The stack: integration, staging or production.")
JsonOption = typer.Option(False, "--json", help="Print one JSON document with stable fields (progress goes to stderr).")
YesOption = typer.Option(False, "--yes", help="Do not ask for confirmation (CI). Gated stacks still need --plan.")
PlanOption = typer.Option(None, "--plan", help="The approved plan file written by `fleet preview --out`.")
VerifyTimeoutOption = typer.Option(DEFAULT_VERIFY_TIMEOUT_S, "--verify-timeout", min=1, help="Seconds to wait for all instances healthy.")
SmokeUrlOption = typer.Option(None, "--smoke-url", help="After the update, GET this URL until it answers --smoke-status.")
SmokeStatusOption = typer.Option(200, "--smoke-status", help="The HTTP status --smoke-url must answer.")
AppOption = typer.Option(None, "--app", help="Application name of the AMIs (default: the stack's fleet:appName, else web).")
StrategyOption = typer.Option(REPLACE, "--strategy", help="replace | canary | standby (see docs/strategies.md).")
CanaryOption = typer.Option(1, "--canary", help="canary: instances of the new release beside the old fleet.")
HoldOption = typer.Option(0.0, "--hold", help="canary: minutes to watch alarms before growing (0 = until `fleet continue`).")
StandbyOption = typer.Option(60.0, "--standby-minutes", help="standby: minutes the old group stays warm for instant rollback.")
AlarmOption = typer.Option([], "--alarm", help="Another CloudWatch alarm that aborts the release (repeatable).")


def _strategy(name: str, canary: int, hold: float, standby_minutes: float, alarms: list[str]) -> Strategy:
    return Strategy(name=name, canary=canary, hold_minutes=hold, standby_minutes=standby_minutes, alarms=tuple(alarms))


def _release(stack: str, out: Output, verify_timeout: float = DEFAULT_VERIFY_TIMEOUT_S,
             smoke_url: str | None = None, smoke_status: int = 200):
    return services.open_release(stack, progress=out.progress, verify_timeout_s=verify_timeout,
                                 smoke_url=smoke_url, smoke_status=smoke_status)


def _confirm(stack: str, yes: bool, out: Output):
    """How a non-gated change is confirmed: --yes, a person at a terminal, or refused."""
    if yes:
        return None

    def ask(plan) -> bool:
        if not sys.stdin.isatty():
            raise Blocked(f"stack {stack}: a change needs confirmation; pass --yes (CI) or run on a terminal")
        out.progress(render_plan(plan))
        return typer.confirm("Apply this change?", default=False, err=True)

    return ask


def _group(release, stack: str, version: str | None, ami: str | None, app: str | None):
    config = release.s.workspace.config()
    return choose_group(
        release.s.ec2,
        release=version,
        ami_id=ami,
        app=app or config.get("fleet:appName") or "web",
        instance_type=config.get("fleet:instanceType"),
    )


def _print_outcome(out: Output, outcome) -> None:
    text = f"{outcome.stack}: {outcome.outcome} — " + (
        ", ".join(f"{g.release} ({g.ami}, {g.role})" for g in outcome.state.groups) or "no release groups")
    out.result(outcome.to_dict(), text=text + (f"\n{outcome.note}" if outcome.note else ""))


@app.command()
def preview(
    stack: str = StackArgument,
    version: str = typer.Option(None, "--release", help="Version to preview (its AMI is selected)."),
    ami: str = typer.Option(None, "--ami", help="Explicit AMI id to preview."),
    out_file: Path = typer.Option(None, "--out", help="Write the plan file a gated deploy needs."),
    app_name: str = AppOption,
    strategy: str = StrategyOption,
    canary: int = CanaryOption,
    hold: float = HoldOption,
    standby_minutes: float = StandbyOption,
    json_mode: bool = JsonOption,
) -> None:
    """Show the resource diff and release timeline a deploy (or, without --release/--ami, an apply)
    would make. Changes nothing."""
    out = Output(json_mode)
    release = _release(stack, out)
    group = _group(release, stack, version, ami, app_name) if (version or ami) else None
    plan = release.preview(group, _strategy(strategy, canary, hold, standby_minutes, []))
    if out_file:
        plan.save(out_file)
        out.progress(f"plan written to {out_file}")
    out.result(plan.to_dict(), text=render_plan(plan))


@app.command()
def deploy(
    stack: str = StackArgument,
    version: str = typer.Option(None, "--release", help="Version to release (its AMI is selected)."),
    ami: str = typer.Option(None, "--ami", help="Explicit AMI id to release."),
    plan_file: Path = PlanOption,
    yes: bool = YesOption,
    app_name: str = AppOption,
    strategy: str = StrategyOption,
    canary: int = CanaryOption,
    hold: float = HoldOption,
    standby_minutes: float = StandbyOption,
    alarm: list[str] = AlarmOption,
    verify_timeout: float = VerifyTimeoutOption,
    smoke_url: str = SmokeUrlOption,
    smoke_status: int = SmokeStatusOption,
    json_mode: bool = JsonOption,
) -> None:
    """Release a version: new group created and healthy before the old one goes; rolls back by itself."""
    out = Output(json_mode)
    plan = Plan.load(plan_file) if plan_file else None
    release = _release(stack, out, verify_timeout, smoke_url, smoke_status)
    group = _group(release, stack, version, ami, app_name)
    chosen = _strategy(strategy, canary, hold, standby_minutes, alarm)
    _print_outcome(out, release.deploy(group, strategy=chosen, plan=plan, confirm=_confirm(stack, yes, out)))


@app.command()
def rollback(
    stack: str = StackArgument,
    to: str = typer.Option(None, "--to", help="Version to go back to (default: the previous release)."),
    yes: bool = YesOption,
    verify_timeout: float = VerifyTimeoutOption,
    json_mode: bool = JsonOption,
) -> None:
    """Back to the standby group (no boot), or the previous (or named) release create-before-destroy."""
    out = Output(json_mode)
    release = _release(stack, out, verify_timeout)
    _print_outcome(out, release.rollback(to, confirm=_confirm(stack, yes, out)))


@app.command(name="continue")
def continue_(
    stack: str = StackArgument,
    alarm: list[str] = AlarmOption,
    verify_timeout: float = VerifyTimeoutOption,
    json_mode: bool = JsonOption,
) -> None:
    """Go on with a held canary release: grow it to full size, then retire the old group."""
    out = Output(json_mode)
    _print_outcome(out, _release(stack, out, verify_timeout).continue_release(tuple(alarm)))


@app.command()
def abort(
    stack: str = StackArgument,
    verify_timeout: float = VerifyTimeoutOption,
    json_mode: bool = JsonOption,
) -> None:
    """Roll back the release in flight, at whatever phase it is."""
    out = Output(json_mode)
    _print_outcome(out, _release(stack, out, verify_timeout).abort())


@app.command()
def cleanup(
    stack: str = StackArgument,
    verify_timeout: float = VerifyTimeoutOption,
    json_mode: bool = JsonOption,
) -> None:
    """Remove standby groups whose time is up."""
    out = Output(json_mode)
    _print_outcome(out, _release(stack, out, verify_timeout).cleanup())


@app.command()
def apply(
    stack: str = StackArgument,
    plan_file: Path = PlanOption,
    yes: bool = YesOption,
    verify_timeout: float = VerifyTimeoutOption,
    json_mode: bool = JsonOption,
) -> None:
    """Converge the stack to its current release state (what `pulumi up` does), then verify."""
    out = Output(json_mode)
    plan = Plan.load(plan_file) if plan_file else None
    release = _release(stack, out, verify_timeout)
    _print_outcome(out, release.apply(plan=plan, confirm=_confirm(stack, yes, out)))


@app.command()
def status(
    stack: str = StackArgument,
    json_mode: bool = JsonOption,
) -> None:
    """Live releases, AMIs, in-service and healthy counts, URL, last outcome, pending and orphans."""
    out = Output(json_mode)
    report = _release(stack, out).status()
    out.result(report, text=render_status(report))


@app.command()
def history(
    stack: str = StackArgument,
    json_mode: bool = JsonOption,
) -> None:
    """Every release of the stack: version, AMI, when, who, outcome."""
    out = Output(json_mode)
    entries = _release(stack, out).history()
    out.result({"stack": stack, "history": entries}, text=render_history(stack, entries))


@app.command()
def promote(
    source: str = typer.Option(..., "--from", help="Stack whose live release is promoted."),
    target: str = typer.Option(..., "--to", help="Stack that receives it, through its own gate."),
    plan_file: Path = PlanOption,
    yes: bool = YesOption,
    verify_timeout: float = VerifyTimeoutOption,
    json_mode: bool = JsonOption,
) -> None:
    """Release the AMI that runs in one stack to the next, after checking it succeeded there."""
    out = Output(json_mode)
    group = promotable_group(source, _release(source, out).live())
    plan = Plan.load(plan_file) if plan_file else None
    release = _release(target, out, verify_timeout)
    group = _group(release, target, group.release, group.ami, None)
    _print_outcome(out, release.deploy(group, strategy=Strategy(), plan=plan, confirm=_confirm(target, yes, out)))


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and turn every error into a one-line reason and an exit code."""
    try:
        # Standalone mode: Typer reports usage errors itself, with exit code 2 (= BAD_INPUT).
        app(args=argv, prog_name="fleet")
        return ExitCode.OK
    except SystemExit as done:
        return int(done.code or 0)
    except FleetError as error:
        if _debug:
            traceback.print_exc()
        typer.echo(f"fleet: {error.reason}", err=True)
        return error.exit_code
    except ReleaseStateError as error:
        if _debug:
            traceback.print_exc()
        typer.echo(f"fleet: {error}", err=True)
        return ExitCode.BAD_INPUT


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
