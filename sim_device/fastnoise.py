"""The per-run temporal noise of :mod:`firstspike.sim_device.analog` as compiled loops (same bits, tested).

Why: the numpy versions run ~60 whole-array operations per call (12 five-bit uniforms per normal variate, five
SplitMix64 rounds per key), which is cheap for a large batch but costs ~0.5 ms for one yin-yang sample, about
as much as the simulation of that sample. One pass per value, in registers, costs microseconds either way.
Without numba these fall back to the numpy versions.
"""

from __future__ import annotations

import numpy as np

from firstspike.sim_device import analog
from firstspike.sim_device._sorting import sort_nearly

try:
    from numba import config, njit

    HAVE_NUMBA = not config.DISABLE_JIT  # type: ignore[attr-defined]  # without the JIT the numpy versions are faster
except ImportError:  # pragma: no cover - exercised only where numba is missing
    HAVE_NUMBA = False

_MASK = (1 << 64) - 1


def _mixed_tag(tag: int) -> np.uint64:
    """``mix(tag)``: the first step of :func:`firstspike.sim_device.analog.hash64`, computed once per tag."""
    return np.uint64(int(analog.hash64(tag)))


if HAVE_NUMBA:
    _M1 = np.uint64(0xBF58476D1CE4E5B9)
    _M2 = np.uint64(0x94D049BB133111EB)
    _GOLDEN = np.uint64(0x9E3779B97F4A7C15)

    @njit(cache=True, inline="always")
    def _mix(x):  # pragma: no cover - compiled
        x = x ^ (x >> np.uint64(30))
        x = x * _M1
        x = x ^ (x >> np.uint64(27))
        x = x * _M2
        return x ^ (x >> np.uint64(31))

    @njit(cache=True, inline="always")
    def _step(h, k):  # pragma: no cover - compiled
        return _mix(h ^ _mix(k + _GOLDEN))

    @njit(cache=True, inline="always")
    def _normal(h):  # pragma: no cover - compiled
        s = np.int64(0)
        for i in range(12):
            s += np.int64((h >> np.uint64(5 * i)) & np.uint64(31)) * 2 + 1
        return s - 384

    @njit(cache=True, inline="always")
    def _loss_jitter(sl, sj, e, c, k, loss_shift, sigma):  # pragma: no cover - compiled
        """Whether input event (entry ``e``, channel ``c``, occurrence ``k``) is lost, and its jitter in ticks;
        ``sl``, ``sj``: the loss and jitter tags stepped with the run seed."""
        lost = (_step(_step(_step(sl, e), c), k) >> np.uint64(loss_shift)) == np.uint64(0)
        return lost, (_normal(_step(_step(_step(sj, e), c), k)) * sigma + 32) >> 6

    @njit(cache=True)
    def _threshold_kernel(h0, seed, entries, neurons, sigma):  # pragma: no cover - compiled
        out = np.empty((entries.shape[0], neurons.shape[0]), dtype=np.int64)
        hs = _step(h0, np.uint64(seed))
        for a in range(entries.shape[0]):
            he = _step(hs, np.uint64(entries[a]))
            for b in range(neurons.shape[0]):
                out[a, b] = (_normal(_step(he, np.uint64(neurons[b]))) * sigma) >> 6
        return out

    @njit(cache=True)
    def _input_kernel(h_loss, h_jit, seed, entries, channels, occ, loss_shift, sigma):  # pragma: no cover
        n = entries.shape[0]
        lost = np.empty(n, dtype=np.bool_)
        jitter = np.empty(n, dtype=np.int64)
        sl = _step(h_loss, np.uint64(seed))
        sj = _step(h_jit, np.uint64(seed))
        for i in range(n):
            lost[i], jitter[i] = _loss_jitter(
                sl, sj, np.uint64(entries[i]), np.uint64(channels[i]), np.uint64(occ[i]), loss_shift, sigma
            )
        return lost, jitter


    @njit(cache=True)
    def _noisy_inputs_kernel(
        h_loss, h_jit, seed, b, t, ch, entry_offset, duration, loss_shift, sigma
    ):  # pragma: no cover - compiled
        n = b.shape[0]
        ob = np.empty(n, dtype=np.int64)
        key = np.empty(n, dtype=np.int64)
        seen = np.zeros(1024, dtype=np.int64)  # occurrences so far of each channel in the current entry
        sl = _step(h_loss, np.uint64(seed))
        sj = _step(h_jit, np.uint64(seed))
        m = 0
        lo = 0
        while lo < n:
            hi = lo
            while hi < n and b[hi] == b[lo]:
                hi += 1
            e = np.uint64(b[lo] + entry_offset)
            first = m
            for i in range(lo, hi):
                k = np.uint64(seen[ch[i]])
                seen[ch[i]] += 1
                lost, jitter = _loss_jitter(sl, sj, e, np.uint64(ch[i]), k, loss_shift, sigma)
                if lost:
                    continue
                ti = min(max(t[i] + jitter, 0), duration - 1)
                ob[m] = b[lo]
                key[m] = (ti << 10) | ch[i]
                m += 1
            for i in range(lo, hi):
                seen[ch[i]] = 0
            sort_nearly(key[first:m])  # jitter moves events by a few ticks: the entry is almost sorted
            lo = hi
        return ob[:m], key[:m] >> 10, key[:m] & 1023, n - m


