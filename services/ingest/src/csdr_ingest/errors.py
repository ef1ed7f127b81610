"""Why an input was rejected: each error names the problem in words an operator can act on."""

import errno


class IngestError(Exception):
    """An input that cannot be published; `code` is stable, the message says what to fix."""

    code = "IngestError"

    def to_dict(self) -> dict[str, str]:
        """The error as a job's `error` object."""
        return {"code": self.code, "description": str(self)}


class SourceNotFound(IngestError):
    """The source path does not exist or is not readable by the ingest service."""

    code = "SourceNotFound"


class SourceUnreadable(IngestError):
    """GDAL cannot open the source as a raster (corrupt, truncated, not an image)."""

    code = "SourceUnreadable"


class NotGeoreferenced(IngestError):
    """The raster has no CRS, so it cannot be placed on a map without RPCs."""

    code = "NotGeoreferenced"


class MissingDatetime(IngestError):
    """Neither the file nor the job says when the scene was acquired."""

    code = "MissingDatetime"


class PackageInvalid(IngestError):
    """A scene package that is not what it claims: no product metadata, unreadable XML, a TIFF
    the XML does not describe, or an archive that cannot be unpacked."""

    code = "PackageInvalid"


class RpcMissing(IngestError):
    """A sensor-geometry TIFF arrived without the RPC sidecar (`.rpb`) that places it on Earth."""

    code = "RpcMissing"


class InvalidCog(IngestError):
    """The written file failed COG validation (a bug or a GDAL problem, never published)."""

    code = "InvalidCog"


class TimeContradictsSun(IngestError):
    """The acquisition time derived from the metadata puts the sun far from where the metadata
    says it stood: the time was most likely read in the wrong zone (cresda/sun.py)."""

    code = "TimeContradictsSun"


class NotElevation(IngestError):
    """A raster sent to an elevation (`-dem`/`-dsm`) collection that is not one band of heights."""

    code = "NotElevation"


class DiskFull(IngestError):
    """No space was left to write a scene's files (or the quota was used up); nothing was
    published and what was written is gone: free space and queue the job again."""

    code = "DiskFull"


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# GDAL's words for the same, when it raised without an errno (a COG written by rasterio).
NO_SPACE_WORDS = ("No space left on device", "Disk quota exceeded")


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether `exc`, or an exception it was raised from, says the disk or quota is full."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            return True
        if any(words in str(exc) for words in NO_SPACE_WORDS):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False
