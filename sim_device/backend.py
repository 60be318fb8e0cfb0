"""``sim://``: the bit-accurate simulated chip as a :class:`firstspike.hal.backend.Backend` (in-process, the
default device).

URI parameters (unknown ones are rejected):

* ``serial`` (int, default 0): the chip's serial number; keys its fixed-pattern mismatch;
* ``mismatch`` (0/1, default 1) and ``noise`` (0/1, default 1): the analog reality model;
* ``ideal=1``: shorthand for ``mismatch=0&noise=0``;
* ``engine`` (``fast`` or ``reference``, default ``fast``): ``reference`` runs the slow executable spec.

Same configuration, inputs, ``RunOptions.seed`` and ``RunOptions.entry_offset`` give the same bits, always.
"""

from __future__ import annotations

import numpy as np

from firstspike.hal.backend import Backend, DeviceInfo, RunOptions, RunResult
from firstspike.hal.config import ChipConfig, ConfigDiff
from firstspike.hal.errors import BackendError
from firstspike.hal.events import InputSpikes
from firstspike.hal.registry import DeviceURI
from firstspike.sim_device import analog
from firstspike.sim_device.batch import assemble_spikes, entry_thresholds, prepare_inputs, spikes_from_columns
from firstspike.sim_device.engine import EngineModel, compile_model, input_lines, rewire, run_engine, update_weights
from firstspike.sim_device.model import build_model, only_weights_and_delays_differ, only_weights_differ, with_weights
from firstspike.sim_device.noise_model import published_noise_model_dict
from firstspike.sim_device.reference import ReferenceEntry
from firstspike.sim_device.spec import ROUTE_DELAY_TICKS, SAME_BITS_AS, SPEC_VERSION, UPDATE_PERIOD_TICKS

MEMBRANE_READOUT = 8
DEFAULT_MAX_EVENTS = 1 << 24
ENGINES = ("fast", "reference")

# What this device claims for the conformance suite (firstspike.runtime.conformance.tolerance). Measured with
# ``pytest --pyargs firstspike.runtime.conformance --device 'sim://'`` against sim://?ideal=1 on the reference networks:
# serials 0..5 gave agreement 0.97 .. 1.0 and mean |dt| 18 .. 50 ticks; the claims hold for all of them.
_REALISTIC_CLAIMS = {"noise_free": False, "agreement": 0.95, "mean_abs_dt_ticks": 60.0}
_IDEAL_CLAIMS = {"noise_free": True, "agreement": "exact"}


def _flag(uri: DeviceURI, name: str, default: int) -> bool:
    return bool(uri.int_param(name, default, 0, 1))


