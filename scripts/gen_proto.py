"""Regenerate the Python stubs of ``proto/firstspike/v1/device.proto`` (deterministically).

Run from anywhere: ``python scripts/gen_proto.py`` (writes the stubs) or ``python scripts/gen_proto.py --check``
(exit 1 and list the files that differ). Needs ``grpcio-tools`` (pinned in the ``dev`` extra: the generated
code must match that version, and the runtime needs ``grpcio`` and ``protobuf`` at least as new).

protoc runs with ``-I proto`` so the descriptor is registered as ``firstspike/v1/device.proto`` (what other
languages and server reflection see); the import it writes into ``device_pb2_grpc.py`` and the module name in
``device_pb2.py`` are then rewritten to the package path ``firstspike.proto.firstspike.v1``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "proto"
PROTO_FILES = ["firstspike/v1/device.proto"]
OUTPUTS = ["device_pb2.py", "device_pb2.pyi", "device_pb2_grpc.py"]
# (file, old, new): module paths protoc writes relative to the include dir -> the package path.
_FIXUPS = [
    ("device_pb2_grpc.py", b"from firstspike.v1 import device_pb2",
     b"from firstspike.proto.firstspike.v1 import device_pb2"),
    ("device_pb2.py", b"'firstspike.v1.device_pb2'", b"'firstspike.proto.firstspike.v1.device_pb2'"),
]


def generate() -> dict[Path, bytes]:
    """Run protoc in a scratch directory; return {destination path: file bytes} of every generated file."""
    from grpc_tools import protoc  # dev dependency: imported only when regenerating

    out: dict[Path, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            "-I.",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *PROTO_FILES,
        ]
        # Relative paths from inside proto/ keep absolute paths of this machine out of the generated code.
        cwd = os.getcwd()
        os.chdir(PROTO_ROOT)
        try:
            rc = protoc.main(args)
        finally:
            os.chdir(cwd)
        if rc != 0:
            raise RuntimeError(f"protoc failed with exit code {rc}")
        for proto in PROTO_FILES:
            pkg = Path(proto).parent
            for name in OUTPUTS:
                data = (Path(tmp) / pkg / name).read_bytes()
                for fname, old, new in _FIXUPS:
                    if fname == name:
                        if old not in data:
                            raise RuntimeError(f"{name}: expected text {old!r} not found; update the fix-up")
                        data = data.replace(old, new)
                if name.endswith(".pyi"):
                    # The repo's ruff config excludes the generated .py files but not stubs; generated code
                    # follows protoc's style, not ours.
                    data = b"# ruff: noqa\n" + data
                out[PROTO_ROOT / pkg / name] = data
    return out


def stale(files: dict[Path, bytes]) -> list[Path]:
    """The destinations whose current content differs from ``files``."""
    return [p for p, data in files.items() if not p.exists() or p.read_bytes() != data]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if the stubs are out of date")
    args = parser.parse_args(argv)
    files = generate()
    changed = stale(files)
    if args.check:
        for p in changed:
            print(f"out of date: {p.relative_to(REPO)}")
        return 1 if changed else 0
    for p in changed:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(files[p])
        print(f"wrote {p.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
