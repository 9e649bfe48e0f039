"""``spark-manifests package``: zip the package for ``spark-submit --py-files``."""

from __future__ import annotations

import argparse
import os
import zipfile
from typing import TYPE_CHECKING

from ._options import add_command

if TYPE_CHECKING:
    from ._options import Subcommands

# The ``spark_manifests`` folder: this module is in its ``cli`` package.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def register(commands: Subcommands) -> None:
    """Add the ``package`` command to ``commands``."""
    package = add_command(
        commands, "package", handle, "zip the package for spark-submit --py-files"
    )
    package.add_argument(
        "--output",
        default=os.path.join("dist", "spark_manifests.zip"),
        help="the zip to write (default: %(default)s)",
    )


def handle(args: argparse.Namespace) -> int:
    """Write every ``.py`` file of the package into the zip; print the zip's path."""
    target = os.path.abspath(args.output)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for folder, _, files in os.walk(_PACKAGE_DIR):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    archive.write(path, os.path.relpath(path, os.path.dirname(_PACKAGE_DIR)))
    print(target)
    return 0
