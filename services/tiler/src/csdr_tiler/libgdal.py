"""The libgdal rasterio loaded, for the GDAL calls rasterio does not wrap: options bound to a path
prefix (csdr_tiler.peer_keys), forgetting what /vsicurl/ cached of a URL (csdr_tiler.datasets)
and the block cache's size and bound (csdr_tiler.metrics, the app's lifespan); and where GDAL's
and PROJ's data files are, said once (`pin_data_paths`).
rasterio's wheel bundles its own libgdal; the calls must reach that one, found in this process's
memory maps.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

import rasterio.env  # loads the libgdal these calls must reach


@functools.cache
def libgdal() -> ctypes.CDLL:
    """The libgdal this process has loaded, with the signatures of the calls we make."""
    with open("/proc/self/maps") as maps:
        loaded = sorted({line.split()[-1] for line in maps if "libgdal" in line.split("/")[-1]})
    path = loaded[0] if loaded else ctypes.util.find_library("gdal")
    if path is None:
        raise OSError("libgdal is not loaded and cannot be found")
    lib = ctypes.CDLL(path)
    lib.VSISetPathSpecificOption.argtypes = [ctypes.c_char_p] * 3
    lib.VSISetPathSpecificOption.restype = None
    lib.VSIClearPathSpecificOptions.argtypes = [ctypes.c_char_p]
    lib.VSIClearPathSpecificOptions.restype = None
    lib.VSICurlPartialClearCache.argtypes = [ctypes.c_char_p]
    lib.VSICurlPartialClearCache.restype = None
    lib.GDALGetCacheUsed64.argtypes = []
    lib.GDALGetCacheUsed64.restype = ctypes.c_int64
    lib.GDALGetCacheMax64.argtypes = []
    lib.GDALGetCacheMax64.restype = ctypes.c_int64
    lib.GDALSetCacheMax64.argtypes = [ctypes.c_int64]
    lib.GDALSetCacheMax64.restype = None
    return lib


def block_cache() -> tuple[int, int]:
    """GDAL's raster block cache: bytes in use and its bound (GDAL_CACHEMAX)."""
    lib = libgdal()
    return int(lib.GDALGetCacheUsed64()), int(lib.GDALGetCacheMax64())


def bound_block_cache(megabytes: int) -> None:
    """Bound GDAL's raster block cache (process-wide; blocks beyond it are evicted)."""
    libgdal().GDALSetCacheMax64(megabytes * 2**20)


def forget_remote(url: str) -> None:
    """Drop what GDAL's /vsicurl/ cache holds of `url` (its size, that it was missing or
    unreadable, its blocks), so the next read asks the server again instead of failing from
    the cache after the server is back."""
    libgdal().VSICurlPartialClearCache(f"/vsicurl/{url}".encode())


def pin_data_paths() -> None:
    """Name the GDAL and PROJ data directories rasterio finds (those of its wheel) in
    `GDAL_DATA` and `PROJ_DATA`, unless set (process-wide). Without them rasterio looks for both
    again, two `stat` calls, every time a rasterio environment starts: twice per tile (titiler's
    around the read, rio-tiler's copy of it), each call a release of the GIL to wait for under
    load."""
    if "GDAL_DATA" not in os.environ:
        gdal = rasterio.env.GDALDataFinder()
        if found := gdal.search_wheel() or gdal.search():
            os.environ["GDAL_DATA"] = str(found)
    if "PROJ_DATA" not in os.environ and "PROJ_LIB" not in os.environ:
        proj = rasterio.env.PROJDataFinder()
        if found := proj.search_wheel() or proj.search():
            os.environ["PROJ_DATA"] = str(found)
