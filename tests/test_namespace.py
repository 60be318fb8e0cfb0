"""One import namespace: every module is ``firstspike.*``, the layers import only downwards, nothing of the old
top-level names (``hal``, ``runtime``, ...) remains, and ``import firstspike`` stays cheap.

The import rules are checked by walking every import statement (and ``importlib.import_module("...")`` call) of
every module with ``ast``, lazy imports inside functions included.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("hal", "compiler", "sim_device", "drivers", "runtime", "proto")
#: who may import whom (besides itself): hal nothing; compiler, sim_device, drivers only hal; proto nothing;
#: runtime everything
ALLOWED: dict[str, set[str]] = {
    "hal": set(),
    "compiler": {"hal"},
    "sim_device": {"hal"},
    "drivers": {"hal"},
    "proto": set(),
    "runtime": {"hal", "compiler", "sim_device", "drivers", "proto"},
}
_SKIP = {".venv", ".git", "build", "runs", "__pycache__", "firstspike", ".hypothesis", ".pytest_cache"}


def _python_files(root: Path) -> list[Path]:
    out = []
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(REPO)
        if any(part in _SKIP for part in rel.parts[:-1]) or any(part.endswith(".egg-info") for part in rel.parts):
            continue
        out.append(p)
    return out


def _imported_modules(tree: ast.AST, module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``tree``; relative imports resolved against ``module``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            # "from firstspike import runtime" imports the subpackage firstspike.runtime
            if name == "firstspike":
                found += [(node.lineno, f"firstspike.{a.name}") for a in node.names]
        elif isinstance(node, ast.Call):
            func = node.func
            is_import_module = (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
                isinstance(func, ast.Name) and func.id == "import_module")
            if is_import_module and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append((node.lineno, arg.value))
                elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
                    found.append((node.lineno, str(arg.values[0].value).rstrip(".")))
    return found


def _package_of(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] == "firstspike" and len(parts) > 1 and parts[1] in PACKAGES:
        return parts[1]
    return None


def test_the_layers_import_only_downwards():
    bad = []
    n_files = 0
    for pkg in PACKAGES:
        for path in _python_files(REPO / pkg):
            if path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
                continue  # generated: imports only itself and grpc/protobuf
            n_files += 1
            module = "firstspike." + ".".join(path.relative_to(REPO).with_suffix("").parts)
            for line, name in _imported_modules(ast.parse(path.read_text()), module):
                target = _package_of(name)
                if target is not None and target != pkg and target not in ALLOWED[pkg]:
                    bad.append(f"{path.relative_to(REPO)}:{line}: {pkg} imports {name}")
    assert n_files > 80, n_files  # the walk saw the packages
    assert not bad, "layer violations:\n" + "\n".join(bad)


def test_the_walk_catches_a_violation_and_a_lazy_import():
    src = "def f():\n    from firstspike.runtime import session\n    import firstspike.sim_device.engine as e\n"
    names = [n for _, n in _imported_modules(ast.parse(src), "firstspike.hal.x")]
    assert {_package_of(n) for n in names} == {"runtime", "sim_device"}
    names = [n for _, n in _imported_modules(ast.parse("from .. import config\n"), "firstspike.hal.sub.x")]
    assert names == ["firstspike.hal"]


def test_no_old_top_level_imports_anywhere():
    """No ``import hal`` / ``from runtime ...`` in any Python file, Markdown code block or command line."""
    old = re.compile(rf"^({'|'.join(PACKAGES)})(\.|$)")
    bad = []
    for path in _python_files(REPO):
        for line, name in _imported_modules(ast.parse(path.read_text()), "__main__"):
            if old.match(name):
                bad.append(f"{path.relative_to(REPO)}:{line}: {name}")
    text_files = [p for p in REPO.rglob("*") if p.is_file() and p.suffix in {".md", ".toml", ".py", ".txt", ""}
                  and not any(part in _SKIP for part in p.relative_to(REPO).parts)]
    cmd = re.compile(rf"(-m|--pyargs)\s+({'|'.join(PACKAGES)})\.|"
                     rf"^\s*(from\s+({'|'.join(PACKAGES)})(\.\w+)*\s+import|import\s+({'|'.join(PACKAGES)})\b)")
    entry = re.compile(rf"=\s*\"({'|'.join(PACKAGES)})\.[\w.]+:")
    for path in text_files:
        try:
            lines = path.read_text().splitlines()
        except UnicodeDecodeError:
            continue
        for i, text in enumerate(lines, 1):
            if cmd.search(text) or entry.search(text):
                bad.append(f"{path.relative_to(REPO)}:{i}: {text.strip()}")
    assert not bad, "old-style module names:\n" + "\n".join(bad)


def test_the_package_links_point_at_the_repository_folders():
    for pkg in PACKAGES:
        link = REPO / "firstspike" / pkg
        assert link.is_symlink() and link.resolve() == (REPO / pkg).resolve(), link


def test_import_firstspike_is_cheap_and_says_what_is_inside():
    code = (
        "import sys, firstspike\n"
        "heavy = sorted(m for m in ('torch', 'numba', 'grpc', 'numpy', 'matplotlib') if m in sys.modules)\n"
        "print(heavy)\n"
        "print(firstspike.__doc__.splitlines()[0])\n"
        "print(firstspike.hal.chip.N_NEURONS)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    heavy, doc, n = out.splitlines()[:3]
    assert heavy == "[]", heavy
    assert "firstspike" in doc
    assert n == "512"


def test_subpackages_import_under_the_namespace_only():
    import firstspike.hal.config as config

    assert config.__name__ == "firstspike.hal.config"
    assert "hal" not in sys.modules and "runtime" not in sys.modules


# --- the wheel ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import shutil

    out = tmp_path_factory.mktemp("wheel")
    # built from a copy (links kept as links), so setuptools' build/ and egg-info stay out of the repository
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("firstspike", *PACKAGES):
        shutil.copytree(REPO / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    # no build isolation: the project venv's setuptools builds it, without a download
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(src)], check=True, capture_output=True, text=True)
    (whl,) = out.glob("firstspike-*.whl")
    return whl


def test_the_wheel_holds_only_firstspike(wheel: Path):
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"firstspike", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}, top
    # every package arrived with its files (the links were followed), generated protobuf code included
    for path in ("firstspike/__init__.py", "firstspike/hal/config.py", "firstspike/sim_device/engine.py",
                 "firstspike/runtime/cli.py", "firstspike/proto/firstspike/v1/device_pb2.py",
                 "firstspike/proto/firstspike/v1/device.proto", "firstspike/runtime/conformance/plugin.py"):
        assert path in names, path
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    targets = re.findall(r"=\s*([\w.]+):", entry_points)
    assert targets and all(t.startswith("firstspike.") for t in targets), entry_points


_RUN_SCRIPT = """
import hashlib, sys
import numpy as np, torch
from firstspike.runtime import open as open_device
from firstspike.runtime.session import Session
from firstspike.runtime.training.datasets import load_dataset
from firstspike.runtime.training.forward import compile_for_device
from firstspike.runtime.training.presets import build_network, get_task
import firstspike
net = build_network(get_task("yinyang"), torch.Generator().manual_seed(0))
compiled = compile_for_device(net)
data = load_dataset("yinyang", "test").subset(40)
with open_device(sys.argv[1]) as dev:
    res = Session(dev, compiled).run(data.times.numpy(), seed=1)