class SimBackend(Backend):
    """The simulated chip. ``mismatch``/``noise`` switch the analog model; ``engine`` picks fast or reference."""

    scheme = "sim"

    def __init__(
        self,
        serial: int = 0,
        *,
        mismatch: bool = True,
        noise: bool = True,
        engine: str = "fast",
        max_events: int = DEFAULT_MAX_EVENTS,
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"sim engine {engine!r} not allowed; use one of {list(ENGINES)}")
        if not 0 <= int(serial) < 2**63:
            raise ValueError(f"sim serial {serial} out of range [0, 2^63)")
        if int(max_events) < 0:
            raise ValueError(f"max_events must be >= 0, got {max_events}")
        self._serial = int(serial)
        self._mismatch_on = bool(mismatch)
        self._noise = bool(noise)
        self._engine = engine
        self._max_events = int(max_events)
        self._mismatch = analog.Mismatch.for_serial(self._serial) if mismatch else analog.Mismatch.ideal()
        self._config = ChipConfig()  # what the engine model is built from
        self._compiled: EngineModel | None = None
        self.mirror.commit_default()
        self._closed = False
        self.runs = 0

    @classmethod
    def from_uri(cls, uri: DeviceURI) -> SimBackend:
        """Open ``sim://?serial=7&noise=0`` and the like (see the module docstring)."""
        uri.check_params({"serial", "mismatch", "noise", "ideal", "engine"})
        serial = uri.int_param("serial", 0, 0, 2**63 - 1)
        ideal = _flag(uri, "ideal", 0)
        mismatch = _flag(uri, "mismatch", 0 if ideal else 1)
        noise = _flag(uri, "noise", 0 if ideal else 1)
        if ideal and (mismatch or noise):
            raise ValueError("sim:// ideal=1 contradicts mismatch=1 or noise=1; give one or the other")
        engine = uri.param("engine", "fast") or "fast"
        if engine not in ENGINES:
            raise ValueError(f"sim:// parameter engine={engine!r} not allowed; use one of {list(ENGINES)}")
        return cls(serial, mismatch=mismatch, noise=noise, engine=engine)

    # ---- Backend ----------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("sim:// device is closed")

    def info(self) -> DeviceInfo:
        self._check_open()
        ideal = not (self._mismatch_on or self._noise)
        return DeviceInfo(
            model="firstspike-sim",
            serial=self._serial,
            version=SPEC_VERSION,
            max_events=self._max_events,
            deterministic=True,
            membrane_readout=MEMBRANE_READOUT,
            extra={
                "mismatch": self._mismatch_on,
                "noise": self._noise,
                "engine": self._engine,
                "spec_version": SPEC_VERSION,
                "same_bits_as": list(SAME_BITS_AS),
                "update_period_ticks": UPDATE_PERIOD_TICKS,
                "route_delay_ticks": ROUTE_DELAY_TICKS,
                "noise_key": "(seed, entry_offset + batch index, neuron | channel, occurrence)",
                "conformance": dict(_IDEAL_CLAIMS if ideal else _REALISTIC_CLAIMS),
                "noise_model": published_noise_model_dict(self._mismatch_on, self._noise),
            },
        )

    def _load_config(self, config: ChipConfig, digest: bytes) -> None:
        self._check_open()
        self._install(config)

    def _apply_diff(self, diff: ConfigDiff, target: ChipConfig | None) -> None:
        self._check_open()
        new = diff.apply(self._config) if target is None else target
        self._install(new, _changed_weights(diff, self._config, new))

    def _install(self, new: ChipConfig, changed_weights: np.ndarray | None = None) -> None:
        """Build the engine model for ``new`` (validated); swap only when that succeeded. ``changed_weights``: the
        flat indices of the synapse weights in which alone ``new`` differs from the configuration held (a diff
        that patches nothing else says so), or None: then the configurations are compared here."""
        if self._compiled is not None and (changed_weights is not None or only_weights_differ(self._config, new)):
            # the in-the-loop trainer's step: patch the routing matrices, keep the propagators (same arrays)
            model = with_weights(self._compiled.model, new, self._mismatch, changed_weights)
            compiled = update_weights(self._compiled, model, changed_weights, in_place=True)
        elif self._compiled is not None and only_weights_and_delays_differ(self._config, new):
            # a step that trains delays too: new delay lines and routing matrices, the same propagators
            compiled = rewire(self._compiled, with_weights(self._compiled.model, new, self._mismatch))
        else:
            compiled = compile_model(build_model(new, self._mismatch))
        self._config, self._compiled = new, compiled

    @property
    def config(self) -> ChipConfig:
        """The configuration the device holds (do not modify; configure a copy)."""
        return self._config

    def _model(self) -> EngineModel:
        if self._compiled is None:
            self._compiled = compile_model(build_model(self._config, self._mismatch))
        return self._compiled

    def run(self, inputs: InputSpikes, options: RunOptions) -> RunResult:
        self._check_open()
        self.check_run_request(inputs, options)
        em = self._model()
        offset = int(getattr(options, "entry_offset", 0))
        dur = int(options.duration_ticks)
        bsz = inputs.batch_size
        prep = prepare_inputs(inputs, dur, noise=self._noise, seed=options.seed, entry_offset=offset)
        theta = entry_thresholds(em.model.theta, em.active, bsz, noise=self._noise, seed=options.seed,
                                 entry_offset=offset)
        if self._engine == "fast":
            out = run_engine(em, bsz, prep.batch, prep.time, prep.channel, theta, dur, options.record == "first",
                             tuple(options.readout), options.readout_period)
            n_spikes, syn_neurons, membrane = int(out.spikes.sum()), int(out.synaptic_from_neurons.sum()), out.membrane
            syn_inputs = out.synaptic_from_inputs
            spikes, dropped = spikes_from_columns(out.counts, out.time, out.neuron, bsz, self._max_events)
        else:
            syn_inputs = input_lines(em, prep.batch, prep.time, prep.channel, dur)[3]
            b, t, n, n_spikes, syn_all, membrane = _run_reference(em, prep, theta, dur, options)
            syn_neurons = syn_all - syn_inputs
            spikes, dropped = assemble_spikes(b, t, n, bsz, options.record, self._max_events)
        self.runs += 1
        stats = {
            "input_events": len(prep.time),
            "lost_input_events": prep.lost,
            "synaptic_events": syn_inputs + syn_neurons,
            "spikes": n_spikes,
        }
        return RunResult(spikes, dropped=dropped, membrane=membrane, stats=stats)

    def close(self) -> None:
        self._closed = True


def _changed_weights(diff: ConfigDiff, base: ChipConfig, target: ChipConfig) -> np.ndarray | None:
    """The flat indices (unique, ascending) of the synapse weights that differ between ``base`` and ``target`` if
    ``diff`` (from ``base`` to ``target``) patches synapse weights and nothing else, else None."""
    if diff.replaced or set(diff.patches) != {"synapses.weights"}:
        return None
    idx = np.unique(np.asarray(diff.patches["synapses.weights"][0], dtype=np.int64))
    return idx[base.synapses.weights.reshape(-1)[idx] != target.synapses.weights.reshape(-1)[idx]]


def _run_reference(
    em: EngineModel, prep, theta: np.ndarray, dur: int, options: RunOptions
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int, np.ndarray | None]:
    """All entries through :class:`ReferenceEntry` (slow; the executable spec)."""
    bounds = prep.entry_bounds()
    bs, ts, ns = [], [], []
    syn = 0
    spikes = 0
    mem = []
    for b in range(prep.batch_size):
        th = em.model.theta.copy()
        th[em.active] = theta[b]
        ent = ReferenceEntry(em.model, th, dur, tuple(options.readout), options.readout_period)
        lo, hi = bounds[b], bounds[b + 1]
        res = ent.run(prep.time[lo:hi], prep.channel[lo:hi])
        spikes += len(res.spikes)
        syn += res.synaptic_events
        for t, n in res.spikes:
            bs.append(b)
            ts.append(t)
            ns.append(n)
        if res.membrane is not None:
            mem.append(res.membrane)
    n_samples = (dur - 1) // options.readout_period + 1
    empty = np.zeros((0, len(options.readout), n_samples), dtype=np.int32)
    membrane = (np.stack(mem) if mem else empty) if options.readout else None
    as64 = lambda x: np.asarray(x, dtype=np.int64)  # noqa: E731
    return as64(bs), as64(ts), as64(ns), spikes, syn, membrane
