"""Map links name exactly the presets an item's or collection's bands allow, in URLs QGIS keeps."""

from csdr_render.links import collection_map_links, item_map_links

TILER = "https://tiles.node.example/"
MSS = [{"common_name": n} for n in ("blue", "green", "red", "nir")]


def item(assets: dict) -> dict:
    return {"id": "GF2 scene/1", "collection": "gf2-pms", "assets": assets}


def by_rel(links: list[dict]) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for link in links:
        found.setdefault(link["rel"], []).append(link)
    return found


def test_a_pms_item_links_each_preset_of_its_two_assets():
    assets = {
        "mss": {"href": "/a/mss.tif", "roles": ["data"], "bands": MSS},
        "pan": {"href": "/a/pan.tif", "roles": ["data"], "bands": [{"common_name": "pan"}]},
        "thumbnail": {"href": "/a/t.png", "roles": ["thumbnail"]},
    }
    links = by_rel(item_map_links(TILER, item(assets)))
    base = "https://tiles.node.example/collections/gf2-pms/items/GF2%20scene%2F1/presets"
    assert [link["href"] for link in links["xyz"]] == [
        f"{base}/{p}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png"
        for p in ("true-color", "false-color", "ndvi", "pan")
    ]
    assert links["tilejson"][0]["href"] == f"{base}/true-color/WebMercatorQuad/tilejson.json"
    [wmts] = links["wmts"]
    assert wmts["href"] == f"{base}/WMTSCapabilities.xml"
    assert wmts["wmts:layer"] == ["true-color", "false-color", "ndvi", "pan"]
    assert not any(set("|#&") & set(link["href"]) for group in links.values() for link in group)


def test_an_item_without_band_names_gets_the_plain_rendering_of_its_data():
    links = by_rel(item_map_links(TILER, item({"data": {"href": "/a/x.tif", "roles": ["data"]}})))
    assert set(links) == {"xyz", "tilejson"}
    assert links["xyz"][0]["href"].endswith(
        "/items/GF2%20scene%2F1/tiles/WebMercatorQuad/{z}/{x}/{y}.png?assets=data"
    )


def test_an_item_with_nothing_to_draw_gets_no_map_links():
    assert (
        item_map_links(TILER, item({"metadata": {"href": "/a/m.xml", "roles": ["metadata"]}})) == []
    )


def test_a_collection_links_its_mosaic_from_item_assets_or_leaves_layers_to_wmts():
    described = {"id": "gf1-wfv", "item_assets": {"data": {"roles": ["data"], "bands": MSS}}}
    links = by_rel(collection_map_links(TILER, described))
    assert len(links["xyz"]) == 3 and links["wmts"][0]["wmts:layer"] == [
        "true-color",
        "false-color",
        "ndvi",
    ]
    assert links["xyz"][0]["href"].startswith(
        "https://tiles.node.example/collections/gf1-wfv/presets/true-color/tiles/"
    )
    [plain] = collection_map_links(TILER, {"id": "uploads", "item_assets": {"data": {}}})
    assert plain["rel"] == "wmts" and "wmts:layer" not in plain


def test_an_elevation_item_links_the_elevation_presets_and_imagery_does_not():
    dem = {
        "href": "/a/dem.tif",
        "roles": ["data"],
        "raster:bands": [
            {"unit": "m", "statistics": {"minimum": 512.0, "maximum": 4700.0, "mean": 2.0e3}}
        ],
    }
    links = by_rel(
        item_map_links(TILER, {"id": "d", "collection": "gf7-dem", "assets": {"data": dem}})
    )
    [wmts] = links["wmts"]
    assert wmts["wmts:layer"] == ["hillshade", "terrain-rgb", "relief"]
    imagery = {"href": "/a/mss.tif", "roles": ["data"], "bands": MSS}
    mss = by_rel(item_map_links(TILER, item({"mss": imagery})))
    assert not {"hillshade", "relief", "terrain-rgb"} & set(mss["wmts"][0]["wmts:layer"])
    # A one-band image that is not in metres is not an elevation model.
    grey = {**dem, "raster:bands": [{"statistics": dem["raster:bands"][0]["statistics"]}]}
    assert "wmts" not in by_rel(item_map_links(TILER, item({"data": grey})))


def test_relief_is_stretched_over_the_stored_heights_and_hillshade_reads_a_buffer():
    from csdr_render.presets import derive_presets

    dem = {
        "roles": ["data"],
        "raster:bands": [{"unit": "m", "statistics": {"minimum": 512.0, "maximum": 4700.0}}],
    }
    presets = derive_presets({"data": dem})
    assert presets["relief"].rescale == ((512.0, 4700.0),)
    assert presets["relief"].colormap_name == "terrain"
    assert ("algorithm", "horn-hillshade") in presets["hillshade"].titiler_params()
    assert ("buffer", "1") in presets["hillshade"].titiler_params()
    assert ("algorithm", "terrainrgb") in presets["terrain-rgb"].titiler_params()
