"""Placement: the documented layouts of MNIST16 and yin-yang, architecture-only dependence, signed rows."""

import itertools

import numpy as np

from firstspike.compiler import Layer, Network, compile
from firstspike.compiler.placement import RESERVED_LABEL, Architecture, place
from firstspike.hal import chip
from firstspike.hal.config import RowMode, SourceKind


def test_mnist16_fills_the_chip_with_merged_columns(make_net):
    p = place(make_net('mnist16'))
    assert len(p.stages) == 1
    hid, out = p.layers
    assert hid.merged and out.merged
    assert np.array_equal(hid.neuron_ids, np.arange(246)) and np.array_equal(out.neuron_ids, np.arange(246, 256))
    # inputs 0..127 on half 0's rows, 128..255 on half 1's, as (exc, inh) pairs
    assert np.array_equal(hid.source_rows[:128, 0, 0], 2 * np.arange(128)) and (hid.source_rows[:128, 1] == -1).all()
    assert np.array_equal(hid.source_rows[128:, 1, 1], 2 * np.arange(128) + 1)
    assert (hid.source_kind == SourceKind.INPUT).all() and np.array_equal(hid.source_id, np.arange(256))
    # the 246 hidden outputs: 123 per half, sharing rows with the inputs under another address
    assert (out.source_kind == SourceKind.NEURON).all() and np.array_equal(out.source_id, np.arange(246))
    assert (out.source_rows[:123, 0, 0] >= 0).all() and (out.source_rows[123:, 1, 0] >= 0).all()
    assert hid.address != out.address

    c = compile(make_net('mnist16'))
    cfg = c.config
    assert cfg.neurons.merged_columns.all() and cfg.neurons.values["enabled"].all()
    assert (cfg.row_modes[:, 0::2] == RowMode.EXCITATORY).all() and (cfg.row_modes[:, 1::2] == RowMode.INHIBITORY).all()
    assert len(cfg.routing) == 2 * (256 + 246)  # each source: one exc + one inh row in the one half it reaches


def test_yinyang_fits_one_half_without_merging(make_net):
    c = compile(make_net('yinyang'))
    hid, out = c.layers
    assert not hid.merged and not out.merged
    assert np.array_equal(hid.neuron_ids, np.arange(120)) and np.array_equal(out.neuron_ids, np.arange(120, 123))
    assert c.bias_inputs == [(4, 0.9), (5, 0.9)]  # each bias is its own host channel
    assert np.array_equal(c.input_channels, np.arange(4))
    cfg = c.config
    assert not cfg.neurons.values["enabled"][256:].any() and not cfg.neurons.merged_columns.any()
    assert (cfg.row_modes[1] == RowMode.OFF).all() and np.count_nonzero(cfg.row_modes[0]) == 2 * 121


def test_placement_depends_on_architecture_only(make_net):
    a, b = make_net('yinyang', 1), make_net('yinyang', 2)
    b = Network(4, tuple(Layer(L.weights * 3.0, L.bias_time + 0.3, 2.0, -0.5, name="other") for L in b.layers))
    ca, cb = compile(a), compile(b)
    for key in ("synapses.labels", "rows.modes", "routing.kind", "routing.source", "routing.half", "routing.row",
                "routing.address", "neurons.merged_columns", "neurons.enabled"):
        assert np.array_equal(ca.config.fields()[key], cb.config.fields()[key]), key
    pa, pb = place(a), place(Architecture.of(b))
    for la, lb in zip(pa.layers, pb.layers, strict=True):
        assert np.array_equal(la.neuron_ids, lb.neuron_ids) and np.array_equal(la.source_rows, lb.source_rows)


def test_every_signed_input_has_exc_and_inh_rows_and_unused_synapses_are_unreachable(make_net):
    for net in (make_net('yinyang'), make_net('mnist16'), Network(10, (Layer(np.ones((10, 300))),))):
        c = compile(net)
        cfg = c.config
        r = cfg.routing.routes
        assert RESERVED_LABEL not in set(r["address"].tolist())
        by_source: dict[tuple[int, int, int], set[int]] = {}
        for route in r:
            key = (int(route["kind"]), int(route["source"]), int(route["half"]))
            by_source.setdefault(key, set()).add(int(cfg.row_modes[route["half"], route["row"]]))
        assert all(modes == {RowMode.EXCITATORY, RowMode.INHIBITORY} for modes in by_source.values())
        # synapses of unused columns/rows carry the reserved label, so no event can reach them
        allocated = np.zeros(cfg.synapses.labels.size, dtype=bool)
        for L in c.layers:
            exc, inh = L.synapse_indices
            allocated[exc.ravel()] = allocated[inh.ravel()] = True
        assert (cfg.synapses.labels.reshape(-1)[~allocated] == RESERVED_LABEL).all()
        assert (cfg.synapses.weights.reshape(-1)[~allocated] == 0).all()


def test_wide_layer_spans_both_halves_and_sources_reach_both():
    c = compile(Network(10, (Layer(np.ones((10, 300))),)))
    (L,) = c.layers
    assert not L.merged and (L.neuron_ids < 256).sum() == 256 and (L.neuron_ids >= 256).sum() == 44
    assert (L.source_rows[:, :, 0] >= 0).all()


def test_split_into_stages_feeds_each_stage_from_the_previous_layer():
    rng = np.random.default_rng(3)
    sizes = [100, 200, 200, 200, 10]
    net = Network(100, tuple(Layer(rng.normal(0, 1, (a + 1, b)), bias_time=0.5)
                             for a, b in itertools.pairwise(sizes)))
    c = compile(net)
    assert [s.layers for s in c.stages] == [(0,), (1,), (2, 3)]
    assert [s.input_source for s in c.stages] == [-1, 0, 1]
    assert [L.stage for L in c.layers] == [0, 1, 2, 2]
    s1 = c.layers[1]
    assert (s1.source_kind[:200] == SourceKind.INPUT).all()
    assert np.array_equal(s1.source_id[:200], c.stages[1].input_channels)
    assert s1.bias_channel == 200  # after the stage inputs


def test_placement_is_deterministic(make_net):
    assert compile(make_net('mnist16')).to_bytes() == compile(make_net('mnist16')).to_bytes()
    assert chip.N_NEURONS == 512  # the resource model these layouts assume
