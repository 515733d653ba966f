"""Lowering: kernel calls, the closed-form choice, chunking to fit SRAM, transfers, schedules."""

from __future__ import annotations

import numpy as np
import pytest

from wse_sim.engine.des import run_program
from wse_sim.errors import ConfigError, PlanError
from wse_sim.graph import build_graph
from wse_sim.graph.ops import OpSpec
from wse_sim.hardware.cost import message_cycles, wavelets
from wse_sim.hardware.presets import PRESETS
from wse_sim.kernels.registry import KERNELS
from wse_sim.lowering.calls import chunk_counts, kernel_calls, split
from wse_sim.lowering.choose import Lowerer, gemm_choices
from wse_sim.lowering.schedule import Group, Item, io_cycles, pipeline, sequential, stream
from wse_sim.lowering.transfer import lanes, link_wavelets, program, transfer_cycles
from wse_sim.program.ir import Region
from wse_sim.spec import ModelSpec

TINY = ModelSpec("tiny", "gpt2", layers=2, d_model=64, heads=4, d_ff=256, vocab=512, max_seq=128)
SPEC = PRESETS["small"].spec  # 16 x 16
CAP = SPEC.pe.data_sram_bytes


def _gemm(m: int, n: int, k: int, weight_bytes: float = 0.0) -> OpSpec:
    return OpSpec(
        "g",
        "matmul",
        0,
        "fwd",
        "gemm",
        {"m": m, "n": n, "k": k},
        2.0 * m * n * k,
        weight_bytes=weight_bytes,
    )


def _graph_with(op: OpSpec):
    import networkx as nx

    g = nx.DiGraph()
    g.add_node(op.name, op=op)
    return g


# -- calls --------------------------------------------------------------------------------------
def test_backward_attention_and_norm_repeat_the_forward_kernel():
    g = build_graph(TINY, "train", batch=1, seq=32)
    for name in ("L0.attn.core.bwd", "L0.attn.norm.bwd"):
        op, fwd = g.nodes[name]["op"], g.nodes[name[:-4]]["op"]
        (call,) = kernel_calls(g, op)
        assert call.kernel == fwd.kernel and call.sizes == fwd.sizes
        assert call.repeat == pytest.approx(op.flops / fwd.flops)
    (call,) = kernel_calls(g, g.nodes["L0.mlp.fc.bwd_data"]["op"])
    assert call.repeat == 1.0 and call.sizes == g.nodes["L0.mlp.fc.bwd_data"]["op"].sizes


def test_small_matmul_may_run_as_gemv_per_row():
    calls = kernel_calls(_graph_with(_gemm(3, 96, 64)), _gemm(3, 96, 64))
    assert [c.kernel for c in calls] == ["gemm", "gemv"]
    assert calls[1].sizes == {"m": 96, "k": 64} and calls[1].repeat == 3.0
    assert len(kernel_calls(_graph_with(_gemm(64, 96, 64)), _gemm(64, 96, 64))) == 1


def test_chunk_counts_and_splits():
    counts = chunk_counts(100)
    assert counts[0] == 1 and counts[-1] == 100 and counts == sorted(set(counts))
    from wse_sim.lowering.calls import KernelCall

    call = KernelCall("gemm", {"m": 10, "n": 100, "k": 8})
    assert split(call, "n", 3) == ({"m": 10, "n": 34, "k": 8}, 3)
    assert split(call, "n", 30) == ({"m": 10, "n": 4, "k": 8}, 25)  # 25 chunks of 4 cover 100
    att = KernelCall(
        "attention", {"batch": 2, "heads": 8, "kv_heads": 2, "seq": 4, "head_dim": 8, "context": 4}
    )
    assert split(att, "heads", 2)[0]["kv_heads"] == 1
    assert split(att, "heads", 4) is None  # would break a key/value group
    assert split(att, "batch", 3) is None


# -- choice -------------------------------------------------------------------------------------
def _closed_forms(op: OpSpec, region: Region) -> dict[str, float]:
    out = {}
    for name in ("gemm", "gemv"):
        for call in kernel_calls(_graph_with(op), op):
            if call.kernel != name:
                continue
            k = KERNELS[name]
            for algo in k.algorithms:
                try:
                    plan = k.plan(SPEC, region, call.sizes, "fp16", algo)
                except PlanError:
                    continue
                if plan.sram_bytes_per_pe <= CAP:
                    out[f"{name}/{algo}"] = k.estimate(plan, SPEC).cycles * call.repeat
    return out


@pytest.mark.parametrize("sizes", [(256, 192, 128), (2, 512, 256), (64, 64, 512)])
def test_auto_picks_the_fewest_closed_form_cycles(sizes):
    op = _gemm(*sizes)
    region = Region(0, 0, 16, 16)
    choice = Lowerer(SPEC).choose(_graph_with(op), op, region, 0.0, True, "whole")
    forms = _closed_forms(op, region)
    assert choice.chunks == 1
    assert choice.cycles == pytest.approx(min(forms.values()))
    assert f"{choice.kernel}/{choice.algorithm}" in forms


def test_forced_gemm_algorithm_is_used_and_bad_names_are_rejected():
    op = _gemm(256, 192, 128)
    choice = Lowerer(SPEC, "cannon").choose(_graph_with(op), op, Region(0, 0, 16, 16), 0, True, "w")
    assert (choice.kernel, choice.algorithm) == ("gemm", "cannon")
    assert "summa" in gemm_choices()
    with pytest.raises(ConfigError) as info:
        Lowerer(SPEC, "strassen")
    assert "summa" in str(info.value)


