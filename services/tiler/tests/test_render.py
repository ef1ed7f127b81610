"""Our PNG encoding of map tiles gives titiler's pixels: the one-pass stretched PNG, the lookup
table rescale and titiler's own `render_image` decode to the same bands and alpha."""

from __future__ import annotations

import numpy as np
import pytest
from rio_tiler.models import ImageData
from titiler.core.resources.enums import ImageType
from titiler.core.utils import render_image

from csdr_tiler.render import encode_png, fast_rescale, render_tile, stretched_png
from services.tiler.tests.scenes import decode


def image(count: int, dtype: str, masked: str) -> ImageData:
    """A textured `count`-band tile; `masked`: none, a corner of every band, or one band only."""
    rng = np.random.default_rng(count)
    top = 4000 if dtype == "uint16" else 255
    data = rng.integers(0, top, (count, 256, 256)).astype(dtype)
    mask = np.zeros(data.shape, dtype=bool)
    if masked == "corner":
        mask[:, :100, :80] = True
    elif masked == "one band":
        mask[0, 50:, :] = True  # the others are valid there: the alpha says valid
    return ImageData(np.ma.MaskedArray(data, mask=mask))


CASES = [
    (3, "uint16", "corner", [(600, 2200), (500, 2000), (400, 1800)]),
    (3, "uint16", "none", [(0, 4000)]),
    (3, "uint16", "one band", [(100, 3000), (0, 4000), (250, 260)]),
    (1, "uint16", "corner", [(-50, 5000)]),
    (1, "uint8", "corner", [(10, 200)]),
    (3, "uint8", "none", [(0, 255), (20, 30), (255, 0)]),
]


@pytest.mark.parametrize(("count", "dtype", "masked", "rescale"), CASES)
def test_the_one_pass_png_is_the_two_pass_png_and_titilers_pixels(count, dtype, masked, rescale):
    one_pass = stretched_png(image(count, dtype, masked), rescale)
    assert one_pass is not None
    two_pass = image(count, dtype, masked)
    assert fast_rescale(two_pass, rescale)
    assert one_pass == encode_png(np.concatenate([two_pass.data, two_pass.mask[None]]))
    titiler, media_type = render_image(
        image(count, dtype, masked), output_format=ImageType.png, rescale=rescale
    )
    assert media_type == "image/png"
    ours, theirs = decode(one_pass), decode(titiler)
    assert ours.shape == (count + 1, 256, 256)
    assert np.array_equal(ours, theirs)
    if masked == "corner":
        assert 0 < (ours[-1] == 0).mean() < 1
    if masked == "one band":
        assert (ours[-1] == 255).all() and (ours[0, 50:] == 0).all()
    body, media_type = render_tile(
        image(count, dtype, masked), output_format=ImageType.png, rescale=rescale
    )
    assert (body, media_type) == (one_pass, "image/png")


def test_what_the_one_pass_png_does_not_take_goes_the_long_way():
    four = image(4, "uint16", "corner")
    assert stretched_png(four, [(0, 4000)]) is None  # RGBA data plus a mask: no PNG of ours
    assert stretched_png(image(3, "float32", "none"), [(0, 1)]) is None
    # A tile with no mask and no format asked: titiler picks JPEG.
    body, media_type = render_tile(image(3, "uint16", "none"), rescale=[(0, 4000)])
    assert media_type == "image/jpeg" and body[:2] == b"\xff\xd8"
