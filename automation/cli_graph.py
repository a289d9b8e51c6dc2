"""`fleet graph`: draw what the program declares for a stack. Parse, call, print; no logic."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from automation import graph, services
from automation.output import Output


def graph_command(
    stack: str = typer.Argument(..., help="integration, staging or production"),
    release: Optional[str] = typer.Option(None, "--release", help="Propose this version beside the current groups (with --ami)."),
    ami: Optional[str] = typer.Option(None, "--ami", help="AMI id of --release; it is not looked up."),
    state_file: Optional[Path] = typer.Option(None, "--state", help="Propose this release-state JSON instead of the current state."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write a diagram: .mmd (Mermaid), .dot, .svg or .png (Graphviz)."),
    offline: bool = typer.Option(False, "--offline", help="Do not read the current release state from SSM."),
    json_mode: bool = typer.Option(False, "--json", help="Print the graph as one JSON document."),
) -> None:
    """Show the resources the program declares for STACK and a release state, without AWS or the Pulumi CLI."""
    printer = Output(json_mode)
    if out is not None:
        graph.check_diagram_path(out)
    drawn = graph.draw(
        stack, project_dir=services.project_dir(), release=release, ami=ami, state_file=state_file, offline=offline
    )
    if out is not None:
        graph.write_diagram(drawn, out)
        printer.progress(f"diagram written to {out}")
    printer.result(drawn.to_dict(), text=graph.render_tree(drawn))
