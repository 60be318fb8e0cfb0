"""Leases and device scheduling for the device server: one job, no grpc (usable and testable alone).

:class:`DeviceHost` holds a Backend, the leases (client sessions) on it and the lock that serialises every
device access. Each lease keeps its own configuration. The host brings the device to a lease's
configuration (through the Backend's configuration mirror) right before that lease's run, under the device
lock. So interleaved clients never mix configurations, and a client that is alone on the device pays for its
configuration once. An exclusive lease makes every other lease wait (up to its deadline), then fail.

Failures raise :mod:`firstspike.runtime.serve.errors` (hal errors whose message is the status detail) or the
backend's own hal errors; :mod:`firstspike.runtime.serve.status` maps both to gRPC statuses.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from firstspike.hal.backend import Backend, DeviceInfo, RunOptions, RunResult
from firstspike.hal.config import ChipConfig, ConfigDiff
from firstspike.hal.events import InputSpikes
from firstspike.runtime.serve.errors import (
    ConfigMismatchError,
    DeviceHeldError,
    DiffBaseError,
    LeaseUnknownError,
    RequestError,
    ShuttingDownError,
    TooManyLeasesError,
)
from firstspike.runtime.serve.jsonlog import event

__all__ = ["DEFAULT_LEASE_TTL_S", "DeviceHost", "Lease", "check_config_id", "check_lease_id"]

DEFAULT_LEASE_TTL_S = 30.0
MAX_LEASE_TTL_S = 600.0
MIN_LEASE_TTL_S = 0.1
MAX_WAIT_S = 600.0
MAX_CLIENT_NAME = 128
#: How long a request waits for another client's exclusive lease when it carries no deadline (seconds).
DEFAULT_BUSY_WAIT_S = 30.0
_HEX = frozenset("0123456789abcdef")


@dataclass
class Lease:
    """One client session: its configuration (with digest) and its lifetime."""

    id: str
    client: str
    peer: str
    exclusive: bool
    ttl_s: float
    expires: float
    config: ChipConfig
    digest: bytes
    summary: dict[str, int] = field(default_factory=dict)
    busy: int = 0  # calls of this lease waiting for or using the device (a busy lease never expires)

    @property
    def config_id(self) -> str:
        return self.digest.hex()

    @property
    def short(self) -> str:
        return self.id[:8]


def _hexdigest(cfg_bytes: bytes) -> bytes:
    return hashlib.sha256(cfg_bytes).digest()


class DeviceHost:
    """A Backend, the leases on it and the lock that serialises every device access (configure, run).

    Thread-safe. Methods raise :mod:`firstspike.runtime.serve.errors` or the backend's hal errors.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        default_ttl_s: float = DEFAULT_LEASE_TTL_S,
        max_ttl_s: float = MAX_LEASE_TTL_S,
        max_leases: int = 256,
        busy_wait_s: float = DEFAULT_BUSY_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.info: DeviceInfo = backend.info()
        self.default_ttl_s = default_ttl_s
        self.max_ttl_s = max_ttl_s
        self.max_leases = max_leases
        self.busy_wait_s = busy_wait_s
        self._clock = clock
        self._meta = threading.Condition()  # guards _leases and _exclusive
        # Serialises backend calls (backends need not be thread-safe). They run on whichever RPC thread holds
        # it: measured faster for the numba simulator's small batches than one dedicated device thread.
        self._device = threading.Lock()
        self._leases: dict[str, Lease] = {}
        self._exclusive: str | None = None
        self._next_sweep = 0.0
        default = ChipConfig()
        self._default = (default, _hexdigest(default.to_bytes()), default.summary())
        self._closed = False

    # ---- leases ----------------------------------------------------------------------------------
    def _sweep_locked(self, now: float, force: bool = False) -> None:
        if not force and now < self._next_sweep:
            return
        self._next_sweep = now + 0.5
        dead = [lid for lid, le in self._leases.items() if le.expires <= now and not le.busy]
        for lid in dead:
            le = self._leases.pop(lid)
            event(logging.INFO, "lease expired", {"event": "lease_expired", "lease": le.short, "client": le.client})
            if self._exclusive == lid:
                self._exclusive = None
        if dead:
            self._meta.notify_all()

    def acquire(self, client: str, peer: str, exclusive: bool, ttl_ms: int, wait_ms: int) -> Lease:
        if len(client) > MAX_CLIENT_NAME:
            raise RequestError(f"client_name has {len(client)} characters; at most {MAX_CLIENT_NAME} allowed")
        ttl_s = self.default_ttl_s if ttl_ms == 0 else ttl_ms / 1000.0
        if not MIN_LEASE_TTL_S <= ttl_s <= self.max_ttl_s:
            raise RequestError(
                f"ttl_ms {ttl_ms} out of range; allowed 0 (server default {int(self.default_ttl_s * 1000)}) or "
                f"[{int(MIN_LEASE_TTL_S * 1000)}, {int(self.max_ttl_s * 1000)}]"
            )
        if wait_ms > MAX_WAIT_S * 1000:
            raise RequestError(f"wait_ms {wait_ms} out of range; allowed [0, {int(MAX_WAIT_S * 1000)}]")
        with self._meta:
            now = self._clock()
            self._sweep_locked(now, force=True)
            if len(self._leases) >= self.max_leases:
                raise TooManyLeasesError(
                    f"the server already holds {len(self._leases)} leases (its maximum); release unused leases"
                )
            if exclusive:
                self._wait_exclusive_locked(
                    now + wait_ms / 1000.0, None, f"waited {wait_ms} ms (set wait_ms to wait longer)"
                )
            cfg, digest, summary = self._default
            lease = Lease(
                id=secrets.token_hex(16),
                client=client,
                peer=peer,
                exclusive=exclusive,
                ttl_s=ttl_s,
                expires=self._clock() + ttl_s,
                config=cfg,
                digest=digest,
                summary=summary,
            )
            self._leases[lease.id] = lease
            if exclusive:
                self._exclusive = lease.id
        return lease

    def lease(self, lease_id: str) -> Lease:
        """The live lease with this id (renewed); LeaseUnknownError if there is none, RequestError if malformed."""
        check_lease_id(lease_id)
        with self._meta:
            now = self._clock()
            self._sweep_locked(now)
            le = self._leases.get(lease_id)
            if le is None or (le.expires <= now and not le.busy):
                raise LeaseUnknownError(
                    f"lease {lease_id[:8]}... is unknown or expired (the server may have restarted, or the lease "
                    "was not renewed within its ttl); acquire a new lease and load the configuration again"
                )
            le.expires = now + le.ttl_s
            return le

    def release(self, lease_id: str) -> Lease:
        le = self.lease(lease_id)
        with self._meta:
            self._leases.pop(le.id, None)
            if self._exclusive == le.id:
                self._exclusive = None
            self._meta.notify_all()
        return le

    def lease_count(self) -> int:
        with self._meta:
            return len(self._leases)

    def _wait_exclusive_locked(self, give_up: float, own: str | None, waited: str) -> None:
        """Wait (holding ``_meta``) until no lease but ``own`` holds the device exclusively; DeviceHeldError at
        ``give_up`` (server clock), the message ending in ``waited``."""
        while self._exclusive is not None and self._exclusive != own:
            holder = self._leases.get(self._exclusive)
            remaining = give_up - self._clock()
            if remaining <= 0:
                raise DeviceHeldError(
                    f"device is held exclusively by lease {self._exclusive[:8]} of client "
                    f"{holder.client if holder else '?'!r}; {waited}"
                )
            self._meta.wait(min(remaining, 0.2))
            self._sweep_locked(self._clock(), force=True)

    def _wait_turn(self, le: Lease, time_remaining: float | None) -> None:
        """Block while another lease holds the device exclusively (DeviceHeldError after the caller's deadline)."""
        budget = self.busy_wait_s if time_remaining is None else max(0.0, time_remaining - 0.05)
        with self._meta:
            self._wait_exclusive_locked(self._clock() + budget, le.id, f"gave up after {budget:.1f} s (retry later)")
            if le.id not in self._leases:
                raise LeaseUnknownError(f"lease {le.short}... expired while waiting for the device")

    @contextlib.contextmanager
    def _device_turn(self, le: Lease, time_remaining: float | None) -> Iterator[None]:
        """Hold the device lock on this lease's turn. Re-checks exclusivity after locking (a lease may have
        become exclusive while we queued). The lease cannot expire meanwhile and is renewed at the end."""
        with self._meta:
            le.busy += 1
        try:
            while True:
                self._wait_turn(le, time_remaining)
                self._device.acquire()
                with self._meta:
                    if self._exclusive is None or self._exclusive == le.id:
                        break
                self._device.release()
            try:
                if self._closed:
                    raise ShuttingDownError("the device is closed (server shutting down)")
                yield
            finally:
                self._device.release()
        finally:
            with self._meta:
                le.busy -= 1
                le.expires = max(le.expires, self._clock() + le.ttl_s)

    # ---- configuration ---------------------------------------------------------------------------
    def _apply_locked(self, cfg: ChipConfig, digest: bytes, diff: ConfigDiff | None = None) -> None:
        """Make the backend hold ``cfg`` (device lock held). Its configuration mirror decides what travels:
        nothing, the client's diff, a diff from what it holds, or the whole configuration. Every configuration
        a lease holds was validated when it was decoded or built and is never modified, so the backend keeps
        it without another validated copy (``owned``)."""
        if self.backend.mirror.holds(digest):
            return  # every run after the first of the lease that configured last: no planning at all
        self.backend.sync(cfg, digest=digest, diff=diff, owned=True)

    def set_config(
        self,
        lease_id: str,
        cfg: ChipConfig,
        time_remaining: float | None,
        diff: ConfigDiff | None = None,
        digest: bytes | None = None,
    ) -> tuple[Lease, bool]:
        """Give the lease ``cfg`` and apply it to the device now. ``cfg`` becomes the lease's (the caller must not
        modify it afterwards) and is validated here: by encoding it for its digest, or, when the caller passes
        ``digest`` (``cfg.digest()`` it has just established: a diff's checked target), by whoever built it.

        Returns (lease, unchanged). Raises before changing the lease if the backend rejects the config.
        """
        if digest is None:
            digest = _hexdigest(cfg.to_bytes())
        le = self.lease(lease_id)
        if le.digest == digest:
            return le, True
        summary = cfg.summary()
        with self._device_turn(le, time_remaining):
            self._apply_locked(cfg, digest, diff)
            with self._meta:  # under the device lock: a run of this lease sees the old or the new config whole
                le.config, le.digest, le.summary = cfg, digest, summary
        return le, False

    def update_config(self, lease_id: str, diff: ConfigDiff, time_remaining: float | None) -> tuple[Lease, bool]:
        le = self.lease(lease_id)
        if diff.target_digest == le.digest:
            return le, True  # a replayed diff: already applied (UpdateConfig is idempotent)
        if diff.base_digest != le.digest:
            raise DiffBaseError(
                f"diff base {diff.base_digest.hex()[:12]} does not match the lease's configuration "
                f"{le.digest.hex()[:12]}; send the full configuration with LoadConfig"
            )
        # The lease's config is private and le.digest is its digest; apply checks the result against the target.
        new = diff.apply(le.config, base_digest=le.digest)  # ConfigError if the result is not the target
        return self.set_config(lease_id, new, time_remaining, diff=diff, digest=diff.target_digest)

    def reset(self, lease_id: str, time_remaining: float | None) -> Lease:
        le = self.lease(lease_id)
        cfg, digest, summary = self._default
        with self._device_turn(le, time_remaining):
            self.backend.mirror.forget()  # a reset reconfigures the device from scratch
            self._apply_locked(cfg, digest)
            with self._meta:
                le.config, le.digest, le.summary = cfg, digest, summary
        return le

    # ---- runs ------------------------------------------------------------------------------------
    def run(
        self,
        lease_id: str,
        expected_config_id: str,
        inputs: InputSpikes,
        options: RunOptions,
        time_remaining: float | None,
    ) -> tuple[RunResult, Lease, int]:
        """Run on the lease's configuration; returns (result, lease, device microseconds)."""
        le = self.lease(lease_id)
        if expected_config_id:
            check_config_id(expected_config_id)
            if expected_config_id != le.config_id:
                raise ConfigMismatchError(
                    f"config_id {expected_config_id[:12]} is not the lease's configuration {le.config_id[:12]}; "
                    "load the configuration again"
                )
        with self._device_turn(le, time_remaining):
            cfg, digest = le.config, le.digest  # read under the device lock: configs change only under it
            self._apply_locked(cfg, digest)
            t0 = time.perf_counter()
            try:
                result = self.backend.run(inputs, options)
            except (ValueError, TypeError):
                raise  # validation: nothing ran
            except BaseException:
                self.backend.mirror.forget()  # a failed run may leave the device anywhere
                raise
            us = int((time.perf_counter() - t0) * 1e6)
        return result, le, us

    def close(self) -> None:
        """Close the backend after any run in progress has finished."""
        with self._device:
            if not self._closed:
                self._closed = True
                self.backend.close()


def check_lease_id(lease_id: str) -> None:
    """RequestError unless ``lease_id`` looks like an id AcquireLease returns (32 lowercase hex characters)."""
    if not lease_id:
        raise RequestError("lease_id is required (call AcquireLease first)")
    if len(lease_id) != 32 or not set(lease_id) <= _HEX:
        raise RequestError(
            f"lease_id {lease_id[:40]!r} is malformed; expected the 32 lowercase hex characters AcquireLease returned"
        )


def check_config_id(config_id: str) -> None:
    """RequestError unless ``config_id`` is a hex SHA-256 digest (64 lowercase hex characters)."""
    if len(config_id) != 64 or not set(config_id) <= _HEX:
        raise RequestError(
            f"config_id {config_id[:70]!r} is malformed; expected 64 lowercase hex characters (SHA-256) or empty"
        )
