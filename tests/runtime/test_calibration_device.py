"""Calibration of the simulated chip, checked against its ground truth.

The calibration itself reads nothing of the simulator (it only configures and runs a Backend); these tests may:
they compute each neuron's effective parameters from ``sim_device``'s mismatch tables for the calibrated codes.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from firstspike.compiler import Layer, Network, compile
from firstspike.hal.backend import Backend, DeviceInfo, RunOptions, RunResult
from firstspike.hal.config import ChipConfig, ConfigDiff
from firstspike.hal.events import InputSpikes, SpikeEvents
from firstspike.hal.neuron_calibration import NeuronCalibration
from firstspike.runtime import open as open_device
from firstspike.runtime.calibration import CalibrationFileError, CalibrationResult, calibrate, calibrated
from firstspike.runtime.calibration.measure import measure_round
from firstspike.runtime.calibration.noise import calibrated_noise_model, device_noise_model
from firstspike.runtime.calibration.search import combine
from firstspike.runtime.calibration.synapses import measure_synapses
from firstspike.runtime.session import Session, SessionError
from firstspike.sim_device.analog import Mismatch
from firstspike.sim_device.model import build_model

SERIAL = 3


@pytest.fixture(scope="module")
def result() -> CalibrationResult:
    return calibrate(f"sim://?serial={SERIAL}")


def _effective(cal: NeuronCalibration, serial: int, **codes: int) -> dict[str, np.ndarray]:
    """Ground truth: per neuron the effective parameters of nominal ``codes`` after ``cal``, relative errors."""
    c = dict(leak=300, threshold=600, reset=300, tau=188, gain=64)
    c.update(codes)
    cfg = ChipConfig()
    cfg.neurons.set(slice(None), leak=c["leak"], threshold=c["threshold"], reset=c["reset"], tau_mem=c["tau"],
                    tau_syn_exc=c["tau"], tau_syn_inh=c["tau"], gain_exc=c["gain"], gain_inh=c["gain"], enabled=1)
    mm = Mismatch.for_serial(serial)
    cfg = cal.apply_to_config(cfg)
    m = build_model(cfg, mm)
    v = cfg.neurons.values
    span = m.theta / 4096
    n = np.arange(512)
    f_syn = (mm.synapse[n // 256, :, n % 256] / 65536).mean(axis=1)  # the mean over all 256 rows
    nominal_q = c["gain"] / 64 / (c["threshold"] - c["leak"])
    return {
        "tau_mem": m.tau_q[0] / 256 / (4 * c["tau"]) - 1,
        "tau_syn_exc": m.tau_q[1] / 256 / (4 * c["tau"]) - 1,
        "tau_syn_inh": m.tau_q[2] / 256 / (4 * c["tau"]) - 1,
        "span": span - (c["threshold"] - c["leak"]),
        "reset": m.reset / 4096 - (c["reset"] - c["leak"]),
        "leak": m.leak / 4096 - c["leak"],
        "gain_exc": v["gain_exc"] * mm.gain_e / 65536 * f_syn / 64 / span / nominal_q - 1,
        "gain_inh": v["gain_inh"] * mm.gain_i / 65536 * f_syn / 64 / span / nominal_q - 1,
    }


@pytest.mark.parametrize("codes", [dict(), dict(threshold=520, gain=700), dict(threshold=400, tau=150, gain=300)])
def test_calibrated_neurons_hit_the_targets_on_the_ground_truth(result, codes):
    after = _effective(result.calibration, SERIAL, **codes)
    before = _effective(NeuronCalibration.nominal("firstspike-sim", SERIAL, "1.1"), SERIAL, **codes)
    for tau in ("tau_mem", "tau_syn_exc", "tau_syn_inh"):
        assert np.abs(after[tau]).max() < 0.01, (tau, np.abs(after[tau]).max())  # the 1 %
        assert np.abs(before[tau]).max() > 0.05  # it was not so before
    assert np.abs(after["span"]).max() < 1.0  # threshold - leak within 1 LSB
    assert np.abs(before["span"]).max() > 4.0
    assert np.abs(after["reset"]).max() < 1.0 and np.abs(after["leak"]).max() < 1.0
    # the gains are measured over 64 rows per round (128 of 256 in all): the rows not seen and the gain code's
    # resolution remain
    for g in ("gain_exc", "gain_inh"):
        assert np.abs(after[g]).max() < 0.04 and np.std(after[g]) < 0.4 * np.std(before[g]), g


def test_the_result_reports_before_and_after_and_survives_its_file(result, tmp_path):
    s = result.summary()
    assert s["failed_neurons"] == 0
    for name in ("tau_mem", "tau_syn_exc", "tau_syn_inh"):
        assert s["after"][name]["max_rel_error"] < 0.01 < s["before"][name]["max_rel_error"]
    assert s["after"]["span_error"]["max_abs_error"] < 1.0 < s["before"]["span_error"]["max_abs_error"]
    assert result.meta["device_calls"]["run"] > 0 and result.meta["rounds"] == 2
    path = tmp_path / "chip.fscal"
    result.save(path)
    back = CalibrationResult.load(path)
    assert back.to_bytes() == result.to_bytes() and back.calibration == result.calibration
    with open_device(f"sim://?serial={SERIAL + 1}") as other:
        from firstspike.runtime.calibration import load_calibration

        with pytest.raises(CalibrationFileError, match=f"serial {SERIAL}.*serial {SERIAL + 1}"):
            load_calibration(path, other.info())


def test_a_calibrated_network_runs_on_its_chip_only_and_trains_on_top(result):
    rng = np.random.default_rng(0)
    net = Network(n_inputs=4, layers=(Layer(rng.normal(1.2, 0.6, (5, 30)), bias_time=0.9),
                                      Layer(rng.normal(0.6, 0.6, (31, 3)), bias_time=0.9)))
    compiled = compile(net, weight_scale=30.0)
    chip_net = calibrated(compiled, result)
    x = rng.uniform(0.15, 2.0, (20, 4))
    with open_device(f"sim://?serial={SERIAL}") as dev:
        session = Session(dev, chip_net)
        out = session.run(x, seed=1)
        assert np.isfinite(out.output_times).any()
        diff = session.update_weights([L.weights * 1.05 for L in net.layers])
        assert diff is not None and set(diff.patches) == {"synapses.weights"} and not diff.replaced
        assert np.array_equal(session.stage_configs[0].neurons.values["tau_mem"],
                              chip_net.config.neurons.values["tau_mem"])
    with open_device(f"sim://?serial={SERIAL + 1}") as other, pytest.raises(SessionError, match="serial 3"):
        Session(other, chip_net)


def test_the_calibrated_noise_model_keeps_only_what_calibration_cannot_fix(result):
    with open_device(f"sim://?serial={SERIAL}") as dev:
        published = device_noise_model(dev)
    assert published is not None and published.tau_fixed_rel == pytest.approx(0.03, rel=1e-3)
    left = calibrated_noise_model(published, result)
    assert left.tau_fixed_rel < 0.005 and left.gain_fixed_rel < 0.015
    assert left.threshold_fixed_lsb < 0.5 and left.leak_fixed_lsb == 0
    # the synapses are corrected: what remains is the factors' measurement error (~0.2 %, against 5 %)
    assert result.synapse_residual_rel is not None
    assert left.synapse_fixed_rel == result.synapse_residual_rel < 0.005
    plain = CalibrationResult(result.calibration.without_synapses(), result.before, result.after, result.failed,
                              result.meta)
    assert calibrated_noise_model(published, plain).synapse_fixed_rel == published.synapse_fixed_rel
    assert left.threshold_trial_lsb == published.threshold_trial_lsb
    assert left.input_jitter_ticks == published.input_jitter_ticks


class _DeadNeuron(Backend):
    """sim:// with neuron 7 silent and its membrane unreadable (a broken neuron on silicon)."""

    scheme = "sim"

    def __init__(self, inner: Backend, readout: int) -> None:
        self.inner = inner
        self.readout = readout

    def info(self) -> DeviceInfo:
        return replace(self.inner.info(), membrane_readout=self.readout)

    def configure(self, config: ChipConfig | ConfigDiff) -> None:
        self.inner.configure(config)

    def run(self, inputs: InputSpikes, options: RunOptions) -> RunResult:
        res = self.inner.run(inputs, options)
        ev = res.spikes.events
        spikes = SpikeEvents(ev[ev["label"] != 7], res.spikes.batch_size)
        return RunResult(spikes, res.dropped, res.membrane, res.stats)

    def close(self) -> None:
        self.inner.close()


