"""Axonal delays on the chip's route delay lines: compile (codes on every route of a source, the quantisation
report), read back, update as a diff, and the model-time <-> code pair (property-tested)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firstspike.compiler import Layer, Network, compile
from firstspike.compiler.quantize import delay_codes, delay_values
from firstspike.compiler.readback import effective_delays
from firstspike.compiler.report import resource_report, resources
from firstspike.hal import chip

TAU = 752.0  # the realised tau_s of the nominal 750 ticks (code 188 x 4)


def layered(seed: int = 0, bias: float | None = 0.9, n_hidden: int = 20) -> Network:
    rng = np.random.default_rng(seed)
    rows0, rows1 = 4 + (bias is not None), n_hidden + (bias is not None)
    return Network(4, (
        Layer(rng.normal(1.5, 0.8, (rows0, n_hidden)), bias_time=bias, delays=rng.uniform(0, 3, rows0), name="h"),
        Layer(rng.normal(0.5, 0.8, (rows1, 3)), bias_time=bias, delays=rng.uniform(0, 3, rows1), name="o"),
    ))


def test_every_route_of_a_source_carries_its_delay_code() -> None:
    net = layered()
    c = compile(net)
    assert c.tau_s_ticks == TAU
    routes = c.config.routing.routes
    for L, src in zip(net.layers, c.layers, strict=True):
        want = np.rint(L.delays * TAU / chip.DELAY_STEP_TICKS)
        for i in range(src.n_sources):
            mine = (routes["kind"] == src.source_kind[i]) & (routes["source"] == src.source_id[i])
            mine &= routes["address"] == src.address
            assert mine.sum() >= 2  # an excitatory and an inhibitory row at least
            assert set(routes["delay"][mine].tolist()) == {int(want[i])}
    # read back from the configuration alone, two ways
    realised = [np.rint(L.delays * TAU / 8) * 8 / TAU for L in net.layers]
    for a, b, w in zip(c.realised_delays(), effective_delays(c.config, c), realised, strict=True):
        assert np.array_equal(a, w) and np.array_equal(b, w)


def test_the_report_states_the_quantisation_error_in_ticks_and_tau() -> None:
    net = layered(1)
    c = compile(net)
    reps = c.delay_quantization
    assert [r.layer for r in reps] == [0, 1] and [r.name for r in reps] == ["h", "o"]
    for r, L in zip(reps, net.layers, strict=True):
        err = np.abs(L.delays * TAU - np.rint(L.delays * TAU / 8) * 8)
        assert r.max_abs_error_ticks == pytest.approx(err.max()) and r.max_abs_error_ticks <= 4.0
        assert r.mean_abs_error_ticks == pytest.approx(err.mean())
        assert r.max_abs_error == pytest.approx(err.max() / TAU) and r.mean_abs_error == pytest.approx(err.mean() / TAU)
        assert r.clipped == 0 and r.step == 8 / TAU
    assert resources(c)["delays"][1]["n_delays"] == 21
    text = resource_report(c)
    assert "axonal delays on the route delay lines" in text and "max err (ticks)" in text
    # the artifact keeps the report
    assert type(c).from_bytes(c.to_bytes()).delay_quantization == reps


def test_a_bias_delay_is_its_bias_channels_delay_line() -> None:
    c = compile(layered(2))
    routes = c.config.routing.routes
    for L, src in zip(layered(2).layers, c.layers, strict=True):
        bias = (routes["kind"] == 0) & (routes["source"] == src.bias_channel)
        assert set(routes["delay"][bias].tolist()) == {int(np.rint(L.delays[-1] * TAU / 8))}


def test_delay_free_networks_compile_to_the_bytes_they_had() -> None:
    plain = Network(4, (Layer(np.ones((5, 6)), bias_time=0.9), Layer(np.ones((7, 3)), bias_time=0.9)))
    zeros = plain.with_delays([np.zeros(5), np.zeros(7)])
    a, b = compile(plain), compile(zeros)
    assert not a.config.routing.delayed and a.delay_quantization == ()
    assert a.config.to_bytes() == b.config.to_bytes()  # delay-free: encoding version 1, as before delay lines
    assert a.to_bytes() == compile(plain).to_bytes()


def test_updating_delays_sends_only_the_changed_routes() -> None:
    net = layered(3)
    c = compile(net)
    d = [L.delays.copy() for L in net.layers]
    d[1][4] += 0.5  # one source of the output layer: its routes (both rows) change
    cfgs = c.update_stage_parameters(None, d)
    diff = c.config.diff(cfgs[0])
    assert diff.changed_entries() == int(np.count_nonzero(cfgs[0].routing.routes["delay"]
                                                           != c.config.routing.routes["delay"])) >= 2
    assert np.array_equal(cfgs[0].synapses.weights, c.config.synapses.weights)
    assert c.realised_delays(cfgs)[1][4] == pytest.approx(np.rint(d[1][4] * TAU / 8) * 8 / TAU)
    # weights and delays together, on top of a base; None keeps the base's delays
    w = [L.weights * 1.1 for L in net.layers]
    both = c.update_stage_parameters(w, None, base=cfgs)
    assert np.array_equal(both[0].routing.routes["delay"], cfgs[0].routing.routes["delay"])
    assert not np.array_equal(both[0].synapses.weights, cfgs[0].synapses.weights)
    with pytest.raises(ValueError, match="NaN or inf"):
        c.update_stage_parameters(None, [d[0], np.full(21, np.nan)])
    with pytest.raises(ValueError, match=r"expected \(21,\)"):
        c.update_stage_parameters(None, [d[0], np.zeros(5)])


@settings(max_examples=200, deadline=None)
@given(st.floats(0.0, chip.DELAY_MAX_TICKS / 400.0), st.floats(400.0, 4000.0))
def test_delay_code_round_trip(d: float, tau: float) -> None:
    """Model delay -> code -> model delay is off by at most half a step; code -> delay -> code is exact."""
    code = delay_codes(np.array([d]), tau)
    assert 0 <= int(code[0]) <= chip.DELAY_CODE_MAX
    back = delay_values(code, tau)[0]
    if d * tau <= chip.DELAY_MAX_TICKS:
        assert abs(back - d) * tau <= chip.DELAY_STEP_TICKS / 2 + 1e-9
    assert delay_codes(delay_values(code, tau), tau)[0] == code[0]


@given(st.integers(0, chip.DELAY_CODE_MAX), st.floats(400.0, 4000.0))
def test_codes_survive_the_model_unit_round_trip(k: int, tau: float) -> None:
    assert int(delay_codes(delay_values(np.array([k]), tau), tau)[0]) == k
