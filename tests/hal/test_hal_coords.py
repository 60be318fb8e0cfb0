"""Coordinates: range checks name the field, conversions are consistent."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from firstspike.hal import chip
from firstspike.hal.coords import (
    Column,
    DelayCode,
    Half,
    InputChannel,
    NeuronId,
    Row,
    SynapseCoord,
    SynapseDriver,
    SynapseLabel,
    WeightValue,
)
from firstspike.hal.errors import FieldRangeError

ALL = [
    (Half, chip.N_HALVES - 1),
    (Column, chip.COLUMNS_PER_HALF - 1),
    (Row, chip.ROWS_PER_HALF - 1),
    (SynapseDriver, chip.DRIVERS_PER_HALF - 1),
    (SynapseLabel, 63),
    (WeightValue, 63),
    (InputChannel, chip.N_INPUT_CHANNELS - 1),
    (NeuronId, chip.N_NEURONS - 1),
    (DelayCode, chip.DELAY_CODE_MAX),
]


@pytest.mark.parametrize(("cls", "high"), ALL)
def test_bounds_accepted_and_rejected_with_named_field(cls, high):
    assert int(cls(0)) == 0
    assert int(cls(high)) == high
    assert int(cls(np.int64(high))) == high
    for bad in (-1, high + 1):
        with pytest.raises(FieldRangeError) as e:
            cls(bad)
        msg = str(e.value)
        assert cls.__name__ in msg and str(bad) in msg and f"[0, {high}]" in msg
    with pytest.raises(FieldRangeError, match="integer"):
        cls(1.5)
    with pytest.raises(FieldRangeError):
        cls(True)


@given(st.integers(0, chip.N_NEURONS - 1))
def test_neuron_half_column_round_trip(n):
    nid = NeuronId(n)
    assert NeuronId.from_half_column(nid.half, nid.column) == n
    assert isinstance(nid.half, Half) and isinstance(nid.column, Column)


@given(st.integers(0, chip.ROWS_PER_HALF - 1))
def test_row_driver_round_trip(r):
    row = Row(r)
    assert row in row.driver.rows


def test_synapse_coord_targets_its_column_neuron():
    s = SynapseCoord(1, 17, 200)
    assert s.neuron == 256 + 200
    assert (s.half, s.row, s.column) == (1, 17, 200)
    with pytest.raises(FieldRangeError, match="Row"):
        SynapseCoord(0, 256, 0)
