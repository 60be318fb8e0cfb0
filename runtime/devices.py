"""Open devices by URI, and pools of devices.

``firstspike.runtime.open(uri)`` is the one way user code gets a device: ``sim://`` (in-process simulator, the
default), ``grpc://host:port`` (a device server), ``grpc://h1:p1,h2:p2`` (a :class:`DevicePool` over several
servers), ``serial:///dev/ttyUSB0`` (hardware), or any scheme a package registers. ``FIRSTSPIKE_DEVICE``
sets the default URI.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from firstspike.hal.backend import Backend, DeviceInfo, RunOptions, RunResult
from firstspike.hal.config import ChipConfig, ConfigDiff
from firstspike.hal.errors import BackendError
from firstspike.hal.events import InputSpikes
from firstspike.hal.registry import open_backend

ENV_VAR = "FIRSTSPIKE_DEVICE"
DEFAULT_URI = "sim://"


def default_uri() -> str:
    """The URI ``open()`` uses without an argument: ``$FIRSTSPIKE_DEVICE`` or ``sim://``."""
    return os.environ.get(ENV_VAR, "").strip() or DEFAULT_URI


def open(uri: str | None = None) -> Backend:  # shadows the builtin in this module only (public name)
    """Open the device ``uri`` names (default: :func:`default_uri`); returns a hal Backend.

    Examples: ``open()``, ``open("sim://?serial=7")``, ``open("grpc://127.0.0.1:50051")``,
    ``open("grpc://h1:50051,h2:50051")`` (a pool). Unknown schemes raise UnknownBackendError listing
    the available ones; bad parameters raise ValueError naming them.
    """
    return open_backend(default_uri() if uri is None else uri)


class DevicePool(Backend):
    """Several devices used as one: ``configure`` goes to all, ``run`` splits the batch into contiguous
    chunks (one per member, in parallel threads) and joins the results in the original order.

    Each chunk's ``RunOptions.entry_offset`` is the chunk's position in the batch, so a device whose noise
    is keyed by (seed, entry_offset + entry) gives exactly the single-device result. Members should be the
    same chip model (and, for bit-identical results across the pool, the same serial / calibration).
    """

    scheme = "pool"

    def __init__(self, members: Sequence[Backend]) -> None:
        if not members:
            raise ValueError("a device pool needs at least one member")
        self._members = list(members)
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=len(self._members), thread_name_prefix="fs-pool")
        infos = [m.info() for m in self._members]
        first = infos[0]
        self._info = DeviceInfo(
            model=f"pool[{len(infos)}]:{first.model}",
            serial=first.serial,
            version=first.version,
            resource_model=dict(first.resource_model),
            max_batch=sum(i.max_batch for i in infos),
            max_duration_ticks=min(i.max_duration_ticks for i in infos),
            max_events=min(i.max_events for i in infos),
            deterministic=all(i.deterministic for i in infos),
            membrane_readout=min(i.membrane_readout for i in infos),
            extra={
                "members": [{"model": i.model, "serial": i.serial, "version": i.version} for i in infos],
                "homogeneous": len({(i.model, i.serial, i.version) for i in infos}) == 1,
            },
        )

    @classmethod
    def open(cls, factories: Sequence[Callable[[], Backend]]) -> DevicePool:
        """Open every member in parallel (``factories`` are called in threads); closes them all on failure."""
        with ThreadPoolExecutor(max_workers=max(1, len(factories))) as ex:
            futs = [ex.submit(f) for f in factories]
            members, errors = [], []
            for f in futs:
                try:
                    members.append(f.result())
                except Exception as e:
                    errors.append(e)
        if errors:
            for m in members:
                m.close()
            raise errors[0]
        return cls(members)

    @property
    def members(self) -> list[Backend]:
        """The member devices, in chunk order."""
        return list(self._members)

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("device pool is closed")

    def _all(self, fn: Callable[[Backend], object]) -> list[object]:
        futs = [self._executor.submit(fn, m) for m in self._members]
        errors = []
        out = []
        for f in futs:
            try:
                out.append(f.result())
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]
        return out

    def info(self) -> DeviceInfo:
        """Combined info: max_batch summed, other limits the tightest member's; members in ``extra``."""
        self._check_open()
        return self._info

    def configure(self, config: ChipConfig | ConfigDiff) -> None:
        """Configure every member (in parallel); the first member error is raised."""
        self._check_open()
        if isinstance(config, ChipConfig):
            config.validate()  # reject invalid configs before any member sees them
        self._all(lambda m: m.configure(config))

    def split_sizes(self, batch_size: int) -> list[int]:
        """Contiguous chunk sizes, one per member (as equal as possible, earlier members get the remainder)."""
        n = len(self._members)
        q, r = divmod(batch_size, n)
        return [q + (1 if k < r else 0) for k in range(n)]

    def run(self, inputs: InputSpikes, options: RunOptions) -> RunResult:
        """Run chunks in parallel on the members; spikes joined in batch order, counters summed."""
        self._check_open()
        self.check_run_request(inputs, options)
        sizes = self.split_sizes(inputs.batch_size)
        chunks = inputs.split(sizes)
        jobs = []
        start = 0
        for member, chunk, size in zip(self._members, chunks, sizes, strict=True):
            if size or inputs.batch_size == 0:
                opts = replace(options, entry_offset=options.entry_offset + start)
                jobs.append(self._executor.submit(member.run, chunk, opts))
                if inputs.batch_size == 0:
                    break
            start += size
        results = []
        errors = []
        for j in jobs:
            try:
                results.append(j.result())
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]
        return RunResult.concatenate(results)

    def close(self) -> None:
        """Close every member. Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        try:
            for m in self._members:
                m.close()
        finally:
            self._executor.shutdown(wait=False)


