"""The executable spec: a plain, slow, obviously correct simulation of one configured chip.

It follows ``docs/device-spec.md`` literally, one batch entry at a time, visiting the ticks at which anything
happens in time order. Within one tick the order is fixed: (1) neurons whose predicted crossing is this tick
spike, (2) refractory periods that end at this tick release their membranes, (3) events arriving at this tick
are routed to synapses and their current jumps are added (summed per neuron, then clamped), (4) membrane
readout samples. After every change of a neuron's state (its "anchor") its next threshold crossing is
predicted from the anchor by sampling the membrane on the update grid and bisecting the crossing to the tick.

Events travel route by route: an event of a source (an input at its tick ``t``, a neuron's spike time-stamped ``t``
at ``t + ROUTE_DELAY_TICKS``) enters each of the source's routes and reaches that route's row its delay later
(``delay code x DELAY_STEP_TICKS`` ticks); arrivals at or after the end of the run do not happen.

The fast engine (:mod:`firstspike.sim_device.engine`) must produce the same bits; tests compare both on random
configurations and inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from firstspike.hal import chip
from firstspike.hal.config import RowMode, SourceKind
from firstspike.sim_device.fixedpoint import propagate
from firstspike.sim_device.model import DeviceModel
from firstspike.sim_device.spec import I_MAX, ROUTE_DELAY_TICKS, UPDATE_PERIOD_TICKS, V_FRAC_BITS, V_MAX_LSB

P = UPDATE_PERIOD_TICKS


@dataclass
class _Neuron:
    """State of one logical neuron: the anchor (time and state at it) and what happens next."""

    theta: int
    ta: int = 0
    u: int = 0
    ie: int = 0
    ii: int = 0
    refractory: bool = False
    release: int = 0
    candidate: int | None = None


@dataclass
class EntryResult:
    """Everything one batch entry produced."""

    spikes: list[tuple[int, int]] = field(default_factory=list)  # (tick, neuron) of every spike, in time order
    synaptic_events: int = 0
    membrane: np.ndarray | None = None  # (len(readout), n_samples) LSB


class ReferenceEntry:
    """Simulates one batch entry of a configured chip (construct, then :meth:`run`)."""

    def __init__(
        self,
        model: DeviceModel,
        theta: np.ndarray,
        duration: int,
        readout: tuple[int, ...] = (),
        readout_period: int = 1,
    ) -> None:
        self.m = model
        self.dur = int(duration)
        self.neurons = {int(n): _Neuron(theta=int(theta[n])) for n in model.active}
        self.readout = tuple(int(n) for n in readout)
        self.period = int(readout_period)
        routes = model.config.routing.routes
        self.routes_of: dict[tuple[int, int], list[int]] = {}  # (kind, source) -> its routes (table indices)
        for k in range(len(routes)):
            self.routes_of.setdefault((int(routes["kind"][k]), int(routes["source"][k])), []).append(k)

    # ---- the membrane between anchors ---------------------------------------------------------------
    def _u_at(self, n: int, t: int) -> int:
        s = self.neurons[n]
        return propagate(self.m.props[n], s.u, s.ie, s.ii, t - s.ta)[0]

    def _advance(self, n: int, t: int) -> None:
        """Move the anchor of neuron ``n`` to tick ``t`` (membrane held at reset while refractory)."""
        s = self.neurons[n]
        u, s.ie, s.ii = propagate(self.m.props[n], s.u, s.ie, s.ii, t - s.ta)
        s.u = int(self.m.reset[n]) if s.refractory else u
        s.ta = t

    def _predict(self, n: int) -> int | None:
        """The tick of the next threshold crossing from the current anchor if no event intervenes (or None)."""
        s = self.neurons[n]
        g = s.ta // P + 1
        while (g - 1) * P < self.dur:
            u_hi = self._u_at(n, g * P)
            if u_hi >= s.theta:
                lo, hi = max(s.ta, (g - 1) * P), g * P
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if self._u_at(n, mid) >= s.theta:
                        hi = mid
                    else:
                        lo = mid
                u_hi = self._u_at(n, hi)
                if lo > s.ta:
                    u_lo = self._u_at(n, lo)
                    # time-stamp to the nearer tick of the linearly interpolated crossing (ties: later tick)
                    if u_lo < s.theta and s.theta - u_lo < u_hi - s.theta:
                        return lo
                return hi
            g += 1
        return None

    # ---- routing ------------------------------------------------------------------------------------
    def _emit(self, pending: dict[int, list[int]], kind: int, source: int, t: int) -> None:
        """An event of this source enters its routes at tick ``t``: each route's event reaches its row at ``t``
        plus the route's delay, if that is before the end of the run."""
        routes = self.m.config.routing.routes
        for k in self.routes_of.get((kind, source), []):
            arrival = t + int(routes["delay"][k]) * chip.DELAY_STEP_TICKS
            if arrival < self.dur:
                pending.setdefault(arrival, []).append(k)

    def _route(self, k: int) -> tuple[dict[int, list[int]], int]:
        """Current jumps an event arriving through route ``k`` delivers: {neuron: [exc, inh]} for every active
        neuron it is wired to (its row is not OFF and a synapse of the row has the route's address as its label,
        whatever its weight: such a neuron gets an anchor even if its jump is 0), and the number of synapses it
        activates (non-zero weight)."""
        cfg = self.m.config
        r = cfg.routing.routes[k]
        out: dict[int, list[int]] = {}
        count = 0
        half, row, addr = int(r["half"]), int(r["row"]), int(r["address"])
        mode = int(cfg.row_modes[half, row])
        if mode == RowMode.OFF:
            return out, count
        for col in range(cfg.synapses.labels.shape[2]):
            if cfg.synapses.labels[half, row, col] != addr:
                continue
            count += int(cfg.synapses.weights[half, row, col] != 0)
            n = int(self.m.logical[half * 256 + col])
            if n not in self.neurons:
                continue
            acc = out.setdefault(n, [0, 0])
            acc[0 if mode == RowMode.EXCITATORY else 1] += int(self.m.jump[half, row, col])
        return out, count

    def _readout_value(self, p: int, t: int) -> int:
        n = int(self.m.logical[p])
        if n not in self.neurons:
            u = 0
        else:
            s = self.neurons[n]
            u = s.u if s.refractory else self._u_at(n, t)
        return min(max((u + int(self.m.leak[n])) >> V_FRAC_BITS, 0), V_MAX_LSB)

    # ---- the entry ----------------------------------------------------------------------------------
    def run(self, input_times: np.ndarray, input_channels: np.ndarray) -> EntryResult:
        """Simulate with input events (ticks, channels) already noisy and sorted."""
        res = EntryResult()
        pending: dict[int, list[int]] = {}  # tick -> routes whose events arrive then
        for t, ch in zip(input_times.tolist(), input_channels.tolist(), strict=True):
            self._emit(pending, SourceKind.INPUT, int(ch), int(t))
        samples = list(range(0, self.dur, self.period)) if self.readout else []
        mem = np.zeros((len(self.readout), len(samples)), dtype=np.int32)
        next_sample = 0
        for n in self.neurons:
            self.neurons[n].candidate = self._predict(n)

        while True:
            times = list(pending)
            times += [s.candidate for s in self.neurons.values() if not s.refractory and s.candidate is not None]
            times += [s.release for s in self.neurons.values() if s.refractory]
            if next_sample < len(samples):
                times.append(samples[next_sample])
            t = min(times, default=self.dur)
            if t >= self.dur:
                break
            # (1) spikes
            for n, s in self.neurons.items():
                if not s.refractory and s.candidate == t:
                    res.spikes.append((t, n))
                    s.refractory, s.release, s.candidate = True, t + int(self.m.refractory[n]), None
                    self._advance(n, t)
                    self._emit(pending, SourceKind.NEURON, n, t + ROUTE_DELAY_TICKS)
            # (2) refractory periods ending now
            for n, s in self.neurons.items():
                if s.refractory and s.release == t:
                    self._advance(n, t)
                    s.refractory = False
                    s.u = int(self.m.reset[n])
                    s.candidate = self._predict(n)
            # (3) arriving events
            jumps: dict[int, list[int]] = {}
            for k in pending.pop(t, []):
                got, count = self._route(k)
                res.synaptic_events += count
                for n, (je, ji) in got.items():
                    acc = jumps.setdefault(n, [0, 0])
                    acc[0] += je
                    acc[1] += ji
            for n, (je, ji) in sorted(jumps.items()):
                s = self.neurons[n]
                self._advance(n, t)
                s.u = min(max(s.u, int(self.m.u_min[n])), int(self.m.u_max[n]))
                s.ie = min(s.ie + je, I_MAX)
                s.ii = min(s.ii + ji, I_MAX)
                if not s.refractory:
                    s.candidate = self._predict(n)
            # (4) membrane readout
            if next_sample < len(samples) and samples[next_sample] == t:
                for k, p in enumerate(self.readout):
                    mem[k, next_sample] = self._readout_value(p, t)
                next_sample += 1
        if self.readout:
            res.membrane = mem
        return res
