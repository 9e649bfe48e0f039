"""The code examples of the README and the docs pages, for the tests that check them.

An example is a fenced code block. A Python example that cannot run in the tests (it needs
AWS, a cluster, or a notebook's ``spark``) has ``<!-- not run: why -->`` on the line above its
fence; every other one is run by a test, which finds it by the heading it sits under.
Every Python example, run or not, must compile and use only the package's public names.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)
_NOT_RUN = re.compile(r"<!-- not run: (.+?) -->\n$")
_HEADING = re.compile(r"^#+ (.+)$", re.M)


@dataclass(frozen=True)
class Example:
    """One fenced code block: where it is, its language and code, and why it is not run."""

    page: str
    heading: str
    language: str
    code: str
    not_run: str | None

    @property
    def where(self) -> str:
        return f"{self.page}, under {self.heading!r}"


def examples(path: Path, language: str | None = None) -> list[Example]:
    """The code blocks of a Markdown file (of one language, when given), in order."""
    text = path.read_text()
    found = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()]
        # A `#` comment in an earlier code block is not a heading.
        headings = _HEADING.findall(_FENCE.sub("", before))
        not_run = _NOT_RUN.search(before)
        block = Example(
            page=path.name,
            heading=headings[-1] if headings else "",
            language=match.group(1),
            code=match.group(2),
            not_run=not_run.group(1) if not_run else None,
        )
        if language is None or block.language == language:
            found.append(block)
    return found


def doc_pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def runnable(path: Path, heading: str) -> str:
    """The one Python example under ``heading`` in ``path`` that is to be run."""
    under = [e for e in examples(path, "python") if e.heading == heading and e.not_run is None]
    assert len(under) == 1, f"expected one runnable Python example under {heading!r} in {path}"
    return under[0].code


def api_problems(code: str) -> list[str]:
    """What in ``code`` is not the package's public API: names imported from
    ``spark_manifests`` outside ``__all__``, arguments ``ManifestedRunSource`` does not take,
    attributes a source or its ``JobSummary`` does not have."""
    import inspect

    import spark_manifests
    from spark_manifests import JobSummary, ManifestedRunSource

    tree = ast.parse(code)
    problems = [
        f"{alias.name} is not in spark_manifests.__all__"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "spark_manifests"
        for alias in node.names
        if alias.name not in spark_manifests.__all__
    ]
    parameters = inspect.signature(ManifestedRunSource).parameters
    summary_names = {f.name for f in dataclasses.fields(JobSummary)} | set(dir(JobSummary))
    kinds = _variable_kinds(tree)
    for node in ast.walk(tree):
        if _calls(node, "ManifestedRunSource"):
            assert isinstance(node, ast.Call)
            problems += [
                f"ManifestedRunSource takes no {k.arg}="
                for k in node.keywords
                if k.arg not in parameters
            ]
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            kind = kinds.get(node.value.id)
            known = dir(ManifestedRunSource) if kind == "source" else summary_names
            if kind is not None and node.attr not in known:
                problems.append(f"{node.value.id}.{node.attr}: a {kind} has no {node.attr}")
    return problems


def _calls(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name


def _variable_kinds(tree: ast.AST) -> dict[str, str]:
    """Variables bound to a source (``ManifestedRunSource(...)``) or to its summary
    (``source.run()``)."""
    kinds: dict[str, str] = {}
    for node in ast.walk(tree):
        bound: list[tuple[ast.AST, ast.AST]] = []
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            bound.append((node.targets[0], node.value))
        if isinstance(node, ast.With):
            bound += [(i.optional_vars, i.context_expr) for i in node.items if i.optional_vars]
        for target, value in bound:
            if not isinstance(target, ast.Name):
                continue
            if _calls(value, "ManifestedRunSource"):
                kinds[target.id] = "source"
            elif (
                isinstance(value, ast.Call)
                and isinstance(value.func, ast.Attribute)
                and isinstance(value.func.value, ast.Name)
                and kinds.get(value.func.value.id) == "source"
                and value.func.attr == "run"
            ):
                kinds[target.id] = "JobSummary"
    return kinds
