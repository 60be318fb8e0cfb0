"""How frameworks write NIR's CubaLIF, and the reading ("convention") that maps each one to model units.

NIR's text: ``tau_syn dI/dt = -I + w_in S``, ``tau_mem dv/dt = v_leak - v + r I`` with S a sum of Dirac deltas,
so one input spike through Linear weight W makes I jump by ``w_in W / tau_syn``. The exporters do not write it
that way; each one's discrete dynamics (read from its source, see docs/compiler.md) give another jump:

=========  =========================================================  ========================================
reading    what one spike of weight W does, per the exporter's code    model weight per NIR weight
=========  =========================================================  ========================================
nir        I jumps by w_in W / tau_syn (NIR's Dirac delta)             w_in r / (tau_syn unit_v)
snntorch   syn += W each step dt, mem = beta mem + syn; the file        w_in r dt / (tau_syn unit_v), dt = 1e-4 s
           holds w_in = tau_syn/dt, r = tau_mem/dt with dt = 1e-4 s     (= r / unit_v for snnTorch's own files)
rockpool   isyn += W; vmem = e^(-dt/tau_mem) vmem + isyn each step;     w_in tau_mem / (dt unit_v), dt/tau_mem =
           the file holds r = tau_mem e^(-dt/tau_mem)/dt, w_in = 1      W0(1/r) (Lambert W: dt recovered from r)
norse      i += W; forward Euler of tau_mem dv/dt = v_leak - v + i;     w_in r / unit_v
           the file holds r = 1, w_in = 1, tau = dt/tau_inv
=========  =========================================================  ========================================

unit_v = v_threshold - v_leak. In every reading the time unit is the file's tau_syn (for Norse's files that is
dt * tau_syn, a scale the TTFS model never needs: only tau_mem / tau_syn and delays in units of tau_syn matter).

Each non-literal reading also checks that the file has its exporter's pattern (and refuses it otherwise), and
:func:`detect` says which exporter a file looks like, so that a wrong choice is refused with the right hint.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from firstspike.compiler.errors import DesignRuleErrors, DesignRuleViolation

#: the readings, the literal one first (the default)
CONVENTIONS: tuple[str, ...] = ("nir", "snntorch", "rockpool", "norse")
#: the time step snnTorch's NIR export assumes (a constant in snntorch/export_nir.py, not written to the file)
SNNTORCH_DT = 1e-4
#: relative tolerance of tau_mem / tau_syn against 1 or 2: a float32 file carries ~6e-8 relative per value
RATIO_RTOL = 1e-6
#: relative tolerance of an exporter's pattern (float32 values computed from float32 parameters)
PATTERN_RTOL = 1e-5
#: Rockpool's reading needs at least two steps per tau_mem (dt / tau_mem <= 1/2) to stand for a continuous neuron
ROCKPOOL_MAX_STEP = 0.5
#: an import whose weight factor lies outside [1/FAR, FAR] gets the --nir-convention hint on FS-R006
FAR = 10.0

_WEIGHT_RULE = "FS-R006 weight-range"
_WHO = {"nir": "firstspike", "snntorch": "snnTorch", "rockpool": "Rockpool", "norse": "Norse"}

__all__ = [
    "CONVENTIONS",
    "PATTERN_RTOL",
    "RATIO_RTOL",
    "SNNTORCH_DT",
    "CubaLIFParams",
    "Detection",
    "detect",
    "lambertw0",
    "parse_convention",
    "pattern_mismatch",
    "ratio_tolerance",
    "rockpool_dt",
    "unit_factor",
    "weight_hint",
    "with_hint",
]


def parse_convention(value: object) -> str:
    """A convention name from user input (case and surrounding blanks ignored); ValueError names the allowed ones."""
    if isinstance(value, str):
        name = value.strip().lower()
        if name in CONVENTIONS:
            return name
    raise ValueError(f"unknown NIR convention {value!r}; choose one of {', '.join(CONVENTIONS)}")


@dataclass(frozen=True)
class CubaLIFParams:
    """One CubaLIF node as read from a file: time constants (the file's units), voltages, per-neuron r and w_in."""

    node: str
    tau_syn: float
    tau_mem: float
    v_leak: float
    v_threshold: float
    r: np.ndarray
    w_in: np.ndarray

    @property
    def unit_v(self) -> float:
        return self.v_threshold - self.v_leak


def _close(a: np.ndarray | float, b: np.ndarray | float, rtol: float) -> bool:
    return bool(np.all(np.abs(np.asarray(a) - np.asarray(b)) <= rtol * np.abs(np.asarray(b))))


def lambertw0(z: np.ndarray) -> np.ndarray:
    """Principal branch W0(z) for z > 0 (Halley's iteration, float64; converges to ~1e-15 relative)."""
    z = np.asarray(z, dtype=np.float64)
    big = np.log(np.maximum(z, np.e))
    w = np.where(z > np.e, big - np.log(big), np.log1p(z))  # close to W0 on (0, inf): Halley converges from there
    for _ in range(50):
        ew = np.exp(w)
        f = w * ew - z
        step = f / (ew * (w + 1) - (w + 2) * f / (2 * w + 2))
        w = w - step
        if np.all(np.abs(step) <= 1e-15 * np.maximum(np.abs(w), 1e-300)):
            break
    return w


def rockpool_dt(p: CubaLIFParams) -> np.ndarray:
    """The time step (file units) per neuron that Rockpool's ``r = tau_mem e^(-dt/tau_mem) / dt`` implies."""
    return p.tau_mem * lambertw0(1.0 / p.r)


def unit_factor(convention: str, p: CubaLIFParams) -> np.ndarray:
    """Model weight per NIR Linear weight, per neuron, under ``convention`` (see the module docstring)."""
    if convention == "nir":
        return p.w_in * p.r / (p.tau_syn * p.unit_v)
    if convention == "snntorch":
        return p.w_in * p.r * SNNTORCH_DT / (p.tau_syn * p.unit_v)
    if convention == "rockpool":
        return p.w_in / (lambertw0(1.0 / p.r) * p.unit_v)
    if convention == "norse":
        return p.w_in * p.r / p.unit_v
    raise ValueError(f"unknown NIR convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")


def pattern_mismatch(convention: str, p: CubaLIFParams) -> str | None:
    """Why ``p`` is not what the exporter behind ``convention`` writes, or None if it is (always None for nir)."""
    if convention == "snntorch":
        if not _close(p.w_in * SNNTORCH_DT, p.tau_syn, PATTERN_RTOL):
            return (f"w_in = {_fmt(p.w_in)}, but snnTorch's export writes w_in = tau_syn/dt ="
                    f" {p.tau_syn / SNNTORCH_DT:.6g} (dt = {SNNTORCH_DT:g} s)")
        if not _close(p.r * SNNTORCH_DT, p.tau_mem, PATTERN_RTOL):
            return (f"r = {_fmt(p.r)}, but snnTorch's export writes r = tau_mem/dt = {p.tau_mem / SNNTORCH_DT:.6g}"
                    f" (dt = {SNNTORCH_DT:g} s)")
    elif convention == "rockpool":
        x = lambertw0(1.0 / p.r)  # dt / tau_mem
        if np.any(x > ROCKPOOL_MAX_STEP):
            return (f"r = {_fmt(p.r)} implies a Rockpool time step dt = {float(np.max(x)):.3g} tau_mem (r = tau_mem"
                    f" e^(-dt/tau_mem)/dt); a discrete neuron stands for a continuous one only with dt <="
                    f" {ROCKPOOL_MAX_STEP} tau_mem")
        dt = x * p.tau_mem
        if not _close(dt, dt[0], PATTERN_RTOL):
            return f"r implies different Rockpool time steps ({_fmt(dt)}); one module has one dt"
    elif convention == "norse":
        if not _close(p.r, 1.0, PATTERN_RTOL):
            return f"r = {_fmt(p.r)}, but Norse's export writes r = 1"
    elif convention != "nir":
        raise ValueError(f"unknown NIR convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    return None


def ratio_tolerance(convention: str, p: CubaLIFParams) -> float:
    """Relative tolerance of tau_mem / tau_syn against the supported ratios.

    Float32 values carry ~6e-8 relative each, so 1e-6 everywhere; snnTorch derives tau = dt / (1 - alpha) from a
    float32 decay factor, whose rounding (2^-24) is amplified by tau/dt in tau: that error is added.
    """
    if convention == "snntorch":
        return RATIO_RTOL + 2.0**-23 * (p.tau_syn + p.tau_mem) / SNNTORCH_DT
    return RATIO_RTOL


def _fmt(a: np.ndarray | float) -> str:
    v = np.unique(np.asarray(a, dtype=np.float64).reshape(-1))
    return f"{v[0]:.6g}" if v.size == 1 else f"{v[0]:.6g}..{v[-1]:.6g} ({v.size} values)"


def _round_step(dt: float) -> bool:
    """A 'round' time step (1, 2, 2.5 or 5 x 10^k within float32 precision): what people choose for dt."""
    if not (math.isfinite(dt) and dt > 0):
        return False
    m = dt / 10.0 ** math.floor(math.log10(dt))
    return any(abs(m - c) <= PATTERN_RTOL * c for c in (1.0, 2.0, 2.5, 5.0, 10.0))


@dataclass(frozen=True)
class Detection:
    """Which reading a file looks like (``convention``, None if it says too little) and the evidence, one phrase."""

    convention: str | None
    evidence: str = ""

    def hint(self) -> str:
        """'this file looks like an export of X (evidence): read it with --nir-convention X', or ''."""
        if self.convention is None:
            return ""
        return (f"this file looks like an export of {_WHO[self.convention]} ({self.evidence}): read it with"
                f" --nir-convention {self.convention} (convention={self.convention!r} in Python)")


def detect(lifs: Sequence[CubaLIFParams], affine_biases: Iterable[np.ndarray | None], names: Iterable[str],
           firstspike_metadata: bool) -> Detection:
    """Say which exporter wrote a graph, from what it carries.

    ``lifs``: every CubaLIF; ``affine_biases``: per weight node its Affine bias (None for a Linear); ``names``: all
    node names; ``firstspike_metadata``: a ``firstspike.*`` metadata key is present. Only specific evidence
    counts: firstspike's metadata; snnTorch's w_in = tau_syn/1e-4 s and r = tau_mem/1e-4 s; Norse's r = 1, w_in = 1
    and bias-free Linear layers written as Affine with a zero bias; Rockpool's module names (``*_LIFTorch``) or its
    r = tau_mem e^(-dt/tau_mem)/dt with one round dt for every neuron and w_in = 1.
    """
    if firstspike_metadata:
        return Detection("nir", "firstspike metadata")
    if not lifs:
        return Detection(None)
    if all(pattern_mismatch("snntorch", p) is None for p in lifs):
        return Detection("snntorch", f"w_in = tau_syn/dt and r = tau_mem/dt with dt = {SNNTORCH_DT:g} s in every"
                                     " CubaLIF")
    biases = list(affine_biases)
    unit_in = all(_close(p.w_in, 1.0, PATTERN_RTOL) for p in lifs)
    if (unit_in and all(pattern_mismatch("norse", p) is None for p in lifs) and biases
            and all(b is not None and not np.any(b) for b in biases)):
        return Detection("norse", "r = 1, w_in = 1 and every Linear an Affine with a zero bias")
    if unit_in and all(pattern_mismatch("rockpool", p) is None for p in lifs):
        dts = np.concatenate([rockpool_dt(p) for p in lifs])
        if any("LIFTorch" in n for n in names):
            return Detection("rockpool", "Rockpool module names (LIFTorch)")
        if _close(dts, dts[0], PATTERN_RTOL) and _round_step(float(dts[0])):
            return Detection("rockpool", f"r = tau_mem e^(-dt/tau_mem)/dt with dt = {float(dts[0]):.6g} in every"
                                         " CubaLIF, w_in = 1")
    return Detection(None)


def weight_hint(convention: str, detection: Detection, factors: Sequence[np.ndarray]) -> str:
    """The --nir-convention hint for a weight-range error, or '' when the reading looks right.

    Given when the file looks like another convention, or, when it looks like none, when the reading scales NIR
    weights by a factor outside [1/10, 10] (the sign that time or voltage units differ from what it assumes).
    """
    f = np.concatenate([np.abs(np.asarray(a, dtype=np.float64)).reshape(-1) for a in factors]) if factors else None
    span = ""
    if f is not None and f.size and (float(f.max()) > FAR or float(f.min()) < 1.0 / FAR):
        lo, hi = float(f.min()), float(f.max())
        span = f"{hi:.3g}" if math.isclose(lo, hi, rel_tol=1e-6) else f"{lo:.3g}..{hi:.3g}"
    if detection.convention == convention:
        return ""  # the file is what this reading expects: its weights are simply large
    if detection.convention is not None:
        return detection.hint() + (f"; the {convention} reading multiplies its weights by {span}" if span else "")
    if span:
        others = "|".join(c for c in CONVENTIONS if c != convention)
        return (f"the {convention} reading of this NIR file multiplies its weights by {span}; if another framework"
                f" wrote it, choose its reading with --nir-convention {others}")
    return ""


def with_hint(errors: DesignRuleErrors, hint: str) -> DesignRuleErrors:
    """``errors`` with ``hint`` appended to every FS-R006 weight-range violation's line (others unchanged)."""
    if not hint:
        return errors
    out = []
    for v in errors.violations:
        if v.rule == _WEIGHT_RULE:
            detail = f"{v.detail}; {hint}" if v.detail else hint
            v = DesignRuleViolation(v.rule, v.where, v.value, v.limit, detail, v.severity)
        out.append(v)
    return DesignRuleErrors(out)