def noisy_inputs(
    seed: int, batch: np.ndarray, time: np.ndarray, channel: np.ndarray, entry_offset: int, duration: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | None:
    """Input loss and jitter applied to events sorted by (batch, time, channel), re-sorted the same way: (batch,
    time, channel, lost) in one compiled pass, the same as the numpy path of
    :func:`firstspike.sim_device.batch.prepare_inputs` (tested). ``None`` without numba (the caller runs the numpy
    path)."""
    if not HAVE_NUMBA:  # pragma: no cover
        return None
    b, t, ch, lost = _noisy_inputs_kernel(
        _mixed_tag(analog.TAG_NOISE_LOSS), _mixed_tag(analog.TAG_NOISE_JITTER), np.uint64(int(seed) & _MASK),
        np.ascontiguousarray(batch, dtype=np.int64), np.ascontiguousarray(time, dtype=np.int64),
        np.ascontiguousarray(channel, dtype=np.int64), int(entry_offset), int(duration), 64 - analog.LOSS_BITS,
        analog.SIGMA_JITTER_TICKS,
    )
    return b, t, ch, int(lost)


def threshold_noise(seed: int, entries: np.ndarray, neurons: np.ndarray) -> np.ndarray:
    """Same as :func:`firstspike.sim_device.analog.threshold_noise` (Q12 LSB, (len(entries), len(neurons)))."""
    if not HAVE_NUMBA:  # pragma: no cover
        return analog.threshold_noise(seed, entries, neurons)
    e = np.ascontiguousarray(entries, dtype=np.int64)
    n = np.ascontiguousarray(neurons, dtype=np.int64)
    return _threshold_kernel(_mixed_tag(analog.TAG_NOISE_THRESHOLD), np.uint64(int(seed) & _MASK), e, n,
                             analog.SIGMA_NOISE_THRESHOLD_Q12)


def input_noise(
    seed: int, entries: np.ndarray, channels: np.ndarray, occurrence: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Same as :func:`firstspike.sim_device.analog.input_noise`: per input event (lost, jitter in ticks)."""
    if not HAVE_NUMBA:  # pragma: no cover
        return analog.input_noise(seed, entries, channels, occurrence)
    return _input_kernel(
        _mixed_tag(analog.TAG_NOISE_LOSS), _mixed_tag(analog.TAG_NOISE_JITTER), np.uint64(int(seed) & _MASK),
        np.ascontiguousarray(entries, dtype=np.int64), np.ascontiguousarray(channels, dtype=np.int64),
        np.ascontiguousarray(occurrence, dtype=np.int64), 64 - analog.LOSS_BITS, analog.SIGMA_JITTER_TICKS,
    )
