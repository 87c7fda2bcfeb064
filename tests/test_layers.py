"""The import contract: budgetft's layers point down, and no import circle exists, between
modules or between packages.

    layer  packages (and root modules)
    6      cli
    5      runner (the driver: sequences the stages)
    4      stages
    3      train · tune · cloud · report · use · track
    2      methods (tuners and their registry only) · data · models · scoring · telemetry · planner · task
    1      money · spec · rundir · resume · files and the small helpers (paths, clock, quiet, hub, ...)

Every import counts, at module level or inside a function (a function-level import still ties
the modules together); imports under `if TYPE_CHECKING:` are types only and do not. A module may
import from its own layer or any layer below; an import that runs up the layers must be one of
ALLOWED_UPWARD, each with its reason. Within a layer, two packages never import each other (no
circle of packages either: methods -> scoring -> methods would be one even with no circle of
modules). The checker itself is tested on deliberately bad imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "budgetft"

# (module prefix, layer): the longest matching prefix wins; higher layers may import lower ones.
LAYERS = [
    ("budgetft.cli", 6), ("budgetft.__main__", 6),
    ("budgetft.runner", 5),
    ("budgetft.stages", 4),
    ("budgetft.train", 3), ("budgetft.tune", 3), ("budgetft.cloud", 3), ("budgetft.report", 3), ("budgetft.use", 3), ("budgetft.track", 3),
    ("budgetft.methods", 2), ("budgetft.data", 2), ("budgetft.models", 2), ("budgetft.scoring", 2),
    ("budgetft.telemetry", 2), ("budgetft.planner", 2), ("budgetft.task", 2),
    ("budgetft", 1),  # money, spec, rundir, resume, files, paths, clock, quiet, hub, search_space, metrics, extras
]

# Imports that run up the layers, each on purpose.
ALLOWED_UPWARD = {
    # The job spec validates method names and their parameters against the method registry:
    # one source of truth for which methods exist, at the cost of one upward edge.
    ("budgetft.spec.job", "budgetft.methods"),
    ("budgetft.spec.load", "budgetft.methods"),
}


def layer_of(module: str) -> int:
    best = max((p for p, _ in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return dict(LAYERS)[best]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(module: str, source: str, known: set[str]) -> set[str]:
    """The budgetft modules `module` imports (module or function level, not TYPE_CHECKING)."""
    found: set[str] = set()
    package = module if module in known and (PACKAGE / "/".join(module.split(".")[1:]) / "__init__.py").exists() else module.rsplit(".", 1)[0]

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for inner in child.orelse:
                    visit(inner)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.startswith("budgetft"))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative
                    parts = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                if base.startswith("budgetft"):
                    for alias in child.names:  # `from pkg import submodule` imports the submodule
                        sub = f"{base}.{alias.name}"
                        found.add(sub if sub in known else base)
            visit(child)

    visit(ast.parse(source))
    return {m for m in found if m != module}


def graph(sources: dict[str, str]) -> dict[str, set[str]]:
    known = set(sources)
    return {m: {i for i in imports_of(m, s, known) if i in known} for m, s in sources.items()}


def package_sources() -> dict[str, str]:
    sources = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        sources[name] = path.read_text(encoding="utf-8")
    return sources


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def package_of(module: str) -> str:
    """The unit a module belongs to: its package under budgetft (budgetft.methods.lora ->
    budgetft.methods), or the root module itself (budgetft.rundir)."""
    parts = module.split(".")
    return ".".join(parts[:2])


def package_graph(edges: dict[str, set[str]], allowed: set[tuple[str, str]] = frozenset()) -> dict[str, set[str]]:
    """Imports between packages: an edge from P to Q when some module of P imports one of Q,
    leaving out the `allowed` upward imports (each named, with its reason, in ALLOWED_UPWARD:
    the job spec reads the method registry, and every package below the registry reads the
    spec; that one sanctioned edge is not a circle anyone can grow)."""
    out: dict[str, set[str]] = {}
    for a, targets in edges.items():
        pa = package_of(a)
        out.setdefault(pa, set()).update(package_of(b) for b in targets if package_of(b) != pa and (a, _allowed_key(a, b)) not in allowed)
    return out


def upward(edges: dict[str, set[str]]) -> set[tuple[str, str]]:
    found = set()
    for a, targets in edges.items():
        for b in targets:
            if layer_of(b) > layer_of(a):
                found.add((a, _allowed_key(a, b)))
    return found


def _allowed_key(a: str, b: str) -> str:
    """An upward edge names the importing module and the imported package it reaches into."""
    for prefix, _ in sorted(LAYERS, key=lambda p: -len(p[0])):
        if b == prefix or b.startswith(prefix + "."):
            return prefix if prefix != "budgetft" else b
    return b


def test_the_package_has_no_import_circle():
    assert cycles(graph(package_sources())) == []


def test_no_two_packages_import_each_other():
    circles = cycles(package_graph(graph(package_sources()), ALLOWED_UPWARD))
    assert circles == [], "packages that import each other: " + "; ".join(" <-> ".join(c) for c in circles)


def test_imports_point_down_the_layers():
    edges = graph(package_sources())
    unexpected = upward(edges) - ALLOWED_UPWARD
    assert not unexpected, "imports that run up the layers: " + ", ".join(f"{a} -> {b}" for a, b in sorted(unexpected))
    assert len({b for _, b in ALLOWED_UPWARD}) <= 1


def test_the_contract_fails_on_a_deliberate_bad_import():
    """A helper in money importing the run driver, and a circle between two modules: both are
    caught. (What CI would say if someone added either.)"""
    sources = {
        "budgetft": "",
        "budgetft.money": "",
        "budgetft.money.usd": "def f():\n    from budgetft.runner.driver import Run\n",
        "budgetft.runner": "",
        "budgetft.runner.driver": "from budgetft.money.usd import f\n",
        "budgetft.scoring": "",
        "budgetft.scoring.a": "from budgetft.scoring import b\n",
        "budgetft.scoring.b": "import budgetft.scoring.a\n",
    }
    edges = graph(sources)
    assert ("budgetft.money.usd", "budgetft.runner") in upward(edges)
    assert sorted(cycles(edges)) == [["budgetft.money.usd", "budgetft.runner.driver"], ["budgetft.scoring.a", "budgetft.scoring.b"]]
    # Two packages that import each other, with no circle of modules: caught at the package level.
    tangled = graph({**sources, "budgetft.scoring.a": "from budgetft.methods.c import f\n", "budgetft.scoring.b": "",
                     "budgetft.methods.c": "", "budgetft.methods.d": "from budgetft.scoring import b\n"})
    assert cycles(tangled) == [["budgetft.money.usd", "budgetft.runner.driver"]]
    assert ["budgetft.methods", "budgetft.scoring"] in cycles(package_graph(tangled))
    # Types only (TYPE_CHECKING) tie nothing together.
    typed = graph({**sources, "budgetft.money.usd": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from budgetft.runner.driver import Run\n"})
    assert ("budgetft.money.usd", "budgetft.runner") not in upward(typed)
