"""Configuration containers for the whole chip, with range checks, exact encoding and diffs.

A :class:`ChipConfig` is everything a device needs to run a network:

* :class:`NeuronParams`: digital parameters per neuron (512 each, see the table in ``NEURON_FIELDS``),
  plus which columns join their two halves into one logical neuron (``merged_columns``);
* :class:`SynapseArrays`: per half a 256 x 256 array of 6-bit weights and 6-bit labels (uint8);
* row modes (off / excitatory / inhibitory) per half and row;
* :class:`Routing`: which event source (an input channel or a neuron's output) reaches which row of
  which half, carrying which 6-bit address, through which programmable delay line (a 9-bit code of 8-tick
  steps per route). A synapse responds to an event on its row only when the event's address equals the
  synapse's label.

Encoding versions: version 2 adds the routes' delays (``routing.delay``); a configuration whose delays are all 0
is written as version 1, byte for byte what it was before delay lines existed (so its digest, the artifacts and
golden files holding it, and older readers all stay valid). Both versions are read; version 1 means no delays.

Every container exposes its state as named numpy arrays (``fields()``), which gives one generic path for
validation, the binary encoding and :class:`ConfigDiff`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from firstspike.hal import chip
from firstspike.hal.encoding import decode_arrays, encode_arrays
from firstspike.hal.errors import ConfigDecodeError, ConfigError, FieldRangeError

CONFIG_MAGIC = b"FSCF"
DIFF_MAGIC = b"FSCD"
#: the newest encoding version (2: routes carry delays); :data:`CONFIG_VERSIONS` are read
CONFIG_VERSION = 2
CONFIG_VERSIONS = (1, 2)
#: the version a configuration (or diff) without any route delay is written in
_NO_DELAY_VERSION = 1


class RowMode(IntEnum):
    """What a synapse row does with its events."""

    OFF = 0
    EXCITATORY = 1
    INHIBITORY = 2


class SourceKind(IntEnum):
    """Kind of event source in the routing table."""

    INPUT = 0  # an external input channel 0..1023
    NEURON = 1  # a neuron's spike output 0..511


# name -> (dtype, low, high, default, meaning and unit)
NEURON_FIELDS: dict[str, tuple[str, int, int, int, str]] = {
    "leak": ("<u2", 0, chip.PARAM_MAX, 300, "leak (resting) potential, membrane LSB"),
    "threshold": ("<u2", 0, chip.PARAM_MAX, 600, "spike threshold, membrane LSB"),
    "reset": ("<u2", 0, chip.PARAM_MAX, 300, "reset potential, membrane LSB"),
    "tau_mem": ("<u2", 1, chip.PARAM_MAX, 188, "membrane time constant code (x4 ticks nominal)"),
    "tau_syn_exc": ("<u2", 1, chip.PARAM_MAX, 188, "excitatory synaptic time constant code (x4 ticks)"),
    "tau_syn_inh": ("<u2", 1, chip.PARAM_MAX, 188, "inhibitory synaptic time constant code (x4 ticks)"),
    "refractory": ("<u2", 0, chip.REFRACTORY_MAX, 0, "refractory period code (x8 ticks)"),
    "gain_exc": ("<u2", 0, chip.PARAM_MAX, 64, "excitatory synaptic gain code (jump = w*gain/64 LSB)"),
    "gain_inh": ("<u2", 0, chip.PARAM_MAX, 64, "inhibitory synaptic gain code (jump = w*gain/64 LSB)"),
    "enabled": ("|b1", 0, 1, 0, "neuron integrates and emits spikes"),
}


def _check_range(name: str, arr: np.ndarray, low: int, high: int) -> None:
    if arr.size == 0:
        return
    if arr.dtype == np.bool_:
        return
    if low <= int(arr.min()) and int(arr.max()) <= high:  # two reductions in the native dtype, no copy
        return
    a = arr.astype(np.int64, copy=False)
    bad = np.flatnonzero((a < low) | (a > high))
    if len(bad):
        idx = np.unravel_index(bad[0], arr.shape)
        where = ",".join(str(int(i)) for i in idx)
        more = f"; {len(bad)} entries out of range" if len(bad) > 1 else ""
        raise FieldRangeError(f"{name}[{where}]", int(a.flat[bad[0]]), low, high, more.lstrip("; "))


def _check_array(name: str, arr: object, dtype: str, shape: tuple[int, ...] | None) -> np.ndarray:
    if not isinstance(arr, np.ndarray):
        raise ConfigError(f"{name}: expected a numpy array, got {type(arr).__name__}")
    if arr.dtype != np.dtype(dtype):
        raise ConfigError(f"{name}: dtype {arr.dtype} not allowed; expected {np.dtype(dtype)}")
    if shape is not None and arr.shape != shape:
        raise ConfigError(f"{name}: shape {arr.shape}; expected {shape}")
    return arr


@dataclass(eq=False)
class NeuronParams:
    """Digital parameters of all 512 neurons (struct of arrays, each shape (512,)).

    Ranges and units are in :data:`NEURON_FIELDS`; ``merged_columns[c]`` joins neuron ``c`` of half 0 and
    neuron ``c`` of half 1 into one logical neuron (both halves' synaptic input drive one membrane; it uses
    the parameters of the half-0 neuron and spikes as that neuron).
    """

    values: dict[str, np.ndarray] = field(default_factory=dict)
    merged_columns: np.ndarray = field(default_factory=lambda: np.zeros(chip.COLUMNS_PER_HALF, dtype=np.bool_))

    def __post_init__(self) -> None:
        for name, (dt, _, _, default, _) in NEURON_FIELDS.items():
            if name not in self.values:
                self.values[name] = np.full(chip.N_NEURONS, default, dtype=np.dtype(dt))
        unknown = set(self.values) - set(NEURON_FIELDS)
        if unknown:
            raise ConfigError(f"unknown neuron parameter(s) {sorted(unknown)}; allowed {list(NEURON_FIELDS)}")

    def __getattr__(self, name: str) -> np.ndarray:
        values = self.__dict__.get("values")
        if values is not None and name in values:
            return values[name]
        raise AttributeError(name)

    def set(self, neurons: np.ndarray | int | slice, **params: int | np.ndarray) -> None:
        """Set parameters of the given neurons, range-checked before anything is written."""
        for name, val in params.items():
            if name not in NEURON_FIELDS:
                raise ConfigError(f"unknown neuron parameter {name!r}; allowed {list(NEURON_FIELDS)}")
            _, lo, hi, _, _ = NEURON_FIELDS[name]
            _check_range(f"neurons.{name}", np.asarray(val, dtype=np.int64).reshape(-1), lo, hi)
        for name, val in params.items():
            self.values[name][neurons] = val

    def fields(self) -> dict[str, np.ndarray]:
        out = {f"neurons.{k}": self.values[k] for k in NEURON_FIELDS}
        out["neurons.merged_columns"] = self.merged_columns
        return out


_SYN_SHAPE = (chip.N_HALVES, chip.ROWS_PER_HALF, chip.COLUMNS_PER_HALF)


@dataclass(eq=False)
class SynapseArrays:
    """Both halves' synapse arrays: ``weights`` and ``labels`` uint8 of shape (2, 256 rows, 256 columns)."""

    weights: np.ndarray = field(default_factory=lambda: np.zeros(_SYN_SHAPE, dtype=np.uint8))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(_SYN_SHAPE, dtype=np.uint8))

    def fields(self) -> dict[str, np.ndarray]:
        return {"synapses.weights": self.weights, "synapses.labels": self.labels}


