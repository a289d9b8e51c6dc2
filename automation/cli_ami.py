"""`fleet ami …`: bake, list, show, prune and sweep AMIs. Parse, call, print; no logic."""
from __future__ import annotations

import typer

ami_app = typer.Typer(help="Bake, select, list and prune application AMIs.", no_args_is_help=True)