times = np.ascontiguousarray(np.stack([np.nan_to_num(t, posinf=-1.0) for t in res.output_times]))
print(firstspike.__file__)
print(int(np.isfinite(res.output_times).sum()), hashlib.sha256(times.tobytes()).hexdigest())
"""


def test_the_wheel_installs_beside_proto_and_drivers_and_runs(wheel: Path, tmp_path: Path):
    """A fresh environment with firstspike's wheel and the unrelated PyPI distributions ``proto`` and ``drivers``
    (each installs a top-level package of that name): both firstspike and they keep working."""
    import sysconfig

    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # torch, numpy, grpc ... come from the project's environment (appended after the new site-packages, so the
    # new environment's own packages win); its editable firstspike is not visible, as .pth files there are not run
    (site / "_project_base.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # proto and drivers without their own dependencies (drivers would pull selenium): what matters is that each
    # installs a top-level package named like one of our folders
    dl = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp_path / "dl"),
                         "proto==0.1.0", "drivers==0.1.0"], capture_output=True, text=True)
    if dl.returncode != 0:
        if "Could not find a version" in dl.stderr or "connection" in dl.stderr.lower() or "resolve" in dl.stderr:
            pytest.skip(f"the package index cannot be reached: {dl.stderr.strip().splitlines()[-1]}")
        raise AssertionError(dl.stderr)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index",
                    "--find-links", str(tmp_path / "dl"), "proto==0.1.0", "drivers==0.1.0", str(wheel)],
                   check=True, capture_output=True, text=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    info = subprocess.run([str(env_dir / "bin" / "firstspike"), "info"], capture_output=True, text=True, cwd=work)
    assert info.returncode == 0, info.stderr
    assert "backends: grpc, null, serial, sim" in info.stdout
    # the PyPI packages are where pip put them (found, not imported: drivers needs selenium to import)
    check = subprocess.run([str(py), "-c", "import importlib.util as u; print(u.find_spec('proto').origin); "
                            "print(u.find_spec('drivers').origin)"],
                           capture_output=True, text=True, cwd=work, check=True).stdout.split()
    assert len(check) == 2 and all(Path(p).is_relative_to(site) for p in check), check
    # the bit-accurate spec engine: the fresh environment has no numba cache, and this is not a JIT test
    uri = "sim://?engine=reference"
    fresh = subprocess.run([str(py), "-c", _RUN_SCRIPT, uri], capture_output=True, text=True, cwd=work)
    assert fresh.returncode == 0, fresh.stderr
    path, result = fresh.stdout.splitlines()
    assert Path(path).is_relative_to(site)
    here = subprocess.run([sys.executable, "-c", _RUN_SCRIPT, uri], capture_output=True, text=True, cwd=REPO,
                          check=True).stdout.splitlines()[1]
    n_spikes = int(result.split()[0])
    assert n_spikes > 0 and result == here


def _module_file(name: str) -> Path | None:
    """The source file of a firstspike module (``firstspike.a.b`` -> ``a/b.py`` or ``a/b/__init__.py``)."""
    parts = name.split(".")
    if parts[0] != "firstspike" or len(parts) < 2:
        return None
    base = REPO.joinpath(*parts[1:])
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _import_closure(start: list[str]) -> set[str]:
    """Every firstspike module reachable from ``start`` by static imports (lazy ones and ``from pkg import mod``
    submodules included)."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        module = name if path.name != "__init__.py" else name + ".__init__"
        tree = ast.parse(path.read_text())
        found = [n for _, n in _imported_modules(tree, module)]
        for node in ast.walk(tree):  # "from firstspike.x import y": y may be a module
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found += [f"{node.module}.{a.name}" for a in node.names]
        # a module's package __init__ runs first
        found += [".".join(name.split(".")[:k]) for k in range(2, len(name.split(".")))]
        todo += [n for n in found if n.startswith("firstspike.") and n not in seen]
    return seen


def test_the_calibration_reaches_no_simulator():
    """runtime.calibration measures a chip through the hal Backend only: nothing it imports, directly or through
    other modules, is the simulator (tests/runtime/test_calibration_remote.py also runs it with the simulator
    unimportable, through a device server)."""
    pkg = REPO / "runtime" / "calibration"
    start = ["firstspike.runtime.calibration." + p.stem for p in sorted(pkg.glob("*.py")) if p.stem != "__init__"]
    start += ["firstspike.runtime.calibration", "firstspike.runtime.commands.calibrate"]
    closure = _import_closure(start)
    assert "firstspike.runtime.calibration.measure" in closure and "firstspike.hal.backend" in closure
    assert "firstspike.compiler.calibrated" in closure  # lazy imports are followed
    bad = sorted(m for m in closure if m.startswith("firstspike.sim_device"))
    assert not bad, f"the calibration reaches the simulator through {bad}"
    # and the walk would see it: the simulator's backend is reachable from its own package
    assert any(m.startswith("firstspike.sim_device.") for m in _import_closure(["firstspike.sim_device.backend"]))
