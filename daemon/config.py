"""The daemon's configuration: every setting with its embedded default and its limit.

Values come from, in increasing priority: the embedded defaults below, the
environment (``MEMORYD_*``) and the command line.  ``Config.validate`` checks
every value and how limits relate, and names the offending key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memoryd.client.paths import default_socket_path
from memoryd.client.protocol import BLOCK_CHARS_MAX
from memoryd.crypto.unlocked import ROTATION_STEP_KEYS_LIMIT
from memoryd.daemon.build_policy import BuildPolicy
from memoryd.storage import Durability


def default_data_dir() -> Path:
    """``$MEMORYD_DATA_DIR``, else ``$XDG_DATA_HOME/memoryd``, else ``~/.local/share/memoryd``."""
    explicit = os.environ.get("MEMORYD_DATA_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "memoryd"


EMBEDDERS = ("hashing", "minilm")


class ConfigError(ValueError):
    """A setting has an invalid value; the message names the key."""


@dataclass(frozen=True, slots=True)
class Config:
    """Effective daemon settings.  Limits are named with their unit last."""

    socket_path: Path = field(default_factory=default_socket_path)
    data_dir: Path = field(default_factory=default_data_dir)
    durability: Durability = Durability.FSYNC
    # Relaxed durability only: the longest an acknowledged put may sit unsynced.
    relaxed_sync_interval_ms: int = 50
    segment_bytes_max: int = 64 * 1024 * 1024
    connections_max: int = 1024
    requests_in_flight_per_connection_max: int = 256
    # Events accepted but not yet committed, across all clients: beyond it, puts get `busy`.
    commit_queue_events_max: int = 100_000
    # Largest group commit: bounds one write() and the latency of its first member.
    commit_batch_events_max: int = 10_000
    # A client whose unread responses exceed this is disconnected.
    outbound_bytes_max: int = 64 * 1024 * 1024
    # Extra uids allowed to connect besides the daemon's own and root.
    allowed_uids: tuple[int, ...] = ()
    shutdown_deadline_s: float = 30.0
    # The builder's batching (see daemon/builder.py).
    build_min_frames: int = 5
    build_queue_bound: int = 20
    build_idle_ms: int = 10
    build_quiet_ms: int = 2
    chunk_frames_max: int = 50
    # How long, and up to what lag, the builder holds back while puts wait for their commit.
    build_yield_ms_max: int = 50
    build_yield_lag_max: int = 2_000
    # The most chunks one build step makes when a backlog waits (one pass over them all).
    build_step_chunks_max: int = 4
    # Derived state is checkpointed this often (when the builder moved), and at a clean stop
    # within checkpoint_shutdown_deadline_s, so that a start replays only the log's tail.
    checkpoint_interval_s: float = 60.0
    checkpoint_shutdown_deadline_s: float = 10.0
    # "on": a put's response names a near twin among built frames (near_duplicate_of);
    # costs about 13 us a frame in a batch, 0.1 ms for a lone put.  "off" skips it.
    near_duplicates: str = "on"
    # What embeds frames for semantic search: hashing (built in) or minilm (optional package).
    embedder: str = "hashing"
    # Memory bounds of the layered caches (see stats: cache_*).
    cache_query_embeddings_bytes_max: int = 16 * 1024 * 1024
    cache_search_results_bytes_max: int = 8 * 1024 * 1024
    cache_recent_frames_bytes_max: int = 32 * 1024 * 1024
    cache_related_bytes_max: int = 4 * 1024 * 1024
    log_level: str = "info"
    # "HOST:PORT" on a loopback address: serve Prometheus metrics there (None: off).
    metrics_address: str | None = None
    # The vault's master key (a systemd credential under the units); None: no vault.
    master_key_file: Path | None = None
    # Unlock at start with the passphrase in this file (mode 0600) instead; None: start locked.
    passphrase_file: Path | None = None
    # KDF parameters for a new passphrase vault: "default" (Argon2id/scrypt, 64 MiB) or
    # "test" (fast and weak: for tests only).
    vault_kdf: str = "default"
    # Data keys re-wrapped per background rotation step (each step: two fdatasyncs).
    vault_rotation_step_keys: int = 256
    # The size limit, in characters, of a core memory block created without one.
    block_chars_default: int = 5000

    def validate(self) -> Config:
        """Return self if every value is valid, else raise ConfigError naming the key."""
        positive_ints = (
            "relaxed_sync_interval_ms",
            "segment_bytes_max",
            "connections_max",
            "requests_in_flight_per_connection_max",
            "commit_queue_events_max",
            "commit_batch_events_max",
            "outbound_bytes_max",
            "cache_query_embeddings_bytes_max",
            "cache_search_results_bytes_max",
            "vault_rotation_step_keys",
            "cache_recent_frames_bytes_max",
            "cache_related_bytes_max",
        )
        for key in positive_ints:
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")
        if self.segment_bytes_max < 1024 * 1024:
            raise ConfigError("segment_bytes_max must be at least 1 MiB")
        if self.commit_batch_events_max > self.commit_queue_events_max:
            raise ConfigError("commit_batch_events_max must not exceed commit_queue_events_max")
        for key in (
            "shutdown_deadline_s",
            "checkpoint_interval_s",
            "checkpoint_shutdown_deadline_s",
        ):
            if not getattr(self, key) > 0:
                raise ConfigError(f"{key} must be positive")
        self.build_policy()
        if self.near_duplicates not in ("on", "off"):
            raise ConfigError(f"near_duplicates must be on or off: {self.near_duplicates!r}")
        if self.embedder not in EMBEDDERS:
            raise ConfigError(f"embedder must be one of {', '.join(EMBEDDERS)}: {self.embedder!r}")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError(
                f"log_level must be debug, info, warning or error: {self.log_level!r}"
            )
        if len(str(self.socket_path).encode()) > 107:
            raise ConfigError(
                f"socket_path is longer than a Unix socket allows: {self.socket_path}"
            )
        for uid in self.allowed_uids:
            if not isinstance(uid, int) or uid < 0:
                raise ConfigError(f"allowed_uids must hold non-negative integers, got {uid!r}")
        if self.metrics_address is not None:
            parse_metrics_address(self.metrics_address)
        if self.vault_kdf not in ("default", "test"):
            raise ConfigError(f"vault_kdf must be default or test: {self.vault_kdf!r}")
        if self.vault_rotation_step_keys > ROTATION_STEP_KEYS_LIMIT:
            raise ConfigError(
                f"vault_rotation_step_keys must be at most {ROTATION_STEP_KEYS_LIMIT}"
            )
        if self.master_key_file is not None and self.passphrase_file is not None:
            raise ConfigError("master_key_file and passphrase_file: set one, not both")
        if not (
            isinstance(self.block_chars_default, int)
            and not isinstance(self.block_chars_default, bool)
            and 1 <= self.block_chars_default <= BLOCK_CHARS_MAX
        ):
            raise ConfigError(
                f"block_chars_default must be an integer from 1 to block_chars_max="
                f"{BLOCK_CHARS_MAX}, got {self.block_chars_default!r}"
            )
        return self

    def build_policy(self) -> BuildPolicy:
        try:
            return BuildPolicy(
                self.build_min_frames,
                self.build_queue_bound,
                self.build_idle_ms,
                self.build_quiet_ms,
                self.chunk_frames_max,
                self.build_yield_ms_max,
                self.build_yield_lag_max,
                self.build_step_chunks_max,
            ).validate()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, Durability):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


def parse_metrics_address(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) on a loopback address; port 0 picks a free one."""
    host, sep, port_text = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(f"metrics_address must be HOST:PORT, got {value!r}")
    if host != "localhost" and not _is_loopback_ip(host):
        raise ConfigError(
            f"metrics_address must be on a loopback address (127.0.0.1, ::1), got {host!r}:"
            " metrics are not authenticated"
        )
    return host, int(port_text)


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
