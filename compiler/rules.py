"""Design rules: small functions ``rule(network, options) -> list[DesignRuleViolation]``.

:func:`check` runs every rule in :data:`RULES` and raises :class:`~firstspike.compiler.errors.DesignRuleErrors`
carrying ALL errors at once (warnings, e.g. clipped weights, are returned instead). Each violation names
its rule id (``FS-Rnnn name``), where (network / stage / layer / neuron / option), the value and the limit.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from firstspike.compiler import quantize
from firstspike.compiler.errors import DesignRuleErrors, DesignRuleViolation
from firstspike.compiler.ir import Layer, Network
from firstspike.compiler.options import CompileOptions
from firstspike.compiler.placement import (
    MAX_FAN_IN,
    MAX_LAYERS_PER_STAGE,
    Architecture,
    is_merged,
    partition,
    stage_usage,
)
from firstspike.hal import calibration, chip

Rule = Callable[[Network, CompileOptions], list[DesignRuleViolation]]

SUPPORTED_TAU_RATIOS = (1.0, 2.0)

__all__ = ["RULES", "SUPPORTED_TAU_RATIOS", "Rule", "check", "run_rules"]


def _layer(k: int, layer: Layer) -> str:
    return f"layer {k} ({layer.name!r})" if layer.name else f"layer {k}"


def _stage(layers: list[int]) -> str:
    return f"stage of layers {layers[0]}..{layers[-1]}" if len(layers) > 1 else f"stage of layer {layers[0]}"


def total_neurons(net: Network, opt: CompileOptions) -> list[DesignRuleViolation]:
    """FS-R001: neuron circuits (merged columns count twice) per chip <= 512."""
    arch = Architecture.of(net)
    out = []
    for group in partition(arch, opt.allow_split):
        u = stage_usage(arch, group)
        if u.columns <= chip.N_NEURONS:
            continue
        if opt.allow_split:  # only a single layer can overflow a stage: layers are never split
            k = group[0]
            detail = "a layer is never split across chips" + (
                "; its fan-in needs merged columns (2 circuits per neuron)" if is_merged(arch.n_sources(k)) else ""
            )
            out.append(DesignRuleViolation("FS-R001 total-neurons", _layer(k, net.layers[k]), u.columns,
                                           chip.N_NEURONS, detail))
        else:
            parts = ", ".join(
                f"{k}: {arch.layers[k][1]}{' merged x2' if is_merged(arch.n_sources(k)) else ''}" for k in group
            )
            out.append(DesignRuleViolation("FS-R001 total-neurons", "network", u.columns, chip.N_NEURONS,
                                           f"neuron circuits per layer {{{parts}}}; splitting into stages is"
                                           " disabled (allow_split=False)"))
    return out


def fan_in(net: Network, opt: CompileOptions) -> list[DesignRuleViolation]:
    """FS-R002: signed inputs per neuron <= 256 (2 rows each; 256 rows per half, 2 halves when merged)."""
    return [
        DesignRuleViolation("FS-R002 fan-in", _layer(k, L), L.n_sources, MAX_FAN_IN,
                            f"{L.n_sources} signed inputs need {2 * L.n_sources} rows; a neuron sees"
                            f" {chip.ROWS_PER_HALF} rows per half, {2 * chip.ROWS_PER_HALF} with merged columns")
        for k, L in enumerate(net.layers)
        if L.n_sources > MAX_FAN_IN
    ]


def labels(net: Network, opt: CompileOptions) -> list[DesignRuleViolation]:
    """FS-R003: layers per chip <= 63, since each layer's sources share rows under their own 6-bit address."""
    arch = Architecture.of(net)
    return [
        DesignRuleViolation("FS-R003 labels", _stage(g), len(g), MAX_LAYERS_PER_STAGE,
                            "one synapse label per layer (label 63 is reserved for unused synapses)")
        for g in partition(arch, opt.allow_split)
        if len(g) > MAX_LAYERS_PER_STAGE
    ]


