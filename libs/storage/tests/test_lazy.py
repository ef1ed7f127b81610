"""Which hrefs a first use is told of: only those under a lazy peer's STAC API, each once per
process until it is forgotten (telling failed) or its time to be remembered is up."""

import time

from csdr_storage.lazy import FirstUses

MAIN = "http://127.0.0.1:8081"
HREF = f"{MAIN}/collections/gf1/items/S1/assets/data"


def test_only_hrefs_under_a_lazy_peers_api_are_candidates() -> None:
    uses = FirstUses()
    assert not uses.first(HREF)  # no lazy peer known yet
    assert uses.set_peers([MAIN + "/"]) and not uses.set_peers([MAIN])
    assert not uses.first("/data/assets/gf1/S1/data.tif")
    assert not uses.first("http://127.0.0.1:80810/collections/gf1/items/S1/assets/data")
    assert not uses.first(f"{MAIN}/search")
    assert uses.first(HREF)


def test_each_href_is_told_once_until_forgotten_or_expired() -> None:
    uses = FirstUses(remember_s=0.2)
    uses.set_peers([MAIN])
    assert uses.first(HREF) and not uses.first(HREF)
    uses.forget(HREF)
    assert uses.first(HREF) and not uses.first(HREF)
    time.sleep(0.3)
    assert uses.first(HREF)


def test_a_lazy_copys_own_path_is_a_candidate_under_its_mirrors_folder() -> None:
    uses = FirstUses()
    copy = "/data/assets/mirrors/main/gf1/S1/data.tif"
    assert not uses.first(copy)  # no lazy copies known yet
    assert uses.set_copies(["/data/assets/mirrors/main/"]) and not uses.set_copies(
        ["/data/assets/mirrors/main/"]
    )
    assert not uses.first("/data/assets/gf1/S1/data.tif")
    assert not uses.first("/data/assets/mirrors/main/../../gf1/S1/data.tif")
    assert uses.first(copy) and not uses.first(copy)
