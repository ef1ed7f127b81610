"""The portal's server: the vendored MapLibre is the recorded npm release, byte for byte; the page
loads nothing from elsewhere and its policy allows only the node's APIs; the config names the
configured URLs; every message the application shows exists in each language."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.routing import Mount

from csdr_portal.app import create_app
from csdr_portal.files import CompressedFiles
from csdr_portal.settings import Settings
from csdr_portal.vendor import MAPLIBRE_DIR, STATIC_DIR, VendorMismatch, record, verified

SETTINGS = Settings(
    catalog_url="http://catalog.example:8081/",
    tiler_url="http://tiles.example:8082",
    push_url="http://push.example:8084",
    orders_url="",
)


@pytest.fixture
def client():
    with TestClient(create_app(SETTINGS)) as c:
        yield c


def test_vendored_maplibre_is_the_recorded_release():
    vendored = verified()
    assert (vendored.package, vendored.version) == ("maplibre-gl", "5.24.1")
    assert set(vendored.files) == {"maplibre-gl.js", "maplibre-gl.css", "LICENSE.txt"}
    head = (MAPLIBRE_DIR / "maplibre-gl.js").read_text()[:300]
    assert f"/v{vendored.version}/LICENSE.txt" in head, "the file's banner names the version"
    assert "BSD" in (MAPLIBRE_DIR / "LICENSE.txt").read_text()


def test_a_changed_vendored_file_is_refused(tmp_path: Path):
    copy = tmp_path / "maplibre-gl"
    shutil.copytree(MAPLIBRE_DIR, copy)
    with open(copy / "maplibre-gl.css", "a") as css:
        css.write("/* edited */\n")
    with pytest.raises(VendorMismatch, match=r"maplibre-gl\.css has sha256"):
        verified(copy)
    (copy / "maplibre-gl.css").unlink()
    with pytest.raises(VendorMismatch, match="missing"):
        verified(copy)
    assert record(copy).version == "5.24.1"


def test_config_names_the_public_apis_and_languages(client):
    doc = client.get("/config.json").json()
    assert doc["catalog"] == "http://catalog.example:8081"
    assert doc["tiler"] == "http://tiles.example:8082"
    assert doc["push"] == "http://push.example:8084"
    assert doc["orders"] == "", "no orders service configured: its controls stay absent"
    assert doc["languages"][0] == "en" and "zh" in doc["languages"]
    assert doc["maplibre"] == "5.24.1"
    assert doc["mosaic_above"] == 300, "above a few hundred matches: the mosaic"
    assert client.get("/readyz").json() == {"status": "ok", "maplibre-gl": "5.24.1"}


def test_page_loads_only_from_itself_and_talks_only_to_the_node(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    policy = dict(
        part.strip().split(" ", 1) for part in r.headers["content-security-policy"].split(";")
    )
    assert policy["script-src"] == "'self'"
    assert policy["connect-src"].split() == [
        "'self'",
        "http://catalog.example:8081",
        "http://tiles.example:8082",
        "http://push.example:8084",
    ]
    assert r.headers["referrer-policy"] == "no-referrer"
    # Every script, style and icon the page names is a file of this server.
    refs = re.findall(r'(?:src|href)="([^"#]+)"', r.text)
    assert refs and all(not re.match(r"^[a-z]+:", ref) for ref in refs), refs
    for ref in refs:
        assert client.get(f"/{ref}").status_code == 200, ref


def test_static_files_are_served_as_what_they_are(client):
    js = client.get("/js/main.js")
    assert js.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript")
    lib = client.get("/vendor/maplibre-gl/maplibre-gl.js", headers={"Accept-Encoding": "gzip"})
    assert lib.headers["content-encoding"] == "gzip"
    assert len(lib.content) == (MAPLIBRE_DIR / "maplibre-gl.js").stat().st_size
    assert client.get("/messages/zh.json").json()["view.map"] == "地图"
    assert client.get("/no-such-file.js").status_code == 404


def test_text_files_go_out_compressed_once_and_revalidate(tmp_path: Path):
    """A text file is sent as the gzip bytes made when the app was built (the same bytes each
    time, not compressed per request), with its own ETag that revalidates to a 304; a file
    changed on disk is sent changed; an image or a client without gzip gets the file as is."""
    static = tmp_path / "static"
    shutil.copytree(STATIC_DIR, static)
    app = Starlette(routes=[Mount("/", CompressedFiles(static))])
    with TestClient(app) as files:
        first = files.get("/js/main.js", headers={"Accept-Encoding": "gzip"})
        assert first.headers["content-encoding"] == "gzip"
        assert first.headers["vary"] == "Accept-Encoding"
        raw = files.stream("GET", "/js/main.js", headers={"Accept-Encoding": "gzip"})
        with raw as r:
            sent = b"".join(r.iter_raw())
        assert gzip.decompress(sent) == (static / "js" / "main.js").read_bytes()
        with files.stream("GET", "/js/main.js", headers={"Accept-Encoding": "gzip"}) as r:
            assert b"".join(r.iter_raw()) == sent, "the stored bytes, not a new compression"
        etag = first.headers["etag"]
        again = files.get("/js/main.js", headers={"Accept-Encoding": "gzip", "If-None-Match": etag})
        assert again.status_code == 304
        plain = files.get("/js/main.js", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers and plain.headers["etag"] != etag
        assert plain.content == (static / "js" / "main.js").read_bytes()
        icon = files.get("/favicon.svg", headers={"Accept-Encoding": "gzip"})
        assert icon.headers["content-type"].startswith("image/svg+xml")

        (static / "js" / "main.js").write_text("// changed\n")
        changed = files.get("/js/main.js", headers={"Accept-Encoding": "gzip"})
        assert changed.text == "// changed\n" and changed.headers["etag"] != etag


def test_the_page_preloads_every_module_of_the_application(client):
    """The first render asks for the whole module graph at once (index.html's modulepreload
    list), so a module added to js/ must be added there too."""
    page = client.get("/").text
    preloaded = set(re.findall(r'<link rel="modulepreload" href="js/([^"]+)">', page))
    modules = {p.name for p in (STATIC_DIR / "js").glob("*.js")} - {"main.js"}
    assert preloaded == modules
    assert re.search(r'<script defer src="vendor/maplibre-gl/maplibre-gl.js">', page)


def test_no_file_of_the_application_reaches_for_another_host():
    for path in STATIC_DIR.rglob("*"):
        if (
            path.is_file()
            and "vendor" not in path.parts
            and path.suffix in {".js", ".html", ".css"}
        ):
            for url in re.findall(r"https?://[^\s\"'`)]+", path.read_text()):
                pytest.fail(f"{path.name} names {url}")


def messages(lang: str) -> dict[str, str]:
    return json.loads((STATIC_DIR / "messages" / f"{lang}.json").read_text(encoding="utf-8"))


def test_every_language_has_every_message_the_application_uses():
    en = messages("en")
    used = set(re.findall(r'data-i18n="([^"]+)"', (STATIC_DIR / "index.html").read_text()))
    for attr in re.findall(r'data-i18n-attr="([^"]+)"', (STATIC_DIR / "index.html").read_text()):
        used |= {pair.split(":")[1] for pair in attr.split(";")}
    for script in (STATIC_DIR / "js").glob("*.js"):
        used |= set(re.findall(r'\bt\("([a-z_.]+)"', script.read_text()))
    used |= {f"subscribe.{action}" for action in ("pause", "resume")}  # t(`subscribe.${action}`)
    # Keys made from a value: t(`orders.status.${status}`), t(`org.page.${page}`) and the like.
    statuses = ("ordered", "pending", "shipping", "succeeded", "partial", "failed", "canceled")
    used |= {f"orders.status.{s}" for s in statuses}
    pages = ("keys", "organisations", "policies", "orders", "subscriptions", "usage")
    used |= {f"org.page.{p}" for p in pages}
    used |= {f"org.policy.{p}" for p in ("public", "registered", "partners", "private")}
    groups = ("country", "organisation", "platform", "instrument", "collection", "class")
    used |= {f"org.group.{g}" for g in (*groups, "year", "quarter", "month")}
    used |= {f"org.measure.{m}" for m in ("source", "ordered", "released", "downloaded")}
    assert {"subscribe.test", "subscribe.dead", "subscribe.retry"} <= used
    assert used - set(en) == set(), "messages used but missing from en.json"
    for path in (STATIC_DIR / "messages").glob("*.json"):
        other = messages(path.stem)
        assert set(other) == set(en), f"{path.name} and en.json differ in keys"
        for key, text in en.items():
            assert set(re.findall(r"\{\w+\}", other[key])) == set(re.findall(r"\{\w+\}", text)), (
                f"{path.name}: {key} has other placeholders"
            )


def test_the_stylesheet_mirrors_for_right_to_left_languages():
    """Only logical properties (inline/block, start/end): `dir=rtl` flips the whole layout."""
    css = (STATIC_DIR / "style.css").read_text()
    sides = r"(?:margin|padding|border)-(?:left|right)|left|right|float"
    physical = re.findall(rf"(?<![\w-])({sides})\s*:", css)
    physical += re.findall(r"text-align:\s*(?:left|right)", css)
    assert physical == [], physical
