"""``example://``: a small but complete firstspike backend written from nothing.

It implements the hal contract with an event-driven float64 leaky integrate-and-fire model that follows
the nominal calibration (:mod:`firstspike.hal.calibration`), without any mismatch or noise:

    tau_m du/dt = -(u - leak) + I_exc - I_inh,     tau_x dI_x/dt = -I_x,
    an event through a synapse of weight d on a row of sign x:  I_x += d * gain_x / 64   (LSB)

Between two events the state evolves in closed form (sums of exponentials), so the membrane is exact at
every tick. When u reaches the threshold between ticks k-1 and k, the spike is time-stamped at the nearer
of the two ticks of the linearly interpolated crossing (ties: k); the neuron is then set to ``reset`` and
held there for the refractory period while its synaptic currents keep decaying. Its spike reaches every
row the routing table names ``ROUTE_DELAY_TICKS`` later. Within one tick: spikes first, then the ends of
refractory periods, then arriving events add their current jumps. Each entry starts from u = leak, I = 0.
(The time-stamping rule and the routing delay follow the reference simulator, docs/device-spec.md, so
the two agree to about a tick.)
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from firstspike.hal import chip
from firstspike.hal.backend import Backend, DeviceInfo, RunOptions, RunResult
from firstspike.hal.calibration import GAIN_DIVISOR, REFRACTORY_TICKS_PER_CODE, TAU_TICKS_PER_CODE
from firstspike.hal.config import ChipConfig, ConfigDiff, RowMode, SourceKind
from firstspike.hal.errors import BackendError
from firstspike.hal.events import SPIKE_DTYPE, InputSpikes, SpikeEvents
from firstspike.hal.registry import DeviceURI

VERSION = "0.1.0"
ROUTE_DELAY_TICKS = 1  # from a neuron's spike time-stamp to the arrival of its routed event
_CHUNK = 256  # ticks evaluated at once when looking for a threshold crossing


@dataclass
class _Targets:
    """Where the events of one source land: membrane indices and signed current jumps (LSB)."""

    exc_idx: np.ndarray
    exc_amp: np.ndarray
    inh_idx: np.ndarray
    inh_amp: np.ndarray


@dataclass
class _Network:
    """A configuration prepared for simulation."""

    membranes: np.ndarray  # neuron ids of the logical neurons that integrate and spike (enabled)
    span: np.ndarray  # threshold - leak per membrane (LSB)
    reset: np.ndarray  # reset - leak
    tau_m: np.ndarray  # ticks
    tau_e: np.ndarray
    tau_i: np.ndarray
    refractory: np.ndarray  # ticks
    targets: dict[tuple[int, int], _Targets]  # (kind, source) -> targets


def _prepare(cfg: ChipConfig) -> _Network:
    """Turn a (validated) configuration into per-membrane parameters and per-source target tables."""
    p = {k: v.astype(np.float64) for k, v in cfg.neurons.values.items()}
    n_cols = chip.COLUMNS_PER_HALF
    merged = np.concatenate([np.zeros(n_cols, bool), cfg.neurons.merged_columns])
    # The membrane a physical neuron's synapses drive: the half-0 neuron of a merged column, else itself.
    owner = np.arange(chip.N_NEURONS)
    owner[merged] -= n_cols
    enabled = cfg.neurons.values["enabled"].copy()
    enabled[merged] = False  # a merged half-1 neuron never spikes on its own
    membranes = np.flatnonzero(enabled)
    slot = np.full(chip.N_NEURONS, -1)
    slot[membranes] = np.arange(len(membranes))

    targets: dict[tuple[int, int], _Targets] = {}
    routes = cfg.routing.routes
    for key in {(int(r["kind"]), int(r["source"])) for r in routes}:
        parts: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {
            int(RowMode.EXCITATORY): ([], []),
            int(RowMode.INHIBITORY): ([], []),
        }
        for r in routes[(routes["kind"] == key[0]) & (routes["source"] == key[1])]:
            half, row, addr = int(r["half"]), int(r["row"]), int(r["address"])
            mode = int(cfg.row_modes[half, row])
            if mode == RowMode.OFF:
                continue
            cols = np.flatnonzero((cfg.synapses.labels[half, row] == addr) & (cfg.synapses.weights[half, row] > 0))
            mem = slot[owner[half * n_cols + cols]]
            keep = mem >= 0
            mem, cols = mem[keep], cols[keep]
            # Gain of the logical neuron (the half-0 neuron of a merged column), as the parameters are.
            gain_name = "gain_exc" if mode == RowMode.EXCITATORY else "gain_inh"
            gain = p[gain_name][membranes[mem]]
            amp = cfg.synapses.weights[half, row, cols].astype(np.float64) * gain / GAIN_DIVISOR
            parts[mode][0].append(mem)
            parts[mode][1].append(amp)
        (ei, ea), (ii, ia) = (_join(*parts[int(m)]) for m in (RowMode.EXCITATORY, RowMode.INHIBITORY))
        if len(ei) or len(ii):
            targets[key] = _Targets(ei, ea, ii, ia)

    m = membranes
    return _Network(
        membranes=m,
        span=p["threshold"][m] - p["leak"][m],
        reset=p["reset"][m] - p["leak"][m],
        tau_m=p["tau_mem"][m] * TAU_TICKS_PER_CODE,
        tau_e=p["tau_syn_exc"][m] * TAU_TICKS_PER_CODE,
        tau_i=p["tau_syn_inh"][m] * TAU_TICKS_PER_CODE,
        refractory=p["refractory"][m] * REFRACTORY_TICKS_PER_CODE,
        targets=targets,
    )


def _join(idx: list[np.ndarray], amp: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if not idx:
        return np.empty(0, dtype=np.int64), np.empty(0)
    return np.concatenate(idx), np.concatenate(amp)


def _kernel(t: np.ndarray, tau_m: np.ndarray, tau_s: np.ndarray) -> np.ndarray:
    """Membrane response at time ``t`` to a unit synaptic current starting at 0 (closed form)."""
    same = tau_m == tau_s
    with np.errstate(divide="ignore", invalid="ignore"):
        general = tau_s / (tau_s - tau_m) * (np.exp(-t / tau_s) - np.exp(-t / tau_m))
    return np.where(same, t / tau_m * np.exp(-t / tau_m), general)


class _State:
    """Membrane state of every logical neuron of one batch entry (voltages relative to leak)."""

    def __init__(self, net: _Network) -> None:
        n = len(net.membranes)
        self.net = net
        self.v = np.zeros(n)
        self.ie = np.zeros(n)
        self.ii = np.zeros(n)
        self.refractory_until = np.full(n, -1.0)
        self.t = 0

    def _at(self, dt: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Membrane of neurons ``rows`` ``dt`` ticks after ``self.t`` (dt broadcasts as columns)."""
        n = self.net
        tm, te, ti = n.tau_m[rows, None], n.tau_e[rows, None], n.tau_i[rows, None]
        return (
            self.v[rows, None] * np.exp(-dt / tm)
            + self.ie[rows, None] * _kernel(dt, tm, te)
            - self.ii[rows, None] * _kernel(dt, tm, ti)
        )

    def first_crossing(self, until: int) -> tuple[int, np.ndarray] | None:
        """The earliest spike time-stamp in (t, until] of the free neurons (if any), and which neurons."""
        n = self.net
        free = self.refractory_until <= self.t
        # Upper bound of the membrane from here on: neurons that cannot reach threshold are skipped.
        reachable = free & (np.maximum(self.v, 0.0) + self.ie >= n.span)
        rows = np.flatnonzero(reachable)
        start = self.t
        while len(rows) and start < until:
            stop = min(start + _CHUNK, until)
            # One tick past ``stop``: a crossing just after it may still be time-stamped at ``stop``.
            ticks = np.arange(start, stop + 2, dtype=np.float64)
            u = self._at(ticks[None, :] - self.t, rows)
            theta = n.span[rows, None]
            over = u[:, 1:] >= theta
            hit = over.any(axis=1)
            if hit.any():
                r = np.flatnonzero(hit)
                k = np.argmax(over[r], axis=1) + 1  # column of the first tick at or above threshold
                below, above = u[r, k - 1], u[r, k]
                earlier = (ticks[k - 1] > self.t) & (theta[r, 0] - below < above - theta[r, 0])
                stamp = ticks[k] - earlier
                best = stamp.min()
                if best <= stop:
                    return int(best), rows[r[stamp == best]]
            start = stop
        return None

    def advance(self, t: int) -> None:
        """Evolve every neuron to tick ``t`` (refractory neurons stay at reset)."""
        if t == self.t:
            return
        n = self.net
        dt = np.full(1, float(t - self.t))
        all_rows = np.arange(len(self.v))
        v = self._at(dt, all_rows)[:, 0]
        held = self.refractory_until > self.t
        # A neuron whose refractory period ends inside the step is woken by its own queue entry, so here
        # it is simply still held.
        self.v = np.where(held, n.reset, v)
        self.ie = self.ie * np.exp(-dt / n.tau_e)
        self.ii = self.ii * np.exp(-dt / n.tau_i)
        self.t = t


