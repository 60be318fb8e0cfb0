"""GrpcBackend passes the backend conformance suite (firstspike.runtime.conformance) as well as the backend it serves:
every check that fails through gRPC must also fail in-process (then it is the device's problem, not ours)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grpc_support import ServerProcess

DEVICE = "sim://?serial=5"


def _conformance(uri: str, cwd: Path, *extra: str) -> tuple[int, set[str], str]:
    env = {k: v for k, v in os.environ.items() if k != "FIRSTSPIKE_DEVICE"}
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "firstspike.runtime.conformance", "--device", uri, "-q", "-rf",
           "-p", "no:cacheprovider", "-o", "addopts=", *extra]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=str(cwd), env=env, timeout=900)
    failed = set(re.findall(r"^FAILED \S*::(\S+)", res.stdout, flags=re.MULTILINE))
    return res.returncode, failed, res.stdout[-4000:] + res.stderr[-2000:]


def test_grpc_backend_is_as_conformant_as_its_device(tmp_path):
    srv = ServerProcess.start(DEVICE)
    try:
        rc, failed, out = _conformance(srv.uri(), tmp_path)
    finally:
        srv.close()
    assert " passed" in out, out
    if rc == 0:
        return
    assert failed, out  # a non-zero exit without failed checks is an error of the run itself
    _, failed_direct, _ = _conformance(DEVICE, tmp_path, "-k", " or ".join(sorted(failed)))
    assert failed <= failed_direct, f"fail only through gRPC: {sorted(failed - failed_direct)}\n{out}"
    warnings.warn(f"the device itself fails conformance checks {sorted(failed)} (in-process too)", stacklevel=1)