ROUTE_DTYPE = np.dtype(
    [("kind", "u1"), ("source", "<u2"), ("half", "u1"), ("row", "u1"), ("address", "u1"), ("delay", "<u2")]
)
#: the fields that identify a route; ``delay`` is the route's property (one delay per route)
ROUTE_KEY = ("kind", "source", "half", "row", "address")


def _sorted_unique_routes(routes: np.ndarray) -> np.ndarray:
    """``np.unique(routes)`` for a 1-d array of ``ROUTE_DTYPE``: sorted by the fields in order, exact duplicates
    dropped, a new array. The six fields fill exactly 64 bits, so each route packs into one uint64 whose order is
    the fields' lexicographic order: numpy's structured comparison sort took ~0.7 ms for 1 000 routes, this
    ~20 us, and an already sorted, duplicate-free table (every decoded or diff-applied one) is only copied."""
    key = np.zeros(len(routes), dtype=np.uint64)
    shift = 64
    for name in ROUTE_DTYPE.names or ():
        shift -= 8 * ROUTE_DTYPE[name].itemsize
        key |= routes[name].astype(np.uint64) << np.uint64(shift)
    if len(key) < 2 or bool(np.all(key[1:] > key[:-1])):
        return routes.copy()
    _, first = np.unique(key, return_index=True)
    return routes[first]


