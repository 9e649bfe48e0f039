"""The test suite on each supported Spark line: ``pip install nox && nox``.

CI runs the newest pyspark through ``.ci/run``; this runs the suite on pyspark 3.5 (EMR 7,
Glue 5) and 4.x side by side. ``nox -s "tests(pyspark='3.5.9')"`` runs one of them.
"""

from __future__ import annotations

import nox

PYSPARK_VERSIONS = ["3.5.9", "4.3.0"]


@nox.session
@nox.parametrize("pyspark", PYSPARK_VERSIONS)
def tests(session: nox.Session, pyspark: str) -> None:
    session.install("-e", ".[test]", f"pyspark=={pyspark}")
    session.run("pytest", *session.posargs)
