"""The static application's files (ES modules, styles, message files, the vendored MapLibre GL
JS) as the browser gets them: each text file gzip-compressed once, when the app is built (again
only when the file changes on disk), and sent as is to a browser that accepts gzip.
GZipMiddleware would compress MapLibre's 1 MB again for every page load, the longest wait of
the portal's first render (docs/portal.md, "First render")."""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import os
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.staticfiles import NotModifiedResponse, StaticFiles
from starlette.types import Scope

COMPRESSED_SUFFIXES = frozenset({".js", ".css", ".json", ".html", ".svg", ".txt"})


@dataclass(frozen=True)
class Compressed:
    """One file's gzip bytes, for the version of the file they were made from."""

    mtime_ns: int
    size: int
    body: bytes
    etag: str


def compress(path: Path, stat_result: os.stat_result) -> Compressed:
    """The file at `path` compressed (fixed gzip header time: the same bytes on every host)."""
    data = path.read_bytes()
    digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
    body = gzip.compress(data, compresslevel=9, mtime=0)
    return Compressed(stat_result.st_mtime_ns, stat_result.st_size, body, f'"{digest}-gzip"')


class CompressedFiles(StaticFiles):
    """StaticFiles that answers a request accepting gzip with the file's stored gzip bytes
    (`Content-Encoding: gzip`, its own ETag, `Vary: Accept-Encoding`); anything else (a range,
    an image, no gzip) as StaticFiles does."""

    def __init__(self, directory: Path) -> None:
        """Serve `directory`, compressing its text files now."""
        super().__init__(directory=directory)
        self._compressed: dict[str, Compressed] = {}
        for path in directory.rglob("*"):
            if path.is_file() and path.suffix in COMPRESSED_SUFFIXES:
                self._compressed[str(path.resolve())] = compress(path, path.stat())

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        """The stored gzip bytes when the request takes them, else StaticFiles' answer."""
        request_headers = Headers(scope=scope)
        path = Path(full_path)
        if (
            path.suffix not in COMPRESSED_SUFFIXES
            or status_code != 200
            or "gzip" not in request_headers.get("accept-encoding", "")
            or "range" in request_headers
        ):
            return super().file_response(full_path, stat_result, scope, status_code)
        key = str(path.resolve())
        found = self._compressed.get(key)
        if found is None or (found.mtime_ns, found.size) != (
            stat_result.st_mtime_ns,
            stat_result.st_size,
        ):
            found = self._compressed[key] = compress(path, stat_result)
        headers = {
            "content-encoding": "gzip",
            "vary": "Accept-Encoding",
            "etag": found.etag,
            "last-modified": formatdate(stat_result.st_mtime, usegmt=True),
        }
        media_type = mimetypes.guess_type(path.name)[0] or "text/plain"
        response = Response(found.body, media_type=media_type, headers=headers)
        if self.is_not_modified(response.headers, request_headers):
            return NotModifiedResponse(response.headers)
        return response