def _duplicate_route(routes: np.ndarray) -> int:
    """Index of the first route of a sorted table whose key equals the next one's (two delays for one route), or
    -1."""
    if len(routes) < 2:
        return -1
    same = np.ones(len(routes) - 1, dtype=bool)
    for k in ROUTE_KEY:
        same &= routes[k][1:] == routes[k][:-1]
    hit = np.flatnonzero(same)
    return int(hit[0]) if len(hit) else -1


@dataclass(eq=False)
class Routing:
    """The event crossbar: a table of routes ``(kind, source) -> (half, row, address)``, each through its own
    delay line (``delay``: code 0..511, steps of ``chip.DELAY_STEP_TICKS`` = 8 ticks; docs/device-spec.md
    section 5.1 says when a delayed event arrives).

    One source may reach many rows; one row may receive many sources (distinguished by address). The
    table is kept sorted and free of duplicates so equal routings encode to equal bytes; a route (its key
    ``ROUTE_KEY``) has one delay, so the order never depends on the delays.
    """

    routes: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=ROUTE_DTYPE))

    def __post_init__(self) -> None:
        if not isinstance(self.routes, np.ndarray) or self.routes.dtype != ROUTE_DTYPE:
            raise ConfigError(f"routing: routes must be a numpy array of dtype {ROUTE_DTYPE.descr}")
        self.routes = _sorted_unique_routes(self.routes.reshape(-1))
        self._check_unique()

    def _check_unique(self) -> None:
        k = _duplicate_route(self.routes)
        if k >= 0:
            r = self.routes[k]
            key = ", ".join(f"{f}={int(r[f])}" for f in ROUTE_KEY)
            raise ConfigError(f"routing: route ({key}) has two delays ({int(r['delay'])} and"
                              f" {int(self.routes[k + 1]['delay'])}); a route has one delay line")

    @classmethod
    def from_lists(
        cls,
        kind: np.ndarray | list[int],
        source: np.ndarray | list[int],
        half: np.ndarray | list[int],
        row: np.ndarray | list[int],
        address: np.ndarray | list[int],
        delay: np.ndarray | list[int] | None = None,
    ) -> Routing:
        """Build from parallel sequences (range-checked); ``delay``: delay codes (None: all 0)."""
        cols = {"kind": kind, "source": source, "half": half, "row": row, "address": address}
        arrs = {k: np.asarray(v, dtype=np.int64).reshape(-1) for k, v in cols.items()}
        n = len(arrs["kind"])
        arrs["delay"] = np.zeros(n, dtype=np.int64) if delay is None else np.asarray(delay, dtype=np.int64).reshape(-1)
        if any(len(a) != n for a in arrs.values()):
            raise ConfigError("routing: kind, source, half, row, address and delay must have equal lengths")
        for k, (lo, hi) in _ROUTE_RANGES.items():
            _check_range(f"routing.{k}", arrs[k], lo, hi)
        r = np.empty(n, dtype=ROUTE_DTYPE)
        for k, a in arrs.items():
            r[k] = a
        out = cls(r)
        out.validate()
        return out

    def add(self, kind: int, source: int, half: int, row: int, address: int, delay: int = 0) -> None:
        """Add one route (range-checked); ``delay`` is its delay code (steps of 8 ticks). Adding a route that
        exists with another delay raises :class:`ConfigError` (use :meth:`with_delays` to change delays)."""
        extra = Routing.from_lists([kind], [source], [half], [row], [address], [delay])
        routes = _sorted_unique_routes(np.concatenate([self.routes, extra.routes]))
        Routing(routes)  # checks: one delay per route
        self.routes = routes

    def with_delays(self, delay: np.ndarray) -> Routing:
        """The same routes with the delay codes ``delay`` (one per route, in table order; range-checked). The
        order stays (it depends on the route keys only), so this is cheap: it runs every in-the-loop training
        step."""
        d = np.asarray(delay)
        if not np.issubdtype(d.dtype, np.integer):
            raise ConfigError(f"routing: delay codes must be integers, got dtype {d.dtype}")
        if d.shape != (len(self.routes),):
            raise ConfigError(f"routing: {d.shape} delays for {len(self.routes)} routes; one per route")
        _check_range("routing.delay", d, *_ROUTE_RANGES["delay"])
        out = Routing.__new__(Routing)
        out.routes = self.routes.copy()
        out.routes["delay"] = d
        return out

    @property
    def delayed(self) -> bool:
        """Whether any route has a delay other than 0."""
        return bool(self.routes["delay"].any())

    def targets(self, kind: int, source: int) -> np.ndarray:
        """All routes of one source."""
        r = self.routes
        return r[(r["kind"] == kind) & (r["source"] == source)]

    def validate(self) -> None:
        for k, (lo, hi) in _ROUTE_RANGES.items():
            _check_range(f"routing.{k}", self.routes[k], lo, hi)
        neuron = self.routes["kind"] == SourceKind.NEURON
        _check_range("routing.source (neuron)", self.routes["source"][neuron], 0, chip.N_NEURONS - 1)
        self._check_unique()

    def fields(self) -> dict[str, np.ndarray]:
        return {f"routing.{k}": np.ascontiguousarray(self.routes[k]) for k in ROUTE_DTYPE.names or ()}

    def __len__(self) -> int:
        return len(self.routes)


