"""The package's size and import rules, checked on its source (no import runs).

Every module of ``spark_manifests`` (subpackages included) must have at most 500 lines,
every class at most 350, every function or method at most 60 (counted from its ``def`` or
``class`` line to its last line, decorators excluded); and no import cycle may exist between
the package's modules. Imports inside functions count: they still tie the modules together.
Imports under ``if TYPE_CHECKING:`` are excluded, because they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "spark_manifests"
PACKAGE = PACKAGE_DIR.name
MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 350
MAX_FUNCTION_LINES = 60


def module_files() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package."""
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = module_files()


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import under ``node`` that can run, at any depth, except ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and is_type_checking(child.test):
            for other in child.orelse:
                yield from runtime_imports_of(other)
            continue
        yield from runtime_imports_of(child)


def runtime_imports_of(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    yield from runtime_imports(node)


def lazy_imports(tree: ast.Module) -> Iterator[str]:
    """The modules a package's ``_LAZY`` map (PEP 562 ``__getattr__``) imports on first use,
    as relative names: they tie the package to them as an import would."""
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)):
            continue
        if any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets):
            for value in node.value.values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    yield value.value


def imported_modules(name: str, path: Path) -> set[str]:
    """The package's modules that module ``name`` imports."""
    is_package = path.name == "__init__.py"
    tree = parse(path)
    found = {f"{name}.{module}" for module in lazy_imports(tree)} if is_package else set()
    for node in runtime_imports(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = resolve_from(name, is_package, node)
            # `from . import x` names a module x, or a name defined in the package itself.
            targets = [f"{base}.{alias.name}" for alias in node.names]
            targets = [target if target in MODULES else base for target in targets]
        found.update(targets)
    return {target for target in found if target in MODULES and target != name}


def resolve_from(name: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = name.split(".")
    if not is_package:
        parts.pop()
    if node.level > 1:
        parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def oversized_definitions(path: Path, tree: ast.Module | None = None) -> Iterator[str]:
    for node in ast.walk(parse(path) if tree is None else tree):
        if isinstance(node, ast.ClassDef):
            limit = MAX_CLASS_LINES
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            limit = MAX_FUNCTION_LINES
        else:
            continue
        lines = (node.end_lineno or node.lineno) - node.lineno + 1
        if lines > limit:
            yield f"{path.name}:{node.lineno} {node.name} has {lines} lines (limit {limit})"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_and_its_definitions_are_small(module: str) -> None:
    path = MODULES[module]
    problems = list(oversized_definitions(path))
    lines = len(path.read_text(encoding="utf-8").splitlines())
    if lines > MAX_MODULE_LINES:
        problems.insert(0, f"{path.name} has {lines} lines (limit {MAX_MODULE_LINES})")
    assert not problems, "\n".join(problems)


def test_no_import_cycle_between_the_package_modules() -> None:
    graph = {name: imported_modules(name, path) for name, path in MODULES.items()}
    cycles = import_cycles(graph)
    assert not cycles, "modules importing each other: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_check_sees_imports_inside_functions() -> None:
    # A check that could not fail would prove nothing: model the old manifest cycle.
    source = "def f():\n    from .b import x\n"
    assert [getattr(node, "module", None) for node in runtime_imports(ast.parse(source))] == ["b"]
    assert import_cycles({"p.a": {"p.b"}, "p.b": {"p.a"}, "p.c": set()}) == [["p.a", "p.b"]]


def test_the_cycle_check_skips_type_checking_imports() -> None:
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import x\n"
    assert [getattr(node, "module", None) for node in runtime_imports(ast.parse(source))] == [
        "typing"
    ]


def test_the_cycle_check_resolves_the_package_imports() -> None:
    opener = f"{PACKAGE}.manifest_open"
    assert {f"{PACKAGE}.manifest", f"{PACKAGE}.manifest_dynamodb"} <= imported_modules(
        opener, MODULES[opener]
    )


def test_the_size_check_finds_a_long_function_and_a_long_class() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    source = f"def long():\n{body}\ndef short():\n    pass\n"
    assert list(oversized_definitions(Path("m.py"), ast.parse(source))) == [
        f"m.py:1 long has {MAX_FUNCTION_LINES + 1} lines (limit {MAX_FUNCTION_LINES})"
    ]
    methods = "".join(f"    def m{i}(self):\n        pass\n" for i in range(MAX_CLASS_LINES // 2))
    found = list(oversized_definitions(Path("m.py"), ast.parse(f"class Big:\n{methods}")))
    assert found == [f"m.py:1 Big has {MAX_CLASS_LINES + 1} lines (limit {MAX_CLASS_LINES})"]


def test_the_cycle_check_resolves_imports_of_a_subpackage() -> None:
    command = f"{PACKAGE}.cli.runs"
    assert f"{PACKAGE}.runs" in imported_modules(command, MODULES[command])
    node = ast.parse("from .. import manifest\nfrom . import _display\n").body
    bases = [resolve_from(command, False, n) for n in node if isinstance(n, ast.ImportFrom)]
    assert bases == [PACKAGE, f"{PACKAGE}.cli"]
    assert resolve_from(f"{PACKAGE}.cli", True, node[1]) == f"{PACKAGE}.cli"  # type: ignore[arg-type]


def test_the_cycle_check_sees_the_lazy_imports_of_the_package() -> None:
    assert {f"{PACKAGE}.source", f"{PACKAGE}.manifest_open"} <= imported_modules(
        PACKAGE, MODULES[PACKAGE]
    )


def test_the_cycle_check_counts_plain_and_from_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(f"import {PACKAGE}.runs\ndef f():\n    from .state import StateStore\n")
    found = imported_modules(f"{PACKAGE}.cli.m", module)
    assert found == {f"{PACKAGE}.runs", f"{PACKAGE}.cli.state"}
