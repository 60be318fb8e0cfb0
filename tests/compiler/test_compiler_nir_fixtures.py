"""NIR files written by snnTorch 1.0.0, Rockpool 3.1.0 and Norse 1.1.0 (tests/compiler/nir_fixtures, made by
scripts/make_nir_fixtures.py) compile under their convention, are refused under every other one with a hint naming
the right ``--nir-convention``, and behave like the exporter's own simulation of the same inputs.

Tolerance. The exporters simulate in discrete steps of h = dt / tau_syn (model time per step, recorded with each
fixture). A spike enters the current and the membrane in the step it arrives, and the discrete membrane at step k
equals the continuous one about a step later, so each layer fires up to one step early (h per layer); snnTorch and
Norse decay by 1 - h per step instead of e^-h, a time scale shorter by ~h/2, i.e. up to ~2 h by the outputs' spike
times (< 4 tau_syn). Bound: 2 h per layer, 4 h for these two-layer networks (0.04 tau_syn at 100 steps per tau_syn,
0.4 at the coarse fixture's 10). Measured, the continuous network with the imported float weights fires 0.6 - 3.6 h
later on average. At 100 steps per tau_syn, scaling the weights by 0.95 or 1.05 fails the bound (or changes which
outputs fire): the comparison can tell a wrong unit factor. On the chip two more errors add up (triangle
inequality): the 6-bit weights (the measured mean |dt| between the TTFS math with quantised and with float weights)
and tick rounding (< 4 ticks over two layers, as tests/compiler/test_compiler_on_sim.py bounds it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from firstspike.compiler import DesignRuleErrors, NIRImportError
from firstspike.compiler.nir_conventions import CONVENTIONS
from firstspike.compiler.nir_io import compile_nir, import_nir
from firstspike.runtime import open as open_device
from firstspike.runtime import ttfs
from firstspike.runtime.commands import compile as compile_cmd
from firstspike.runtime.session import Session

FIXTURES = Path(__file__).parent / "nir_fixtures"
REFERENCE = json.loads((FIXTURES / "reference.json").read_text())["fixtures"]
NAMES = sorted(REFERENCE)


def _times(rows: list[list[float | None]]) -> np.ndarray:
    return np.array([[np.inf if v is None else v for v in row] for row in rows], dtype=np.float64)


def _ttfs_forward(weights: list[np.ndarray], ratios: list[float], inputs: np.ndarray) -> np.ndarray:
    t = torch.tensor(inputs)
    for w, r in zip(weights, ratios, strict=True):
        t = ttfs.first_spike_times(t, torch.tensor(w), tau_ratio=int(r))
    return t.numpy()


def _compare(got: np.ndarray, ref: np.ndarray) -> tuple[bool, float, int]:
    """(same neurons fire, mean |dt| over neurons firing in both, how many)."""
    same = bool(np.array_equal(np.isinf(got), np.isinf(ref)))
    both = np.isfinite(got) & np.isfinite(ref)
    return same, float(np.mean(np.abs(got[both] - ref[both]))) if both.any() else 0.0, int(both.sum())


def _discretisation_bound(entry: dict) -> float:
    return 2.0 * (len(entry["sizes"]) - 1) * entry["tau_syn_per_step"]


@pytest.mark.parametrize("name", NAMES)
def test_fixture_imports_under_its_convention_and_is_recognised(name):
    e = REFERENCE[name]
    imp = import_nir(FIXTURES / e["file"], convention=e["convention"])
    assert imp.detection.convention == e["convention"]
    assert imp.hint == ""  # read as what it is: nothing to hint at
    assert imp.network.sizes == tuple(e["sizes"])
    expected_ratio = 2.0 if "ratio2" in name else 1.0
    assert [L.tau_ratio for L in imp.network.layers] == [expected_ratio] * (len(e["sizes"]) - 1)


@pytest.mark.parametrize(("name", "wrong"), [(n, c) for n in NAMES for c in CONVENTIONS
                                               if c != REFERENCE[n]["convention"]])
def test_fixture_is_refused_under_a_wrong_convention_with_the_hint(name, wrong):
    e = REFERENCE[name]
    hint = f"--nir-convention {e['convention']}"
    with pytest.raises((NIRImportError, DesignRuleErrors)) as ei:
        compile_nir(FIXTURES / e["file"], convention=wrong)
    if isinstance(ei.value, DesignRuleErrors):  # the literal reading: weights far out of range
        lines = [str(v) for v in ei.value.violations if v.rule == "FS-R006 weight-range"]
        assert lines and all(hint in line and "\n" not in line for line in lines), str(ei.value)
    else:
        assert hint in str(ei.value) and "\n" not in str(ei.value)


@pytest.mark.parametrize("name", NAMES)
def test_imported_network_fires_like_the_exporters_own_simulation(name):
    """The unit mapping alone: the continuous TTFS math with the imported float weights against the exporter."""
    e = REFERENCE[name]
    net = import_nir(FIXTURES / e["file"], convention=e["convention"]).network
    inputs, ref = _times(e["input_times"]), _times(e["layer_times"][-1])
    got = _ttfs_forward(list(net.weights), [L.tau_ratio for L in net.layers], inputs)
    same, mean_dt, n = _compare(got, ref)
    bound = _discretisation_bound(e)
    msg = f"{name}: mean |dt| = {mean_dt:.4f} tau_syn over {n} output spikes (bound {bound:.3f}); same firing: {same}"
    assert same and n >= 5 and mean_dt <= bound, msg
    if e["tau_syn_per_step"] > 0.011:
        return  # at 10 steps per tau_syn the discretisation error is as large as a 10 % weight error
    for scale in (0.95, 1.05):  # at 100 steps per tau_syn a unit factor 5 % off is out: the comparison has teeth
        off = _ttfs_forward([w * scale for w in net.weights], [L.tau_ratio for L in net.layers], inputs)
        same_off, mean_off, _ = _compare(off, ref)
        assert not same_off or mean_off > bound, f"{name}: weights x{scale} still within the bound ({mean_off:.4f})"


@pytest.fixture(scope="module")
def chip_runs() -> dict[str, tuple[np.ndarray, float, float]]:
    """Per fixture: (output times on sim://?ideal=1, tau_s_ticks, mean |dt| of quantised vs float TTFS math)."""
    out = {}
    for name in NAMES:
        e = REFERENCE[name]
        compiled = compile_nir(FIXTURES / e["file"], convention=e["convention"])
        inputs = _times(e["input_times"])
        with Session(open_device("sim://?ideal=1"), compiled) as session:
            chip = session.run(inputs).output_times
        ratios = [L.tau_ratio for L in compiled.source.layers]
        exact = _ttfs_forward(list(compiled.source.weights), ratios, inputs)
        quant = _ttfs_forward(compiled.quantize(compiled.source.weights), ratios, inputs)
        out[name] = (chip, compiled.tau_s_ticks, _compare(quant, exact)[1])
    return out


@pytest.mark.parametrize("name", NAMES)
def test_compiled_fixture_on_the_ideal_chip_matches_the_exporter(name, chip_runs):
    e = REFERENCE[name]
    chip, tau_s_ticks, quantisation = chip_runs[name]
    same, mean_dt, n = _compare(chip, _times(e["layer_times"][-1]))
    bound = _discretisation_bound(e) + quantisation + 4.0 / tau_s_ticks
    msg = (f"{name} on sim://?ideal=1: mean |dt| = {mean_dt:.4f} tau_syn over {n} output spikes (bound {bound:.3f} ="
           f" discretisation {_discretisation_bound(e):.3f} + 6-bit weights {quantisation:.4f} + ticks); same firing:"
           f" {same}")
    assert same and n >= 5 and mean_dt <= bound, msg


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="firstspike")
    compile_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["compile", *argv])
    return args.func(args)


def test_cli_compiles_a_fixture_with_its_convention_and_names_it_otherwise(tmp_path, capsys):
    src = str(FIXTURES / REFERENCE["snntorch_4_20_3"]["file"])
    assert _cli(src, "-o", str(tmp_path / "a.fsn"), "--nir-convention", "snntorch") == 0
    assert (tmp_path / "a.fsn").is_file()
    capsys.readouterr()
    assert _cli(src, "-o", str(tmp_path / "b.fsn")) == 2  # the literal reading: weights 1e6 x too large
    err = capsys.readouterr().err
    fs_r006 = [line for line in err.splitlines() if "FS-R006 weight-range" in line]
    assert fs_r006 and all("--nir-convention snntorch" in line for line in fs_r006), err
    assert _cli(src, "-o", str(tmp_path / "c.fsn"), "--nir-convention", "NORSE") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--nir-convention snntorch" in err, err
    assert not (tmp_path / "b.fsn").exists() and not (tmp_path / "c.fsn").exists()
