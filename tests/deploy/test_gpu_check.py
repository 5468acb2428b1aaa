"""scripts/gpu_check.py runs where a GPU host will run it, minus the GPU: here it compares the
CPU with itself, so this checks that the script works (vLLM stand-in, processor on every
scheme, timings, a transformers generation), not CUDA. The GPU figures are in
docs/BENCHMARKS.md when a GPU host ran it."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.deploy.common import ROOT


def test_gpu_check_runs_end_to_end_on_the_cpu(tmp_path):
    out = tmp_path / "gpu-check.json"
    command = [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--out", str(out)]
    arguments = ["--vocabulary", "20000", "--batches", "1,4", "--repeats", "1", "--tokens", "16"]
    finished = subprocess.run(command + arguments, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    report = json.loads(out.read_text())
    marks = report["same_marks"]
    assert all(marks[key]["identical_green_lists"] for key in ("kgw", "kgw4", "lefthash"))
    assert all(abs(marks[key]["green_share"] - 0.25) < 0.01 for key in ("kgw", "kgw4", "lefthash"))
    assert marks["gumbel"]["same_token_share"] == 1.0
    assert [row["batch"] for row in report["step_costs"]] == [1, 4]
    assert all(row["kgw_ms"] > 0 and row["forward_ms"] > 0 for row in report["step_costs"])
    # 64 tokens from a random model (flat logits) at gamma 0.25, delta 2: green with p = 0.71,
    # z about 8.5 with a standard deviation near 1; below 4 by chance with probability < 1e-4
    # (and the seeds are fixed)
    assert report["generation"]["tokens"] == 64 and report["generation"]["z"] > 4
    # Model Runner V2's processor against V1's, on the same logits and histories.
    v2 = report["v2_same_marks"]
    assert all(v2[key]["identical_logits"] for key in ("kgw", "kgw4", "unigram", "lefthash"))
    assert v2["gumbel"]["same_token_share"] == 1.0
    assert [row["batch"] for row in report["v2_step_costs"]] == [1, 4]
    assert all(row["kgw_ms"] > 0 and row["lefthash_ms"] > 0 for row in report["v2_step_costs"])
