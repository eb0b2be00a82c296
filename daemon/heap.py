"""Giving freed heap memory back to the system (glibc's ``malloc_trim``).

Building a chunk allocates and frees many short-lived buffers (numpy
temporaries, decoded records).  glibc raises its mmap threshold after the first
large buffer is freed, so later ones come from the heap, and what they leave
free stays resident: measured after putting 200,000 frames, the daemon held
527 MiB, and 399 MiB after one ``malloc_trim(0)`` (3.4 ms).  Fixing the mmap
threshold instead (``MALLOC_MMAP_THRESHOLD_``) saved as much but made every
large query buffer a fresh mapping: hybrid search p50 went from 30 to 50 ms at
a million frames.  So the builder trims once it has caught up, not on every
allocation.

Elsewhere than glibc (musl, macOS) there is nothing to call, and ``trim``
returns False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    return trim


def trim() -> bool:
    """Return the heap's free pages to the system; False where there is no malloc_trim.

    Releases the interpreter lock for the call (ctypes does), which walks every
    malloc arena: run it off the event loop.
    """
    malloc_trim = _malloc_trim()
    if malloc_trim is None:
        return False
    malloc_trim(0)
    return True
