"""Loading and compiling models: the one place where a TTFS model (``.pt``), a NIR graph (``.nir``), the
compiler's IR (``.fsir``) or a compiled artifact (``.fsn``) is read, and where a model becomes a chip artifact.

A model trained with a device in the loop carries the fixed per-layer weight scales it was trained with
(metadata ``device_weight_scale``); it is compiled with them unless a scale is given, so the artifact holds exactly
the 6-bit weights the device ran during training.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from firstspike.compiler import CompileOptions, DesignRuleErrors, Network, compile
from firstspike.compiler.artifact import CompiledNetwork

if TYPE_CHECKING:
    from firstspike.runtime.ttfs.layers import TTFSNetwork

__all__ = [
    "NIR_HINT_KEY",
    "TASK_NAMES",
    "ModelLoadError",
    "compile_model",
    "load_artifact",
    "load_model",
    "model_weight_scale",
    "read_network",
]

#: data sets a model's metadata may name (``task``)
TASK_NAMES = ("yinyang", "mnist16")

#: metadata key of :func:`read_network`'s result for a ``.nir`` file: the hint a weight-range error (FS-R006) on
#: it carries when the file looks like another exporter's convention (``--nir-convention``)
NIR_HINT_KEY = "nir_hint"


class ModelLoadError(ValueError):
    """The file cannot be read as the kind of model asked for (says what was expected)."""


def _torch_load(p: Path) -> Any:
    import torch

    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError) as e:
        # torch's own message for a foreign file is a multi-paragraph essay about weights_only: say what we expected
        kind = "not a torch file" if not zipfile.is_zipfile(p) else f"torch cannot read it ({type(e).__name__})"
        raise ModelLoadError(f"{p}: not a model file saved by firstspike ({kind}); expected a model.pt written by "
                             "firstspike train / TTFSNetwork.save") from None


def load_model(path: str | Path) -> TTFSNetwork:
    """A TTFS model saved with :meth:`TTFSNetwork.save` (``firstspike train`` writes ``DIR/model.pt``)."""
    from firstspike.runtime.ttfs.layers import MODEL_FORMAT, TTFSNetwork

    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"{p}: no such file (expected a TTFS model .pt written by firstspike train)")
    data = _torch_load(p)
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise ModelLoadError(f"{p}: not a TTFS model (expected a dict with format {MODEL_FORMAT!r}, "
                             "as TTFSNetwork.save writes)")
    try:
        return TTFSNetwork.from_dict(data)
    except (KeyError, TypeError, ValueError) as e:
        raise ModelLoadError(f"{p}: damaged TTFS model: {e}") from None


def read_network(path: str | Path, *, nir_convention: str = "nir") -> tuple[Network, dict[str, Any]]:
    """Read a model file (``.nir``, ``.fsir`` or ``.pt``) as ``(compiler Network, TTFS metadata)``.

    The metadata dict is the TTFS model's (task, encoding, ``device_weight_scale`` of a model trained in the
    loop, ...); for a ``.nir`` file, read under ``nir_convention`` (``nir``, the literal reading, or ``snntorch``,
    ``rockpool``, ``norse``: docs/compiler.md), it holds :data:`NIR_HINT_KEY`; it is empty for every other kind.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"{p}: no such file")
    suffix = p.suffix.lower()
    if suffix == ".nir":
        from firstspike.compiler.nir_io import import_nir

        imp = import_nir(p, convention=nir_convention)
        return imp.network, {NIR_HINT_KEY: imp.hint}
    if suffix == ".fsir":
        return Network.load(p), {}
    if suffix in (".pt", ".pth"):
        data = _torch_load(p)
        if isinstance(data, dict) and "network_ir" in data:
            return Network.from_dict(data["network_ir"]), {}
        from firstspike.runtime.ttfs.layers import MODEL_FORMAT, TTFSNetwork

        if isinstance(data, dict) and data.get("format") == MODEL_FORMAT:
            model = TTFSNetwork.from_dict(data)
            return model.to_network(), dict(model.metadata)
        raise ModelLoadError(f"{p}: a .pt model must be a dict with key 'network_ir' or a TTFS model"
                             f" (format {MODEL_FORMAT!r})")
    raise ModelLoadError(f"{p}: unknown model type {suffix!r}; use .pt, .nir, .fsir (or .fsn where a compiled "
                         "artifact is accepted)")