def input_channels(net: Network, opt: CompileOptions) -> list[DesignRuleViolation]:
    """FS-R004: input channels per chip (stage inputs + one per bias) <= 1024."""
    arch = Architecture.of(net)
    out = []
    for g in partition(arch, opt.allow_split):
        u = stage_usage(arch, g)
        if u.channels > chip.N_INPUT_CHANNELS:
            out.append(DesignRuleViolation("FS-R004 input-channels", _stage(g), u.channels, chip.N_INPUT_CHANNELS,
                                           "stage inputs plus one channel per bias spike"))
    return out


def finite_weights(net: Network, opt: CompileOptions) -> list[DesignRuleViolation]:
    """FS-R005: every weight is finite (no NaN or inf)."""
    out = []
    for k, L in enumerate(net.layers):
        bad = np.argwhere(~np.isfinite(L.weights))
        if len(bad):
            i, j = (int(x) for x in bad[0])
            out.append(DesignRuleViolation("FS-R005 finite-weights", f"{_layer(k, L)} weight[{i}, {j}]",
                                           float(L.weights[i, j]), "a finite number",
                                           f"{len(bad)} non-finite weight(s) in this layer"))
    return out


def weight_range(net: Network, opt: CompileOptions) -> list[DesignRuleViolation]:
    """FS-R006: weights are representable: max |w| <= 63 * largest step (error); with a fixed scale,
    weights beyond 63 steps are clipped (warning)."""
    out = []
    for k, L in enumerate(net.layers):
        w = L.weights[np.isfinite(L.weights)]
        max_abs = float(np.max(np.abs(w))) if w.size else 0.0
        scale = opt.layer_weight_scale(k)
        if scale is None:
            if max_abs > quantize.MAX_ABS_WEIGHT:
                out.append(DesignRuleViolation("FS-R006 weight-range", _layer(k, L), max_abs,
                                               round(quantize.MAX_ABS_WEIGHT, 6),
                                               "max |w| in model units (theta - E_l = 1); even the largest"
                                               " synaptic gain and smallest threshold-leak span cannot reach it"))
        else:
            try:
                q = quantize.choose_scale(max_abs, scale).q  # the realised step, as the report will use
            except ValueError:
                continue  # an unusable scale is FS-R013's to report
            n_clip = int(np.count_nonzero(np.rint(np.abs(w) / q) > chip.WEIGHT_MAX))
            if n_clip:
                limit = (chip.WEIGHT_MAX + 0.5) * q
                out.append(DesignRuleViolation("FS-R006 weight-range", _layer(k, L), max_abs, round(limit, 6),
                                               f"{n_clip} weight(s) clipped to {chip.WEIGHT_MAX} steps at the"
                                               f" fixed scale of {scale} steps per model unit",
                                               severity="warning"))
    return out


def _param_values(v: float | np.ndarray) -> np.ndarray:
    return np.atleast_1d(np.asarray(v, dtype=np.float64))


def tau_ratio(net: Network, opt: CompileOptions) -> list[DesignRuleViolation]:
    """FS-R007: tau_m / tau_s is 1 or 2 (what the TTFS spike-time math covers)."""
    out = []
    for k, L in enumerate(net.layers):
        vals = _param_values(L.tau_ratio)
        bad = np.flatnonzero(~np.isin(vals, SUPPORTED_TAU_RATIOS))
        if len(bad):
            where = _layer(k, L) + (f" neuron {int(bad[0])}" if vals.size > 1 else "")
            out.append(DesignRuleViolation("FS-R007 tau-ratio", where, float(vals[bad[0]]),
                                           "one of (1, 2)", "tau_m / tau_s"))
    return out


def uniform_parameters(net: Network, opt: CompileOptions) -> list[DesignRuleViolation]:
    """FS-R008: neuron parameters are uniform within a layer (one time-constant and reset setting each)."""
    out = []
    for k, L in enumerate(net.layers):
        for pname in ("tau_ratio", "v_reset"):
            v = getattr(L, pname)
            if isinstance(v, np.ndarray):  # the IR collapses uniform arrays to scalars
                j = int(np.flatnonzero(v != v[0])[0]) if np.any(v != v[0]) else 1
                out.append(DesignRuleViolation("FS-R008 uniform-parameters", f"{_layer(k, L)} neuron {j}",
                                               f"{pname}={float(v[j])}", f"{pname}={float(v[0])} (neuron 0)",
                                               "one value per layer"))
    return out


