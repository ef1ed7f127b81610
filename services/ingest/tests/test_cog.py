import numpy as np
import rasterio
from rio_cogeo.cogeo import cog_validate

from csdr_ingest.cog import add_overviews, overview_levels, write_cog


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


def test_overviews_added_to_a_scratch_tiff_are_averaged_without_nodata_and_copied(tmp_path):
    # A 2048 x 1536 image with 256-pixel blocks needs 3 overviews (2048 / 8 = 256).
    data = np.arange(1536 * 2048, dtype="uint16").reshape(1, 1536, 2048) % 50000 + 1
    data[:, :, :1000] = 0  # nodata on the left
    data[:, 0, 1000] = 0  # and one pixel of the first 2x2 cell right of it
    profile = {
        "driver": "GTiff",
        "width": 2048,
        "height": 1536,
        "count": 1,
        "dtype": "uint16",
        "nodata": 0,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    scratch = tmp_path / "scratch.tif"
    with rasterio.open(scratch, "w", **profile) as dst:
        dst.write(data)
        add_overviews(dst)
    with rasterio.open(scratch) as src:
        assert src.overviews(1) == [2, 4, 8]
        first = src.read(1, out_shape=(768, 1024))
        cell = data[0, 0:2, 1000:1002]
        assert first[0, 500] == round(cell[cell > 0].mean())  # the nodata pixel left out
        assert first[0, 0] == 0
    with rasterio.open(scratch, "r+") as src:
        src.write(data + 1)  # the overviews stay what they were
        write_cog(src, tmp_path / "out.tif", "DEFLATE", 256)
    with rasterio.open(tmp_path / "out.tif") as cog:
        assert cog.overviews(1) == [2, 4, 8]
        # The COG driver copied the overviews rather than averaging them again.
        assert (cog.read(1, out_shape=(768, 1024)) == first).all()
        assert (cog.read(1) == data[0] + 1).all()
