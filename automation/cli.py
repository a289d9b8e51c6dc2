"""The `fleet` command line: parse, call, print, exit code. No release logic here.

Exit codes (automation.errors.ExitCode): 0 ok, 1 failed (previous release
restored or nothing changed), 2 bad input, 3 blocked by a gate or a lock,
4 the automatic rollback failed and a person is needed.
"""
from __future__ import annotations

import sys
import traceback

import typer

from automation import __version__
from automation.cli_ami import ami_app
from automation.errors import ExitCode, FleetError
from automation.release_state import ReleaseStateError

app = typer.Typer(
    name="fleet",
    help="Zero-downtime releases of EC2 web fleets: bake, preview, deploy, verify, roll back, promote.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(ami_app, name="ami")

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
