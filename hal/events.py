"""Spike events and time units.

Events are structured numpy arrays of :data:`SPIKE_DTYPE`: ``batch`` (which batch entry), ``time`` (ticks
of the 125 MHz clock since the start of that entry) and ``label`` (for inputs: the input channel; for
recorded output: the neuron id). Times are integers in ticks; model time is ``ticks / tau_s_ticks``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firstspike.hal import chip
from firstspike.hal.errors import FieldRangeError

SPIKE_DTYPE = np.dtype([("batch", "<u4"), ("time", "<u4"), ("label", "<u2")])


def ticks_to_seconds(ticks: np.ndarray | float) -> np.ndarray | float:
    """Ticks of the 125 MHz clock -> seconds of chip (wall) time."""
    if isinstance(ticks, np.ndarray):
        return np.asarray(ticks, dtype=np.float64) * chip.TICK_S
    return ticks * chip.TICK_S


def seconds_to_ticks(seconds: float) -> int:
    """Seconds of chip time -> nearest whole tick."""
    return round(seconds * chip.CLOCK_HZ)


def ticks_to_model(ticks: np.ndarray, tau_s_ticks: float) -> np.ndarray:
    """Ticks -> model time (units of tau_s), float64."""
    return np.asarray(ticks, dtype=np.float64) / float(tau_s_ticks)


def model_to_ticks(t: np.ndarray, tau_s_ticks: float) -> np.ndarray:
    """Model time (units of tau_s) -> nearest tick as int64; ``inf``/NaN (no spike) map to -1."""
    t = np.asarray(t, dtype=np.float64)
    out = np.full(t.shape, -1, dtype=np.int64)
    ok = np.isfinite(t)
    out[ok] = np.rint(t[ok] * float(tau_s_ticks)).astype(np.int64)
    return out


def _sort_key(events: np.ndarray) -> np.ndarray:
    """One packed uint64 key per event, ``batch << 42 | time << 10 | label``, which orders exactly like
    (batch, time, label) for the values :func:`_check_events` lets through (batch < 2**16 <= 2**22, time a u32,
    label < 2**10); checking the order on it costs about half of three strided field comparisons."""
    key = events["batch"].astype(np.uint64) << np.uint64(42)
    key |= events["time"].astype(np.uint64) << np.uint64(10)
    key |= events["label"]
    return key


def _ascending(key: np.ndarray) -> bool:
    """True if the keys never decrease."""
    return not bool(np.any(key[1:] < key[:-1]))


def _sorted(events: np.ndarray) -> np.ndarray:
    """A sorted copy (skipping the O(n log n) sort when the input is already sorted, as devices return it)."""
    # Copy records as opaque bytes: ~100x faster than numpy's field-by-field structured copy.
    raw = events.view(np.dtype((np.void, events.dtype.itemsize)))
    key = _sort_key(events)
    if _ascending(key):
        return raw.copy().view(events.dtype)
    # one stable sort of the packed key: the order of a lexsort over the three fields, 4-6x faster (5 000 events)
    return raw[np.argsort(key, kind="stable")].view(events.dtype)


def _check_events(events: np.ndarray, batch_size: int, label_max: int, what: str) -> np.ndarray:
    if not isinstance(events, np.ndarray) or events.dtype != SPIKE_DTYPE or events.ndim != 1:
        raise TypeError(f"{what}: events must be a 1-d numpy array of SPIKE_DTYPE {SPIKE_DTYPE.descr}")
    if batch_size < 0 or batch_size > chip.MAX_BATCH:
        raise FieldRangeError(f"{what}.batch_size", batch_size, 0, chip.MAX_BATCH)
    if len(events):
        b = int(events["batch"].max())
        if b >= batch_size:
            raise FieldRangeError(f"{what}.batch", b, 0, batch_size - 1, "batch index beyond batch_size")
        lab = int(events["label"].max())
        if lab > label_max:
            raise FieldRangeError(f"{what}.label", lab, 0, label_max)
    return events


def _frozen(a: np.ndarray) -> np.ndarray:
    """``a`` if nobody can write to it (e.g. a view of received bytes), else a read-only copy."""
    if a.flags.writeable or (a.base is not None and not isinstance(a.base, bytes)):
        a = a.copy()
        a.flags.writeable = False
    return a


def entry_counts(batch: np.ndarray, batch_size: int) -> np.ndarray:
    """Events per batch entry (``uint32``, length ``batch_size``) from the events' batch indices, sorted."""
    bounds = np.searchsorted(batch, np.arange(batch_size + 1, dtype=np.uint32))
    return np.diff(bounds).astype(np.uint32)


