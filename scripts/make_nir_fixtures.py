"""Make the NIR fixture files of tests/compiler/nir_fixtures/: small networks exported by snnTorch, Rockpool and
Norse, plus each exporter's OWN simulation of fixed inputs (first-spike times per neuron).

Made with (a scratch venv outside the repository; none of these is a firstspike dependency):

    python 3.11.7, torch 2.13.0+cpu, snntorch 1.0.0, rockpool 3.1.0, norse 1.1.0, nir 1.0.8, nirtorch 2.6,
    numpy 2.4.6, h5py 3.16.0

    python3 -m venv /work/scratch-nir/venv && cd /work/scratch-nir
    venv/bin/pip install torch==2.13.0 numpy h5py scipy       # the CPU build; norse's own deps would pull torchvision
    venv/bin/pip install --no-deps nir==1.0.8 nirtorch==2.6 snntorch==1.0.0 rockpool==3.1.0 norse==1.1.0
    venv/bin/python /path/to/firstspike/scripts/make_nir_fixtures.py [OUT_DIR [NAME ...]]
    # OUT_DIR defaults to tests/compiler/nir_fixtures; NAMEs remake only those fixtures (~10 min for all here)

The export calls use the workarounds each exporter needs (docs/compiler.md, "Bringing a network from snnTorch /
Rockpool / Norse"):
* snnTorch: per-neuron alpha/beta/threshold tensors (scalars leave the CubaLIF's shape empty and ``nir.read``
  rejects the file) and ``export_to_nir(..., ignore_dims=[0])`` (else the Input keeps the batch dimension);
* Rockpool: ``to_nir`` writes Input/Output types with batch/time dimensions ([1, 4], [1, 1, 3]) that ``nir.read``
  rejects: the two nodes are replaced by ``nir.Input([4])`` / ``nir.Output([3])`` before ``nir.write``;
* Norse: per-neuron LIFParameters tensors (scalars break ``nir.write``: "Scalar datasets don't support chunk/filter
  options") and unbatched sample data (``torch.zeros(n_in)``), with ``to_nir(..., dt=dt)`` the simulation's dt.

Each fixture is simulated by its framework at its own time step, fine against the time constants (100 steps per
tau_syn unless the fixture is meant to be coarse). Input k spikes once, at a whole step; the reference records the
first spike step of every hidden and output neuron. Times are written in units of the file's tau_syn (what the
import uses as its time unit): t = step * dt / tau_syn(file).

The TTFS model (and the chip's long refractory time) has one spike per neuron, and the exporters' neurons can fire
again; so of N_CANDIDATES inputs drawn from a fixed seed, the first N_PATTERNS are kept for which (a) no hidden neuron
fires twice while an output has not fired yet, and (b) scaling every weight by 1 -/+ 2 % changes no output's firing
(an output that grazes threshold is too close to call for any two implementations). The counts are recorded.

Weights are drawn in model units (theta = 1, time unit tau_syn) and written in each framework's own units with the
size of that framework's response to one spike (snnTorch: mem gains W per step for ~tau_mem/dt steps; Rockpool
likewise; Norse: i jumps by W): that only puts the networks in the regime where TTFS neurons fire; whether the
import maps the file back to the right network is what the tests check against the recorded simulations.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nir
import numpy as np
import torch

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "tests/compiler/nir_fixtures"
ONLY = set(sys.argv[2:])  # remake only these fixtures (the others keep their entries in reference.json)
N_PATTERNS = 12  # inputs kept per fixture
N_CANDIDATES = 400  # inputs drawn per fixture (fixed seed), of which the first N_PATTERNS that qualify are kept
WINDOW_TAU = 8.0  # simulated time after step 0, in units of tau_syn
MARGIN = 0.02  # an input is too close to call if scaling every weight by 1 -/+ 2 % changes which outputs fire ...


def margin(steps_per_tau: float) -> float:
    """... or by 1.5 steps' worth (h = 1/steps): the discrete PSP's size differs from the continuous one by O(h)."""
    return max(MARGIN, 1.5 / steps_per_tau)

SPREAD_TAU = 1.5  # input spike times are drawn in [0, SPREAD_TAU] tau_syn
MEANS, STDS = (0.9, 0.6), (0.4, 0.8)  # model-unit weights of the hidden and output layers


def model_weights(rng: np.random.Generator, sizes: tuple[int, ...], gain: float) -> list[np.ndarray]:
    """Model-unit weights (n_in, n_out): hidden mostly excitatory, output mixed; ``gain`` 1.5 for tau_mem = 2
    tau_syn, whose PSP peaks at w/4 instead of w/e."""
    return [gain * rng.normal(MEANS[min(k, 1)], STDS[min(k, 1)], (sizes[k], sizes[k + 1]))
            for k in range(len(sizes) - 1)]


def input_steps(rng: np.random.Generator, n_in: int, steps_per_tau: int) -> np.ndarray:
    """(N_CANDIDATES, n_in) input spike steps in [0, SPREAD_TAU tau_syn]; -1 = this input stays silent (10 %)."""
    k = np.rint(rng.uniform(0.0, SPREAD_TAU, (N_CANDIDATES, n_in)) * steps_per_tau).astype(np.int64)
    k[rng.random((N_CANDIDATES, n_in)) < 0.1] = -1
    return k


def spike_trains(steps: np.ndarray, n_steps: int) -> torch.Tensor:
    """(n_steps, batch, n_in) 0/1 float32 trains with one spike at each non-negative step."""
    x = torch.zeros(n_steps, *steps.shape)
    b, i = np.nonzero(steps >= 0)
    x[steps[b, i], b, i] = 1.0
    return x


def first_steps(spikes: torch.Tensor) -> np.ndarray:
    """(n_steps, batch, n) spike counts -> (batch, n) first step with a spike, -1 if none."""
    s = spikes.detach().numpy() > 0
    first = np.argmax(s, axis=0)
    return np.where(s.any(axis=0), first, -1)


def refires(hidden: torch.Tensor, out_first: np.ndarray) -> np.ndarray:
    """Per pattern, hidden neurons with >= 2 spikes while some output has not fired yet (the whole window if an
    output stays silent: a second hidden spike may be what keeps it silent)."""
    h = hidden.detach().numpy() > 0
    out = []
    for b in range(h.shape[1]):
        end = int(out_first[b].max()) + 1 if np.all(out_first[b] >= 0) else h.shape[0]
        out.append(int(np.sum(h[:end, b, :].sum(axis=0) >= 2)))
    return np.array(out)


def close_calls(outputs: np.ndarray, others: list[np.ndarray]) -> np.ndarray:
    """Per pattern, output neurons whose firing differs in simulations with all weights scaled by 1 -/+ a margin."""
    return sum(np.sum((outputs < 0) != (o < 0), axis=1) for o in others)


# ---- snnTorch ------------------------------------------------------------------------------------------------
def snntorch_fixture(sizes: tuple[int, ...], alpha: float, beta: float, threshold: float, seed: int, gain: float = 1.0):
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    dt = 1e-4  # snnTorch's export assumes this step (snntorch/export_nir.py)
    rng = np.random.default_rng(seed)
    ws = model_weights(rng, sizes, gain)
    steps_per_tau = round(1.0 / (1.0 - alpha))
    mods: list[torch.nn.Module] = []
    for k, w in enumerate(ws):
        lin = torch.nn.Linear(sizes[k], sizes[k + 1], bias=False)
        with torch.no_grad():  # mem gains W per step for ~1/(1-beta) steps: model weight w = W / ((1-beta) thr)
            lin.weight.copy_(torch.tensor((w * (1.0 - beta) * threshold).T, dtype=torch.float32))
        n = sizes[k + 1]
        lif = snn.Synaptic(alpha=torch.full((n,), alpha), beta=torch.full((n,), beta),
                           threshold=torch.full((n,), threshold), init_hidden=True)
        mods += [lin, lif]
    net = torch.nn.Sequential(*mods)
    graph = export_to_nir(net, torch.zeros(1, sizes[0]), ignore_dims=[0])

    k_in = input_steps(rng, sizes[0], steps_per_tau)
    n_steps = int(WINDOW_TAU * steps_per_tau)
    x = spike_trains(k_in, n_steps)
    for m in mods:
        if isinstance(m, snn.Synaptic):
            m.reset_mem()
    spikes: list[list[torch.Tensor]] = [[] for _ in ws]
    with torch.no_grad():
        for t in range(n_steps):
            s = x[t]
            for k in range(len(ws)):
                s = mods[2 * k + 1](mods[2 * k](s))
                spikes[k].append(s)
    return graph, dt, k_in, [torch.stack(r) for r in spikes], {"alpha": alpha, "beta": beta, "threshold": threshold}


# ---- Rockpool ------------------------------------------------------------------------------------------------
def rockpool_fixture(sizes: tuple[int, ...], tau_syn: float, tau_mem: float, dt: float, threshold: float, seed: int,
                     gain: float = 1.0):
    from rockpool.nn.combinators import Sequential
    from rockpool.nn.modules import LIFTorch, LinearTorch
    from rockpool.nn.modules.torch.nir import to_nir

    rng = np.random.default_rng(seed)
    ws = model_weights(rng, sizes, gain)
    steps_per_tau = round(tau_syn / dt)
    mods = []
    for k, w in enumerate(ws):
        n = sizes[k + 1]
        lin = LinearTorch((sizes[k], n), has_bias=False)
        with torch.no_grad():  # vmem gains isyn per step for ~tau_mem/dt steps: w = W tau_mem / (dt thr)
            lin.weight.copy_(torch.tensor(w * threshold * dt / tau_mem, dtype=torch.float32))
        lif = LIFTorch(n, tau_mem=torch.full((n,), tau_mem), tau_syn=torch.full((n,), tau_syn),
                       threshold=torch.full((n,), threshold), dt=dt)
        mods += [lin, lif]
    net = Sequential(*mods)
    graph = to_nir(net)
    graph.nodes["input"] = nir.Input(input_type={"input": np.array([sizes[0]])})
    graph.nodes["output"] = nir.Output(output_type={"output": np.array([sizes[-1]])})

    k_in = input_steps(rng, sizes[0], steps_per_tau)
    n_steps = int(WINDOW_TAU * steps_per_tau)
    x = spike_trains(k_in, n_steps).permute(1, 0, 2)  # Rockpool: (batch, time, channels)
    spikes = []
    with torch.no_grad():
        s = x
        for k in range(len(ws)):
            cur, _, _ = mods[2 * k](s)
            s, _, _ = mods[2 * k + 1](cur)
            spikes.append(s.permute(1, 0, 2))
    return graph, dt, k_in, spikes, {"tau_syn": tau_syn, "tau_mem": tau_mem, "threshold": threshold}


# ---- Norse ---------------------------------------------------------------------------------------------------
def norse_fixture(sizes: tuple[int, ...], tau_syn: float, tau_mem: float, dt: float, v_th: float, seed: int,
                  gain: float = 1.0):
    import norse.torch as norse
    from norse.torch.utils.export_nir import to_nir

    rng = np.random.default_rng(seed)
    ws = model_weights(rng, sizes, gain)
    steps_per_tau = round(tau_syn / dt)
    mods: list[torch.nn.Module] = []
    for k, w in enumerate(ws):
        n = sizes[k + 1]
        lin = torch.nn.Linear(sizes[k], n, bias=False)
        with torch.no_grad():  # i jumps by W, tau_mem dv/dt = -v + i: w = W / v_th
            lin.weight.copy_(torch.tensor((w * v_th).T, dtype=torch.float32))
        p = norse.LIFParameters(tau_syn_inv=torch.full((n,), 1.0 / tau_syn),
                                tau_mem_inv=torch.full((n,), 1.0 / tau_mem),
                                v_leak=torch.zeros(n), v_th=torch.full((n,), v_th), v_reset=torch.zeros(n))
        mods += [lin, norse.LIFCell(p, dt=dt)]
    net = norse.SequentialState(*mods)
    graph = to_nir(net, torch.zeros(sizes[0]), dt=dt)

    k_in = input_steps(rng, sizes[0], steps_per_tau)
    n_steps = int(WINDOW_TAU * steps_per_tau)
    x = spike_trains(k_in, n_steps)
    states: list = [None] * len(ws)
    spikes: list[list[torch.Tensor]] = [[] for _ in ws]
    with torch.no_grad():
        for t in range(n_steps):
            s = x[t]
            for k in range(len(ws)):
                s, states[k] = mods[2 * k + 1](mods[2 * k](s), states[k])
                spikes[k].append(s)
    return graph, dt, k_in, [torch.stack(r) for r in spikes], {"tau_syn": tau_syn, "tau_mem": tau_mem, "v_th": v_th}


FIXTURES = {
    # name: (framework, convention, builder kwargs)
    "snntorch_4_20_3": ("snntorch", dict(sizes=(4, 20, 3), alpha=0.99, beta=0.99, threshold=1.0, seed=1)),
    "snntorch_5_10_3_ratio2": ("snntorch", dict(sizes=(5, 10, 3), alpha=0.99, beta=0.995, threshold=0.5, seed=2,
                                                gain=1.5)),
    "snntorch_4_20_3_coarse": ("snntorch", dict(sizes=(4, 20, 3), alpha=0.9, beta=0.9, threshold=1.0, seed=3)),
    "rockpool_4_20_3": ("rockpool", dict(sizes=(4, 20, 3), tau_syn=0.02, tau_mem=0.02, dt=2e-4, threshold=1.0,
                                         seed=4)),
    "rockpool_5_10_3_ratio2": ("rockpool", dict(sizes=(5, 10, 3), tau_syn=0.01, tau_mem=0.02, dt=1e-4,
                                                threshold=2.0, seed=5, gain=1.5)),
    "norse_4_20_3": ("norse", dict(sizes=(4, 20, 3), tau_syn=5e-3, tau_mem=5e-3, dt=5e-5, v_th=1.0, seed=6)),
    "norse_5_10_3_ratio2": ("norse", dict(sizes=(5, 10, 3), tau_syn=5e-3, tau_mem=1e-2, dt=5e-5, v_th=1.0,
                                          seed=7, gain=1.5)),
}
BUILDERS = {"snntorch": snntorch_fixture, "rockpool": rockpool_fixture, "norse": norse_fixture}


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("torch", "snntorch", "rockpool", "norse", "nir", "nirtorch", "numpy", "h5py")}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    old = json.loads((OUT / "reference.json").read_text())["fixtures"] if ONLY else {}
    ref: dict = {"versions": versions(), "window_tau": WINDOW_TAU, "fixtures": {k: v for k, v in old.items()
                                                                                if k not in ONLY}}
    for name, (framework, kw) in FIXTURES.items():
        if ONLY and name not in ONLY:
            continue
        graph, dt, k_in, layers, params = BUILDERS[framework](**kw)
        path = OUT / f"{name}.nir"
        nir.write(path, graph)
        back = nir.read(path)  # the file must read back with nir itself
        tau_syn = {float(np.asarray(v.tau_syn).reshape(-1)[0]) for v in back.nodes.values()
                   if isinstance(v, nir.CubaLIF)}
        assert len(tau_syn) == 1, tau_syn
        file_tau_syn = tau_syn.pop()
        # tau_syn per simulation step: dt / tau_syn, with tau_syn as the file says (Norse's file holds dt * tau_syn)
        unit = dt / (file_tau_syn / dt if framework == "norse" else file_tau_syn)
        firsts = [first_steps(s) for s in layers]
        rf = refires(layers[0], firsts[-1])
        others = [first_steps(BUILDERS[framework](**{**kw, "gain": kw.get("gain", 1.0) * m})[3][-1])
                  for m in (1.0 - margin(1.0 / unit), 1.0 + margin(1.0 / unit))]
        close = close_calls(firsts[-1], others)
        keep = np.flatnonzero((rf == 0) & (close == 0))[:N_PATTERNS]
        assert keep.size == N_PATTERNS, f"{name}: only {keep.size} of {N_CANDIDATES} inputs qualify"

        def times(steps: np.ndarray, unit: float = unit, keep: np.ndarray = keep) -> list:
            return [[None if s < 0 else float(s) * unit for s in row] for row in steps[keep]]

        ref["fixtures"][name] = {
            "framework": framework, "convention": framework, "file": path.name, "sizes": list(kw["sizes"]),
            "dt": dt, "params": params, "tau_syn_per_step": unit, "input_times": times(k_in),
            "layer_times": [times(f) for f in firsts], "candidates_tried": int(keep[-1]) + 1,
            "candidates_refire": int(np.sum(rf[: keep[-1] + 1] > 0)),
            "candidates_close_call": int(np.sum(close[: keep[-1] + 1] > 0)), "margin": margin(1.0 / unit),
        }
        fired = [np.mean(f[keep] >= 0) for f in firsts]
        tried = int(keep[-1]) + 1
        print(f"{name}: {path.stat().st_size} bytes; firing fraction per layer {np.round(fired, 2).tolist()};"
              f" kept the first {N_PATTERNS} of {tried} inputs (refire {int(np.sum(rf[:tried] > 0))},"
              f" close call {int(np.sum(close[:tried] > 0))})")
    (OUT / "reference.json").write_text(json.dumps(ref, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT / 'reference.json'}")


if __name__ == "__main__":
    main()