_ROUTE_RANGES = {
    "kind": (0, 1),
    "source": (0, chip.N_INPUT_CHANNELS - 1),
    "half": (0, chip.N_HALVES - 1),
    "row": (0, chip.ROWS_PER_HALF - 1),
    "address": (0, chip.N_LABELS - 1),
    "delay": (0, chip.DELAY_CODE_MAX),
}

# Every field of a ChipConfig: name -> (dtype, fixed shape or None for variable length, low, high).
_FIELD_SPECS: dict[str, tuple[str, tuple[int, ...] | None, int, int]] = {
    **{f"neurons.{k}": (v[0], (chip.N_NEURONS,), v[1], v[2]) for k, v in NEURON_FIELDS.items()},
    "neurons.merged_columns": ("|b1", (chip.COLUMNS_PER_HALF,), 0, 1),
    "synapses.weights": ("|u1", _SYN_SHAPE, 0, chip.WEIGHT_MAX),
    "synapses.labels": ("|u1", _SYN_SHAPE, 0, chip.N_LABELS - 1),
    "rows.modes": ("|u1", (chip.N_HALVES, chip.ROWS_PER_HALF), 0, 2),
    **{f"routing.{k}": (ROUTE_DTYPE[k].str, None, lo, hi) for k, (lo, hi) in _ROUTE_RANGES.items()},
}