def bias_time(net: Network, opt: CompileOptions) -> list[DesignRuleViolation]:
    """FS-R009: a bias spike time is finite and >= 0 (model units)."""
    return [
        DesignRuleViolation("FS-R009 bias-time", _layer(k, L), L.bias_time, ">= 0 and finite",
                            "bias spike time in model units (tau_s)")
        for k, L in enumerate(net.layers)
        if L.bias_time is not None and not (math.isfinite(L.bias_time) and L.bias_time >= 0)
    ]


def reset_potential(net: Network, opt: CompileOptions) -> list[DesignRuleViolation]:
    """FS-R010: -1 <= v_reset < 1 (model units: E_l = 0, theta = 1): below threshold and representable."""
    out = []
    for k, L in enumerate(net.layers):
        vals = _param_values(L.v_reset)
        bad = np.flatnonzero(~((vals >= -1.0) & (vals < 1.0)))
        if len(bad):
            where = _layer(k, L) + (f" neuron {int(bad[0])}" if vals.size > 1 else "")
            out.append(DesignRuleViolation("FS-R010 reset-potential", where, float(vals[bad[0]]), "[-1, 1)",
                                           "reset below threshold (1) and no lower than E_l - theta"))
    return out


def _realised_tau_s_ticks(opt: CompileOptions) -> float | None:
    """tau_s in ticks as the chip realises the option (code x 4 ticks), or None if the option is unusable (FS-R012
    reports that)."""
    try:
        return float(calibration.tau_code_to_ticks(calibration.tau_ticks_to_code(opt.tau_s_ticks)))
    except (ValueError, OverflowError):
        return None


def max_delay(opt: CompileOptions) -> float | None:
    """The largest delay (model units, tau_s) a delay line holds at the compile's tau_s: 511 codes x 8 ticks, plus
    the half step that still rounds onto the last code. None if tau_s_ticks is unusable."""
    tau = _realised_tau_s_ticks(opt)
    return None if tau is None else (chip.DELAY_CODE_MAX + 0.5) * chip.DELAY_STEP_TICKS / tau


def delay_range(net: Network, opt: CompileOptions) -> list[DesignRuleViolation]:
    """FS-R011: every (axonal) delay is finite, >= 0 and within the delay lines' range: 0 .. 511 x 8 = 4088 ticks,
    in tau_s at the compile's (realised) tau_s."""
    tau = _realised_tau_s_ticks(opt)
    limit = max_delay(opt)
    if tau is None or limit is None:
        return []
    out = []
    for k, L in enumerate(net.layers):
        if L.delays is None or L.delay_kind != "axonal":
            continue
        d = L.delays
        bad = np.flatnonzero(~(np.isfinite(d) & (d >= 0) & (d <= limit)))
        if len(bad):
            i = int(bad[0])
            hi = chip.DELAY_MAX_TICKS / tau
            out.append(DesignRuleViolation(
                "FS-R011 delay-range", f"{_layer(k, L)} input {i}", float(d[i]), f"[0, {limit:.6g}]",
                f"delays in tau_s; the route delay lines hold 0..{chip.DELAY_MAX_TICKS} ticks ({chip.DELAY_BITS}-bit"
                f" code x {chip.DELAY_STEP_TICKS} ticks) = 0..{hi:.4g} tau_s at tau_s = {tau:g} ticks;"
                f" {len(bad)} delay(s) of this layer outside"))
    return out


