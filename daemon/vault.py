"""The vault: the daemon's keyring, locked or unlocked, and what private frames need of it.

It owns the data directory's ``Keyring`` (``<data_dir>/keys``) and, while
unlocked, its ``UnlockedKeyring``.  The daemon may start with no vault (no
keyring yet: the first ``unlock`` with ``create`` makes one), locked (a keyring,
no key), or unlocked by a key source from the configuration (a key file, a
systemd credential or a passphrase file).

For private frames it offers, on any thread:

* ``private_id``: a keyed frame id (HMAC under the index key of the vault), so
  that an id reveals nothing of the content and a re-put still dedupes while
  the same vault key is current;
* ``seal_puts``: the deferred payloads of FRAME_PUT records, sealed by the
  commit writer once their seqs are known (the AAD binds id, namespace, seq);
* ``reveal``: a sealed frame opened (``locked``, ``tampered``, ``not_found``
  for a forgotten one: errors name the frame id, never any content);
* ``forget``: destroy a frame's data key (crypto-shredding);
* ``open_for_index`` and ``blind_terms``: what the builder needs (the
  ``PrivateAccess`` of storage/derived.py).

``lock`` drops every key from memory; listeners (the builder's derived state,
the search cache) hear of every change of state or index key.  ``rotate``
starts a vault-key rotation that runs in the background, a step at a time on a
thread, and is resumed after a restart (at unlock) until it finishes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from memoryd.client import errors
from memoryd.client.errors import MemorydError
from memoryd.crypto import (
    KEYS_DIR_NAME,
    TEST_ARGON2ID,
    TEST_SCRYPT,
    CryptoError,
    ForgottenError,
    KdfParams,
    KeyFileError,
    Keyring,
    LockedError,
    MasterKey,
    RotationError,
    TamperedError,
    UnlockedKeyring,
    WrongKeyError,
    argon2id_available,
    default_kdf_params,
    encode_frame_aad,
    frame_aad,
    frame_key_id,
)
from memoryd.storage.events import (
    EventError,
    Frame,
    encode_sealed_put,
    private_fields,
    with_private_fields,
)

log = logging.getLogger("memoryd.vault")

NO_VAULT = "no vault"
LOCKED = "locked"
UNLOCKED = "unlocked"
VAULT_KDFS = ("default", "test")  # "test": fast, weak parameters, for tests only
ROTATION_STEP_KEYS_DEFAULT = 256
_ID_DOMAIN = "\x1fmemoryd.frame-id\x1f"  # cannot be a tokenizer term: ids and terms never meet
_ID_SEPARATOR = "\x1f"


def kdf_params(name: str) -> KdfParams:
    """The KDF parameters a new passphrase keyring gets (``vault_kdf``)."""
    if name == "test":
        return TEST_ARGON2ID if argon2id_available() else TEST_SCRYPT
    return default_kdf_params()


def locked_error(what: str) -> MemorydError:
    return MemorydError(
        errors.LOCKED, f"{what}: the vault is locked (memoryd unlock); nothing was changed"
    )


class Vault:
    """The keyring of one data directory; see the module docstring.  Loop-owned state
    (``_unlocked``, the rotation task) changes only on the event loop."""

    def __init__(
        self, data_dir: Path, *, kdf: str = "default", rotation_step_keys: int = 256
    ) -> None:
        self.directory = data_dir / KEYS_DIR_NAME
        self._kdf = kdf
        self._rotation_step_keys = rotation_step_keys
        self._keyring: Keyring | None = (
            Keyring.open(self.directory) if Keyring.exists(self.directory) else None
        )
        self._unlocked: UnlockedKeyring | None = None
        self._busy = False  # an unlock or lock is running on a thread
        self._listeners: list[Callable[[], None]] = []
        self._rotation_task: asyncio.Task[None] | None = None
        self.rotation_error: str | None = None
        self.frames_forgotten = 0
        # Data keys are made ahead, on a thread of their own, whenever the pool runs
        # low: a seal on the writer's thread then never waits for their fdatasync.
        self._refill_lock = threading.Lock()
        self._refill_thread: threading.Thread | None = None

    # -- state -----------------------------------------------------------------------

    @property
    def state(self) -> str:
        if self._unlocked is not None:
            return UNLOCKED
        return LOCKED if self._keyring is not None else NO_VAULT

    @property
    def unlocked(self) -> bool:
        return self._unlocked is not None

    def add_listener(self, listener: Callable[[], None]) -> None:
        """``listener()`` runs on the loop after every lock, unlock and index key change."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()

    def status(self) -> dict[str, Any]:
        """The vault's state for ``vault_status``, ``status`` and ``stats``: no secret."""
        out: dict[str, Any] = {"state": self.state, "rotation": None, "rotation_error": None}
        if self._keyring is None:
            return out
        info = self._keyring.info()
        out.update(
            master=info.master_kind,
            vault_key_id=info.current_vault_key_id,
            data_keys_live=info.data_keys.live,
            data_keys_destroyed=info.data_keys.destroyed,
            data_keys_damaged=info.data_keys.damaged,
            frames_forgotten=self.frames_forgotten,
            rotation_error=self.rotation_error,
        )
        if info.rotating_from is not None:
            live = info.data_keys.live_by_vault_key
            out["rotation"] = {
                "from_vault_key_id": info.rotating_from,
                "to_vault_key_id": info.current_vault_key_id,
                "remaining": live.get(info.rotating_from, 0),
                "running": self._rotation_task is not None and not self._rotation_task.done(),
            }
        return out

    # -- unlocking and locking ----------------------------------------------------------

    def unlock_sync(self, master: MasterKey, *, create: bool) -> UnlockedKeyring:
        """Unlock (or, with ``create`` and no vault yet, create) with ``master``; on a
        thread (the KDF is slow).  Wipes ``master``.  Changes no loop state."""
        with master:
            try:
                if self._keyring is None:
                    if not create:
                        raise MemorydError(
                            errors.BAD_REQUEST,
                            "there is no vault yet: unlock with create to make one",
                        )
                    unlocked = Keyring.create(self.directory, master)
                    self._keyring = unlocked.keyring
                    log.info("created a new vault in %s", self.directory)
                    return unlocked
                if create:
                    raise MemorydError(
                        errors.BAD_REQUEST, "a vault already exists: unlock it without create"
                    )
                return self._keyring.unlock(master)
            except WrongKeyError as exc:
                raise MemorydError(errors.WRONG_KEY, str(exc)) from None
            except TamperedError as exc:
                raise MemorydError(errors.TAMPERED, str(exc)) from None
            except CryptoError as exc:
                raise MemorydError(errors.BAD_REQUEST, str(exc)) from None

    def unlock_at_start(self, master: MasterKey) -> None:
        """Unlock (creating the vault if there is none) from a configured key source."""
        self.set_unlocked(self.unlock_sync(master, create=self._keyring is None))

    def set_unlocked(self, unlocked: UnlockedKeyring) -> None:
        self._unlocked = unlocked
        self._refill_soon(unlocked)
        log.info("vault unlocked")
        self._changed()
        self._resume_rotation()

    async def unlock(self, master: MasterKey, *, create: bool) -> dict[str, Any]:
        """The ``unlock`` op: verify and unwrap on a thread; a wrong key changes nothing."""
        try:
            if self._unlocked is not None:
                raise MemorydError(
                    errors.BAD_REQUEST, "the vault is already unlocked; lock it first"
                )
            if self._busy:
                raise MemorydError(errors.BUSY, "the vault is being locked or unlocked: retry")
            self._busy = True
            try:
                unlocked = await asyncio.to_thread(self.unlock_sync, master, create=create)
            finally:
                self._busy = False
        finally:
            master.wipe()
        self.set_unlocked(unlocked)
        return self.status()

    async def lock(self) -> dict[str, Any]:
        """The ``lock`` op: refuse private work at once, then wipe the keys on a thread."""
        unlocked = self._unlocked
        if unlocked is None:
            return self.status()
        self._unlocked = None  # from here, seals, reveals and blinding refuse
        await self._stop_rotation()
        self._changed()
        self._busy = True
        try:
            await asyncio.to_thread(unlocked.lock)
        finally:
            self._busy = False
        log.info("vault locked: keys dropped from memory")
        return self.status()

    def _refill_soon(self, unlocked: UnlockedKeyring) -> None:
        """Refill the data key pool on a thread of its own, one refill at a time."""
        with self._refill_lock:
            if self._refill_thread is not None and self._refill_thread.is_alive():
                return
            self._refill_thread = threading.Thread(
                target=self._refill, args=(unlocked,), name="memoryd-data-keys", daemon=True
            )
            self._refill_thread.start()

    @staticmethod
    def _refill(unlocked: UnlockedKeyring) -> None:
        try:
            unlocked.fill_data_key_pool()
        except LockedError:
            pass  # locked meanwhile: nothing to refill
        except Exception:  # a seal refills the pool itself if it must; never lost silently
            log.exception("making data keys ahead failed; seals will make them as needed")

    def close(self) -> None:
        """At shutdown (after the rotation task is stopped): lock and close the key files."""
        self._unlocked = None
        with self._refill_lock:
            refill = self._refill_thread
        if refill is not None:
            refill.join()  # its append must finish before the key files close
        if self._keyring is not None:
            self._keyring.close()

    def require(self, what: str) -> UnlockedKeyring:
        unlocked = self._unlocked
        if unlocked is None:
            if self._keyring is None:
                raise MemorydError(
                    errors.LOCKED,
                    f"{what}: there is no vault yet (memoryd unlock --create); nothing was changed",
                )
            raise locked_error(what)
        return unlocked

    # -- private frames ---------------------------------------------------------------------

    def private_id(self, namespace: str, kind: str, content: str) -> str:
        """The keyed id of a private frame: HMAC of a digest of what a content id hashes."""
        unlocked = self.require("private put refused")
        digest = hashlib.sha256(f"{namespace}{_ID_SEPARATOR}{kind}{_ID_SEPARATOR}".encode())
        digest.update(content.encode("utf-8", "surrogatepass"))
        try:
            return unlocked.blind_term(_ID_DOMAIN + digest.hexdigest()).hex()
        except LockedError:
            raise locked_error("private put refused") from None

    def seal_puts(self, frames: Sequence[Frame], seqs: Sequence[int]) -> list[bytes]:
        """The FRAME_PUT payloads of private ``frames``, each sealed bound to its seq.

        Run by the commit writer on its thread, once the seqs are known (see
        ``CommitWriter.submit``'s ``deferred``); all of a batch in one pass.
        """
        unlocked = self._unlocked
        if unlocked is None:
            raise locked_error("private put refused")
        plaintexts = [private_fields(frame) for frame in frames]
        aads = [
            encode_frame_aad(frame.id, frame.namespace, seq)
            for frame, seq in zip(frames, seqs, strict=True)
        ]
        try:
            envelopes = unlocked.seal_frames(plaintexts, aads)
        except LockedError:
            raise locked_error("private put refused") from None
        except CryptoError as exc:
            raise MemorydError(errors.LIMIT_EXCEEDED, str(exc)) from None
        if unlocked.data_key_pool_low:
            self._refill_soon(unlocked)
        return [
            encode_sealed_put(frame, envelope)
            for frame, envelope in zip(frames, envelopes, strict=True)
        ]

    def readable(self, frame: Frame) -> Frame | None:
        """``frame`` as a client may see it: opened if sealed, None if it cannot be
        (locked, tampered or forgotten)."""
        if frame.sealed is None:
            return frame
        try:
            return self.reveal(frame)
        except MemorydError:
            return None

    def require_unlocked(self) -> None:
        """MemorydError ``locked`` unless private frames can be opened now."""
        if self._unlocked is None:
            raise MemorydError(
                errors.LOCKED,
                f"the vault is {self.state}: private frames cannot be opened; "
                "unlock it first (memoryd unlock), or export them sealed",
            )

    def export_frame(self, event: dict[str, Any], decrypt: bool) -> dict[str, Any]:
        """A private frame's export event: sealed as stored, or opened when ``decrypt``.

        A frame that cannot be opened (forgotten, tampered, locked meanwhile) stays
        sealed, with ``error`` naming why; an export never fails for one frame.
        """
        sealed = event.get("sealed")
        if not decrypt or not isinstance(sealed, str):
            return event
        frame = Frame(
            event["id"],
            event["seq"],
            event["timestamp_ms"],
            event["namespace"],
            event["kind"],
            "",
            [],
            event["importance"],
            {},
            True,
            "",
            event.get("expires_at_ms"),
            base64.b64decode(sealed),
        )
        try:
            opened = self.reveal(frame)
        except MemorydError as exc:
            return {**event, "error": exc.code}
        return {"event": event["event"], **opened.to_dict()}

    def reveal(self, frame: Frame) -> Frame:
        """``frame`` opened if it is sealed (as is otherwise); MemorydError naming its id."""
        if frame.sealed is None:
            return frame
        unlocked = self._unlocked
        if unlocked is None:
            raise locked_error(f"frame {frame.id} is private")
        try:
            plaintext = unlocked.open_frame(
                frame.sealed, frame_aad(frame.id, frame.namespace, frame.seq)
            )
            return with_private_fields(frame, plaintext)
        except LockedError:
            raise locked_error(f"frame {frame.id} is private") from None
        except ForgottenError:
            raise MemorydError(errors.NOT_FOUND, f"frame {frame.id} was forgotten") from None
        except (TamperedError, EventError) as exc:
            reason = exc.reason if isinstance(exc, TamperedError) else "bad_fields"
            log.error("private frame %s failed verification (%s)", frame.id, reason)
            raise MemorydError(
                errors.TAMPERED,
                f"private frame {frame.id} failed verification ({reason}): "
                "its record or its key was altered; other frames are unaffected",
                {"id": frame.id, "reason": reason},
            ) from None

    def forget(self, frame: Frame) -> int:
        """Destroy the data key of sealed ``frame`` (on a thread: one fdatasync); locked or not."""
        return self.forget_frames([frame])

    def forget_frames(self, frames: Sequence[Frame]) -> int:
        """Destroy the data keys of the sealed ``frames`` with one fdatasync (on a thread)."""
        if self._keyring is None:
            return 0
        key_ids = []
        for frame in frames:
            if frame.sealed is None:
                continue
            try:
                key_ids.append(frame_key_id(frame.sealed))
            except TamperedError:
                continue  # a damaged envelope names no usable key: nothing can open it anyway
        if not key_ids:
            return 0
        destroyed = self._keyring.forget(key_ids)
        self.frames_forgotten += destroyed
        return destroyed

    # -- for the builder (storage.derived.PrivateAccess), on its thread -----------------------

    def open_for_index(self, frame: Frame) -> Frame | None:
        """The opened frame, or None while locked; EventError (naming the id) if it fails."""
        try:
            return self.reveal(frame)
        except MemorydError as exc:
            if exc.code == errors.LOCKED:
                return None
            raise EventError(exc.message) from None

    @property
    def index_key_id(self) -> int | None:
        unlocked = self._unlocked
        if unlocked is None:
            return None
        try:
            return unlocked.index_key_id
        except LockedError:
            return None

    def blind_terms(self, terms: list[str], key_id: int) -> list[str] | None:
        """Blinded tokens of ``terms`` ('' stays ''), or None unless unlocked under ``key_id``."""
        unlocked = self._unlocked
        if unlocked is None:
            return None
        try:
            if unlocked.index_key_id != key_id:
                return None
            blinded = unlocked.blind_terms([term for term in terms if term])
        except LockedError:
            return None
        tokens = iter(blinded)
        return [blind_token(next(tokens)) if term else "" for term in terms]

    # -- rotation ---------------------------------------------------------------------------

    async def change_master(self, master: MasterKey) -> dict[str, Any]:
        """The ``change_master`` op: re-wrap the vault keys under a new passphrase or
        key (on a thread: the KDF is slow); no memory is re-encrypted.  Wipes ``master``.

        The keyring file is replaced atomically: after a crash the old master or
        the new one opens it, never neither.
        """
        try:
            unlocked = self.require("change_master refused")
            try:
                await asyncio.to_thread(unlocked.change_master, master)
            except LockedError:
                raise locked_error("change_master refused") from None
        finally:
            master.wipe()
        log.info("vault master changed: the vault keys are wrapped by the new one")
        return self.status()

    async def rotate(self) -> dict[str, Any]:
        """The ``rotate_key`` op: begin a rotation (durably), run it in the background."""
        unlocked = self.require("rotate_key refused")
        if self._rotation_task is not None and not self._rotation_task.done():
            raise MemorydError(errors.BUSY, "a key rotation is already running")
        if self._keyring is not None and self._keyring.info().rotating_from is not None:
            self._start_rotation(unlocked)  # one left unfinished (it had failed): carry on
            return self.status()
        try:
            new_id = await asyncio.to_thread(unlocked.begin_rotation)
        except RotationError as exc:
            raise MemorydError(errors.BUSY, str(exc)) from None
        except LockedError:
            raise locked_error("rotate_key refused") from None
        log.info("vault key rotation to vault key %d begun", new_id)
        self._changed()  # a new index key: private frames are indexed again
        self._start_rotation(unlocked)
        return self.status()

    def _resume_rotation(self) -> None:
        unlocked = self._unlocked
        if unlocked is None or self._keyring is None:
            return
        if self._keyring.info().rotating_from is not None:
            log.info("resuming the vault key rotation left unfinished")
            self._start_rotation(unlocked)

    def _start_rotation(self, unlocked: UnlockedKeyring) -> None:
        self.rotation_error = None
        self._rotation_task = asyncio.get_running_loop().create_task(
            self._run_rotation(unlocked), name="memoryd-rotation"
        )

    async def _run_rotation(self, unlocked: UnlockedKeyring) -> None:
        """Steps on a thread until done, then finish; an error is logged, shown, kept for later."""
        try:
            while True:
                progress = await asyncio.to_thread(unlocked.rotate_step, self._rotation_step_keys)
                if progress.done:
                    break
            await asyncio.to_thread(unlocked.finish_rotation)
            log.info("vault key rotation finished: vault key %d", progress.new_vault_key_id)
        except LockedError:
            return  # locked meanwhile: resumed at the next unlock
        except (CryptoError, OSError) as exc:
            self.rotation_error = f"{type(exc).__name__}: {exc}"
            log.error("vault key rotation stopped: %s", self.rotation_error)

    async def _stop_rotation(self) -> None:
        """Cancel the rotation task between steps (each step is durable and resumable)."""
        task = self._rotation_task
        self._rotation_task = None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_rotation(self) -> None:
        """Wait for a running rotation (tests, shutdown ordering)."""
        task = self._rotation_task
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def shutdown(self) -> None:
        await self._stop_rotation()
        if self._unlocked is not None:
            unlocked, self._unlocked = self._unlocked, None
            await asyncio.to_thread(unlocked.lock)
        self.close()


