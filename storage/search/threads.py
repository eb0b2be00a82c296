"""Worker threads for the numpy-heavy parts of a query, made on first use.

numpy and simsimd release the interpreter lock while they multiply, gather and
partition large arrays, so a query can use more cores for them: the vector
index scans a long coarse pass in parts side by side, and rescores its
candidates in two halves, while the caller's thread goes on with the keyword
half of a hybrid search.  Each named
pool is one ``ThreadPoolExecutor``, shared by every index in the process.  A task must
never wait on a task of its own pool (that could deadlock a full pool); waiting
on another pool's tasks is fine as long as those never wait in turn.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

_pools: dict[str, ThreadPoolExecutor] = {}
_lock = threading.Lock()


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, where there is one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pool(name: str, workers: int) -> ThreadPoolExecutor:
    """The pool called ``name``, made with ``workers`` threads the first time it is asked for."""
    with _lock:
        found = _pools.get(name)
        if found is None:
            found = _pools[name] = ThreadPoolExecutor(
                max_workers=max(1, workers), thread_name_prefix=name
            )
        return found
