"""AWS Glue's job arguments: what a Glue job passes to a script besides the job's own.

Glue runs a script with every job parameter on its command line as ``--name value``, its
own (``--JOB_ID``, ``--JOB_RUN_ID``, ``--TempDir``, ``--enable-metrics``, ...) among the
job's; a flag comes with a value too (``--fail-fast true``). The command line keeps the
options it knows and drops the rest, so ``jobs/*.py`` run as Glue scripts unchanged.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

_logger = logging.getLogger(__name__)

#: Glue passes these to every job run; their presence says the script runs under Glue.
RUN_MARKERS = ("--JOB_RUN_ID", "--JOB_ID")
_TRUE = ("true", "")


def runs_under_glue(argv: Sequence[str]) -> bool:
    return any(marker in argv for marker in RUN_MARKERS)


def known_arguments(argv: Sequence[str], command: argparse.ArgumentParser) -> list[str]:
    """``argv`` (after the command's name) without the options ``command`` does not take,
    and with Glue's ``--flag true`` / ``--flag false`` as ``--flag`` / nothing.

    Examples
    --------
    >>> parser = argparse.ArgumentParser()
    >>> _ = parser.add_argument("--archive")
    >>> _ = parser.add_argument("--fail-fast", action="store_true")
    >>> known_arguments(["--JOB_ID", "j_1", "--archive", "s3://a/", "--fail-fast", ""], parser)
    ['--archive', 's3://a/', '--fail-fast']
    """
    options = command._option_string_actions  # argparse's own table of the options it takes
    kept: list[str] = []
    dropped: list[str] = []
    words = list(argv)
    while words:
        word, equals, inline = words.pop(0).partition("=")
        if equals:
            value: str | None = inline
        else:
            value = words.pop(0) if words and not words[0].startswith("--") else None
        action = options.get(word)
        if action is None:
            dropped.append(word)
        elif action.nargs == 0:  # a flag: Glue gives it a value
            if value is None or value.lower() in _TRUE:
                kept.append(word)
        else:
            kept.extend([word] if value is None else [word, value])
    if dropped:
        _logger.info("Ignoring the arguments the job does not take (AWS Glue's): %s", dropped)
    return kept
