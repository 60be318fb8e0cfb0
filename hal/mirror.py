"""The configuration mirror: what a device holds, and how to bring it to a target (nothing, a diff, or all).

This module is the one place that decides how a configuration travels. Every :class:`~firstspike.hal.backend.Backend`
keeps a :class:`ConfigMirror` (the base class does the bookkeeping). The session, the gRPC server, the gRPC client,
the serial driver and the simulator all ask it. The rules:

* **nothing** when the device holds the target (equal SHA-256 digests);
* **a diff the caller offers** when the device holds the diff's base (a server forwards a client's diff);
* **a diff computed here** from the held configuration, when the mirror knows that configuration and the caller
  allows it (for a full configuration given to ``configure``: only where the backend asks for it, and only if
  the diff is smaller);
* **the full configuration** otherwise.

A diff is only ever sent against a base that the mirror knows the device holds. :meth:`ConfigMirror.check_diff`
refuses any other diff (:class:`~firstspike.hal.errors.ConfigError`) before anything is sent. A mirror can know
only a digest (a device reported it, or a server said which configuration a lease holds). Then a diff made for
that digest may still go; the device checks the diff itself. After a failed upload the owner calls
:meth:`ConfigMirror.forget`. Then the mirror never claims a state the device might not hold, and the next
upload is a full one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from firstspike.hal.config import ChipConfig, ConfigDiff
from firstspike.hal.errors import ConfigError

__all__ = ["ConfigMirror", "ConfigPlan"]

PlanKind = Literal["none", "diff", "full"]


class ConfigPlan(NamedTuple):
    """How to bring a device to ``target`` (whose SHA-256 digest is ``digest``).

    ``kind``: "none" (it holds the target already), "diff" (send ``diff``, made against the configuration it
    holds) or "full" (load ``target`` whole). ``diff`` is empty for "none" and None for "full". ``offered``:
    the diff is the caller's own (e.g. a client's, forwarded by a server), not one computed by the mirror.
    ``target`` is None only when the device applies a diff to a base the mirror knows by digest alone.
    (A named tuple: plans are made on every run call, and this is the cheapest immutable record.)
    """

    kind: PlanKind
    target: ChipConfig | None
    digest: bytes
    diff: ConfigDiff | None = None
    offered: bool = False

    @property
    def payload(self) -> ChipConfig | ConfigDiff:
        """What travels: the diff, or the whole configuration (a "none" plan sends nothing)."""
        if self.kind == "diff":
            assert self.diff is not None
            return self.diff
        if self.target is None:
            raise ConfigError("a full upload needs the configuration itself, not only its digest")
        return self.target

    @property
    def changed_entries(self) -> int:
        """Array entries the diff changes (0 for "none"; -1 for a full upload)."""
        if self.kind == "full":
            return -1
        return 0 if self.diff is None else self.diff.changed_entries()


@dataclass(eq=False)
class ConfigMirror:
    """What a device holds, as far as its host knows: a configuration and its digest.

    ``digest`` None means unknown. ``config`` None with a known digest means only the digest is known.
    ``generation`` counts changes, so a caller can tell that nothing changed since it last looked. The
    configurations kept here are private: nobody may modify them.
    """

    config: ChipConfig | None = None
    digest: bytes | None = None
    generation: int = 0
    # Set by Backend.sync while it hands a plan to the backend's own configure() (see hal/backend.py).
    dispatching: ConfigPlan | None = field(default=None, init=False, repr=False)
    in_override: bool = field(default=False, init=False, repr=False)

    @property
    def known(self) -> bool:
        """Whether the mirror knows what the device holds (at least its digest)."""
        return self.digest is not None

    def holds(self, digest: bytes) -> bool:
        """True if the device is known to hold the configuration with this digest."""
        return self.digest is not None and self.digest == digest

    def commit(self, config: ChipConfig | None, digest: bytes | None) -> None:
        """Record that the device now holds ``config`` (private; None if only the digest is known)."""
        if digest is None:
            config = None
        self.config, self.digest = config, digest
        self.generation += 1

    def commit_default(self) -> None:
        """Record that the device holds the default configuration (all neurons off, nothing routed): a fresh
        device."""
        self.commit(ChipConfig(), _default_digest())

    def forget(self) -> None:
        """The device's configuration is unknown (e.g. after a failed upload). The next upload is a full one."""
        self.commit(None, None)

    # ---- planning ----------------------------------------------------------------------------------
    def plan(self, target: ChipConfig, digest: bytes, *, diff: ConfigDiff | None = None,
             compute_diff: bool = True, only_if_smaller: bool = False) -> ConfigPlan:
        """How to bring the device from what it holds to ``target`` (private, digest ``digest``).

        ``diff``: a diff to ``target`` that the caller already has. It is used if the device holds its base.
        ``compute_diff``: may the mirror compute a diff from the configuration it holds? If False, the target
        travels whole unless it is held already or ``diff`` fits. ``only_if_smaller``: send a computed diff only
        if it is smaller than the whole configuration.
        """
        if self.holds(digest):
            return ConfigPlan("none", target, digest, ConfigDiff(digest, digest, {}, {}))
        if diff is not None and self.holds(diff.base_digest) and diff.target_digest == digest:
            return ConfigPlan("diff", target, digest, diff, offered=True)
        if compute_diff and self.config is not None and self.digest is not None:
            d = self.config.diff(target, base_digest=self.digest, target_digest=digest)
            if not only_if_smaller or d.nbytes < target.nbytes:
                return ConfigPlan("diff", target, digest, d)
        return ConfigPlan("full", target, digest)

    def check_diff(self, diff: ConfigDiff) -> ConfigPlan:
        """The plan for a diff given to a device. It is refused unless the device holds the diff's base.

        Raises :class:`ConfigError` before anything is sent when the configuration is unknown or is another one.
        If the mirror knows the base configuration, it applies the diff here. That validates the result and
        checks it against the diff's target digest, so the device receives the target and only the target.
        """
        if self.digest is None:
            raise ConfigError(
                "diff does not apply: the configuration the device holds is unknown (none loaded yet, or an "
                "upload failed); load the full configuration instead")
        if diff.base_digest != self.digest:
            raise ConfigError(
                "diff does not apply: the base configuration differs from the one it was made for (the device "
                f"holds {self.digest.hex()[:12]}..., the diff was made for {diff.base_digest.hex()[:12]}...); "
                "load the full configuration instead")
        if diff.target_digest == self.digest:
            return ConfigPlan("none", self.config, self.digest, diff, offered=True)
        target = None if self.config is None else diff.apply(self.config, base_digest=self.digest)
        return ConfigPlan("diff", target, diff.target_digest, diff, offered=True)

    def record(self, config: ChipConfig | ConfigDiff) -> None:
        """Book an upload that a backend's own ``configure`` accepted without this mirror's plan.

        Backends that implement ``configure`` themselves, rather than the two primitives, are booked here.
        A configuration that cannot be copied or checked leaves the state unknown; this never raises.
        """
        try:
            if isinstance(config, ChipConfig):
                own = config.copy()  # validates; the caller may go on modifying theirs
                self.commit(own, own.digest(validate=False))
            elif self.holds(config.base_digest) and self.config is not None:
                self.commit(config.apply(self.config, base_digest=self.digest), config.target_digest)
            elif self.digest is None or self.digest == config.base_digest:
                self.commit(None, config.target_digest)  # the device checked the base (the Backend contract)
            else:
                self.forget()
        except (ValueError, TypeError):  # it accepted something invalid: we cannot say what it holds
            self.forget()


@functools.cache
def _default_digest() -> bytes:
    return ChipConfig().digest()
