"""``wse-sim run`` end to end in a subprocess, on a tiny model written to a config.json."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from run_helpers import RUN_JSON_KEYS

CONFIG = {
    "model_type": "gpt2",
    "n_layer": 2,
    "n_embd": 64,
    "n_head": 4,
    "vocab_size": 512,
    "n_positions": 128,
    "torch_dtype": "float16",
}
SMALL = ("--preset", "small", "--mesh", "8x8", "--seq", "16")
"""The small 8x8 wafer and short sequence most runs here use."""


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wse_sim", "run", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-gpt")
    (folder / "config.json").write_text(json.dumps(CONFIG))
    return str(folder / "config.json")


def test_run_writes_json_npz_heatmap_and_trace(model, tmp_path):
    out = tmp_path / "run.json"
    p = _cli(
        "--model",
        model,
        *SMALL,
        "--engine",
        "des",
        "--placement",
        "pipeline",
        "--ops",
        "--json",
        str(out),
        "--heatmap",
        str(tmp_path / "h.png"),
        "--trace",
        str(tmp_path / "t.json"),
    )
    assert p.returncode == 0, p.stderr
    data = json.loads(out.read_text())
    for key in RUN_JSON_KEYS:
        assert key in data
    assert data["mesh"] == {"width": 8, "height": 8}
    assert (data["engine"], data["placement"], data["mode"]) == ("des", "pipeline", "prefill")
    assert data["cycles"] > 0 and data["flops"] > 0
    with np.load(tmp_path / "run.npz") as z:
        assert z["link_wavelets"].shape == (4, 8, 8)
    trace = json.loads((tmp_path / "t.json").read_text())
    names = {e.get("name") for e in trace["traceEvents"]}
    assert "lm_head" in names and any(e.get("pid") == 2 for e in trace["traceEvents"])
    assert (tmp_path / "h.png").stat().st_size > 1000
    assert "lm_head" in p.stdout and "cycles" in p.stdout  # summary and per-op table
    # the printed cycles are the saved ones
    line = next(row for row in p.stdout.splitlines() if row.startswith("cycles"))
    assert int(line.split()[1].replace(",", "")) == round(data["cycles"])


def test_whole_that_does_not_fit_exits_2_with_one_line(model):
    p = _cli("--model", "gpt2-small", "--preset", "demo", "--placement", "whole")
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr
    msg = lines[0]
    assert "op embed" in msg and "bytes per PE" in msg and "43008" in msg
    assert "--placement stream" in msg


def test_placement_file_via_cli_and_bad_file_exit_2(model, tmp_path):
    good = tmp_path / "halves.toml"
    good.write_text(
        'schedule = "pipeline"\ndefault = [4, 0, 4, 8]\n[[rule]]\nlayers = 0\n'
        'ops = ["embed*"]\nrect = [0, 0, 4, 8]\n'
    )
    out = tmp_path / "f.json"
    p = _cli(
        "--model",
        model,
        *SMALL,
        "--placement",
        str(good),
        "--json",
        str(out),
    )
    assert p.returncode == 0, p.stderr
    data = json.loads(out.read_text())
    assert data["placement"] == "halves"
    regions = {tuple(op["region"]) for op in data["per_op"] if op["kernel"] != "transfer"}
    assert regions == {(0, 0, 4, 8), (4, 0, 4, 8)}
    bad = tmp_path / "bad.toml"
    bad.write_text("[[rule]]\nlayers = 0\nrect = [0, 0, 40, 8]\n")
    p = _cli("--model", model, "--preset", "small", "--mesh", "8x8", "--placement", str(bad))
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and "inside the 8x8 mesh" in p.stderr


def test_bad_arguments_exit_2(model):
    p = _cli("--model", model, "--preset", "small", "--gemm", "strassen")
    assert p.returncode == 2 and "summa" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = _cli("--model", model, "--preset", "small", "--wafers", "2", "--placement", "whole")
    assert p.returncode == 2 and "stream" in p.stderr
    p = _cli("--model", "no-such-model")
    assert p.returncode == 2 and "gpt2-small" in p.stderr


def test_decode_and_train_with_wafers(model, tmp_path):
    out = tmp_path / "w.json"
    p = _cli(
        "--model",
        model,
        "--preset",
        "small",
        "--mode",
        "train",
        "--batch",
        "4",
        "--seq",
        "16",
        "--placement",
        "stream",
        "--wafers",
        "4",
        "--json",
        str(out),
    )
    assert p.returncode == 0, p.stderr
    data = json.loads(out.read_text())
    assert data["wafers"] == 4 and data["batch"] == 4 and "4 wafers" in p.stdout
    p = _cli("--model", model, "--preset", "small", "--mode", "decode", "--context", "64")
    assert p.returncode == 0, p.stderr
    assert "decode batch 1 seq 1 context 64" in p.stdout


def test_activation_policy_and_auto_choice_show_in_the_summary(model, tmp_path):
    out = tmp_path / "r.json"
    args = ("--model", model, "--preset", "small", "--mode", "train", "--seq", "16")
    p = _cli(*args, "--placement", "stream", "--activations", "recompute", "--json", str(out))
    assert p.returncode == 0, p.stderr
    assert "stream, activations recomputed" in p.stdout
    data = json.loads(out.read_text())
    assert data["inputs"]["activations_used"] == "recompute"
    assert any(op["name"].endswith(".recompute") for op in data["per_op"])
    p = _cli(*args)  # default placement auto: whole fits this tiny model
    assert p.returncode == 0, p.stderr
    assert "whole (chosen by auto)" in p.stdout
    p = _cli(*args, "--placement", "whole", "--activations", "recompute")
    assert p.returncode == 2 and "activations" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
