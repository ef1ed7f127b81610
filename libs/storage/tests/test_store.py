"""The asset store's two kinds against real storage: a directory, and moto's S3 server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from csdr_storage.store import (
    LocalStore,
    S3Store,
    gdal_options,
    in_item_folder,
    parse_s3_url,
    remove_hrefs,
    s3_client,
)
from tests.support.s3 import S3Server, s3_server


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[S3Server]:
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        server.create_bucket("store")
        yield server


@pytest.fixture
def bucket(s3, request) -> S3Store:
    return S3Store("store", f"t/{request.node.name}", s3_client(s3.env), s3.env)


@pytest.fixture
def local(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "assets")


@pytest.fixture(params=["local", "bucket"])
def store(request):
    return request.getfixturevalue(request.param)


def test_files_go_in_come_out_and_leave(store, tmp_path):
    cog = tmp_path / "x_1234abcd.tif"
    cog.write_bytes(b"II*\x00 not much of a COG")
    key = "gf1-wfv/SCENE/x_1234abcd.tif"
    store.put_file(cog, key)
    store.put_bytes(".pending/1234abcd.json", b"{}")
    assert store.keys("gf1-wfv/SCENE") == [key]
    assert store.get_bytes(".pending/1234abcd.json") == b"{}"
    assert store.key_of(store.href(key)) == key
    store.delete([key, ".pending/1234abcd.json", "gf1-wfv/SCENE/never-written.tif"])
    assert store.keys("gf1-wfv/SCENE") == [] and store.keys(".pending") == []
    assert store.get_bytes(".pending/1234abcd.json") is None


def test_hrefs_outside_the_store_have_no_key(local, bucket):
    assert local.key_of("/etc/passwd") is None
    assert local.key_of(local.url + "a/../../etc/passwd") is None
    assert bucket.key_of("s3://other-bucket/t/x.tif") is None
    assert bucket.key_of(bucket.url + "../x.tif") is None
    assert bucket.href("c/i/f.tif") == f"{bucket.url}c/i/f.tif"
    with pytest.raises(ValueError, match="not a key"):
        local.href("../outside")
    assert in_item_folder("c/i/i_1234abcd.tif", "c", "i")
    assert not in_item_folder("c/other/i_1234abcd.tif", "c", "i")


def test_a_presigned_url_serves_the_object_with_byte_ranges(bucket, tmp_path):
    path = tmp_path / "x.tif"
    path.write_bytes(bytes(range(256)))
    bucket.put_file(path, "c/i/x.tif")
    url = bucket.presigned_url("c/i/x.tif", 60)
    r = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == bytes(range(10, 20))
    assert r.headers["content-type"] == "image/tiff"


def test_a_presigned_url_names_the_endpoint_clients_reach(bucket, s3, tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(b"\x89PNG not much of a thumbnail")
    bucket.put_file(path, "c/i/x.png")
    public = s3.endpoint.replace("127.0.0.1", "localhost")
    url = bucket.presigned_url("c/i/x.png", 60, public)
    assert url.startswith(f"{public}/store/") and "X-Amz-Signature=" in url
    r = httpx.get(url)
    assert r.status_code == 200 and r.content == path.read_bytes()


def test_store_urls_and_gdal_options_are_checked():
    assert parse_s3_url("s3://bucket/some/prefix/") == ("bucket", "some/prefix")
    for bad in ("bucket/prefix", "s3:///prefix", "https://bucket/x", "s3://b/p?x=1"):
        with pytest.raises(ValueError):
            parse_s3_url(bad)
    assert gdal_options({}) == {}
    assert gdal_options({"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"}) == {
        "AWS_S3_ENDPOINT": "127.0.0.1:9000",
        "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
    }


def test_local_store_removes_emptied_folders(local, tmp_path):
    local.put_bytes("c/i/a.png", b"png")
    local.delete(["c/i/a.png"])
    assert not (Path(local.url) / "c" / "i").exists()


def test_a_folder_goes_with_everything_in_it(store):
    for key in ("c/i/a.tif", "c/j/b.tif", "other/k/c.tif"):
        store.put_bytes(key, b"x")
    store.delete_folder("c")
    assert store.keys("c/i") == [] and store.keys("c/j") == []
    assert store.keys("other/k") == ["other/k/c.tif"]


def test_keys_at_any_depth_and_removal_by_href(store, s3, monkeypatch):
    for name, value in s3.env.items():  # remove_hrefs reaches the bucket as the services do
        monkeypatch.setenv(name, value)
    for key in ("m/p/c/i/a.tif", "m/p/c/j/b.png", "m/top.txt", "other/x.tif"):
        store.put_bytes(key, b"x")
    assert store.keys_under("m") == ["m/p/c/i/a.tif", "m/p/c/j/b.png", "m/top.txt"]
    remove_hrefs([store.href("m/p/c/i/a.tif"), store.href("m/never-written.tif")])
    assert store.keys_under("m") == ["m/p/c/j/b.png", "m/top.txt"]
    assert store.keys_under("other") == ["other/x.tif"] and store.keys_under("none") == []
