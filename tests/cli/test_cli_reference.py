"""docs/cli.md says what `budgetft COMMAND --help` says: every command has a section, and each
section's options are the command's own (scripts/cli_reference.py rewrites them)."""


from tests.conftest import load_script


def _reference():
    return load_script("scripts/cli_reference.py")


def test_docs_cli_md_lists_every_option_of_every_command():
    ref = _reference()
    text = ref.DOC.read_text(encoding="utf-8")
    assert ref.render(text) == text, "docs/cli.md is out of date: run .venv/bin/python scripts/cli_reference.py"
    for name, command in ref.commands().items():
        section = text.split(f"<!-- options: {name} -->", 1)[1].split("<!-- /options -->", 1)[0]
        for param in command.params:
            for opt in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]:
                if opt.startswith("-"):
                    assert f"`{opt}`" in section, f"budgetft {name}: {opt} is missing from docs/cli.md"


def test_the_check_fails_on_a_stale_option_table():
    ref = _reference()
    text = ref.DOC.read_text(encoding="utf-8")
    stale = text.replace("| `--dry-run` |", "| `--dry-running` |", 1)
    assert ref.render(stale) != stale