def test_an_op_too_big_for_sram_is_cut_into_the_fewest_chunks_that_fit():
    op = _gemm(64, 8192, 512, weight_bytes=8192 * 512 * 2)
    region = Region(0, 0, 16, 16)
    lw = Lowerer(SPEC, "summa")
    choice = lw.choose(_graph_with(op), op, region, 0.0, False, "stream")  # weights streamed
    assert choice.chunks > 1
    assert choice.need_bytes <= CAP
    # one chunk fewer does not fit: its plan plus its prefetch buffer exceed the SRAM
    fewer = -(-8192 // (choice.chunks - 1))
    plan = KERNELS["gemm"].plan(SPEC, region, {"m": 64, "n": fewer, "k": 512}, "fp16", "summa")
    assert plan.sram_bytes_per_pe + fewer * 512 * 2 / 256 > CAP
    assert choice.cycles == pytest.approx(choice.estimate.cycles * choice.chunks)


def test_resident_bytes_leave_less_room_and_an_impossible_op_names_the_fix():
    op = _gemm(64, 256, 64, weight_bytes=256 * 64 * 2)
    g, region = _graph_with(op), Region(0, 0, 16, 16)
    with pytest.raises(PlanError) as info:
        Lowerer(SPEC).choose(g, op, region, CAP + 1000.0, True, "whole")
    msg = str(info.value)
    assert "op g needs" in msg and f"{CAP} bytes (pe.data_sram_bytes)" in msg and "\n" not in msg


# -- transfers ----------------------------------------------------------------------------------
def test_side_by_side_transfer_uses_one_lane_per_shared_row():
    src, dst = Region(0, 0, 4, 8), Region(4, 2, 4, 8)
    lane = lanes(SPEC, src, dst, 6000.0)
    assert len(lane.senders) == 6 and (lane.dx, lane.dy) == (1, 0)
    assert lane.n == wavelets(SPEC, 1000)
    assert transfer_cycles(SPEC, lane) == message_cycles(SPEC, 1, lane.n)
    links = link_wavelets(lane)
    assert links.sum() == 6 * lane.n and links[0].sum() == 6 * lane.n  # all eastwards
    assert lanes(SPEC, src, Region(2, 2, 4, 4), 100.0) is None  # overlapping: no transfer


@pytest.mark.parametrize(
    "src,dst",
    [
        (Region(0, 0, 3, 4), Region(5, 1, 3, 4)),
        (Region(0, 4, 4, 2), Region(1, 0, 4, 2)),
        (Region(0, 0, 2, 2), Region(5, 6, 2, 2)),
    ],
)
def test_des_runs_a_transfer_in_its_closed_form(src, dst):
    lane = lanes(SPEC, src, dst, 4096.0)
    local = SPEC.with_mesh(lane.box.width, lane.box.height)
    res = run_program(program(lane), local)
    assert res.cycles == transfer_cycles(SPEC, lane)
    assert np.array_equal(res.link_wavelets, link_wavelets(lane))
    assert res.wavelets_delivered == len(lane.senders) * lane.n


# -- schedules ----------------------------------------------------------------------------------
def _item(name, stage, cycles, preds=(), group=("", "")):
    return Item(name, "op", stage, Region(0, 0, 1, 1), cycles, group=group, preds=preds)


def test_sequential_schedule_adds_cycles():
    items = [_item("a", 0, 5), _item("b", 0, 7), _item("c", 0, 1)]
    assert sequential(items) == 13
    assert [i.start for i in items] == [0, 5, 12]


def test_pipeline_interval_is_the_bottleneck_stage_and_latency_follows_dependencies():
    items = [
        _item("a", 0, 5),
        _item("t", 1, 2, ("a",)),
        _item("b", 1, 10, ("t",)),
        _item("c", 2, 3, ("b",)),
    ]
    interval, latency, per_stage = pipeline(items, 3)
    assert per_stage == [5, 12, 3]
    assert interval == 12
    assert latency == 5 + 2 + 10 + 3


def test_stream_group_takes_max_of_compute_and_weight_io():
    hz = 1e9
    groups = {
        ("L0", "fwd"): Group("L0", "fwd", io_in_bytes=1000.0),  # 1000 B at 100 B/s: 10 s
        ("L1", "fwd"): Group("L1", "fwd", io_in_bytes=100.0),  # 1 s
    }
    for g in groups.values():
        g.io = io_cycles(g.io_in_bytes, 0.0, 100.0, 100.0, hz)
    items = [
        _item("a", 0, 4e9, group=("L0", "fwd")),  # compute 4 s < io 10 s
        _item("b", 0, 3e9, group=("L1", "fwd")),  # compute 3 s > io 1 s
    ]
    total = stream(items, groups)
    assert groups[("L0", "fwd")].io == 10e9
    assert total == 10e9 + 3e9
    assert items[1].start == 10e9
    assert io_cycles(100.0, 300.0, 100.0, 100.0, 1.0) == 3.0  # in and out at once


def test_attention_is_planned_within_the_sram_left_beside_resident_weights() -> None:
    """LLaMA-2-13B prefill at 2048 tokens keeps ~36 KB of weights per WSE-2 PE under `whole`; the
    attention kernel's fastest layout does not fit beside them, so the lowering passes it the
    remaining budget and every op then fits its PE's data SRAM."""
    from wse_sim import api
    from wse_sim.hardware import get_preset

    result = api.run(model="llama2-13b", mode="prefill", seq=2048, preset="wse2", placement="whole")
    cap = get_preset("wse2").pe.data_sram_bytes
    attention = [op for op in result.per_op if op.kernel == "attention"]
    assert attention and all(op.need_bytes_per_pe <= cap for op in result.per_op)
    assert result.utilization["sram_peak_fraction"] <= 1.0
