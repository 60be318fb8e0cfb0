"""``null://``: a MOCK backend for plumbing tests. It accepts and validates configs and returns NO events.

It models no neuron at all: use it to test transports, sessions and error paths, never results.
"""

from __future__ import annotations

import numpy as np

from firstspike.hal.backend import Backend, DeviceInfo, RunOptions, RunResult
from firstspike.hal.config import ChipConfig, ConfigDiff
from firstspike.hal.errors import BackendError
from firstspike.hal.events import SPIKE_DTYPE, InputSpikes, SpikeEvents
from firstspike.hal.registry import DeviceURI


class NullBackend(Backend):
    """Mock device: validates configs and run requests, records nothing."""

    scheme = "null"

    def __init__(self, serial: int = 0) -> None:
        self._config = ChipConfig()
        self.mirror.commit_default()
        self._closed = False
        self._serial = serial
        self.runs = 0

    @classmethod
    def from_uri(cls, uri: DeviceURI) -> NullBackend:
        uri.check_params({"serial"})
        return cls(serial=uri.int_param("serial", 0, 0, 2**31 - 1))

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("null:// device is closed")

    def info(self) -> DeviceInfo:
        self._check_open()
        return DeviceInfo(model="null-mock", serial=self._serial, version="0", extra={"mock": True})

    def _load_config(self, config: ChipConfig, digest: bytes) -> None:
        self._check_open()
        self._config = config

    def _apply_diff(self, diff: ConfigDiff, target: ChipConfig | None) -> None:
        self._check_open()
        self._config = diff.apply(self._config) if target is None else target

    @property
    def config(self) -> ChipConfig:
        return self._config

    def run(self, inputs: InputSpikes, options: RunOptions) -> RunResult:
        self._check_open()
        self.check_run_request(inputs, options)
        self.runs += 1
        return RunResult(SpikeEvents(np.empty(0, SPIKE_DTYPE), inputs.batch_size))

    def close(self) -> None:
        self._closed = True
