"""When the builder builds: its batching policy (see daemon/builder.py).

Its own module, with no heavy imports, because the configuration needs it and
every command loads the configuration.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BuildPolicy:
    """Build once ``min_frames`` wait and commits pause for ``quiet_ms``, at once at
    ``queue_bound``, else after ``idle_ms`` without commits.

    The pause: puts sent one at a time come ~0.2 ms apart, and a step started
    between two of them holds the interpreter lock that the next one needs
    (the write path and the builder share it), so while they stream the builder
    lets up to ``queue_bound`` gather and builds them in one step.  0 builds as
    soon as ``min_frames`` wait.

    Puts come first: while puts wait for their commit, the builder holds back
    for at most ``yield_ms_max`` at a time, unless ``yield_lag_max`` records
    already wait to be built or a search waits for them (then it builds at
    once).  A burst of writes is acknowledged at the write path's own speed and
    indexed right after it; ``stats`` shows the lag meanwhile.

    A step takes one chunk's records (``chunk_frames_max``) while puts wait for
    their commit, and up to ``step_chunks_max`` chunks' otherwise: a backlog is
    prepared and applied several chunks at a time (numpy's per-call costs and
    the step's own are shared by more frames), then stored as chunks of at most
    ``chunk_frames_max`` frames each.
    """

    min_frames: int = 5
    queue_bound: int = 20
    idle_ms: int = 10
    quiet_ms: int = 2
    chunk_frames_max: int = 50
    yield_ms_max: int = 50
    yield_lag_max: int = 2_000
    step_chunks_max: int = 4

    @property
    def step_records_max(self) -> int:
        """The most records one step takes: ``step_chunks_max`` chunks' worth."""
        return self.chunk_frames_max * self.step_chunks_max

    def validate(self) -> BuildPolicy:
        if not 1 <= self.min_frames <= self.queue_bound:
            raise ValueError("build_min_frames must be between 1 and build_queue_bound")
        if not 0 <= self.quiet_ms <= 1000:
            raise ValueError("build_quiet_ms must be between 0 and 1000")
        if not 1 <= self.chunk_frames_max <= 10_000:
            raise ValueError("chunk_frames_max must be between 1 and 10000")
        if self.idle_ms < 0:
            raise ValueError("build_idle_ms must not be negative")
        if not 0 <= self.yield_ms_max <= 1000:
            raise ValueError("build_yield_ms_max must be between 0 and 1000")
        if self.yield_lag_max < 0:
            raise ValueError("build_yield_lag_max must not be negative")
        if not 1 <= self.step_chunks_max <= 64:
            raise ValueError("build_step_chunks_max must be between 1 and 64")
        return self
