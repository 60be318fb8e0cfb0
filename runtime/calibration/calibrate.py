"""``calibrate(device)``: measure every neuron of a chip and choose the codes that make it hit the targets.

Round 1 measures the chip with the nominal codes (the "before"); its transfer estimate gives calibrated codes; each
further round measures with the codes the estimate so far gives and refines it (the rounds' estimates are averaged:
the transfer is linear in the code, so each round is an independent measurement of the same slope or offset); then
every synapse is measured with the final neuron codes (:mod:`.synapses`: its factor relative to its neuron's gain,
which the compiler divides out of each weight); a last verification round measures the final codes (the "after").
Only the hal ``Backend`` interface is used, so the same code calibrates ``sim://``, a ``grpc://`` device server or
hardware.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable

import numpy as np

from firstspike.hal import chip
from firstspike.hal.backend import Backend
from firstspike.hal.neuron_calibration import NeuronCalibration
from firstspike.runtime.calibration.measure import Round, measure_round
from firstspike.runtime.calibration.protocol import ROWS
from firstspike.runtime.calibration.result import CalibrationResult
from firstspike.runtime.calibration.search import combine, metrics
from firstspike.runtime.calibration.synapses import measure_synapses

__all__ = ["DEFAULT_ROUNDS", "calibrate"]

DEFAULT_ROUNDS = 2
#: share of a round's time per stage (for the progress fraction)
_STAGE_WEIGHT = {"membrane": 0.35, "leak": 0.15, "inhibitory": 0.25, "excitatory": 0.25, "synapses": 1.0}
_STAGE_START = {"membrane": 0.0, "leak": 0.35, "inhibitory": 0.5, "excitatory": 0.75, "synapses": 0.0}

Progress = Callable[[str, float], None]


def _first_row(k: int) -> int:
    """Round k's synaptic stimuli use rows ``64 k .. 64 k + 63`` (mod 256): the rounds' gain estimates average over
    different synapses, and the verification checks the gains on rows the estimate has not seen (up to 3 rounds)."""
    return (k * ROWS) % chip.ROWS_PER_HALF


def calibrate(device: Backend | str, *, rounds: int = DEFAULT_ROUNDS, verify: bool = True, seed: int = 0,
              synapses: bool = True, progress: Progress | None = None) -> CalibrationResult:
    """Calibrate all 512 neurons of ``device`` (a Backend or a URI, opened and closed here).

    ``rounds``: measurement rounds that feed the estimate (>= 1; the first uses the nominal codes, each further one
    the codes estimated so far). ``verify``: one more round with the final codes, reported as ``after``.
    ``synapses``: also measure every synapse's factor (stored in the calibration; the compiler divides it out of
    each weight). ``seed``: noise seed of the first round (round k uses ``seed + k``, the synapse measurement
    ``seed + rounds + 1``). ``progress(message, fraction)`` is called
    as the work advances (fraction of the whole calibration, 0..1). The device is left configured with the last
    calibration stimulus.
    """
    if int(rounds) < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if isinstance(device, str):
        from firstspike.runtime.devices import open as open_device

        dev = open_device(device)
        try:
            return calibrate(dev, rounds=rounds, verify=verify, seed=seed, synapses=synapses, progress=progress)
        finally:
            dev.close()
    from firstspike.runtime.devices import DevicePool

    if isinstance(device, DevicePool):
        raise ValueError("a device pool spreads runs over several chips; calibrate each chip on its own URI")
    t0 = time.perf_counter()
    info = device.info()
    total = int(rounds) + int(bool(verify)) + int(bool(synapses))
    report: Progress = progress or (lambda message, fraction: None)

    def stage_progress(k: int, label: str) -> Callable[[str, float], None]:
        def cb(stage: str, fraction: float) -> None:
            within = _STAGE_START.get(stage, 0.0) + _STAGE_WEIGHT.get(stage, 0.0) * float(fraction)
            report(f"{label}: {stage}", min((k + within) / total, 1.0))
        return cb

    cal = NeuronCalibration.nominal(info.model, info.serial, info.version)
    measured: list[Round] = []
    failed = np.zeros(len(cal.tau_mem), dtype=bool)
    for k in range(int(rounds)):
        label = "round 1 (nominal codes)" if k == 0 else f"round {k + 1} (calibrated codes)"
        measured.append(measure_round(device, cal, seed=seed + k, first_row=_first_row(k),
                                      progress=stage_progress(k, label)))
        cal, failed = combine(measured, info.model, info.serial, info.version)
    before = metrics(measured[0])
    after: dict[str, np.ndarray] = {}
    counters = [r.counters for r in measured]
    synapse_meta: dict[str, object] = {"measured": False}
    if synapses:
        # each neuron's gain estimate averaged the rows its rounds used: the synapse factors average to 1 there
        reference = np.unique(np.concatenate([np.arange(_first_row(k), _first_row(k) + ROWS)
                                              for k in range(int(rounds))]))
        syn = measure_synapses(device, cal, seed=seed + int(rounds) + 1, reference_rows=reference,
                               progress=stage_progress(int(rounds), "synapses"))
        counters.append(syn.counters)
        measured_ok = np.isfinite(syn.gain)
        cal = cal.with_synapses(np.where(measured_ok, syn.gain, 1.0))
        synapse_meta = {"measured": True, "residual_rel": syn.residual_rel, "dropped_entries": syn.dropped,
                        "unmeasured": int((~measured_ok).sum()), "reference_rows": len(reference),
                        "spread_rel": float(np.std(syn.gain[measured_ok]))}
    if verify:
        k = int(rounds) + int(bool(synapses))
        check = measure_round(device, cal, seed=seed + int(rounds), first_row=_first_row(int(rounds)),
                              progress=stage_progress(k, "verify"))
        after = metrics(check)
        counters.append(check.counters)
    report("done", 1.0)
    meta = {
        "created_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "duration_s": round(time.perf_counter() - t0, 3),
        "rounds": int(rounds),
        "verified": bool(verify),
        "seed": int(seed),
        "membrane_readout": int(info.membrane_readout),
        "synapses": synapse_meta,
        "device_calls": {
            "configure": sum(c.configures for c in counters),
            "run": sum(c.runs for c in counters),
            "entries": sum(c.entries for c in counters),
            "spikes": sum(c.spikes for c in counters),
        },
    }
    return CalibrationResult(cal, before, after, failed, meta)
