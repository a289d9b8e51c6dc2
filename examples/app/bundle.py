#!/usr/bin/env python3
"""Embed app.py and fleet-app.service into install.sh.

`fleet ami bake` sends only the install script's text to the builder, so the
script carries the application and its unit as here-documents. They are
edited in their own files; this writes them into install.sh.

  python3 examples/app/bundle.py          update install.sh
  python3 examples/app/bundle.py --check  exit 1 if install.sh is out of date
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
INSTALL_SCRIPT = HERE / "install.sh"
# here-document delimiter in install.sh -> file whose text it carries
EMBEDDED = {
    "FLEET_EMBEDDED_APP_PY": HERE / "app.py",
    "FLEET_EMBEDDED_SERVICE": HERE / "fleet-app.service",
}


def bundled(script: str) -> str:
    """The install script with every embedded section replaced by its file's text."""
    for delimiter, source in EMBEDDED.items():
        text = source.read_text()
        if not text.endswith("\n"):
            text += "\n"
        if re.search(rf"^{delimiter}$", text, re.MULTILINE):
            raise SystemExit(f"bundle.py: {source.name} contains the line {delimiter}, which would end its here-document")
        section = re.compile(rf"(<<'{delimiter}'\n)(.*?)(^{delimiter}$)", re.MULTILINE | re.DOTALL)
        if not section.search(script):
            raise SystemExit(f"bundle.py: install.sh has no here-document <<'{delimiter}'")
        script = section.sub(lambda m: m.group(1) + text + m.group(3), script, count=1)
    return script


def main(argv: list[str]) -> int:
    current = INSTALL_SCRIPT.read_text()
    wanted = bundled(current)
    if "--check" in argv:
        if current != wanted:
            print("bundle.py: install.sh is out of date: run python3 examples/app/bundle.py", file=sys.stderr)
            return 1
        return 0
    if current != wanted:
        INSTALL_SCRIPT.write_text(wanted)
        print("bundle.py: install.sh updated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
