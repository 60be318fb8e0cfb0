"""``scripts/ab_ttfs_kernels.py`` runs, and its same-results check refuses a kernel that computes something else
(tiny sizes; no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--steps", "3", "--capture", "2", "--rounds", "1"]


def _run(base_tree: Path, work_dir: Path) -> subprocess.CompletedProcess:
    cmd = ["scripts/ab_ttfs_kernels.py", "--base-tree", str(base_tree), "--work-dir", str(work_dir), *ARGS]
    return subprocess.run([sys.executable, *cmd], capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)


def test_the_same_kernels_compare_equal(tmp_path: Path) -> None:
    res = _run(ROOT, tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["forward", "backward"]
    assert all(line.endswith("same results") for line in lines)


def test_a_kernel_with_other_results_is_refused(tmp_path: Path) -> None:
    src = (ROOT / "runtime" / "ttfs" / "cpu_kernels.py").read_text()
    wrong = "qj = q[j] + wij * c0"  # the forward sums with the wrong coefficient
    assert src.count("qj = q[j] + wij * c1") == 1
    tree = tmp_path / "tree"
    (tree / "runtime" / "ttfs").mkdir(parents=True)
    (tree / "runtime" / "ttfs" / "cpu_kernels.py").write_text(src.replace("qj = q[j] + wij * c1", wrong))
    res = _run(tree, tmp_path / "work")
    assert res.returncode != 0
    assert "forward: the two versions give different results" in res.stderr