def test_a_dead_neuron_and_a_device_without_readout():
    dev = _DeadNeuron(open_device("sim://?serial=4"), readout=0)
    with dev:
        info = dev.info()
        r = measure_round(dev, NeuronCalibration.nominal(info.model, info.serial, info.version), seed=3)
        syn = measure_synapses(dev, NeuronCalibration.nominal(info.model, info.serial, info.version), seed=3)
    assert np.isnan(r.leak).all()  # no readout: no absolute leak
    assert np.isnan(r.membrane.tau_m[:, 7]).all() and np.isnan(r.excitatory.fit.tau[7])
    assert np.isnan(syn.gain[0, :, 7]).all() and np.isfinite(syn.gain[0, :, 8]).all()
    assert np.isfinite(syn.gain).sum() == 511 * 256
    cal, failed = combine([r], info.model, info.serial, info.version)
    assert failed[7] and failed.sum() == 1
    assert cal.tau_mem[7] == 1.0 and cal.threshold[7] == 0.0 and (cal.leak == 0).all()
    truth = _effective(cal, 4)
    others = np.arange(512) != 7
    assert np.abs(truth["tau_mem"][others]).max() < 0.01 and np.abs(truth["span"][others]).max() < 1.0


def test_fit_evaluate_and_deploy_take_the_chips_calibration(result, tmp_path, capsys):
    """The one loop, evaluate and the commands apply a calibration (file or result) on its chip, refuse another's."""
    import json

    import torch

    import firstspike as fs
    from firstspike.runtime.cli import main
    from firstspike.runtime.training.presets import build_network, get_task

    cal_file = tmp_path / "chip3.fscal"
    result.save(cal_file)
    data = fs.load_dataset("yinyang", "train", size=300)
    val = fs.load_dataset("yinyang", "val", size=100)
    model = build_network(get_task("yinyang"), torch.Generator().manual_seed(0))
    with open_device(f"sim://?serial={SERIAL}") as chip:
        h = fs.fit(model, data, val, epochs=1, device=chip, calibration=cal_file, progress=False, log=lambda _: None)
        assert h.device is not None and h.device["calibration"] == result.calibration.identity
        assert h.val is not None  # measured with the validation noise seed, 1
        assert fs.evaluate(model, val, device=chip, calibration=result, seed=1).loss == h.val.loss
        calibrated_ev = fs.evaluate(model, val, device=chip, calibration=result)
        plain_ev = fs.evaluate(model, val, device=chip, calibration=False)
    assert calibrated_ev.loss != plain_ev.loss  # the codes differ, so the chip's answers do
    model.save(tmp_path / "model.pt")
    capsys.readouterr()
    assert main(["deploy", str(tmp_path / "model.pt"), "--device", f"sim://?serial={SERIAL}", "--split", "val",
                 "--size", "100", "--calibration", str(cal_file), "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["calibration"] == result.calibration.identity and out["accuracy"] == calibrated_ev.accuracy
    assert out["loss"] == calibrated_ev.loss
    rc = main(["deploy", str(tmp_path / "model.pt"), "--device", f"sim://?serial={SERIAL + 1}", "--size", "10",
               "--calibration", str(cal_file), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "serial" in err and len(err.strip().splitlines()) == 1


def _true_synapse_factors(serial: int, reference_rows: np.ndarray) -> np.ndarray:
    """Ground truth: each synapse's factor relative to its neuron's mean over the reference rows."""
    t = Mismatch.for_serial(serial).synapse / 65536.0
    return t / t[:, reference_rows, :].mean(axis=1, keepdims=True)


def test_measured_synapse_factors_match_the_ground_truth(result):
    meas = result.calibration.synapse
    assert meas is not None and result.version == 2
    syn = result.meta["synapses"]
    assert syn["measured"] and syn["unmeasured"] == 0 and syn["reference_rows"] == 128
    true = _true_synapse_factors(SERIAL, np.arange(128))  # the rows of the two rounds' gain estimate
    before = np.log(true)
    residual = np.log(meas / true)
    assert before.std() > 0.045  # 5 % per synapse
    assert residual.std() < 0.004 and np.abs(residual).max() < 0.025, (residual.std(), np.abs(residual).max())
    assert abs(residual.mean()) < 0.001
    # the published residual (the repeats' scatter) is the real one to within a third
    assert 0.67 < result.synapse_residual_rel / residual.std() < 1.5


def test_a_synapse_calibrated_network_realises_its_weights_on_the_ground_truth(result):
    """End to end: compiled weights of 40..55 steps (rounding < 1.3 %), calibrated with and without the synapse
    factors; the model weight each synapse realises on the chip (jump / threshold span, from the simulator's own
    model) against the float weight."""
    rng = np.random.default_rng(1)
    w = rng.choice([-1.0, 1.0], (40, 60)) * rng.uniform(1.35, 1.8, (40, 60))
    net = Network(n_inputs=40, layers=(Layer(w),))
    compiled = compile(net, weight_scale=30.0)
    mm = Mismatch.for_serial(SERIAL)
    errors = {}
    for name, cal in (("synapses", result.calibration), ("neurons", result.calibration.without_synapses())):
        chip_net = calibrated(compiled, cal)
        layer = chip_net.layers[0]
        m = build_model(chip_net.config, mm)
        exc, inh = layer.synapse_indices
        jump = m.jump.reshape(-1).astype(np.float64)
        realised = np.where(w < 0, -jump[inh], jump[exc]) / m.theta[layer.neuron_ids][None, :]
        errors[name] = realised / w - 1
    assert np.abs(errors["synapses"].mean()) < 0.005
    assert errors["synapses"].std() < 0.012 and np.abs(errors["synapses"]).max() < 0.05, errors["synapses"].std()
    assert errors["neurons"].std() > 0.045  # the synapses' 5 % remain without the factors
