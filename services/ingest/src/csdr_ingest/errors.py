"""Why an input was rejected: each error names the problem in words an operator can act on."""


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
