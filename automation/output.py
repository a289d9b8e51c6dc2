"""How commands speak: readable lines for people, one JSON document for CI."""
from __future__ import annotations

import json
import sys
from typing import Any


class Output:
    """Progress and results of one command. With json_mode, progress goes to
    stderr and the result is a single JSON object on stdout with stable keys."""

    def __init__(self, json_mode: bool = False, stream=None, err_stream=None):
        self.json_mode = json_mode
        self.stream = stream or sys.stdout
        self.err_stream = err_stream or sys.stderr

    def progress(self, message: str) -> None:
        print(message, file=self.err_stream if self.json_mode else self.stream, flush=True)

    def result(self, data: dict[str, Any], text: str | None = None) -> None:
        if self.json_mode:
            print(json.dumps(data, indent=2, sort_keys=True, default=str), file=self.stream, flush=True)
        elif text is not None:
            print(text, file=self.stream, flush=True)
