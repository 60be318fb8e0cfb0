"""firstspike: exact time-to-first-spike (TTFS) learning, a hardware abstraction layer and device drivers for a
BrainScaleS-2-like neuromorphic chip.

The Python API (``import firstspike as fs``; each name is imported when first used, so ``import firstspike`` is
cheap: no torch, numba or grpc until you need them)::

    model = fs.TTFSNetwork(4, [120, 3], bias_times=[0.9, 0.9])       # a layered TTFS network (torch nn.Module)
    times = fs.LatencyEncoder(mirror=True)(features)                 # your data -> input spike times (tau_s)
    history = fs.fit(model, (times, labels), val, epochs=30)          # software; device="sim://" = in the loop
    print(fs.evaluate(model, test).accuracy)                         # software; device=URI = on a device
    compiled = fs.compile(model)                                     # -> chip artifact (.fsn)
    with fs.open_device("sim://") as dev:
        result = fs.Session(dev, compiled).run(test_times)           # result.layer_times, result.output_times

Names: models (``TTFSNetwork``, ``TTFSLinear``, ``load_model``), data (``LatencyEncoder``, ``SpikeDataset``,
``load_dataset``), training (``fit``, ``History``, ``TTFSLoss``, ``WeightBumper``), evaluation (``evaluate``,
``Evaluation``), deployment (``compile``, ``open_device``, ``Session``, ``SessionResult``, ``calibrate``), seed
studies and grids on Ray (``sweep``); ``__version__``.
docs/api.md documents each. The layers of the stack are subpackages: ``firstspike.hal`` (what the chip is),
``firstspike.compiler``, ``firstspike.sim_device`` (the bit-accurate simulated chip), ``firstspike.drivers``
(serial hardware), ``firstspike.runtime`` (host side, CLI), ``firstspike.proto`` (the gRPC contract).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from firstspike import compiler, drivers, hal, proto, runtime, sim_device  # noqa: F401  (lazy subpackages)
    from firstspike.runtime.calibration import calibrate
    from firstspike.runtime.devices import open as open_device
    from firstspike.runtime.models import compile_model as compile
    from firstspike.runtime.models import load_model
    from firstspike.runtime.session import Session, SessionResult
    from firstspike.runtime.sweep import sweep
    from firstspike.runtime.training.data import LatencyEncoder, SpikeDataset
    from firstspike.runtime.training.datasets import load_dataset
    from firstspike.runtime.training.evaluation import Evaluation, evaluate
    from firstspike.runtime.training.hw_aware import noise_model_for as noise_model
    from firstspike.runtime.training.loop import History, fit
    from firstspike.runtime.ttfs.layers import TTFSLinear, TTFSNetwork
    from firstspike.runtime.ttfs.loss import TTFSLoss, WeightBumper

#: public name -> (module, attribute)
_API: dict[str, tuple[str, str]] = {
    "TTFSNetwork": ("firstspike.runtime.ttfs.layers", "TTFSNetwork"),
    "TTFSLinear": ("firstspike.runtime.ttfs.layers", "TTFSLinear"),
    "load_model": ("firstspike.runtime.models", "load_model"),
    "LatencyEncoder": ("firstspike.runtime.training.data", "LatencyEncoder"),
    "SpikeDataset": ("firstspike.runtime.training.data", "SpikeDataset"),
    "load_dataset": ("firstspike.runtime.training.datasets", "load_dataset"),
    "fit": ("firstspike.runtime.training.loop", "fit"),
    "History": ("firstspike.runtime.training.loop", "History"),
    "TTFSLoss": ("firstspike.runtime.ttfs.loss", "TTFSLoss"),
    "WeightBumper": ("firstspike.runtime.ttfs.loss", "WeightBumper"),
    "evaluate": ("firstspike.runtime.training.evaluation", "evaluate"),
    "Evaluation": ("firstspike.runtime.training.evaluation", "Evaluation"),
    "compile": ("firstspike.runtime.models", "compile_model"),
    "open_device": ("firstspike.runtime.devices", "open"),
    "calibrate": ("firstspike.runtime.calibration", "calibrate"),
    "noise_model": ("firstspike.runtime.training.hw_aware", "noise_model_for"),
    "Session": ("firstspike.runtime.session", "Session"),
    "SessionResult": ("firstspike.runtime.session", "SessionResult"),
    "sweep": ("firstspike.runtime.sweep", "sweep"),
}
_SUBPACKAGES = frozenset({"compiler", "drivers", "hal", "proto", "runtime", "sim_device"})

__all__ = [
    "Evaluation",
    "History",
    "LatencyEncoder",
    "Session",
    "SessionResult",
    "SpikeDataset",
    "TTFSLinear",
    "TTFSLoss",
    "TTFSNetwork",
    "WeightBumper",
    "__version__",
    "calibrate",
    "compile",
    "evaluate",
    "fit",
    "load_dataset",
    "load_model",
    "noise_model",
    "open_device",
    "sweep",
]


def __getattr__(name: str) -> Any:
    if name in _API:
        module, attr = _API[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value  # later lookups skip this function
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("firstspike")
        except PackageNotFoundError:  # run from a source tree that was never installed
            return "0+unknown"
    raise AttributeError(f"module 'firstspike' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _SUBPACKAGES)
