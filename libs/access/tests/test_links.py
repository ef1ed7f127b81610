"""A key given as `?api_key=` goes into links to this node only: same scheme, host and port, not
merely the same leading characters."""

import pytest

from csdr_access.links import add_key_to_links, is_own

OWN = ("http://node.example:8081/", "http://tiles.example:8082")


@pytest.mark.parametrize(
    ("href", "own"),
    [
        ("http://node.example:8081/collections/x/items/y", True),
        ("http://NODE.example:8081/search?limit=1", True),
        ("http://tiles.example:8082/collections/x/tiles/{z}/{x}/{y}.png", True),
        ("http://tiles.example:8082", True),
        ("http://tiles.example:80820/steal", False),  # another port: another server
        ("http://tiles.example.evil.com:8082/steal", False),
        ("http://tiles.example:8082@evil.com/steal", False),
        ("https://tiles.example:8082/x", False),
        ("http://node.example/x", False),  # port 80
        ("http://tiles.example:80x/x", False),
        ("/collections/x", False),
        ("https://creativecommons.org/licenses/by/4.0/", False),
    ],
)
def test_own_means_same_origin(href: str, own: bool) -> None:
    assert is_own(href, OWN) is own


def test_a_path_prefix_is_respected() -> None:
    assert is_own("http://node.example/csdr/search", ["http://node.example/csdr"])
    assert not is_own("http://node.example/csdrx/search", ["http://node.example/csdr"])


def test_links_and_assets_of_others_never_get_the_key() -> None:
    document = {
        "links": [
            {"rel": "next", "href": "http://node.example:8081/search?token=n"},
            {"rel": "license", "href": "http://tiles.example:80820/licence"},
        ],
        "features": [
            {
                "assets": {
                    "data": {"href": "http://node.example:8081/collections/c/items/i/assets/data"},
                    "mirror": {"href": "http://node.example:8081.evil.com/x"},
                }
            }
        ],
    }
    add_key_to_links(document, "csdr_k", OWN)
    assert document["links"][0]["href"].endswith("token=n&api_key=csdr_k")
    assert document["links"][1]["href"] == "http://tiles.example:80820/licence"
    assets = document["features"][0]["assets"]
    assert assets["data"]["href"].endswith("/assets/data?api_key=csdr_k")
    assert assets["mirror"]["href"] == "http://node.example:8081.evil.com/x"
