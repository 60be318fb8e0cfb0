"""hal: what the chip is.

Constants of the resource model, typed coordinates, configuration containers with range checks and an
exact binary encoding, spike events and time units, the one small :class:`Backend` interface every
device implements, and the configuration mirror that decides what travels to a device. ``hal`` imports
nothing else of firstspike.
"""

from firstspike.hal import chip
from firstspike.hal.backend import Backend, DeviceInfo, RunOptions, RunResult
from firstspike.hal.config import ChipConfig, ConfigDiff, NeuronParams, Routing, RowMode, SynapseArrays
from firstspike.hal.coords import (
    Column,
    Half,
    InputChannel,
    NeuronId,
    Row,
    SynapseDriver,
    SynapseLabel,
    WeightValue,
)
from firstspike.hal.errors import (
    BackendError,
    BrokenBackendError,
    CapacityError,
    ConfigDecodeError,
    ConfigError,
    DeviceBusyError,
    FieldRangeError,
    HalError,
    LinkError,
    UnknownBackendError,
)
from firstspike.hal.events import SPIKE_DTYPE, InputSpikes, SpikeEvents
from firstspike.hal.mirror import ConfigMirror, ConfigPlan

__all__ = [
    "SPIKE_DTYPE",
    "Backend",
    "BackendError",
    "BrokenBackendError",
    "CapacityError",
    "ChipConfig",
    "Column",
    "ConfigDecodeError",
    "ConfigDiff",
    "ConfigError",
    "ConfigMirror",
    "ConfigPlan",
    "DeviceBusyError",
    "DeviceInfo",
    "FieldRangeError",
    "HalError",
    "Half",
    "InputChannel",
    "InputSpikes",
    "LinkError",
    "NeuronId",
    "NeuronParams",
    "Routing",
    "Row",
    "RowMode",
    "RunOptions",
    "RunResult",
    "SpikeEvents",
    "SynapseArrays",
    "SynapseDriver",
    "SynapseLabel",
    "UnknownBackendError",
    "WeightValue",
    "chip",
]
