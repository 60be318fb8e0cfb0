"""Routing and row sign: excitatory rows excite, inhibitory rows inhibit, labels filter, disabled neurons
and the other half stay silent, neuron outputs reach rows, merged columns spike as their half-0 neuron."""

from __future__ import annotations

import numpy as np

from firstspike.hal.backend import Backend, RunOptions
from firstspike.hal.events import SPIKE_DTYPE, InputSpikes
from firstspike.runtime.conformance.harness import Profile, run_case
from firstspike.runtime.conformance.networks import (
    MERGED_COLUMN,
    ROUTING_EXPECT,
    ROUTING_INPUT_TICK,
    Case,
    merged_probe_config,
    routing_case,
)


def test_routing_row_sign_labels_and_halves(device: Backend, semantic: Profile) -> None:
    case = routing_case()
    ev = run_case(device, case)
    first = ev.first_spike_ticks(case.neurons)
    for b in range(case.inputs.batch_size):
        fired = set(np.flatnonzero(first[b] >= 0).tolist())
        expected = {n for n, fires in ROUTING_EXPECT.items() if fires}
        why = {
            21: "an inhibitory row made its neuron fire",
            22: "equal excitation and inhibition at the same tick still fired (inhibition ignored?)",
            23: "a synapse whose label differs from the routed address responded",
            24: "a disabled neuron fired",
            25: "a row whose mode is OFF delivered events",
            256 + 20: "an input routed to half 0 reached a neuron of half 1",
        }
        wrong = {n: why.get(n, "not expected to fire") for n in fired - expected}
        assert not wrong, f"entry {b}: {wrong}"
        missing = expected - fired
        assert not missing, (
            f"entry {b}: neurons {sorted(missing)} did not fire (20: input on an excitatory row with weight 63;"
            " 296: neuron 20's output routed to half 1 row 30)"
        )
        assert first[b][20] >= ROUTING_INPUT_TICK
        assert first[b][256 + 40] > first[b][20], "the neuron fed by neuron 20's output fired before neuron 20"


def test_merged_column_spikes_as_its_half0_neuron(device: Backend, semantic: Profile) -> None:
    cfg = merged_probe_config()
    ev = np.zeros(2, dtype=SPIKE_DTYPE)
    ev["batch"], ev["time"], ev["label"] = [0, 1], [100, 300], [13, 13]
    case = Case("merged-probe", cfg, InputSpikes(ev, 2), RunOptions(duration_ticks=3000), np.arange(512))
    out = run_case(device, case)
    labels = set(out.events["label"].tolist())
    assert 256 + MERGED_COLUMN not in labels, "the half-1 part of a merged column spiked on its own"
    assert labels == {MERGED_COLUMN}, (
        f"an input reaching only the half-1 rows of merged column {MERGED_COLUMN} must fire neuron"
        f" {MERGED_COLUMN}; got spikes of {sorted(labels)}"
    )
    first = out.first_spike_ticks(np.array([MERGED_COLUMN]))[:, 0]
    assert first[0] > 100 and first[1] > 300
