"""The STAC file extension on the assets an ingest wrote: `file:size` and `file:checksum` (a
sha2-256 multihash), so whoever copies an asset (a mirroring node, a user's download script) can
verify the copy."""

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from csdr_service.checksums import checksum

FILE_EXTENSION = "https://stac-extensions.github.io/file/v2.1.0/schema.json"


def describe_files(item: dict[str, Any], written: Iterable[Path]) -> None:
    """Add size and checksum to the item's assets whose href is one of the files `written`."""
    files = {str(p): p for p in written}
    described = False
    for asset in item.get("assets", {}).values():
        path = files.get(asset.get("href", ""))
        if path is not None and path.is_file():
            asset["file:size"] = path.stat().st_size
            asset["file:checksum"] = checksum(path)
            described = True
    extensions = item.setdefault("stac_extensions", [])
    if described and FILE_EXTENSION not in extensions:
        extensions.append(FILE_EXTENSION)
