"""CLI budgets: --config.prune.target_macs / target_params reach the Pruner, the
ledger records the budget; conflicting or bad budgets exit 2 with one line."""
import importlib.util
import json

import pytest

from helpers import cli, stderr_lines, tiny_args

# the tiny model (conftest.assets, helpers.save_tiny_se_model): c1 32*32*27*8 + c2 16*16*72*16 + fc 16*10
TINY_MACS = 221_184 + 294_912 + 160


@pytest.mark.slow
def test_target_macs_reaches_the_pruner_and_the_ledger(assets, tiny_run_copy):
    wd = tiny_run_copy     # train .. fold reused; prune reruns to the budget
    proc = cli(*tiny_args(assets, wd, "--config.prune.target_macs=3e5",
                          "--stages=train,attention,fold,prune"), "--resume",
               cwd=wd.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((wd / "stages.json").read_text())["stages"]["prune"]["info"]
    b = info["budget"]
    assert b["kind"] == "macs" and b["target"] == 300_000
    assert b["unpruned"] == TINY_MACS
    assert 0.8 * 300_000 <= b["achieved"] <= 300_000   # 8- and 16-channel groups: coarse steps
    assert b["search_s"] >= 0
    kept = json.loads((wd / "kept.json").read_text())
    assert kept, "the budget pruned nothing"


@pytest.mark.parametrize("args,expected", [
    (["--config.prune.target_macs=3e5", "--config.prune.target_params=1e3"],
     ["--config.prune.target_macs", "--config.prune.target_params", "one budget"]),
    (["--config.prune.target_macs=3e5", "--config.prune.ratio=0.5"],
     ["--config.prune.ratio", "conflict"]),
    (["--config.prune.target_params=-3"], ["--config.prune.target_params", "positive"]),
    (["--config.prune.target_macs=2.5"], ["--config.prune.target_macs", "whole number"]),
    (["--config.prune.target_latency_ms=1", "--config.prune.dtype=fp16"],
     ["--config.prune.dtype", "int8"]),
    (["--config.prune.target_latency_ms=1", "--config.prune.threads=0"],
     ["--config.prune.threads"]),
    (["--config.prune.target_latency_ms=1", "--config.prune.runtime=tflite_gpu"],
     ["--config.prune.runtime", "litert"]),
    (["--config.prune.target_latency_ms=1", "--config.prune.objective=speed"],
     ["--config.prune.objective", "importance, macs"]),
    (["--config.prune.target_latency_ms=1", "--config.prune.latency_margin=0.7"],
     ["--config.prune.latency_margin", "fraction"]),
    (["--config.prune.target_latency_of=nowhere/ref.keras"],
     ["--config.prune.target_latency_of", ".keras"]),
    (["--config.prune.target_latency_of=REF", "--config.prune.target_latency_ms=1"],
     ["--config.prune.target_latency_ms", "--config.prune.target_latency_of", "one budget"]),
])
def test_bad_budget_exits_2_with_one_line(assets, tmp_path, args, expected):
    args = [a.replace("=REF", f"={assets['model']}") for a in args]
    proc = cli(*tiny_args(assets, tmp_path / "wd", *args), cwd=tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = stderr_lines(proc)
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for text in expected:
        assert text in lines[0], (text, lines[0])
    assert not (tmp_path / "wd" / "model_pruned.keras").exists()


@pytest.mark.slow
def test_unreachable_budget_exits_2_naming_the_range(assets, tmp_path):
    wd = tmp_path / "u"
    proc = cli(*tiny_args(assets, wd, "--config.prune.target_macs=100",
                          "--stages=train,attention,fold,prune"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = stderr_lines(proc)[-1]    # after the progress lines of the stages run
    assert last.startswith("error: ") and "reachable range" in last, last
    assert "--config.prune" in last and "Traceback" not in proc.stderr
    assert not (wd / "model_pruned.keras").exists()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None,
                    reason="ai_edge_litert not installed")
def test_target_latency_of_a_model_file(assets, tmp_path):
    """No slower than a given .keras model (here the user's own SE model, so
    always reachable); a file that is not a Keras model exits 2 at the prune
    stage with one line, and nothing is pruned."""
    wd = tmp_path / "r"
    proc = cli(*tiny_args(assets, wd, f"--config.prune.target_latency_of={assets['model']}",
                          "--config.prune.objective=macs", "--config.prune.latency_margin=0.02",
                          "--stages=train,attention,fold,prune"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    b = json.loads((wd / "stages.json").read_text())["stages"]["prune"]["info"]["budget"]
    assert b["kind"] == "latency_ms" and b["reference"]["name"] == "tiny"
    assert b["met"] and b["target"] == pytest.approx(b["reference"]["ms"])
    assert b["objective"] == "macs" and b["margin"] == 0.02
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip")
    bad = tmp_path / "j"
    proc = cli(*tiny_args(assets, bad, f"--config.prune.target_latency_of={junk}",
                          "--stages=train,attention,fold,prune"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = stderr_lines(proc)[-1]
    assert last.startswith("error: ") and "target_latency_of" in last, last
    assert "Traceback" not in proc.stderr and not (bad / "model_pruned.keras").exists()
