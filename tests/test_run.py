"""Model runs through the API: conservation, schedules in closed form, engines, JSON fields."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import wse_sim
from wse_sim.api import simulate_model
from wse_sim.errors import ConfigError
from wse_sim.graph import build_graph
from wse_sim.lowering.execute import clear_memo
from wse_sim.result.run_result import RunResult
from wse_sim.spec import ModelSpec

TINY = ModelSpec("tiny", "gpt2", layers=2, d_model=64, heads=4, d_ff=256, vocab=512, max_seq=128)
LLAMA = ModelSpec(
    "tiny-llama",
    "llama",
    layers=2,
    d_model=64,
    heads=4,
    kv_heads=2,
    d_ff=160,
    vocab=384,
    max_seq=128,
)
RUN = {"seq": 32, "batch": 2, "preset": "small"}


def _run(mode="prefill", placement="whole", model=TINY, **kw):
    args = {**RUN, **kw}
    if mode == "decode":
        args.setdefault("context", args.pop("seq"))
    return wse_sim.run(model=model, mode=mode, placement=placement, **args)


def _graph(mode, model=TINY, batch=2, seq=32):
    if mode == "decode":
        return build_graph(model, mode, batch=batch, context=seq)
    return build_graph(model, mode, batch=batch, seq=seq)


# -- conservation -------------------------------------------------------------------------------
@pytest.mark.parametrize("placement", ["whole", "pipeline", "stream"])
@pytest.mark.parametrize("mode", ["prefill", "decode", "train"])
@pytest.mark.parametrize("model", [TINY, LLAMA], ids=["gpt2", "llama"])
def test_every_op_runs_once_and_flops_are_the_graphs(placement, mode, model):
    r = _run(mode, placement, model)
    g = _graph(mode, model)
    ops = [op for op in r.per_op if op.kernel != "transfer"]
    assert sorted(op.name for op in ops) == sorted(g.nodes)
    assert r.flops == pytest.approx(g.graph["flops"], rel=1e-12)
    assert sum(op.flops for op in r.per_op) == pytest.approx(r.flops, rel=1e-12)
    for op in ops:
        assert op.flops == g.nodes[op.name]["op"].flops
    assert r.tokens == (2 if mode == "decode" else 64)
    assert r.tokens_per_s == pytest.approx(r.tokens / r.seconds)
    assert r.seconds == pytest.approx(r.cycles / 1.1e9)
    peak = 8 * 256 * 1.1e9  # fp16: 4 FMACs per cycle per PE on the 16x16 preset
    assert r.peak_fraction == pytest.approx(r.flops / r.seconds / peak)


@pytest.mark.parametrize("placement", ["whole", "pipeline", "stream"])
def test_arrays_are_mesh_shaped_and_bounded(placement):
    r = _run("prefill", placement)
    assert r.pe_flops.shape == (16, 16) and r.link_wavelets.shape == (4, 16, 16)
    assert r.pe_sram_peak_bytes.max() <= 42 * 1024
    assert r.utilization["sram_peak_fraction"] == pytest.approx(r.pe_sram_peak_bytes.max() / 43008)
    assert 0 < r.pe_compute_busy.max() <= 1.0 + 1e-9
    assert r.utilization["compute_mean"] == pytest.approx(r.pe_flops.mean() / (8 * r.cycles))


def test_whole_is_the_sum_of_its_ops():
    r = _run("train", "whole")
    assert r.cycles == pytest.approx(sum(op.cycles for op in r.per_op))
    starts = [op.start_cycle for op in r.per_op]
    assert starts == sorted(starts)


def test_pipeline_interval_is_the_bottleneck_stage():
    r = _run("prefill", "pipeline", mesh="32x8")
    cycles = [s["cycles"] for s in r.stages]
    assert len(cycles) == 4  # embed, L0, L1, head
    assert r.cycles == max(cycles)
    per_stage = {s["name"]: 0.0 for s in r.stages}
    regions = {tuple(s["region"]): s["name"] for s in r.stages}
    for op in r.per_op:
        if op.kernel == "transfer":
            continue
        per_stage[regions[tuple(op.region)]] += op.cycles
    transfers = sum(op.cycles for op in r.per_op if op.kernel == "transfer")
    assert sum(cycles) == pytest.approx(sum(per_stage.values()) + transfers)
    assert transfers > 0 and r.latency_cycles >= sum(cycles) - 1e-6
    assert r.bottleneck.startswith(f"stage {r.stages[int(np.argmax(cycles))]['name']}")


# -- weight streaming in closed form ------------------------------------------------------------
def _stream(io: float, **kw):
    sets = [f"io.io_bytes_per_s={io}", f"io.wafer_interconnect_bytes_per_s={io}"]
    return _run(kw.pop("mode", "prefill"), "stream", sets=sets, **kw)


def test_stream_io_bound_time_is_weight_bytes_over_bandwidth():
    io = 1e6  # 1 MB/s: every layer group waits for its weights
    r = _stream(io)
    b = 2  # fp16
    layer = TINY.params_per_layer() * b
    groups = {s["name"]: s for s in r.stages}
    assert groups["L0 fwd"]["io_in_bytes"] == layer
    assert groups["L0 fwd"]["cycles"] == pytest.approx(layer / io * 1.1e9)
    tokens_bytes = 64 * TINY.d_model * b  # an embedding gathers only the rows it uses
    assert groups["embed fwd"]["io_in_bytes"] == 2 * tokens_bytes
    head = (TINY.vocab * TINY.d_model + TINY.norm_params()) * b  # tied LM head + final norm
    assert groups["head fwd"]["io_in_bytes"] == head
    total = (2 * layer + 2 * tokens_bytes + head) / io * 1.1e9
    assert r.cycles == pytest.approx(total)
    assert r.bottleneck.startswith("weight I/O")


def test_stream_compute_bound_time_is_the_ops_and_each_group_the_max():
    fast = _stream(1e18)
    assert fast.cycles == pytest.approx(sum(op.cycles for op in fast.per_op))
    mid = _stream(5e9)
    total = 0.0
    for s in mid.stages:
        assert s["cycles"] == pytest.approx(max(s["compute_cycles"], s["io_cycles"]))
        assert s["io_cycles"] == pytest.approx(s["io_in_bytes"] / 5e9 * 1.1e9)
        total += s["cycles"]
    assert mid.cycles == pytest.approx(total)


def test_stream_training_sends_gradients_out_and_leaves_the_optimizer_off_wafer():
    r = _stream(1e6, mode="train")
    opt = [op for op in r.per_op if op.name.endswith(".opt")]
    assert opt and all(op.algorithm == "external" and op.cycles == 0 for op in opt)
    bwd = {s["name"]: s for s in r.stages if s["name"].endswith("bwd")}
    layer = TINY.params_per_layer() * 2
    assert bwd["L0 bwd"]["io_out_bytes"] == pytest.approx(layer)  # every weight's gradient
    # backward loads the weights again while the gradients go out: max of the two
    assert bwd["L0 bwd"]["io_cycles"] == pytest.approx(
        max(bwd["L0 bwd"]["io_in_bytes"], layer) / 1e6 * 1.1e9
    )


def test_sixteen_wafers_speed_up_in_closed_form():
    kw = {"mode": "train", "batch": 16}
    one = _stream(1e18, **kw)
    many = _stream(1e18, wafers=16, **kw)
    per_wafer = _stream(1e18, mode="train", batch=1)
    assert many.flops == pytest.approx(one.flops)  # the same global step
    assert one.micro_batches == 1 and many.micro_batches == 1
    # compute bound: 16 wafers take as long as one wafer with a sixteenth of the batch
    assert many.cycles == pytest.approx(per_wafer.cycles)
    assert many.tokens_per_s == pytest.approx(16 * 32 / many.seconds)
    assert one.cycles / many.cycles > 1.5  # compute shrinks with the per-wafer batch
    # I/O bound: every wafer still receives every weight, so a layer takes as long on 16 wafers
    slow_one, slow_many = _stream(1e6, **kw), _stream(1e6, wafers=16, **kw)
    assert slow_many.cycles == pytest.approx(_stream(1e6, mode="train", batch=1).cycles)
    one_io = {s["name"]: s["io_cycles"] for s in slow_one.stages}
    for s in slow_many.stages:
        if s["name"].startswith("L"):
            assert s["io_cycles"] == pytest.approx(one_io[s["name"]])
    # only the embedding rows gathered (and their gradients) shrink with the per-wafer batch
    assert 1.0 < slow_one.cycles / slow_many.cycles < 1.5
    # a slower interconnect (half the I/O bandwidth) doubles the I/O-bound step on 16 wafers
    half = _run(
        "train",
        "stream",
        batch=16,
        wafers=16,
        sets=["io.io_bytes_per_s=1e6", "io.wafer_interconnect_bytes_per_s=5e5"],
    )
    assert half.cycles == pytest.approx(2 * slow_many.cycles)


def test_micro_batches_when_a_wafer_cannot_hold_the_batch():
    big = {"mode": "train", "batch": 8, "seq": 128, "mesh": "8x8"}
    r = _stream(1e18, **big)
    one = _stream(1e18, mode="train", batch=8 // r.micro_batches, seq=128, mesh="8x8")
    assert r.micro_batches > 1
    assert r.cycles == pytest.approx(r.micro_batches * one.cycles)
    assert r.flops == pytest.approx(_graph("train", batch=8, seq=128).graph["flops"])


def test_wafers_need_stream_and_a_divisible_batch():
    with pytest.raises(ConfigError, match="stream"):
        _run("prefill", "whole", wafers=2)
    with pytest.raises(ConfigError, match="multiple of wafers"):
        _run("prefill", "stream", wafers=3)


# -- engines ------------------------------------------------------------------------------------
@pytest.mark.parametrize("placement", ["whole", "pipeline"])
@pytest.mark.parametrize("mode", ["prefill", "train"])
def test_des_agrees_with_analytic_within_15_percent(placement, mode):
    kw = {"mesh": "8x8" if placement == "whole" else "16x8", "seq": 16}
    a = _run(mode, placement, engine="analytic", **kw)
    d = _run(mode, placement, engine="des", **kw)
    assert d.flops == a.flops
    assert abs(d.cycles - a.cycles) <= 0.15 * a.cycles
    assert d.engine == "des" and d.link_wavelets.sum() > 0


def test_des_memoises_identical_layers():
    clear_memo()
    first = simulate_model(TINY, "prefill", 2, 16, preset="small", mesh="8x6", engine="des")
    items = [i for i in first.simulation.items if i.kind == "op"]
    distinct = {i.extra["choice"].key() for i in items}
    assert len(distinct) < len(items)  # the two layers share their calls
    assert first.simulation.simulations == len(distinct)
    again = simulate_model(TINY, "prefill", 2, 16, preset="small", mesh="8x6", engine="des")
    assert again.simulation.simulations == 0
    assert again.result.cycles == first.result.cycles


# -- result and API -----------------------------------------------------------------------------
def test_json_has_the_fields_and_round_trips(tmp_path):
    r = _run("prefill", "pipeline", mesh="32x8")
    data = json.loads(r.to_json())
    for key in (
        "model",
        "mode",
        "mesh",
        "placement",
        "engine",
        "cycles",
        "seconds",
        "flops",
        "tokens_per_s",
        "tflops",
        "peak_fraction",
        "utilization",
        "per_op",
        "inputs",
    ):
        assert key in data
    assert data["mesh"] == {"width": 32, "height": 8}
    assert set(data["utilization"]) == {
        "compute_mean",
        "compute_max",
        "link_mean",
        "link_max",
        "sram_peak_fraction",
    }
    assert {"name", "kernel", "region", "cycles", "flops"} <= set(data["per_op"][0])
    path = r.save(tmp_path / "run.json")
    back = RunResult.load(path)
    assert back.cycles == r.cycles and len(back.per_op) == len(r.per_op)
    assert np.array_equal(back.link_wavelets, r.link_wavelets)
    assert back.inputs["placement"] == "pipeline"


def test_import_stays_light_and_run_is_exported():
    code = "import sys, wse_sim; print('wse_sim.api' in sys.modules, callable(wse_sim.run))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
