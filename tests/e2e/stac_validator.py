"""Run stac-api-validator 0.6.8 offline: every schema URL is answered from the local mirror.

Who fetches schemas (read from the installed 0.6.8, stac-validator 4.1 and pystac 1.15):
- stac-validator, for every Item and Collection the validator checks (and stac-check, through
  it), loads the core and extension schemas and each `$ref` (its `referencing` retrieve hook)
  with `requests.get` in `stac_validator.utilities.fetch_and_parse_file`; its wheel ships none
  of the `local_schemas` its code looks for;
- pystac, in the validator's closing `Client.open(root).validate()` of the landing page and its
  `child` links, reads schemas it has no vendored copy of through `StacIO.default()`, whose
  `DefaultStacIO` uses a fresh `urllib3.PoolManager` per read.
So a requests transport adapter is mounted on every new `Session` for the mirrored hosts, and
pystac's default StacIO becomes a subclass that reads those hosts from the mirror. Any other host
(the API under test) goes over the network as usual; a mirrored URL with no file answers 404,
never the network. (stac-validator's link and asset checks use `urllib.request.urlopen`, but a
failed check there is only reported, never an error, and our objects link to no schema host.)

Run: `python -m tests.e2e.stac_validator --root-url URL --conformance core ...` (the validator's
own options); the mirror is `../shared/stac-schemas` from the repository root unless
`CSDR_STAC_SCHEMAS_DIR` says otherwise (layout: `HOST/PATH`, see its README.md).
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import requests
from pystac.stac_io import DefaultStacIO, StacIO
from requests.adapters import BaseAdapter

logger = logging.getLogger("csdr.stac_schemas")

REPO_ROOT = Path(__file__).resolve().parents[2]


def schemas_dir() -> Path:
    """The offline mirror: `CSDR_STAC_SCHEMAS_DIR`, else `../shared/stac-schemas` from the repo."""
    configured = os.environ.get("CSDR_STAC_SCHEMAS_DIR")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "stac-schemas"


class SchemaMirror:
    """Maps `http(s)://HOST/PATH` to the file `HOST/PATH` under the mirror's root."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"offline STAC schema mirror not found: {self.root}")
        self.hosts = sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def path(self, url: str) -> Path | None:
        """The file for a mirrored URL (missing or not), or None when its host is not mirrored."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or host not in self.hosts:
            return None
        path = (self.root / host / parts.path.lstrip("/")).resolve()
        return path if path.is_relative_to(self.root) else self.root  # a folder: answered 404

    def read(self, url: str) -> bytes | None:
        """The mirrored file's bytes, or None when the mirror has no such file."""
        path = self.path(url)
        if path is None or not path.is_file():
            logger.warning("not in the offline schema mirror: %s", url)
            return None
        logger.info("served from the offline schema mirror: %s", url)
        return path.read_bytes()


class MirrorAdapter(BaseAdapter):
    """A requests transport adapter answering mirrored hosts from local files."""

    def __init__(self, mirror: SchemaMirror) -> None:
        super().__init__()
        self.mirror = mirror

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        """Answer 200 with the mirrored file, or 404."""
        body = self.mirror.read(str(request.url))
        response = requests.Response()
        response.request, response.url = request, str(request.url)
        found = body is not None
        response.status_code, response.reason = (200, "OK") if found else (404, "Not Found")
        response.raw = io.BytesIO(body or b"")
        response.headers["Content-Type"] = "application/json"
        return response

    def close(self) -> None:
        """Nothing to release."""


class MirrorStacIO(DefaultStacIO):
    """pystac's reader, answering mirrored hosts from local files."""

    mirror: SchemaMirror

    def read_text_from_href(self, href: str) -> str:
        """Read a mirrored URL from the mirror, anything else as pystac does."""
        if self.mirror.path(href) is None:
            return super().read_text_from_href(href)
        body = self.mirror.read(href)
        if body is None:
            raise FileNotFoundError(f"not in the offline schema mirror: {href}")
        return body.decode("utf-8")


def install(mirror: SchemaMirror) -> None:
    """Answer requests and pystac fetches of the mirrored hosts from `mirror`, in this process."""
    adapter = MirrorAdapter(mirror)
    original_init = requests.Session.__init__

    def init_with_mirror(session: requests.Session) -> None:
        original_init(session)
        for host in mirror.hosts:
            session.mount(f"https://{host}/", adapter)
            session.mount(f"http://{host}/", adapter)

    requests.Session.__init__ = init_with_mirror  # type: ignore[method-assign]
    MirrorStacIO.mirror = mirror
    StacIO.set_default(MirrorStacIO)


def run_validator(args: Sequence[str], timeout_s: float = 900) -> str:
    """Run the offline validator in a child process with `args`; return its combined output."""
    proc = subprocess.run(
        [sys.executable, "-m", "tests.e2e.stac_validator", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    return proc.stdout + proc.stderr


def main() -> None:
    """Install the mirror, then hand the command line to stac-api-validator."""
    from stac_api_validator.__main__ import main as validator_main

    install(SchemaMirror(schemas_dir()))
    validator_main(prog_name="stac-api-validator")


if __name__ == "__main__":
    main()
