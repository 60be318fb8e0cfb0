"""Backend registry: URI scheme -> Backend factory, discovered through entry points.

A package makes a device usable everywhere a URI is accepted by declaring, in its ``pyproject.toml``::

    [project.entry-points."firstspike.backends"]
    mydev = "mypackage.backend:MyBackend"

The target is a callable ``factory(uri: DeviceURI) -> Backend`` (typically the Backend class itself with a
``from_uri`` classmethod, or a function). Built-in backends register the same way.

An entry point that cannot be loaded (its module is missing, fails to import, or lacks the named attribute) is a
*broken* backend: :func:`check_backends` reports it with the reason, and opening it raises
:class:`BrokenBackendError` naming the entry point and the import error.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from urllib.parse import parse_qsl, urlsplit

from firstspike.hal.backend import Backend
from firstspike.hal.errors import BrokenBackendError, UnknownBackendError

ENTRY_POINT_GROUP = "firstspike.backends"
#: the distribution whose own backends check_backends does not import
_OWN_DISTRIBUTION = "firstspike"

BackendFactory = Callable[["DeviceURI"], Backend]

_registered: dict[str, BackendFactory] = {}


@dataclass(frozen=True)
class DeviceURI:
    """A parsed device URI such as ``sim://?serial=7&noise=0`` or ``grpc://127.0.0.1:50051``."""

    raw: str
    scheme: str
    netloc: str
    path: str
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, uri: str) -> DeviceURI:
        """Parse ``scheme://netloc/path?key=value&...``; a bare scheme (``sim``) is accepted."""
        if not isinstance(uri, str) or not uri.strip():
            raise ValueError("device URI must be a non-empty string such as 'sim://' or 'grpc://host:port'")
        text = uri.strip()
        if "://" not in text:
            if text.isidentifier():
                text = text + "://"
            else:
                raise ValueError(f"device URI {uri!r} has no scheme; expected 'scheme://...', e.g. 'sim://'")
        parts = urlsplit(text)
        try:
            params = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)))
        except ValueError:
            raise ValueError(f"device URI {uri!r}: malformed query {parts.query!r}") from None
        return cls(uri, parts.scheme.lower(), parts.netloc, parts.path, params)

    def param(self, name: str, default: str | None = None) -> str | None:
        return self.params.get(name, default)

    def int_param(self, name: str, default: int, low: int, high: int) -> int:
        """An integer query parameter, range-checked (the error names the parameter and the range)."""
        v = self.params.get(name)
        if v is None:
            return default
        try:
            val = int(v, 0)
        except ValueError:
            raise ValueError(f"{self.scheme}:// parameter {name}={v!r} is not an integer") from None
        if not low <= val <= high:
            raise ValueError(f"{self.scheme}:// parameter {name}={val} out of range [{low}, {high}]")
        return val

    def float_param(self, name: str, default: float, low: float, high: float) -> float:
        """A real-valued query parameter, range-checked (NaN is out of range; the error names the parameter)."""
        v = self.params.get(name)
        if v is None:
            return default
        try:
            val = float(v)
        except ValueError:
            raise ValueError(f"{self.scheme}:// parameter {name}={v!r} is not a number") from None
        if not low <= val <= high:
            raise ValueError(f"{self.scheme}:// parameter {name}={val} out of range [{low}, {high}]")
        return val

    def check_params(self, allowed: set[str]) -> None:
        """Reject unknown query parameters (typos must not be silently ignored)."""
        unknown = sorted(set(self.params) - allowed)
        if unknown:
            raise ValueError(f"{self.scheme}:// does not take parameter(s) {unknown}; allowed {sorted(allowed)}")


def register(scheme: str, factory: BackendFactory) -> None:
    """Register a backend factory for a URI scheme at run time (entry points are the usual way)."""
    _registered[scheme.lower()] = factory


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name.lower(): ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available_schemes() -> list[str]:
    """Every scheme declared: registered at run time or by an installed package's entry point (cheap: nothing is
    imported; :func:`check_backends` says which of them actually load)."""
    return sorted(set(_registered) | set(_entry_points()))


def _describe(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    origin = f" (package {dist.name})" if dist is not None and getattr(dist, "name", None) else ""
    return f"entry point {ep.name} = {ep.value}{origin}"


def _load(scheme: str, ep: metadata.EntryPoint) -> BackendFactory:
    try:
        factory = ep.load()
    except Exception as e:  # any failure of third-party import code means: this backend cannot be used
        reason = f"{type(e).__name__}: {e}".splitlines()[0]
        raise BrokenBackendError(scheme, f"{_describe(ep)} cannot be loaded: {reason}") from None
    if not callable(factory):
        raise BrokenBackendError(scheme, f"{_describe(ep)} names a {type(factory).__name__}, not a Backend class "
                                         "or factory")
    return factory.from_uri if hasattr(factory, "from_uri") else factory


def _is_builtin(ep: metadata.EntryPoint) -> bool:
    dist = getattr(ep, "dist", None)
    return dist is not None and str(getattr(dist, "name", "")).lower() == _OWN_DISTRIBUTION


def check_backends() -> dict[str, str | None]:
    """Every declared backend: scheme -> None if it can be opened, else the reason it cannot (one line).

    A third-party entry point is loaded (its module imported), so a missing module, a failing import or a missing
    attribute all show. The package's own backends are checked without importing them (their modules load
    numba, grpc or pyserial, and are covered by its tests): only that their top-level package can be found.
    """
    status: dict[str, str | None] = {}
    eps = _entry_points()
    for scheme in available_schemes():
        ep = eps.get(scheme)
        if scheme in _registered or ep is None:
            status[scheme] = None
        elif _is_builtin(ep):
            top = ep.module.split(".")[0]
            found = importlib.util.find_spec(top) is not None
            status[scheme] = None if found else f"{_describe(ep)} cannot be loaded: no module named {top!r}"
        else:
            try:
                resolve(scheme)
            except BrokenBackendError as e:
                status[scheme] = e.reason
            else:
                status[scheme] = None
    return status


def resolve(scheme: str) -> BackendFactory:
    """The factory for a scheme (loading its entry point on first use).

    Raises :class:`UnknownBackendError` for a scheme nobody declares and :class:`BrokenBackendError` for one whose
    entry point cannot be loaded.
    """
    scheme = scheme.lower()
    if scheme in _registered:
        return _registered[scheme]
    ep = _entry_points().get(scheme)
    if ep is None:
        raise UnknownBackendError(
            f"no backend for scheme {scheme!r}; available: {', '.join(available_schemes()) or 'none'}"
        )
    factory = _load(scheme, ep)
    _registered[scheme] = factory
    return factory


def open_backend(uri: str) -> Backend:
    """Open the device a URI names (``sim://``, ``grpc://host:port``, ``serial:///dev/ttyUSB0`` ...)."""
    parsed = DeviceURI.parse(uri)
    return resolve(parsed.scheme)(parsed)
