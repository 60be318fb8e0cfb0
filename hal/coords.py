"""Typed, range-checked coordinates of the chip and conversions between them.

Each coordinate is an ``int`` subclass, so it indexes numpy arrays directly, but constructing one with a
value outside its range raises :class:`~firstspike.hal.errors.FieldRangeError` naming the field and the range.
"""

from __future__ import annotations

import math
import numbers
from typing import ClassVar, Self

from firstspike.hal import chip
from firstspike.hal.errors import FieldRangeError


class _Coord(int):
    """An integer constrained to ``[LOW, HIGH]``."""

    LOW: ClassVar[int] = 0
    HIGH: ClassVar[int] = 0

    def __new__(cls, value: int) -> Self:
        if isinstance(value, bool) or not isinstance(value, int | _Coord):
            try:
                if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                    value = int(value)
                else:
                    raise TypeError
            except TypeError:
                raise FieldRangeError(cls.__name__, value, cls.LOW, cls.HIGH, "must be an integer") from None
        if not cls.LOW <= int(value) <= cls.HIGH:
            raise FieldRangeError(cls.__name__, int(value), cls.LOW, cls.HIGH)
        return super().__new__(cls, int(value))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({int(self)})"


class Half(_Coord):
    """One of the two chip halves (hemispheres), 0 (top) or 1 (bottom)."""

    HIGH = chip.N_HALVES - 1


class Column(_Coord):
    """A neuron column within one half, 0..255."""

    HIGH = chip.COLUMNS_PER_HALF - 1


class Row(_Coord):
    """A synapse row within one half's array, 0..255."""

    HIGH = chip.ROWS_PER_HALF - 1

    @property
    def driver(self) -> SynapseDriver:
        """The synapse driver feeding this row (two rows per driver)."""
        return SynapseDriver(int(self) // chip.ROWS_PER_DRIVER)


class SynapseDriver(_Coord):
    """A synapse driver within one half, 0..127; drives rows 2d and 2d+1."""

    HIGH = chip.DRIVERS_PER_HALF - 1

    @property
    def rows(self) -> tuple[Row, Row]:
        """The two rows this driver feeds."""
        base = int(self) * chip.ROWS_PER_DRIVER
        return Row(base), Row(base + 1)


class SynapseLabel(_Coord):
    """A 6-bit synapse address label, 0..63: a synapse responds only to events carrying its label."""

    HIGH = chip.N_LABELS - 1


class WeightValue(_Coord):
    """A 6-bit synaptic weight magnitude, 0..63 (the sign comes from the row mode)."""

    HIGH = chip.WEIGHT_MAX


class DelayCode(_Coord):
    """A route's programmable delay, 0..511 steps of 8 ticks (0..4088 ticks): its events reach the row that many
    ticks later (on top of the fixed routing latency of a neuron's spike)."""

    HIGH = chip.DELAY_CODE_MAX

    @property
    def ticks(self) -> int:
        """The delay in ticks (8 ns)."""
        return int(self) * chip.DELAY_STEP_TICKS

    @classmethod
    def from_ticks(cls, ticks: float) -> DelayCode:
        """The code nearest to ``ticks`` (halves round to even); outside 0..4088 ticks (+- half a step) raises
        :class:`~firstspike.hal.errors.FieldRangeError`."""
        if isinstance(ticks, bool) or not isinstance(ticks, numbers.Real) or not math.isfinite(ticks):
            raise FieldRangeError(f"{cls.__name__} (ticks)", ticks, 0, chip.DELAY_MAX_TICKS,
                                  "must be a finite number of ticks")
        code = round(float(ticks) / chip.DELAY_STEP_TICKS)
        if not 0 <= code <= cls.HIGH:
            raise FieldRangeError(f"{cls.__name__} (ticks)", ticks, 0, chip.DELAY_MAX_TICKS,
                                  f"steps of {chip.DELAY_STEP_TICKS} ticks")
        return cls(code)


class InputChannel(_Coord):
    """An external input event source (host spike train channel), 0..1023."""

    HIGH = chip.N_INPUT_CHANNELS - 1


class NeuronId(_Coord):
    """A neuron on the chip, 0..511: ``half * 256 + column``."""

    HIGH = chip.N_NEURONS - 1

    @classmethod
    def from_half_column(cls, half: int, column: int) -> NeuronId:
        """The neuron at ``column`` of ``half``."""
        return cls(int(Half(half)) * chip.COLUMNS_PER_HALF + int(Column(column)))

    @property
    def half(self) -> Half:
        """The half this neuron sits in."""
        return Half(int(self) // chip.COLUMNS_PER_HALF)

    @property
    def column(self) -> Column:
        """The column of this neuron within its half."""
        return Column(int(self) % chip.COLUMNS_PER_HALF)


class SynapseCoord(tuple[Half, Row, Column]):
    """A synapse: (half, row, column). Its target neuron is ``NeuronId.from_half_column(half, column)``."""

    def __new__(cls, half: int, row: int, column: int) -> SynapseCoord:
        return super().__new__(cls, (Half(half), Row(row), Column(column)))

    @property
    def half(self) -> Half:
        return self[0]

    @property
    def row(self) -> Row:
        return self[1]

    @property
    def column(self) -> Column:
        return self[2]

    @property
    def neuron(self) -> NeuronId:
        """The neuron this synapse feeds."""
        return NeuronId.from_half_column(self[0], self[2])
