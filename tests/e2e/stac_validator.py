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
own options); the mirror is `tests/fixtures/stac-schemas` unless `CSDR_STAC_SCHEMAS_DIR` says
otherwise (layout: `HOST/PATH`, see its README.md).
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

from tests.fixtures import STAC_SCHEMAS

logger = logging.getLogger("csdr.stac_schemas")

REPO_ROOT = Path(__file__).resolve().parents[2]


def schemas_dir() -> Path:
    """The offline mirror: `CSDR_STAC_SCHEMAS_DIR`, else the one in `tests/fixtures`."""
    configured = os.environ.get("CSDR_STAC_SCHEMAS_DIR")
    return Path(configured) if configured else STAC_SCHEMAS


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


def check_collection_search(root: str, conforms: list[str]) -> list[str]:
    """Collection Search (https://github.com/stac-api-extensions/collection-search): bbox,
    datetime and limit on /collections; a malformed bbox is a 400."""
    if not any("/collection-search" in c and "#" not in c for c in conforms):
        return []
    print("Validating STAC API - Collection Search conformance class.")
    errors, every = [], requests.get(f"{root}/collections", timeout=60).json()["collections"]
    if not every:
        return ["[Collection Search] /collections is empty; nothing to search"]
    west, south, east, north = every[0]["extent"]["spatial"]["bbox"][0][:4]
    inside = requests.get(f"{root}/collections", params={"bbox": f"{west},{south},{east},{north}"})
    if every[0]["id"] not in [c["id"] for c in inside.json().get("collections", [])]:
        errors.append("[Collection Search] bbox of a collection's own extent did not find it")
    far = requests.get(f"{root}/collections", params={"bbox": "-179,-89,-178,-88"}, timeout=60)
    if far.status_code != 200 or far.json().get("collections"):
        errors.append("[Collection Search] a bbox far from every extent found collections")
    old = requests.get(
        f"{root}/collections", params={"datetime": "1900-01-01T00:00:00Z/1901-01-01T00:00:00Z"}
    )
    if old.status_code != 200 or old.json().get("collections"):
        errors.append("[Collection Search] a datetime before every extent found collections")
    one = requests.get(f"{root}/collections", params={"limit": 1}, timeout=60).json()
    if len(one.get("collections", [])) != 1:
        errors.append("[Collection Search] limit=1 did not return one collection")
    if len(every) > 1 and not any(link["rel"] == "next" for link in one.get("links", [])):
        errors.append("[Collection Search] limit=1 of several collections has no next link")
    bad = requests.get(f"{root}/collections", params={"bbox": "1,2,3"}, timeout=60)
    if bad.status_code != 400:
        errors.append(f"[Collection Search] bbox=1,2,3 answered {bad.status_code}, not 400")
    return errors


def check_free_text(root: str, conforms: list[str]) -> list[str]:
    """Free-text search of collections (`q`): a word of a title finds that collection, a word
    in none finds nothing."""
    if not any("free-text" in c for c in conforms):
        return []
    print("Validating STAC API - Free-text search conformance class.")
    errors, every = [], requests.get(f"{root}/collections", timeout=60).json()["collections"]
    target = every[0]
    word = max((target.get("title") or target["description"]).split(), key=len).strip(",.")
    found = requests.get(f"{root}/collections", params={"q": word}, timeout=60).json()
    if target["id"] not in [c["id"] for c in found.get("collections", [])]:
        errors.append(f"[Free-text] q={word} did not find collection {target['id']}")
    none = requests.get(f"{root}/collections", params={"q": "zzqqxxnotaword"}, timeout=60).json()
    if none.get("collections"):
        errors.append("[Free-text] q of a word in no collection found collections")
    return errors


def check_aggregation(root: str, conforms: list[str]) -> list[str]:
    """Aggregation (https://github.com/stac-api-extensions/aggregation): the listed aggregations
    are computed, and total_count equals the number of items a search pages through."""
    if not any("/aggregation" in c for c in conforms):
        return []
    print("Validating STAC API - Aggregation conformance class.")
    errors = []
    listed = requests.get(f"{root}/aggregations", timeout=60).json()
    names = [a["name"] for a in listed.get("aggregations", [])]
    if "total_count" not in names:
        errors.append("[Aggregation] /aggregations does not list total_count")
    body = requests.post(f"{root}/aggregate", json={"aggregations": names}, timeout=60).json()
    got = {a["name"]: a for a in body.get("aggregations", [])}
    if sorted(got) != sorted(names):
        errors.append(f"[Aggregation] /aggregate computed {sorted(got)}, listed {sorted(names)}")
    items = requests.post(f"{root}/search", json={"limit": 10000}, timeout=60).json()["features"]
    if got.get("total_count", {}).get("value") != len(items):
        errors.append("[Aggregation] total_count differs from the items /search returns")
    return errors


def check_unvalidated_classes(root: str) -> list[str]:
    """Our checks of the advertised classes stac-api-validator 0.6.8 does not know."""
    conforms = requests.get(root, timeout=60).json().get("conformsTo", [])
    return [
        *check_collection_search(root, conforms),
        *check_free_text(root, conforms),
        *check_aggregation(root, conforms),
    ]


def main() -> None:
    """Install the mirror, check what the validator does not know, then hand the command line
    to stac-api-validator (which prints `Errors: none` only when its own checks pass)."""
    from stac_api_validator.__main__ import main as validator_main

    root = sys.argv[sys.argv.index("--root-url") + 1].rstrip("/")
    if errors := check_unvalidated_classes(root):
        print("Errors (classes stac-api-validator does not check):")
        print("\n".join(f"- {e}" for e in errors))
        sys.exit(1)
    install(SchemaMirror(schemas_dir()))
    validator_main(prog_name="stac-api-validator")


if __name__ == "__main__":
    main()