class ExampleBackend(Backend):
    """An ideal, deterministic float64 event-driven LIF device (see the module docstring)."""

    scheme = "example"

    def __init__(self, serial: int = 0, max_batch: int = 1024) -> None:
        self._serial = serial
        self._max_batch = max_batch
        self._config = ChipConfig()
        self._net = _prepare(self._config)
        self._closed = False

    @classmethod
    def from_uri(cls, uri: DeviceURI) -> ExampleBackend:
        """``example://?serial=N&max_batch=M``."""
        uri.check_params({"serial", "max_batch"})
        return cls(
            serial=uri.int_param("serial", 0, 0, 2**31 - 1),
            max_batch=uri.int_param("max_batch", 1024, 1, chip.MAX_BATCH),
        )

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("example:// device is closed")

    def info(self) -> DeviceInfo:
        self._check_open()
        return DeviceInfo(
            model="example-float-lif",
            serial=self._serial,
            version=VERSION,
            max_batch=self._max_batch,
            max_duration_ticks=1 << 20,
            max_events=1 << 20,
            deterministic=True,
            membrane_readout=0,
            # Agreement with the reference simulator this backend claims (checked by the conformance suite).
            extra={"conformance": {"agreement": 0.99, "mean_abs_dt_ticks": 1.0}},
        )

    # The base class validates configurations, checks diffs against what the device holds and decides what
    # travels (firstspike.hal.mirror); a device implements the two primitives that take a configuration.
    def _load_config(self, config: ChipConfig, digest: bytes) -> None:
        self._install(config)  # validated and private: the device may keep it

    def _apply_diff(self, diff: ConfigDiff, target: ChipConfig | None) -> None:
        # The base class has checked the diff's base and built its result; a device that knows its configuration
        # only by digest would apply the diff itself.
        self._install(target if target is not None else diff.apply(self._config))

    def _install(self, new: ChipConfig) -> None:
        self._check_open()
        net = _prepare(new)
        self._config, self._net = new, net  # nothing changes unless everything above succeeded

    def run(self, inputs: InputSpikes, options: RunOptions) -> RunResult:
        self._check_open()
        self.check_run_request(inputs, options)
        ev = inputs.events
        bounds = np.searchsorted(ev["batch"], np.arange(inputs.batch_size + 1))
        out: list[tuple[int, int, int]] = []
        synaptic = 0
        for b in range(inputs.batch_size):
            entry = ev[bounds[b] : bounds[b + 1]]
            spikes, syn = self._run_entry(entry, options.duration_ticks)
            synaptic += syn
            if options.record == "first":
                seen: set[int] = set()
                spikes = [(t, n) for t, n in spikes if not (n in seen or seen.add(n))]
            out.extend((b, t, n) for t, n in spikes)
        info = self.info()
        arr = np.array(out, dtype=np.int64).reshape(-1, 3)
        events = np.empty(len(arr), SPIKE_DTYPE)
        events["batch"], events["time"], events["label"] = arr[:, 0], arr[:, 1], arr[:, 2]
        result = SpikeEvents(events, inputs.batch_size)  # sorts by (batch, time, label)
        dropped = max(0, len(result) - info.max_events)
        if dropped:
            result = SpikeEvents(result.events[: info.max_events], inputs.batch_size)
        stats = {"input_events": len(ev), "synaptic_events": synaptic}
        return RunResult(result, dropped=dropped, stats=stats)

    def _run_entry(self, entry: np.ndarray, duration: int) -> tuple[list[tuple[int, int]], int]:
        """Simulate one batch entry from the reset state; returns ([(tick, neuron)], synaptic events)."""
        net = self._net
        state = _State(net)
        # Queue items: (tick, order, kind, source); order keeps equal-tick items deterministic.
        queue = [(int(e["time"]), i, int(SourceKind.INPUT), int(e["label"])) for i, e in enumerate(entry)]
        heapq.heapify(queue)
        order = len(queue)
        spikes: list[tuple[int, int]] = []
        synaptic = 0
        last = duration - 1
        while True:
            next_t = queue[0][0] if queue else last
            hit = state.first_crossing(min(next_t, last))
            if hit is not None:
                t, rows = hit
                state.advance(t)
                state.v[rows] = net.reset[rows]
                state.refractory_until[rows] = t + net.refractory[rows]
                for r in rows:
                    nid = int(net.membranes[r])
                    spikes.append((t, nid))
                    if t + ROUTE_DELAY_TICKS <= last:
                        heapq.heappush(queue, (t + ROUTE_DELAY_TICKS, order, int(SourceKind.NEURON), nid))
                        order += 1
                    if net.refractory[r] > 0:
                        heapq.heappush(queue, (t + int(net.refractory[r]), order, -1, int(r)))
                        order += 1
                continue
            if not queue or next_t > last:
                break
            t, _, kind, src = heapq.heappop(queue)
            state.advance(t)
            if kind == -1:  # end of a refractory period: the neuron integrates again from reset
                state.v[src] = net.reset[src]
                continue
            tg = net.targets.get((kind, src))
            if tg is not None:
                np.add.at(state.ie, tg.exc_idx, tg.exc_amp)
                np.add.at(state.ii, tg.inh_idx, tg.inh_amp)
                synaptic += len(tg.exc_idx) + len(tg.inh_idx)
        return spikes, synaptic

    def close(self) -> None:
        self._closed = True


__all__ = ["VERSION", "ExampleBackend"]