@dataclass(eq=False)
class ChipConfig:
    """The complete configuration of one chip. Mutable; ``copy()`` before sharing."""

    neurons: NeuronParams = field(default_factory=NeuronParams)
    synapses: SynapseArrays = field(default_factory=SynapseArrays)
    row_modes: np.ndarray = field(
        default_factory=lambda: np.zeros((chip.N_HALVES, chip.ROWS_PER_HALF), dtype=np.uint8)
    )
    routing: Routing = field(default_factory=Routing)

    # ---- generic views -------------------------------------------------------------------------
    def fields(self) -> dict[str, np.ndarray]:
        """All state as named arrays, in canonical order (the order of the encoding)."""
        out: dict[str, np.ndarray] = {}
        out.update(self.neurons.fields())
        out.update(self.synapses.fields())
        out["rows.modes"] = self.row_modes
        out.update(self.routing.fields())
        return out

    @classmethod
    def from_fields(cls, arrays: dict[str, np.ndarray], *, copy: bool = True) -> ChipConfig:
        """Build from named arrays (as produced by :meth:`fields`); validates everything."""
        missing = [k for k in _FIELD_SPECS if k not in arrays]
        extra = [k for k in arrays if k not in _FIELD_SPECS]
        if missing or extra:
            raise ConfigError(f"config fields: missing {missing}, unknown {extra}")
        a = {k: (np.array(v) if copy else v) for k, v in arrays.items()}
        for name, (dt, shape, _, _) in _FIELD_SPECS.items():
            _check_array(name, a[name], dt, shape)
        n_routes = {len(a[f"routing.{k}"]) for k in _ROUTE_RANGES}
        if len(n_routes) != 1:
            raise ConfigError("routing: column arrays have different lengths")
        neurons = NeuronParams(
            {k: a[f"neurons.{k}"] for k in NEURON_FIELDS}, merged_columns=a["neurons.merged_columns"]
        )
        routes = np.empty(n_routes.pop(), dtype=ROUTE_DTYPE)
        for k in _ROUTE_RANGES:
            routes[k] = a[f"routing.{k}"]
        cfg = cls(
            neurons=neurons,
            synapses=SynapseArrays(a["synapses.weights"], a["synapses.labels"]),
            row_modes=a["rows.modes"],
            routing=Routing(routes),
        )
        cfg.validate()
        return cfg

    def validate(self) -> ChipConfig:
        """Check dtype, shape and range of every field; raises FieldRangeError/ConfigError naming it."""
        f = self.fields()
        for name, (dt, shape, lo, hi) in _FIELD_SPECS.items():
            _check_array(name, f[name], dt, shape)
            _check_range(name, f[name], lo, hi)
        self.routing.validate()
        return self

    def copy(self) -> ChipConfig:
        return ChipConfig.from_fields(self.fields(), copy=True)

    # ---- encoding ------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Exact, versioned, CRC-checked encoding; equal configs give equal bytes."""
        self.validate()
        return self._encode()

    def _encode(self) -> bytes:
        # to_bytes() without the validation, for a config validated a moment ago by its builder
        f = self.fields()
        if f["routing.delay"].any():
            return encode_arrays(CONFIG_MAGIC, CONFIG_VERSION, f)
        del f["routing.delay"]  # no delay: version 1, the bytes (and digest) a config had before delay lines
        return encode_arrays(CONFIG_MAGIC, _NO_DELAY_VERSION, f)

    @classmethod
    def from_bytes(cls, data: bytes) -> ChipConfig:
        """Decode :meth:`to_bytes` output (either version); any defect raises :class:`ConfigDecodeError`."""
        version, _, arrays = decode_arrays(data, CONFIG_MAGIC, CONFIG_VERSIONS)
        if version == _NO_DELAY_VERSION:
            if "routing.delay" in arrays:
                raise ConfigDecodeError("config version 1 has no routing.delay; delays need version 2")
            kinds = arrays.get("routing.kind")
            arrays["routing.delay"] = np.zeros(0 if kinds is None else len(kinds), dtype=ROUTE_DTYPE["delay"])
        try:
            return cls.from_fields(arrays, copy=False)
        except (ConfigError, FieldRangeError) as e:
            raise ConfigDecodeError(f"decoded config is invalid: {e}") from e

    def digest(self, *, validate: bool = True) -> bytes:
        """SHA-256 of the canonical encoding (32 bytes): identifies a configuration. ``validate=False`` skips the
        range checks, for a config its builder validated a moment ago (the bytes are the same)."""
        return hashlib.sha256(self.to_bytes() if validate else self._encode()).digest()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChipConfig):
            return NotImplemented
        a, b = self.fields(), other.fields()
        return all(a[k].shape == b[k].shape and np.array_equal(a[k], b[k]) for k in a)

    __hash__ = None  # type: ignore[assignment]  # mutable

    # ---- diffs ---------------------------------------------------------------------------------
    def diff(self, target: ChipConfig, *, base_digest: bytes | None = None,
             target_digest: bytes | None = None) -> ConfigDiff:
        """The changes that turn ``self`` into ``target`` (only changed entries are carried).

        ``base_digest`` / ``target_digest``: the digests of ``self`` / ``target`` when the caller knows them
        (a configuration mirror does); each saves validating, encoding and hashing that configuration again."""
        a, b = self.fields(), target.fields()
        patches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        replaced: dict[str, np.ndarray] = {}
        # new route keys: the table is replaced whole (its delays only if it has any); the same keys with other
        # delays: the changed delays are patched like weights (a delay update in training is a small diff)
        route_changed = any(a[k].shape != b[k].shape or not np.array_equal(a[k], b[k]) for k in _route_keys())
        for name in a:
            if name.startswith("routing."):
                if route_changed:
                    if name != "routing.delay" or b[name].any():
                        replaced[name] = b[name].copy()
                    continue
                if name != "routing.delay":
                    continue
            changed = np.flatnonzero(a[name].reshape(-1) != b[name].reshape(-1)).astype(np.uint32)
            if len(changed):
                patches[name] = (changed, b[name].reshape(-1)[changed].copy())
        return ConfigDiff(base_digest or self.digest(), target_digest or target.digest(), patches, replaced)

    @property
    def nbytes(self) -> int:
        """Bytes of all its arrays: about the size of its encoding, what a full upload carries."""
        return sum(int(a.nbytes) for a in self.fields().values())

    def summary(self) -> dict[str, int]:
        """Counts of what is in use (for reports and logs)."""
        return {
            "enabled_neurons": int(self.neurons.values["enabled"].sum()),
            "merged_columns": int(self.neurons.merged_columns.sum()),
            "nonzero_synapses": int(np.count_nonzero(self.synapses.weights)),
            "active_rows": int(np.count_nonzero(self.row_modes)),
            "routes": len(self.routing),
        }


