"""The test suite on each supported Python and Spark pair: ``pip install nox && nox``.

CI runs the newest pyspark through ``.ci/run``; this runs the suite on the oldest pair the
package supports, Python 3.9 with pyspark 3.5 (EMR 7, Glue 5), and on the newest, side by side.
Each Python must be on PATH (``python3.9``, ``python3.11``; with pyenv:
``pyenv shell 3.11.7 3.9.18``). ``nox -s "tests(python='3.9', pyspark='3.5.9')"`` runs one
of them.
"""

from __future__ import annotations

import nox

# (Python, pyspark): EMR 7 runs Spark 3.5 on Python 3.9.
SUPPORTED = [("3.9", "3.5.9"), ("3.11", "4.3.0")]


@nox.session
@nox.parametrize(("python", "pyspark"), SUPPORTED)
def tests(session: nox.Session, pyspark: str) -> None:
    session.install("-e", ".[test]", f"pyspark=={pyspark}")
    session.run("pytest", *session.posargs)
