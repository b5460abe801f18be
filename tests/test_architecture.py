"""The package's layering, checked from the source (docs/architecture.md states the same rules).

Every import inside ``tdph_workflows`` (module level and inside functions) is read with ``ast``:
no import cycle, no import from a higher layer, no import of another module's underscore name,
and a command line that holds no database queries or file writing.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "tdph_workflows"

# lower number = lower layer; a module may import its own layer and those below
LAYERS = {
    "core": 0,
    "settings": 1, "packing": 1, "schemas": 1, "io": 1, "plotting": 1,
    "potentials": 2,
    "engine": 3, "trust": 3, "validation": 3, "finetune": 3, "testing": 3,
    "makers": 4,
    "campaign": 5,
    "analysis": 6,
    "cli": 7,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = current.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(name: str, path: Path) -> list[tuple[str, str, int]]:
    """(imported module, imported name or '', line) for every import of the package's own modules."""
    known = modules()
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names if a.name.startswith("tdph_workflows")]
        elif isinstance(node, ast.ImportFrom):
            target = resolve(name, path.name == "__init__.py", node)
            if not target.startswith("tdph_workflows"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.append((sub, "", node.lineno) if sub in known else (target, alias.name, node.lineno))
    return out


def layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the root package (lazy re-export of the engine)
    top = "cli" if parts[1].startswith("cli") else parts[1]
    return LAYERS.get(top)


def test_every_module_has_a_layer():
    unplaced = [m for m in modules() if m != "tdph_workflows" and layer(m) is None]
    assert not unplaced, f"add these to LAYERS and docs/architecture.md: {unplaced}"


def test_imports_go_down_the_layers_only():
    bad = []
    for name, path in modules().items():
        own = layer(name)
        for target, _, line in imports(name, path):
            if own is not None and (layer(target) or 0) > own:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph = {name: {t for t, _, _ in imports(name, path)} for name, path in modules().items()}
    graph = {k: {t for t in v if t in graph and t != k} for k, v in graph.items()}
    # a package's __init__ re-exporting its own submodules is not a cycle of the design
    graph = {k: {t for t in v if not (t.startswith(k + ".") and modules()[k].name == "__init__.py")}
             for k, v in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [node, nxt]) if nxt in stack else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, stack + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "\n".join(cycles)


def test_no_module_imports_another_modules_underscore_names():
    bad = []
    for name, path in modules().items():
        for target, imported, line in imports(name, path):
            if imported.startswith("_") and not imported.startswith("__"):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}.{imported}")
    assert not bad, "\n".join(bad)


FORBIDDEN_IN_CLI = ("find", "find_one", "count_documents", "aggregate", "distinct", "write_text", "write_bytes",
                    "savefig", "to_csv", "insert_one", "update_one", "update_many", "delete_many")


def test_command_line_is_presentation_only():
    cli = [p for m, p in modules().items() if layer(m) == LAYERS["cli"]]
    assert cli
    bad = []
    for path in cli:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in FORBIDDEN_IN_CLI:
                bad.append(f"{path.name}:{node.lineno} .{node.func.attr}()")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open":
                bad.append(f"{path.name}:{node.lineno} open()")
    assert not bad, "query or file-writing logic in the CLI:\n" + "\n".join(bad)


def test_no_backend_switch_on_import():
    offenders = [p.name for p in PACKAGE.rglob("*.py")
                 if any(isinstance(n, ast.Expr) and "matplotlib.use" in ast.unparse(n)
                        for n in ast.parse(p.read_text()).body)]
    assert not offenders, f"module-level matplotlib.use in {offenders}"
