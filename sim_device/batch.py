"""What happens to a batch before and after the dynamics: input noise, per-entry threshold noise, and the
assembly of recorded spikes into a :class:`~firstspike.hal.backend.RunResult` (spec sections 5 and 6).

Shared by the reference and the engine so both see exactly the same noisy inputs and report alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firstspike.hal.events import InputSpikes, SpikeEvents, entry_counts
from firstspike.sim_device.fastnoise import input_noise, noisy_inputs, threshold_noise


@dataclass(frozen=True, eq=False)
class PreparedInputs:
    """Input events as the synapses see them, sorted by (batch, time, channel); ``lost`` were dropped."""

    batch: np.ndarray  # int64
    time: np.ndarray  # int64 ticks
    channel: np.ndarray  # int64
    batch_size: int
    lost: int

    def entry_bounds(self) -> np.ndarray:
        """(batch_size + 1,) offsets: events of entry b are ``[bounds[b], bounds[b+1])``."""
        return np.searchsorted(self.batch, np.arange(self.batch_size + 1)).astype(np.int64)


def prepare_inputs(
    inputs: InputSpikes, duration: int, *, noise: bool, seed: int, entry_offset: int
) -> PreparedInputs:
    """Apply input-event loss and jitter (if ``noise``); times stay inside ``[0, duration - 1]``."""
    ev = inputs.events
    b = ev["batch"].astype(np.int64)
    t = ev["time"].astype(np.int64)
    ch = ev["label"].astype(np.int64)
    if not (noise and len(ev)):
        return PreparedInputs(b, t, ch, inputs.batch_size, 0)
    fast = noisy_inputs(seed, b, t, ch, entry_offset, duration)
    if fast is None:
        return _noisy_numpy(b, t, ch, inputs.batch_size, duration, seed=seed, entry_offset=entry_offset)
    return PreparedInputs(*fast[:3], inputs.batch_size, fast[3])


def _noisy_numpy(
    b: np.ndarray, t: np.ndarray, ch: np.ndarray, batch_size: int, duration: int, *, seed: int, entry_offset: int
) -> PreparedInputs:
    """The input noise in whole-array numpy steps: the definition the compiled
    :func:`firstspike.sim_device.fastnoise.noisy_inputs` is tested against, and the path without numba."""
    if len(b):
        # occurrence k: how many earlier events of the same channel the same entry has (events are sorted)
        key = b * 1024 + ch
        order = np.argsort(key, kind="stable")
        ks = key[order]
        starts = np.r_[0, np.flatnonzero(np.diff(ks)) + 1]
        run_start = np.repeat(starts, np.diff(np.r_[starts, len(ks)]))
        occ = np.empty(len(ks), dtype=np.int64)
        occ[order] = np.arange(len(ks)) - run_start
        is_lost, jitter = input_noise(seed, b + entry_offset, ch, occ)
        keep = ~is_lost
        lost = int(is_lost.sum())
        b, t, ch = b[keep], np.clip(t[keep] + jitter[keep], 0, duration - 1), ch[keep]
        # sort by (batch, time, channel): one stable argsort of a packed key (batch < 2^16, time < 2^24,
        # channel < 2^10) orders exactly like lexsort((ch, t, b)) and takes a fraction of its time
        order = np.argsort((b << 34) | (t << 10) | ch, kind="stable")
        b, t, ch = b[order], t[order], ch[order]
    else:
        lost = 0
    return PreparedInputs(b, t, ch, batch_size, lost)


def entry_thresholds(
    theta: np.ndarray, neurons: np.ndarray, batch_size: int, *, noise: bool, seed: int, entry_offset: int
) -> np.ndarray:
    """(batch_size, len(neurons)) effective threshold (Q12, relative to leak) of each neuron in each entry."""
    base = np.broadcast_to(theta[neurons], (batch_size, len(neurons)))
    if not noise or len(neurons) == 0:
        return np.ascontiguousarray(base, dtype=np.int64)
    entries = np.arange(batch_size, dtype=np.int64) + entry_offset
    return base + threshold_noise(seed, entries, neurons)


def assemble_spikes(
    batch: np.ndarray, time: np.ndarray, neuron: np.ndarray, batch_size: int, record: str, max_events: int
) -> tuple[SpikeEvents, int]:
    """Emitted spikes in any order (as the reference returns them) -> the recorded :class:`SpikeEvents` (first per
    neuron and entry, or all), sorted by (batch, time, label) and cut to ``max_events``; returns (events,
    dropped)."""
    order = np.lexsort((neuron, time, batch))
    b, t, n = batch[order], time[order], neuron[order]
    if record == "first" and len(b):
        _, first = np.unique(b * 512 + n, return_index=True)
        keep = np.sort(first)
        b, t, n = b[keep], t[keep], n[keep]
    return spikes_from_columns(entry_counts(b, batch_size), t.astype(np.uint32), n.astype(np.uint16), batch_size,
                               max_events)


def spikes_from_columns(
    counts: np.ndarray, time: np.ndarray, neuron: np.ndarray, batch_size: int, max_events: int
) -> tuple[SpikeEvents, int]:
    """Recorded spikes as sorted columns (per entry uint32, ticks uint32, neuron ids uint16; as the engine returns
    them) -> :class:`SpikeEvents` cut to the first ``max_events`` events in (batch, time, label) order; returns
    (events, dropped)."""
    dropped = max(0, len(time) - max_events)
    if dropped:
        # the first max_events events: whole entries, then part of one, then none
        ends = np.minimum(np.cumsum(counts, dtype=np.int64), max_events)
        counts = np.diff(ends, prepend=0).astype(np.uint32)
        time, neuron = time[:max_events], neuron[:max_events]
    # from_columns keeps the columns (the gRPC server encodes them as they are) and builds records only if someone
    # reads them. They are fresh arrays made read-only here, so it keeps them without a copy.
    columns = (counts, time, neuron)
    for c in columns:
        c.flags.writeable = False
    return SpikeEvents.from_columns(*columns, batch_size), dropped
