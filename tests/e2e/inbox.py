"""An operator's side of an ingest inbox, for tests: drop a package in as a finished copy would
appear, and wait for what follows."""

from __future__ import annotations

import shutil
import time
from pathlib import Path


def wait_for(check, timeout_s: float = 240, what: str = "") -> None:
    """Poll `check` until it is true, or raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.3)


def drop(src: Path, inbox: Path) -> None:
    """Put a package into the inbox the way an operator's copy would finish: a rename."""
    hidden = inbox / f".{src.name}"
    shutil.move(str(src), hidden)
    hidden.rename(inbox / src.name)