def _route_keys() -> list[str]:
    """The route table's key columns (without ``routing.delay``)."""
    return [f"routing.{k}" for k in ROUTE_KEY]


def _patchable(name: str) -> bool:
    """Fields a diff may patch entry by entry: all but the route keys (a new route table is replaced whole)."""
    return name in _FIELD_SPECS and (not name.startswith("routing.") or name == "routing.delay")


@dataclass(eq=False)
class ConfigDiff:
    """What changed between two configs: sparse patches per field (flat index, new value; route delays too, when
    the routes stay), whole replacements for the route table when its routes change (its ``routing.delay`` column
    only if the target has delays: without it the delays are 0), and the digests of base and target so a diff is
    never applied to the wrong base nor produces a config other than its target."""

    base_digest: bytes
    target_digest: bytes
    patches: dict[str, tuple[np.ndarray, np.ndarray]]
    replaced: dict[str, np.ndarray]

    @property
    def empty(self) -> bool:
        return not self.patches and not self.replaced

    def changed_entries(self) -> int:
        """Number of patched array entries (plus replaced entries)."""
        return sum(len(i) for i, _ in self.patches.values()) + sum(len(v) for v in self.replaced.values())

    @property
    def nbytes(self) -> int:
        """Bytes of its patches (indices and values) and replacements: about the size of its encoding."""
        patched = sum(int(np.asarray(i).nbytes) + int(np.asarray(v).nbytes) for i, v in self.patches.values())
        return patched + sum(int(np.asarray(v).nbytes) for v in self.replaced.values())

    def apply(self, base: ChipConfig, *, base_digest: bytes | None = None) -> ChipConfig:
        """Return a new config: ``base`` with the diff applied. ``base`` is never modified.

        ``base_digest``: ``base.digest()``, when the caller holds ``base`` privately and already knows it (saves
        encoding and hashing ``base`` again). The result is checked against :attr:`target_digest` either way, so
        it is exactly the target: its digest is ``target_digest``."""
        if (base.digest() if base_digest is None else base_digest) != self.base_digest:
            raise ConfigError("diff does not apply: the base configuration differs from the one it was made for")
        arrays = {k: v.copy() for k, v in base.fields().items()}
        if "routing.delay" in self.patches and self.replaced:
            raise ConfigError("diff both patches the route delays and replaces the route table")
        for name, (idx, val) in self.patches.items():
            if not _patchable(name):
                raise ConfigError(f"diff patches unknown field {name!r}")
            flat = arrays[name].reshape(-1)
            if len(idx) and int(idx.max()) >= flat.size:
                raise FieldRangeError(f"diff {name} index", int(idx.max()), 0, flat.size - 1)
            flat[idx.astype(np.int64)] = val
        for name, val in self.replaced.items():
            if name not in _FIELD_SPECS:
                raise ConfigError(f"diff replaces unknown field {name!r}")
            arrays[name] = val.copy()
        if "routing.kind" in self.replaced and "routing.delay" not in self.replaced:
            arrays["routing.delay"] = np.zeros(len(self.replaced["routing.kind"]), dtype=ROUTE_DTYPE["delay"])
        out = ChipConfig.from_fields(arrays, copy=False)  # validates
        if out.digest(validate=False) != self.target_digest:
            raise ConfigError("diff result does not match its target digest")
        return out

    def to_bytes(self) -> bytes:
        """Encode (same container as configs, magic FSCD; header = base digest + target digest)."""
        arrays: dict[str, np.ndarray] = {}
        for name, (idx, val) in self.patches.items():
            arrays[f"patch:{name}:index"] = np.asarray(idx, dtype=np.uint32)
            arrays[f"patch:{name}:value"] = val
        for name, val in self.replaced.items():
            arrays[f"replace:{name}"] = val
        version = CONFIG_VERSION if any("routing.delay" in k for k in arrays) else _NO_DELAY_VERSION
        return encode_arrays(DIFF_MAGIC, version, arrays, header=self.base_digest + self.target_digest)

    @classmethod
    def from_bytes(cls, data: bytes) -> ConfigDiff:
        """Decode :meth:`to_bytes` output; any defect raises :class:`ConfigDecodeError`."""
        version, header, arrays = decode_arrays(data, DIFF_MAGIC, CONFIG_VERSIONS)
        if len(header) != 64:
            raise ConfigDecodeError(f"diff header must be 64 bytes (two SHA-256 digests), got {len(header)}")
        if version == _NO_DELAY_VERSION and any("routing.delay" in k for k in arrays):
            raise ConfigDecodeError("diff version 1 has no routing.delay; delays need version 2")
        patches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        replaced: dict[str, np.ndarray] = {}
        for key, arr in arrays.items():
            kind, _, rest = key.partition(":")
            if kind == "patch":
                name, _, part = rest.rpartition(":")
                spec = _FIELD_SPECS.get(name)
                if spec is None or not _patchable(name) or part not in ("index", "value"):
                    raise ConfigDecodeError(f"diff: unknown entry {key!r}")
                if part == "index":
                    if arr.dtype != np.uint32 or arr.ndim != 1:
                        raise ConfigDecodeError(f"diff: {key!r} must be 1-d uint32")
                    continue
                idx = arrays.get(f"patch:{name}:index")
                if idx is None or arr.dtype != np.dtype(spec[0]) or arr.shape != idx.shape:
                    raise ConfigDecodeError(f"diff: patch of {name!r} has mismatched index/value arrays")
                patches[name] = (idx, arr)
            elif kind == "replace":
                spec = _FIELD_SPECS.get(rest)
                if spec is None or arr.dtype != np.dtype(spec[0]) or arr.ndim != 1:
                    raise ConfigDecodeError(f"diff: bad replacement {key!r}")
                replaced[rest] = arr
            else:
                raise ConfigDecodeError(f"diff: unknown entry {key!r}")
        orphan = [
            k for k in arrays if k.endswith(":index") and k.rpartition(":")[0].partition(":")[2] not in patches
        ]
        if orphan:
            raise ConfigDecodeError(f"diff: index arrays without values {orphan}")
        return cls(header[:32], header[32:], patches, replaced)
