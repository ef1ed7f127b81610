import rasterio
from rio_cogeo.cogeo import cog_validate

from csdr_ingest.cog import overview_levels, write_cog


def test_overview_levels_reach_one_tile():
    assert overview_levels(512, 512, 512) == 0
    assert overview_levels(513, 100, 512) == 1
    assert overview_levels(12000, 13719, 512) == 5  # 13719 / 2**5 = 429 < 512


def test_cog_is_valid_tiled_compressed_with_overviews_and_nodata(scene, tmp_path):
    dst = tmp_path / "out.tif"
    with rasterio.open(scene) as src:
        write_cog(src, dst, "ZSTD", 512)
        source = src.read()
    assert cog_validate(dst, quiet=True)[0]
    with rasterio.open(dst) as cog:
        assert cog.block_shapes[0] == (512, 512)
        assert cog.compression.name.upper() == "ZSTD"
        assert cog.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "2"
        assert cog.nodata == 0
        overviews = cog.overviews(1)
        assert overviews and max(cog.width, cog.height) / overviews[-1] <= 512
        assert (cog.read() == source).all()  # lossless
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left
