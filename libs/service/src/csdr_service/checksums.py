"""`file:checksum` of the STAC file extension as the node writes and checks it: the sha2-256
multihash of a file, in hex. The ingest writes it on every asset; a mirroring node verifies its
copies against it, and a backup lists it."""

import hashlib
from pathlib import Path

SHA256_MULTIHASH = "1220"
"""The multihash prefix of sha2-256: function code 0x12, digest length 0x20 (32 bytes)."""
CHUNK = 1 << 20


def checksum(path: Path) -> str:
    """The file's sha2-256 multihash, as hex."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return SHA256_MULTIHASH + digest.hexdigest()
