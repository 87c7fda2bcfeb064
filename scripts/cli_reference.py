"""Keep docs/cli.md's option tables what `budgetft COMMAND --help` says.

docs/cli.md is prose written by hand, with one generated block per command between
`<!-- options: NAME -->` and `<!-- /options -->`: the usage line and every argument and option
with its help text, read from the command line itself. Run this after changing a command:

    .venv/bin/python scripts/cli_reference.py          # rewrite the blocks in docs/cli.md
    .venv/bin/python scripts/cli_reference.py --check  # exit 1 if they are out of date (the tests do this)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "cli.md"
BLOCK = re.compile(r"<!-- options: (?P<name>[a-z_-]+) -->\n.*?<!-- /options -->", re.S)


def commands() -> dict:
    """Every `budgetft` command, by name, as click sees it."""
    import typer.main

    sys.path.insert(0, str(ROOT))
    from budgetft.cli import app

    return dict(typer.main.get_command(app).commands)


def block(name: str, command) -> str:
    """The generated text for one command: usage, then a table of its arguments and options."""
    args = [p for p in command.params if p.param_type_name == "argument"]
    usage = " ".join(a.name.upper() if a.required else f"[{a.name.upper()}]" for a in args)
    lines = [f"<!-- options: {name} -->", "```", f"budgetft {name} {usage} [OPTIONS]".replace("  ", " "), "```", "",
             "| argument or option | meaning |", "|---|---|"]
    for p in command.params:
        if p.param_type_name == "argument":
            lines.append(f"| `{p.name.upper()}` | {_cell(getattr(p, 'help', None) or '')} |")
        else:
            lines.append(f"| {', '.join(f'`{o}`' for o in [*p.opts, *p.secondary_opts])} | {_cell(p.help or '')} |")
    return "\n".join([*lines, "<!-- /options -->"])


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render(text: str) -> str:
    """`text` (docs/cli.md) with every generated block made current. A command without a block,
    or a block for no command, is an error: the reference covers exactly the commands there are."""
    found = commands()
    named = [m.group("name") for m in BLOCK.finditer(text)]
    missing, stale = sorted(set(found) - set(named)), sorted(set(named) - set(found))
    if missing or stale:
        raise SystemExit(f"docs/cli.md: no section for {missing or 'none'}; sections for no command: {stale or 'none'}")
    return BLOCK.sub(lambda m: block(m.group("name"), found[m.group("name")]), text)


def main() -> int:
    text = DOC.read_text(encoding="utf-8")
    current = render(text)
    if "--check" in sys.argv:
        if current != text:
            print("docs/cli.md is out of date: run .venv/bin/python scripts/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(current, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