def _record_columns(events: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted records -> (events per entry ``uint32``, times ``uint32``, labels ``uint16``) as fresh arrays."""
    return entry_counts(events["batch"], batch_size), events["time"].copy(), events["label"].copy()


def _check_columns(
    counts: np.ndarray, times: np.ndarray, labels: np.ndarray, batch_size: int, label_max: int, what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Validate columns; returns them as arrays and whether they are already (time, label)-sorted per entry.

    Checks every length and range; raises a ValueError naming the column."""
    counts, times, labels = np.asarray(counts), np.asarray(times), np.asarray(labels)
    if batch_size < 0 or batch_size > chip.MAX_BATCH:
        raise FieldRangeError(f"{what}.batch_size", batch_size, 0, chip.MAX_BATCH)
    for name, col in (("entry_counts", counts), ("times", times), ("labels", labels)):
        if col.ndim != 1 or col.dtype.kind != "u" or col.dtype.itemsize > 4:
            raise TypeError(f"{what}.{name}: must be a 1-d array of unsigned integers of <= 32 bits, got {col.dtype}")
    if len(counts) != batch_size:
        raise ValueError(f"{what}.entry_counts: {len(counts)} counts for {batch_size} batch entries (one per entry)")
    n = int(counts.sum(dtype=np.uint64))
    if len(times) != n or len(labels) != n:
        raise ValueError(
            f"{what}: entry_counts sum to {n} events but there are {len(times)} times and {len(labels)} labels"
        )
    if n and int(labels.max()) > label_max:
        raise FieldRangeError(f"{what}.label", int(labels.max()), 0, label_max)
    if n < 2:
        return counts, times, labels, True
    # Batch order holds by construction; (time, label) order within each entry is checked pairwise, ignored where a
    # new entry starts. Comparing the columns as they are keeps the temporaries to a byte per event (a packed
    # uint64 key was 8 bytes per event, ~2 MB fresh memory per MNIST16 batch, and 10x slower when it page-faults).
    later_t, earlier_t = times[1:], times[:-1]
    descending = later_t < earlier_t
    descending |= (later_t == earlier_t) & (labels[1:] < labels[:-1])
    starts = np.cumsum(counts[:-1], dtype=np.int64)
    starts = starts[(starts > 0) & (starts < n)]
    descending[starts - 1] = False
    return counts, times, labels, not bool(descending.any())


def _columns_to_records(counts: np.ndarray, times: np.ndarray, labels: np.ndarray, batch_size: int) -> np.ndarray:
    """Validated columns -> events of SPIKE_DTYPE in entry order (a fresh array)."""
    events = np.empty(len(times), dtype=SPIKE_DTYPE)
    events["batch"] = np.repeat(np.arange(batch_size, dtype=np.uint32), counts)
    events["time"] = times
    events["label"] = labels
    return events


@dataclass(frozen=True, eq=False)
class InputSpikes:
    """Input spike trains for a batch: events on input channels, sorted by (batch, time, label).

    ``batch_size`` is explicit because a batch entry may carry no events at all.
    """

    events: np.ndarray
    batch_size: int

    def __post_init__(self) -> None:
        ev = _check_events(self.events, self.batch_size, chip.N_INPUT_CHANNELS - 1, "InputSpikes")
        object.__setattr__(self, "events", _sorted(ev))

    @classmethod
    def from_times(cls, times_ticks: np.ndarray, channels: np.ndarray | None = None) -> InputSpikes:
        """Build from a (batch, n) array of spike times in ticks; negative, NaN or inf means no spike.

        ``channels[j]`` is the input channel of column ``j`` (default ``0..n-1``).
        """
        t = np.asarray(times_ticks, dtype=np.float64)
        if t.ndim != 2:
            raise ValueError(f"times_ticks must be 2-d (batch, n), got shape {t.shape}")
        b, n = t.shape
        ch = np.arange(n) if channels is None else np.asarray(channels, dtype=np.int64)
        if ch.shape != (n,):
            raise ValueError(f"channels must have shape ({n},), got {ch.shape}")
        if n and (ch.min() < 0 or ch.max() >= chip.N_INPUT_CHANNELS):
            bad = int(ch.min() if ch.min() < 0 else ch.max())
            raise FieldRangeError("InputSpikes.channel", bad, 0, chip.N_INPUT_CHANNELS - 1)
        ok = np.isfinite(t) & (t >= 0)
        if ok.any() and t[ok].max() > np.iinfo(np.uint32).max:
            raise FieldRangeError("InputSpikes.time", float(t[ok].max()), 0, np.iinfo(np.uint32).max)
        bi, ji = np.nonzero(ok)
        ev = np.empty(len(bi), dtype=SPIKE_DTYPE)
        ev["batch"] = bi
        ev["time"] = np.rint(t[bi, ji]).astype(np.uint32)
        ev["label"] = ch[ji]
        return cls(ev, b)

    @classmethod
    def from_columns(cls, counts: np.ndarray, times: np.ndarray, labels: np.ndarray, batch_size: int) -> InputSpikes:
        """Build from columns: events per entry (``counts``, one per entry), then every event's time in ticks
        and input channel, entry by entry (any order within an entry)."""
        cols = _check_columns(counts, times, labels, batch_size, chip.N_INPUT_CHANNELS - 1, "InputSpikes")
        return cls(_columns_to_records(*cols[:3], batch_size), batch_size)

    def to_columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(events per entry ``uint32``, times in ticks ``uint32``, channels ``uint16``), entry by entry."""
        return _record_columns(self.events, self.batch_size)

    def __len__(self) -> int:
        return len(self.events)

    def split(self, sizes: list[int]) -> list[InputSpikes]:
        """Split into consecutive sub-batches of the given sizes (batch indices renumbered from 0)."""
        if sum(sizes) != self.batch_size or any(s < 0 for s in sizes):
            raise ValueError(f"sizes {sizes} must be non-negative and sum to batch_size {self.batch_size}")
        out = []
        start = 0
        bounds = np.searchsorted(self.events["batch"], np.cumsum([0, *sizes]))
        for k, s in enumerate(sizes):
            ev = self.events[bounds[k] : bounds[k + 1]].copy()
            ev["batch"] -= start
            out.append(InputSpikes(ev, s))
            start += s
        return out


class SpikeEvents:
    """Recorded spikes of a run: ``label`` is the neuron id (0..511), sorted by (batch, time, label).

    A value: immutable, compared by content. It holds the spikes as records (:attr:`events`) or as columns
    (:meth:`to_columns`, what devices and the wire produce) and builds either form from the other on first use,
    so a result that is only passed on (a server's encoder, a device pool's join) never pays for records.
    """

    __slots__ = ("_columns", "_events", "batch_size")
    batch_size: int
    _events: np.ndarray | None
    # (counts, times, labels), read-only, when built from columns (or once to_columns() has made them)
    _columns: tuple[np.ndarray, np.ndarray, np.ndarray] | None

    def __init__(self, events: np.ndarray, batch_size: int) -> None:
        ev = _sorted(_check_events(events, batch_size, chip.N_NEURONS - 1, "SpikeEvents"))  # a fresh copy
        ev.flags.writeable = False
        self._set(ev, None, batch_size)

    def _set(self, events: np.ndarray | None, columns: tuple | None, batch_size: int) -> None:
        object.__setattr__(self, "_events", events)
        object.__setattr__(self, "_columns", columns)
        object.__setattr__(self, "batch_size", int(batch_size))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"SpikeEvents is immutable; cannot set {name!r}")

    def __reduce__(self) -> tuple:
        return SpikeEvents, (self.events, self.batch_size)

    def __repr__(self) -> str:
        return f"SpikeEvents(batch_size={self.batch_size}, spikes={len(self)})"

    @classmethod
    def from_columns(cls, counts: np.ndarray, times: np.ndarray, labels: np.ndarray, batch_size: int) -> SpikeEvents:
        """Build from columns: spikes per entry (``counts``, one per entry), then every spike's time in ticks
        and neuron id, entry by entry. Columns already sorted within each entry (what devices send) are kept as
        they are, read-only (arrays nobody can write to as they are, others copied), and records are built only
        when :attr:`events` is first read; others are sorted into records now."""
        counts, times, labels, in_order = _check_columns(
            counts, times, labels, batch_size, chip.N_NEURONS - 1, "SpikeEvents"
        )
        if not in_order:
            return cls(_columns_to_records(counts, times, labels, batch_size), batch_size)
        out = object.__new__(cls)  # validated above: the columns' order and ranges are the invariants
        out._set(None, tuple(_frozen(c) for c in (counts, times, labels)), batch_size)
        return out

    @property
    def events(self) -> np.ndarray:
        """The spikes as records of :data:`SPIKE_DTYPE` (time in ticks), sorted by (batch, time, label); read-only
        (copy them to change them)."""
        ev = self._events
        if ev is None:
            assert self._columns is not None
            # Two threads may both build them here; either result is the same value.
            ev = _columns_to_records(*self._columns, self.batch_size)
            ev.flags.writeable = False
            object.__setattr__(self, "_events", ev)
        return ev

    def to_columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(spikes per entry ``uint32``, times in ticks (``uint32`` or narrower), neuron ids ``uint16``), entry
        by entry; read-only (they are shared with this container)."""
        cols = self._columns
        if cols is None:
            c, t, lab = _record_columns(self.events, self.batch_size)
            cols = (_frozen(c), _frozen(t), _frozen(lab))
            object.__setattr__(self, "_columns", cols)
        counts, times, labels = cols
        return counts.astype(np.uint32, copy=False), times, labels.astype(np.uint16, copy=False)

    def __len__(self) -> int:
        if self._events is not None:
            return len(self._events)
        assert self._columns is not None
        return len(self._columns[1])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SpikeEvents) or self.batch_size != other.batch_size or len(self) != len(other):
            return False
        if self._columns is not None and other._columns is not None:
            return all(np.array_equal(a, b) for a, b in zip(self._columns, other._columns, strict=True))
        return np.array_equal(self.events, other.events)

    __hash__ = None  # type: ignore[assignment]  # mutable numpy contents; compared by value only

    def first_spike_ticks(self, neurons: np.ndarray | None = None) -> np.ndarray:
        """(batch, n) first spike time in ticks of each neuron in ``neurons`` (default all 512), -1 if silent."""
        nrn = np.arange(chip.N_NEURONS) if neurons is None else np.asarray(neurons, dtype=np.int64)
        lut = np.full(chip.N_NEURONS, -1, dtype=np.int64)
        lut[nrn] = np.arange(len(nrn))
        out = np.full((self.batch_size, len(nrn)), -1, dtype=np.int64)
        counts, times, labels = self.to_columns()
        c = lut[labels]
        b = np.repeat(np.arange(self.batch_size, dtype=np.int64), counts)
        t = times
        keep = c >= 0
        if not keep.all():  # spikes of other neurons
            b, c, t = b[keep], c[keep], t[keep]
        key = b * len(nrn) + c
        hit = np.zeros(out.size, dtype=np.bool_)
        hit[key] = True
        if np.count_nonzero(hit) < len(key):
            # All spikes recorded: events are time-sorted within an entry, so the first occurrence of each
            # (entry, neuron) is its first spike.
            _, first = np.unique(key, return_index=True)
            key, t = key[first], t[first]
        out.reshape(-1)[key] = t  # one flat index per spike: each (entry, neuron) once
        return out

    def first_spike_model_times(self, neurons: np.ndarray, tau_s_ticks: float) -> np.ndarray:
        """(batch, n) first spike times in model units (tau_s), ``inf`` for silent neurons."""
        ticks = self.first_spike_ticks(neurons)
        out = ticks.astype(np.float64) / float(tau_s_ticks)
        out[ticks < 0] = np.inf
        return out

    @staticmethod
    def concatenate(parts: list[SpikeEvents]) -> SpikeEvents:
        """Join results of consecutive sub-batches back into one (batch indices shifted)."""
        held = [p._columns for p in parts if p._columns is not None]
        if parts and len(held) == len(parts):
            # Columns need no batch shift: entry k of part j is simply the next entry.
            counts, times, labels = (np.concatenate(c) for c in zip(*held, strict=True))
            return SpikeEvents.from_columns(counts, times, labels, sum(p.batch_size for p in parts))
        offs = 0
        chunks = []
        for p in parts:
            ev = p.events.copy()
            ev["batch"] += offs
            chunks.append(ev)
            offs += p.batch_size
        ev = np.concatenate(chunks) if chunks else np.empty(0, SPIKE_DTYPE)
        return SpikeEvents(ev, offs)