def model_weight_scale(metadata: dict[str, Any]) -> tuple[float, ...] | None:
    """The fixed per-layer weight scales (digital steps per model weight unit) a model was trained in the loop
    with, or None (then the compiler picks a scale per layer from max |w|)."""
    scales = metadata.get("device_weight_scale")
    if not scales:
        return None
    try:
        return tuple(float(s) for s in scales)
    except (TypeError, ValueError):
        raise ModelLoadError(f"model metadata 'device_weight_scale' must be a list of numbers, got {scales!r}")\
            from None


def compile_model(
    model: Any,
    *,
    weight_scale: float | Sequence[float] | None = None,
    tau_s_ticks: float | None = None,
    allow_split: bool = True,
    keep_source: bool = True,
    calibration: Any = None,
) -> CompiledNetwork:
    """Compile a model for the chip.

    ``model``: a :class:`~firstspike.runtime.ttfs.TTFSNetwork`, a compiler :class:`~firstspike.compiler.Network`, a
    :class:`~firstspike.compiler.artifact.CompiledNetwork` (returned as is) or a model file path. ``weight_scale``:
    digital steps per model weight unit (one number or one per layer; default: the scales a model trained in the
    loop carries, else chosen per layer from max |w|). ``tau_s_ticks``: target tau_s in ticks of 8 ns (default
    the compiler's 750). ``calibration``: a chip's calibration (a file from ``firstspike calibrate``, a
    ``CalibrationResult`` or a ``NeuronCalibration``): the artifact then carries that chip's neuron codes and runs
    only on that chip (a device that reports its own calibration gets it applied when it runs an uncalibrated one).
    """
    if calibration is not None:
        from firstspike.runtime.calibration import calibrated, load_calibration

        cal = load_calibration(calibration) if isinstance(calibration, str | Path) else calibration
        return calibrated(compile_model(model, weight_scale=weight_scale, tau_s_ticks=tau_s_ticks,
                                        allow_split=allow_split, keep_source=keep_source), cal)
    if isinstance(model, CompiledNetwork):
        return model
    metadata: dict[str, Any] = {}
    if isinstance(model, str | Path):
        p = Path(model)
        if p.suffix.lower() == ".fsn":
            if not p.is_file():
                raise ModelLoadError(f"{p}: no such file")
            return CompiledNetwork.load(p)
        network, metadata = read_network(p)
    elif isinstance(model, Network):
        network = model
    elif hasattr(model, "to_network"):
        network, metadata = model.to_network(), dict(getattr(model, "metadata", {}) or {})
    else:
        raise TypeError(f"cannot compile a {type(model).__name__}: pass a TTFSNetwork, a compiler Network, a "
                        "CompiledNetwork or a model file")
    scale: Any = weight_scale if weight_scale is not None else model_weight_scale(metadata)
    if isinstance(scale, Sequence):
        scale = tuple(float(s) for s in scale)
    kwargs: dict[str, Any] = {"weight_scale": scale, "allow_split": allow_split}
    if tau_s_ticks is not None:
        kwargs["tau_s_ticks"] = float(tau_s_ticks)
    return compile(network, CompileOptions(**kwargs), keep_source=keep_source)


def load_artifact(path: str | Path, weight_scale: float | None = None, *,
                  nir_convention: str = "nir") -> tuple[CompiledNetwork, str | None]:
    """Any model file (``.pt``, ``.nir``, ``.fsir`` or a compiled ``.fsn``) -> (compiled network, the data set it
    was trained on if known). ``weight_scale`` overrides the model's own; ``nir_convention`` as in
    :func:`read_network`."""
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"{p}: no such file")
    if p.suffix.lower() == ".fsn":
        compiled = CompiledNetwork.load(p)
        name = compiled.source.name if compiled.source is not None else ""
        return compiled, name if name in TASK_NAMES else None
    network, metadata = read_network(p, nir_convention=nir_convention)
    scale = weight_scale if weight_scale is not None else model_weight_scale(metadata)
    name = metadata.get("task") or network.name
    try:
        compiled = compile(network, CompileOptions(weight_scale=scale))
    except DesignRuleErrors as e:
        from firstspike.compiler.nir_conventions import with_hint

        raise with_hint(e, metadata.get(NIR_HINT_KEY, "")) from None
    return compiled, name if name in TASK_NAMES else None
