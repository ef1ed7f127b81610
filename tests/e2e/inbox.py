"""An operator's side of an ingest inbox, for tests: drop a package in as a finished copy would
appear, and wait for what follows."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.e2e.load import wait_for

__all__ = ["drop", "wait_for"]


def drop(src: Path, inbox: Path) -> None:
    """Put a package into the inbox the way an operator's copy would finish: a rename."""
    hidden = inbox / f".{src.name}"
    shutil.move(str(src), hidden)
    hidden.rename(inbox / src.name)