BLIND_TOKEN_PREFIX = "\x1fb"  # a tokenizer never makes a term with a control character


def blind_token(blinded: bytes) -> str:
    """The index term for a blinded token: never equal to a plaintext term."""
    return BLIND_TOKEN_PREFIX + blinded.hex()


def master_from_config(
    master_key_file: Path | None,
    passphrase_file: Path | None,
    credentials_dir: str | None,
    kdf: str,
) -> MasterKey | None:
    """The configured key source, read now (KeyFileError if missing or unsafe), or None."""
    if master_key_file is not None:
        if credentials_dir and master_key_file.parent == Path(credentials_dir):
            return MasterKey.from_credential(
                master_key_file.name, {"CREDENTIALS_DIRECTORY": credentials_dir}
            )
        return MasterKey.from_key_file(master_key_file)
    if passphrase_file is not None:
        return MasterKey.from_passphrase_file(passphrase_file, kdf_params=kdf_params(kdf))
    return None


__all__ = [
    "LOCKED",
    "NO_VAULT",
    "UNLOCKED",
    "VAULT_KDFS",
    "KeyFileError",
    "Vault",
    "VaultStartError",
    "blind_token",
    "kdf_params",
    "master_from_config",
    "open_vault",
]


class VaultStartError(Exception):
    """The configured vault cannot be opened or unlocked at start; the message says why."""


async def open_vault(
    data_dir: Path,
    *,
    master_key_file: Path | None,
    passphrase_file: Path | None,
    kdf: str,
    rotation_step_keys: int,
    credentials_dir: str | None,
) -> Vault:
    """The data directory's vault, unlocked (created if need be) when a key source is set.

    A key source that is missing, unsafe or wrong stops the start (VaultStartError).
    """
    try:
        vault = Vault(data_dir, kdf=kdf, rotation_step_keys=rotation_step_keys)
        master = master_from_config(master_key_file, passphrase_file, credentials_dir, kdf)
        if master is not None:
            create = vault.state == NO_VAULT
            unlocked = await asyncio.to_thread(vault.unlock_sync, master, create=create)
            vault.set_unlocked(unlocked)
    except CryptoError as exc:
        raise VaultStartError(f"vault: {exc}") from None
    except MemorydError as exc:
        raise VaultStartError(f"vault: {exc.message}") from None
    return vault
