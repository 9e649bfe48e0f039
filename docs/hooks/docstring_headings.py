"""A griffe extension that reads the package's docstrings as their authors wrote them.

The package's numpy docstrings may end, after their ``Parameters``, with a paragraph of
prose and short ``>>>`` examples, without the ``Notes`` and ``Examples`` headings. A numpy
section runs until the next heading, so the parser would read those lines as more parameters
(and ``mkdocs build --strict`` would fail on them); this adds the headings first. Sphinx
roles (``:class:`~spark_manifests.StateStore```) become code spans, as Markdown has no roles.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

# A section item's first line: "name", "name : type", "a, b" or "*args".
_ITEM = re.compile(r"^\*{0,2}[\w.]+(, \*{0,2}[\w.]+)*( : .*)?$")
_DASHES = re.compile(r"^-{3,}$")
# :class:`~a.b.C` shows C, :func:`a.b.c` shows a.b.c.
_ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):`(~?)([\w.]+)(\(\))?`")


def with_headings(docstring: str) -> str:
    """``docstring`` with ``Notes`` / ``Examples`` headings above prose and ``>>>`` lines that
    follow a section after a blank line.

    >>> with_headings("Sum.\\n\\nParameters\\n---\\nx\\n    A.\\n\\nIt adds.").split("\\n")[-3:]
    ['Notes', '-----', 'It adds.']
    """
    lines = docstring.split("\n")
    out: list[str] = []
    section = ""
    for number, line in enumerate(lines):
        following = lines[number + 1] if number + 1 < len(lines) else ""
        after_blank = number > 0 and not lines[number - 1].strip()
        if _DASHES.match(following):
            section = line.strip()
        elif line.startswith(">>>") and after_blank and section != "Examples":
            section = "Examples"
            out += ["Examples", "--------"]
        elif section not in ("", "Notes", "Examples") and after_blank and _is_prose(line):
            section = "Notes"
            out += ["Notes", "-----"]
        out.append(line)
    return "\n".join(out)


def without_roles(docstring: str) -> str:
    """``docstring`` with its Sphinx roles as code spans.

    >>> without_roles("See :class:`~spark_manifests.StateStore` and :func:`open`.")
    'See `StateStore` and `open`.'
    """
    return _ROLE.sub(
        lambda m: f"`{m[2].rsplit('.', 1)[-1] if m[1] else m[2]}{m[3] or ''}`", docstring
    )


def _is_prose(line: str) -> bool:
    return bool(line) and not line[0].isspace() and not _ITEM.match(line) and " " in line


class DocstringHeadings(Extension):
    """Adds the headings a docstring leaves out and turns its roles into code (see the module)."""

    def on_instance(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = without_roles(with_headings(obj.docstring.value))