def delay_kind(net: Network, opt: CompileOptions) -> list[DesignRuleViolation]:
    """FS-R014: only axonal delays (one per input row, i.e. per source): the chip has one delay line per route
    (source -> half, row), so a delay per connection (synaptic) or per neuron (dendritic) has no place."""
    out = []
    for k, L in enumerate(net.layers):
        if L.delays is None or L.delay_kind == "axonal" or not np.any(L.delays != 0):
            continue
        hint = ("one delay line per route serves every synapse of the source on that row"
                if L.delay_kind == "synaptic" else
                "a neuron's delay is not a route's; delaying all inputs of neuron j by d_j moves its spike by d_j,"
                " so it equals an axonal delay d_j on the next layer's input j with this layer's output times"
                " read d_j later")
        out.append(DesignRuleViolation("FS-R014 delay-kind", _layer(k, L), f"{L.delay_kind} delays",
                                       "axonal delays (one per input row)", hint))
    return out


def time_constants(net: Network, opt: CompileOptions) -> list[DesignRuleViolation]:
    """FS-R012: tau_s (option tau_s_ticks) and tau_m = ratio * tau_s have codes in [1, 1022]."""
    t = opt.tau_s_ticks
    lo, hi = calibration.TAU_TICKS_PER_CODE * 0.5, calibration.TAU_TICKS_PER_CODE * (chip.PARAM_MAX + 0.5)
    if not (math.isfinite(t) and lo <= t < hi):
        return [DesignRuleViolation("FS-R012 time-constant", "option tau_s_ticks", t, f"[{lo}, {hi})",
                                    f"time-constant codes 1..{chip.PARAM_MAX} x {calibration.TAU_TICKS_PER_CODE}"
                                    " ticks")]
    code = calibration.tau_ticks_to_code(t)
    out = []
    for k, L in enumerate(net.layers):
        r = _param_values(L.tau_ratio)
        r = r[np.isfinite(r) & (r > 0)]
        if r.size and round(code * float(r.max())) > chip.PARAM_MAX:
            out.append(DesignRuleViolation("FS-R012 time-constant", f"{_layer(k, L)} tau_mem code",
                                           round(code * float(r.max())), chip.PARAM_MAX,
                                           f"tau_s code {code} (tau_s_ticks={t}) x tau_ratio {float(r.max())}"))
    return out


def weight_scale(net: Network, opt: CompileOptions) -> list[DesignRuleViolation]:
    """FS-R013: a fixed weight scale (steps per model unit) is positive and its step is representable."""
    ws = opt.weight_scale
    out = []
    if isinstance(ws, tuple) and len(ws) != len(net.layers):
        out.append(DesignRuleViolation("FS-R013 weight-scale", "option weight_scale", f"{len(ws)} values",
                                       f"{len(net.layers)} values", "one scale (or None) per layer"))
    lo, hi = 1.0 / quantize.Q_MAX, 1.0 / quantize.Q_MIN
    for k, L in enumerate(net.layers):
        s = opt.layer_weight_scale(k)
        if s is not None and not (math.isfinite(s) and lo * (1 - 1e-9) <= s <= hi * (1 + 1e-9)):
            out.append(DesignRuleViolation("FS-R013 weight-scale", f"{_layer(k, L)} weight_scale", s,
                                           f"[{lo:.6g}, {hi:.6g}]", "digital steps per model weight unit"))
    return out


#: every design rule, in report order
RULES: tuple[Rule, ...] = (
    total_neurons,
    fan_in,
    labels,
    input_channels,
    finite_weights,
    weight_range,
    tau_ratio,
    uniform_parameters,
    bias_time,
    reset_potential,
    delay_range,
    time_constants,
    weight_scale,
    delay_kind,
)


def run_rules(network: Network, options: CompileOptions | None = None) -> list[DesignRuleViolation]:
    """Every violation (errors and warnings) of every rule, in rule order."""
    opt = options or CompileOptions()
    out: list[DesignRuleViolation] = []
    for rule in RULES:
        out.extend(rule(network, opt))
    return out


def check(network: Network, options: CompileOptions | None = None) -> list[DesignRuleViolation]:
    """Run all rules; raise DesignRuleErrors listing every error, else return the warnings."""
    found = run_rules(network, options)
    errors = [v for v in found if v.severity == "error"]
    if errors:
        raise DesignRuleErrors(errors)
    return [v for v in found if v.severity == "warning"]
