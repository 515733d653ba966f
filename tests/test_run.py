"""Model runs through the API: conservation, schedules in closed form, engines, JSON fields."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from run_helpers import RUN_JSON_KEYS

import wse_sim
from wse_sim.api import run as api_run
from wse_sim.api import simulate_model
from wse_sim.errors import ConfigError, PlanError
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


# -- training activations under weight streaming ------------------------------------------------
def _layer_forward(r):
    return [op for op in r.per_op if op.layer is not None and op.stage == "fwd"]


def test_recompute_runs_each_layer_forward_again_in_its_backward_group():
    kw = {"mode": "train", "activations": "recompute"}
    keep = _stream(1e18, mode="train", activations="keep")
    again = _stream(1e18, **kw)
    assert again.inputs["activations_used"] == "recompute" and again.micro_batches == 1
    fwd = {op.name: op for op in _layer_forward(again)}
    copies = {op.name: op for op in again.per_op if op.name.endswith(".recompute")}
    assert set(copies) == {f"{name}.recompute" for name in fwd}
    for name, copy in copies.items():
        original = fwd[name[: -len(".recompute")]]
        assert copy.cycles == original.cycles and copy.stage == "bwd" and copy.flops == 0
    # the graph's FLOPs are counted once; the recomputed ones only in the executed arrays
    assert again.flops == pytest.approx(_graph("train").graph["flops"])
    sim = simulate_model(
        TINY, "train", 2, 32, preset="small", placement="stream", activations="recompute"
    ).simulation

    def executed(item):  # analytic: the closed form's per-PE FLOPs, times the calls
        return np.sum(item.extra["choice"].estimate.pe_flops) * item.extra["calls"]

    redone = sum(executed(i) for i in sim.items if i.name.endswith(".recompute"))
    assert redone == pytest.approx(sum(executed(i) for i in sim.items if i.name in fwd))
    assert again.pe_flops.sum() == pytest.approx(keep.pe_flops.sum() + redone)
    # compute bound: the step grows by exactly the layers' forward cycles ...
    assert again.cycles == pytest.approx(keep.cycles + sum(op.cycles for op in fwd.values()))
    groups = {s["name"]: s for s in again.stages}
    layer0 = sum(op.cycles for op in _layer_forward(keep) if op.layer == 0)
    keep_bwd = {s["name"]: s for s in keep.stages}["L0 bwd"]["compute_cycles"]
    assert groups["L0 bwd"]["compute_cycles"] == pytest.approx(keep_bwd + layer0)
    # ... and I/O bound it costs nothing: the recomputation hides under the weight loads
    slow_keep = _stream(1e6, mode="train", activations="keep")
    assert _stream(1e6, **kw).cycles == pytest.approx(slow_keep.cycles)


def test_recompute_keeps_only_layer_inputs_in_closed_form():
    from wse_sim.placement.units import (
        layer_input_bytes,
        recomputed_activation_bytes,
        saved_activation_bytes,
        units,
    )

    g = _graph("train", batch=2, seq=32)
    hidden = 2 * 32 * TINY.d_model * 2  # batch x seq x d_model x fp16
    assert layer_input_bytes(g) == {"L0": hidden, "L1": hidden}
    peak = max(saved_activation_bytes(g, u.ops) for u in units(g))
    assert recomputed_activation_bytes(g) == pytest.approx(2 * hidden + peak + hidden)
    assert recomputed_activation_bytes(_graph("prefill")) == 0.0


@pytest.mark.parametrize("io", [1e18, 1e6])
def test_auto_activations_pick_the_faster_policy_with_its_fewest_micro_batches(io):
    kw = {"mode": "train", "batch": 8, "seq": 128, "mesh": "8x8"}
    keep = _stream(io, activations="keep", **kw)
    again = _stream(io, activations="recompute", **kw)
    best = _stream(io, **kw)  # activations="auto" is the default
    # recomputing needs less SRAM: fewer micro-batches, so fewer weight loads
    assert again.micro_batches < keep.micro_batches
    winner = keep if keep.cycles <= again.cycles else again
    assert best.cycles == pytest.approx(winner.cycles)
    assert best.micro_batches == winner.micro_batches
    assert best.inputs["activations_used"] == winner.inputs["activations_used"]
    # compute bound keeping wins; I/O bound loading the weights fewer times wins
    assert winner is (keep if io > 1e9 else again)


def test_only_recompute_fits_a_small_mesh_and_nothing_fitting_is_one_line():
    kw = {"mode": "train", "batch": 8, "seq": 128, "mesh": "4x4"}
    r = _stream(1e18, **kw)
    assert r.inputs["activations_used"] == "recompute" and r.micro_batches == 8
    with pytest.raises(PlanError) as info:
        _stream(1e18, activations="keep", **kw)
    msg = str(info.value)
    assert "saved activations (keep)" in msg and "tried 1 to 8 micro-batches" in msg
    assert "\n" not in msg


def test_bad_activation_policies_are_config_errors():
    with pytest.raises(ConfigError, match="activations"):
        _run("train", "stream", activations="offload")
    with pytest.raises(ConfigError, match="recompute applies to training"):
        _run("train", "whole", activations="recompute")
    with pytest.raises(ConfigError, match="recompute applies to training"):
        _run("prefill", "stream", activations="recompute")


@pytest.mark.parametrize("model", ["llama3-8b", "cerebras-gpt-13b"])
def test_large_models_train_with_stream_on_wse2(model):
    from wse_sim.hardware.loader import build_spec
    from wse_sim.spec import get_model

    r = wse_sim.run(model=model, mode="train", batch=8, seq=2048, preset="wse2", placement="stream")
    spec_ = get_model(model)
    assert np.isfinite(r.cycles) and r.cycles > 0 and 8 % r.micro_batches == 0
    wse2 = build_spec(preset="wse2")
    assert all(op.need_bytes_per_pe <= wse2.pe.data_sram_bytes for op in r.per_op)
    assert r.micro_batches * sum(s["cycles"] for s in r.stages) == pytest.approx(r.cycles)
    # every micro-batch loads each layer's weights twice (forward, backward): the I/O floor
    layers = spec_.layers * spec_.params_per_layer() * 2  # bf16
    floor = r.micro_batches * 2 * layers / wse2.io.io_bytes_per_s * wse2.pe.clock_hz
    assert r.cycles >= floor
    assert r.flops == pytest.approx(build_graph(spec_, "train", batch=8, seq=2048).graph["flops"])


def test_api_and_cli_share_the_placement_default():
    import argparse
    import inspect

    from wse_sim.cli import cmd_run
    from wse_sim.placement.registry import DEFAULT_PLACEMENT

    parser = argparse.ArgumentParser()
    cmd_run.add_arguments(parser)
    assert parser.parse_args([]).placement == DEFAULT_PLACEMENT == "auto"
    for fn in (api_run, simulate_model):
        assert inspect.signature(fn).parameters["placement"].default == DEFAULT_PLACEMENT
    # auto: whole when it fits, else stream, and the result says so
    fits = wse_sim.run(model=TINY, **RUN)
    small = wse_sim.run(model=TINY, seq=32, batch=2, preset="small", mesh="2x2")
    assert fits.placement == "whole"
    assert small.placement == "stream" and "whole does not fit" in small.notes[0]


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
    for key in (*RUN_JSON_KEYS, "inputs"):
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
    assert json.loads(path.read_text())["arrays"] == "run.npz"  # the bundle layout
    png = r.heatmap(tmp_path / "run.png", kind="compute")
    assert png == tmp_path / "run.png" and png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ConfigError):
        r.heatmap(tmp_path / "bad.png", kind="temperature")


def test_import_stays_light_and_run_is_exported():
    code = "import sys, wse_sim; print('wse_sim.api' in sys.modules, callable(wse_sim.run))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
