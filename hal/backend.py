"""The one small interface every device implements.

Like a tinygrad device runtime, a backend does four things. It describes itself (:meth:`Backend.info`). It takes a
configuration (:meth:`Backend.configure`: a full :class:`ChipConfig`, or a :class:`ConfigDiff` against the one it
holds). It runs a batch of input spike trains for a duration and returns what it recorded (:meth:`Backend.run`).
And it closes (:meth:`Backend.close`). Everything else (sessions, compilation, training, remote serving, pools) is
built on these four calls, so adding a device means adding one class.

Configuration is split the way tinygrad splits ``alloc`` and ``_alloc``. This base class keeps the device's
:class:`~firstspike.hal.mirror.ConfigMirror` (what it holds) and decides what travels: nothing, a diff or the whole
configuration. A device implements only the two primitives, :meth:`Backend._load_config` and
:meth:`Backend._apply_diff`. Clients that want a target configuration with the least traffic call
:meth:`Backend.sync`.

Semantics every backend honours (the conformance suite checks them):

* each batch entry starts from the reset state (membranes at reset/leak, synaptic currents zero) and
  runs for ``options.duration_ticks`` ticks; entries never influence each other;
* event times are integer ticks since the start of their own batch entry;
* returned events are sorted by (batch, time, label); with ``record="first"`` only each neuron's first
  spike per entry is returned;
* events beyond the device's buffer are counted in ``RunResult.dropped``, never silently lost;
* invalid configs raise before anything is applied; the device keeps its previous config; a diff made for
  another base is refused (:class:`~firstspike.hal.errors.ConfigError`).
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from firstspike.hal import chip
from firstspike.hal.config import ChipConfig, ConfigDiff
from firstspike.hal.errors import CapacityError, ConfigError, FieldRangeError
from firstspike.hal.events import InputSpikes, SpikeEvents
from firstspike.hal.mirror import ConfigMirror, ConfigPlan


@dataclass(frozen=True)
class DeviceInfo:
    """What a device is: identity, versions, resource model and capabilities."""

    model: str  # e.g. "firstspike-sim", "bss2-like-serial"
    serial: int  # chip serial number (keys the simulator's fixed-pattern mismatch)
    version: str  # firmware or simulator version
    resource_model: dict[str, int | float] = field(default_factory=chip.resource_model)
    max_batch: int = chip.MAX_BATCH
    max_duration_ticks: int = chip.MAX_DURATION_TICKS
    max_events: int = 1 << 24  # output buffer size per run call
    deterministic: bool = True  # same config + inputs + seed -> same events
    membrane_readout: int = 0  # how many neurons can be read out at once (0 = none)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunOptions:
    """How to run a batch.

    ``duration_ticks``: run length per batch entry (ticks). ``record``: "first" keeps each neuron's first
    spike per entry, "all" keeps every spike. ``seed``: temporal-noise seed of this run (ignored by ideal
    devices). ``readout``: neuron ids whose membrane is sampled every ``readout_period`` ticks.
    ``entry_offset``: global index of this call's batch entry 0; a noisy device keys the temporal noise of
    entry ``b`` by ``(seed, entry_offset + b)``, so splitting a batch into chunks (pools, streaming) with the
    right offsets reproduces the unsplit run exactly.
    """

    duration_ticks: int = 8 * chip.NOMINAL_TAU_S_TICKS
    record: Literal["first", "all"] = "first"
    seed: int = 0
    readout: tuple[int, ...] = ()
    readout_period: int = 8
    entry_offset: int = 0

    def __post_init__(self) -> None:
        if not 1 <= int(self.duration_ticks) <= chip.MAX_DURATION_TICKS:
            raise FieldRangeError("RunOptions.duration_ticks", self.duration_ticks, 1, chip.MAX_DURATION_TICKS)
        if self.record not in ("first", "all"):
            raise ValueError(f"RunOptions.record: {self.record!r} not allowed; use 'first' or 'all'")
        if not 0 <= int(self.seed) < 2**63:
            raise FieldRangeError("RunOptions.seed", self.seed, 0, 2**63 - 1)
        for n in self.readout:
            if not 0 <= int(n) < chip.N_NEURONS:
                raise FieldRangeError("RunOptions.readout", n, 0, chip.N_NEURONS - 1)
        if not 1 <= int(self.readout_period) <= self.duration_ticks:
            raise FieldRangeError("RunOptions.readout_period", self.readout_period, 1, self.duration_ticks)
        if not 0 <= int(self.entry_offset) < 2**63:
            raise FieldRangeError("RunOptions.entry_offset", self.entry_offset, 0, 2**63 - 1)


@dataclass(frozen=True, eq=False)
class RunResult:
    """What a run recorded.

    ``spikes``: recorded neuron spikes. ``dropped``: events that did not fit the output buffer (counted,
    not returned). ``membrane``: if readout was requested, int16/int32 samples of shape
    (batch, len(readout), n_samples) in membrane LSB, else None. ``stats``: device counters, e.g.
    ``synaptic_events``, ``input_events``, ``lost_input_events``.
    """

    spikes: SpikeEvents
    dropped: int = 0
    membrane: np.ndarray | None = None
    stats: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def concatenate(parts: list[RunResult]) -> RunResult:
        """Join results of consecutive sub-batches: spikes joined (batch indices shifted), dropped events and
        counters summed, membrane traces joined along the batch axis if every part has them."""
        traces = [p.membrane for p in parts if p.membrane is not None]
        membrane = np.concatenate(traces, axis=0) if parts and len(traces) == len(parts) else None
        stats: dict[str, int] = {}
        for p in parts:
            for k, v in p.stats.items():
                stats[k] = stats.get(k, 0) + int(v)
        spikes = SpikeEvents.concatenate([p.spikes for p in parts])
        return RunResult(spikes, sum(int(p.dropped) for p in parts), membrane, stats)


class Backend(abc.ABC):
    """A device: describe, configure, run, close.

    Subclasses implement :meth:`info`, :meth:`run`, :meth:`close` and the two configuration primitives
    :meth:`_load_config` and :meth:`_apply_diff`. :meth:`configure` and :meth:`sync` are implemented here, on the
    device's :attr:`mirror`. A subclass that implements ``configure`` itself, as backends written before the
    primitives did, keeps working: each upload its ``configure`` accepts is booked into the mirror afterwards.
    """

    #: URI scheme this backend answers to (e.g. "sim"); set by subclasses.
    scheme: str = ""
    #: Send a full configuration as a diff when the mirror knows the held one and the diff is smaller (slow links).
    full_configs_as_diffs: bool = False
    #: The device itself restores its previous configuration after a failed upload (other than a rejected one),
    #: so the mirror keeps it. Otherwise (the default) the mirror forgets and the next upload is a full one.
    restores_config_on_error: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("configure")
        if own is not None and not getattr(own, "_books_mirror", False):
            setattr(cls, "configure", _booked(own))  # noqa: B010  (mypy refuses assigning to a method)

    @abc.abstractmethod
    def info(self) -> DeviceInfo:
        """Identity, versions, resource model and limits of the device."""

    @abc.abstractmethod
    def run(self, inputs: InputSpikes, options: RunOptions) -> RunResult:
        """Run every batch entry from the reset state for ``options.duration_ticks``; return the spikes."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the device. Further calls raise; closing twice is harmless."""

    # ---- configuration: the mirror here, two primitives in each device -------------------------
    @property
    def mirror(self) -> ConfigMirror:
        """What this device holds (configuration and digest), as kept by :meth:`configure` and :meth:`sync`."""
        m = self.__dict__.get("_config_mirror")
        if m is None:
            m = self.__dict__.setdefault("_config_mirror", ConfigMirror())
        return m

    def configure(self, config: ChipConfig | ConfigDiff) -> None:
        """Bring the device to a full configuration, or apply a diff against the one it holds.

        A full configuration is validated first. It is sent only if the device does not hold it already, and
        as a diff where :attr:`full_configs_as_diffs` says so. A diff is refused with
        :class:`~firstspike.hal.errors.ConfigError` unless the device holds its base. Either way, anything
        invalid raises before it is sent, and the device keeps its configuration.
        """
        self._check_open()
        m = self.mirror
        planned = m.dispatching
        if planned is not None and config is planned.payload:
            self._execute(planned)  # sync() chose this upload and books it
        elif isinstance(config, ChipConfig):
            self._sync(config, None, None, self.full_configs_as_diffs, only_if_smaller=True, via_configure=False)
        elif isinstance(config, ConfigDiff):
            self._deliver(m.check_diff(config), via_configure=False)
        else:
            raise TypeError(f"configure() takes a ChipConfig or ConfigDiff, not {type(config).__name__}")

    def sync(self, target: ChipConfig, *, digest: bytes | None = None, diff: ConfigDiff | None = None,
             compute_diff: bool = True, owned: bool = False) -> ConfigPlan:
        """Bring the device to ``target`` with the least traffic, through :meth:`configure`.

        Nothing is sent if the device holds ``target``. Otherwise ``diff`` is sent if the device holds its base,
        or a diff computed from the held configuration (if ``compute_diff``), or else the whole configuration.
        ``digest``: ``target.digest()`` if the caller knows it (it is trusted). A computed diff that the device
        refuses (it held something else) is followed by the full configuration. Returns the plan carried out.
        ``owned`` (with ``digest``): ``target`` was validated when it was built and nobody will modify it (e.g. a
        server's decoded or diff-applied configuration), so the device keeps it as it is instead of a validated
        copy; without ``digest`` it is ignored.
        """
        self._check_open()
        return self._sync(target, digest, diff, compute_diff, only_if_smaller=False, via_configure=True,
                          owned=owned)

    def _check_open(self) -> None:
        """Raise :class:`~firstspike.hal.errors.BackendError` if the device is closed (override; default: never)."""
        return None

    def _load_config(self, config: ChipConfig, digest: bytes) -> None:
        """Primitive: make the device hold ``config`` (validated, private; SHA-256 digest ``digest``).

        Raise before changing anything if the device cannot take it."""
        raise NotImplementedError(
            f"{type(self).__name__} implements neither configure() nor the primitives _load_config()/_apply_diff()")

    def _apply_diff(self, diff: ConfigDiff, target: ChipConfig | None) -> None:
        """Primitive: apply ``diff`` to the configuration the device holds, which is the diff's base (checked).

        ``target`` is the resulting configuration (validated, private; its digest is ``diff.target_digest``).
        It is None only when the mirror knows the base by digest alone. Then the device must check the diff."""
        raise NotImplementedError(
            f"{type(self).__name__} implements neither configure() nor the primitives _load_config()/_apply_diff()")

    def _sync(self, target: ChipConfig, digest: bytes | None, diff: ConfigDiff | None, compute_diff: bool, *,
              only_if_smaller: bool, via_configure: bool, owned: bool = False) -> ConfigPlan:
        if not isinstance(target, ChipConfig):
            raise TypeError(f"expected a ChipConfig, not {type(target).__name__}")
        m = self.mirror
        if digest is not None and m.holds(digest):
            return ConfigPlan("none", m.config, digest, ConfigDiff(digest, digest, {}, {}))
        # a copy validates, and the caller may go on modifying theirs; an owned target was validated when built
        own = target if owned and digest is not None else target.copy()
        plan = m.plan(own, digest or own.digest(validate=False), diff=diff, compute_diff=compute_diff,
                      only_if_smaller=only_if_smaller)
        try:
            self._deliver(plan, via_configure=via_configure)
        except ConfigError:
            if plan.kind != "diff" or plan.offered:
                raise
            # The device refused a diff from the configuration the mirror said it holds: send it all.
            plan = ConfigPlan("full", own, plan.digest)
            self._deliver(plan, via_configure=via_configure)
        return plan

    def _deliver(self, plan: ConfigPlan, *, via_configure: bool) -> None:
        """Carry out ``plan`` and book the outcome in the mirror."""
        if plan.kind == "none":
            return
        m = self.mirror
        try:
            if via_configure:
                m.dispatching = plan
                try:
                    self.configure(plan.payload)
                finally:
                    m.dispatching = None
            else:
                self._execute(plan)
        except (ValueError, TypeError) as e:
            # Rejected before anything was applied (the contract), except a diff refused by a device that holds
            # another configuration than the mirror said.
            if plan.kind == "diff" and isinstance(e, ConfigError):
                m.forget()
            raise
        except BaseException:
            if not self.restores_config_on_error:
                m.forget()
            raise
        m.commit(plan.target, plan.digest)

    def _execute(self, plan: ConfigPlan) -> None:
        if plan.kind == "diff":
            assert plan.diff is not None
            self._apply_diff(plan.diff, plan.target)
        elif plan.kind == "full":
            assert plan.target is not None
            self._load_config(plan.target, plan.digest)

    # ---- conveniences shared by every backend --------------------------------------------------
    def check_run_request(self, inputs: InputSpikes, options: RunOptions) -> None:
        """Reject batches and durations beyond this device's limits (raises CapacityError)."""
        info = self.info()
        if inputs.batch_size > info.max_batch:
            raise CapacityError(
                f"batch of {inputs.batch_size} entries exceeds this device's max_batch {info.max_batch}"
            )
        if options.duration_ticks > info.max_duration_ticks:
            raise CapacityError(
                f"duration {options.duration_ticks} ticks exceeds max_duration_ticks {info.max_duration_ticks}"
            )
        if len(inputs) and int(inputs.events["time"].max()) >= options.duration_ticks:
            late = int(inputs.events["time"].max())
            raise FieldRangeError("InputSpikes.time", late, 0, options.duration_ticks - 1, "inside the run")
        if len(options.readout) > info.membrane_readout:
            raise CapacityError(
                f"{len(options.readout)} readout neurons requested; this device reads out {info.membrane_readout}"
            )

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _booked(configure: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """Wrap a subclass's own ``configure`` so that the mirror books what it accepted (backward compatibility)."""

    @functools.wraps(configure)
    def booked(self: Backend, config: ChipConfig | ConfigDiff) -> None:
        m = self.mirror
        if m.dispatching is not None or m.in_override:
            configure(self, config)  # sync(), or an outer override, books this upload
            return
        generation = m.generation
        m.in_override = True
        try:
            configure(self, config)
        except (ValueError, TypeError) as e:
            if isinstance(e, ConfigError) and isinstance(config, ConfigDiff) and m.holds(config.base_digest):
                m.forget()  # the device refused a diff for the base the mirror said it holds: it holds another
            raise
        except BaseException:
            if not self.restores_config_on_error:
                m.forget()
            raise
        finally:
            m.in_override = False
        if m.generation == generation:  # the override did not reach Backend.configure, which books itself
            m.record(config)

    booked._books_mirror = True  # type: ignore[attr-defined]
    return booked
