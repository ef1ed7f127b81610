"""Where a service process's large memory blocks come from (glibc's `mallopt`): blocks of the
threshold's size and more get pages of their own (mmap), given back when freed, instead of being
carved from the heap between small long-lived objects that keep the pages around them. Every
service starts with the node's threshold (infra/local/node.py PROCESS_ENV, the Dockerfile); a
service whose large blocks are few and small sets its own here."""

from __future__ import annotations

import ctypes
import logging

logger = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def map_blocks_from(size: int) -> bool:
    """Map every block of `size` bytes and more apart from now on (0: leave the allocator as the
    environment set it); False where the C library is not glibc or refused the value."""
    if size <= 0:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        logger.info("not glibc: the mmap threshold of %d bytes is not set", size)
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, size))
