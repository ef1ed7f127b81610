"""Product records rewritten as if their times had been written in another zone: what the sun
check of the ingest must refuse (services/ingest/tests/test_cresda_sun.py)."""

import re
from datetime import datetime, timedelta
from pathlib import Path

from tests.support.lookalike_layouts import HJ_NAME, write_hj_ccd_lookalike


def shift_times(text: str, hours: int) -> str:
    """A record's text with every time stamp moved by `hours` (written in another zone)."""

    def move(match: re.Match[str]) -> str:
        stamp = datetime.strptime(match.group(2), "%Y-%m-%d %H:%M:%S")
        return f"{match.group(1)}{stamp + timedelta(hours=hours):%Y-%m-%d %H:%M:%S}"

    return re.sub(r"(>)(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", move, text)


def beijing_hj_package(out_dir: Path) -> Path:
    """An HJ-1A package whose `<root><data>` times are written in Beijing time (8 h ahead)."""
    folder = write_hj_ccd_lookalike(out_dir, max_size=200, archive=None)
    xml = folder / f"{HJ_NAME}.XML"
    xml.write_text(shift_times(xml.read_text(), 8))
    return folder
