"""Broadcast, reduce and allreduce kernels: numpy results, closed forms, DES vs analytic."""

from __future__ import annotations

import numpy as np
import pytest

from wse_sim.engine.des import run_program
from wse_sim.errors import ConfigError, PlanError
from wse_sim.hardware import get_preset
from wse_sim.hardware.cost import message_cycles, wavelets
from wse_sim.kernels import _collective_cost as cc
from wse_sim.kernels._collective_ops import Line, folded_ring, ring_phase
from wse_sim.kernels.allreduce import Allreduce
from wse_sim.kernels.base import KERNELS
from wse_sim.kernels.broadcast import Broadcast
from wse_sim.kernels.reduce import Reduce
from wse_sim.program import Region
from wse_sim.program.ir import Phase, Program

SPEC = get_preset("small")  # 16x16 mesh of WSE-2 PEs
R = SPEC.fabric.ramp_latency_cycles
H = SPEC.fabric.hop_latency_cycles
O = SPEC.pe.instruction_overhead_cycles
C = 2 * R + H + O  # what each PE adds to a streaming chain

BCAST, RED, ALL = Broadcast(), Reduce(), Allreduce()
SHAPES = [(4, 4), (5, 3), (1, 6), (7, 1), (2, 1), (1, 1)]


def run(kernel, region, length, dtype, algorithm, inputs=None):
    plan = kernel.plan(SPEC, region, {"length": length}, dtype, algorithm)
    prog = kernel.program(plan, SPEC, inputs)
    res = run_program(prog, SPEC, functional=inputs is not None)
    assert res.wavelets_delivered == res.wavelets_expected
    return plan, prog, res


def integer_inputs(kernel, plan, rng):
    """Small integers: every partial sum is exact in fp16, so every algorithm must match exactly."""
    x = kernel.random_inputs(plan, rng)["x"]
    return {"x": rng.integers(-8, 9, size=x.shape).astype(x.dtype)}


def test_registered():
    for name in ("broadcast", "reduce", "allreduce"):
        assert name in KERNELS


# -- functional ------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("algorithm", Broadcast.algorithms)
def test_broadcast_copies_root_vector(shape, algorithm):
    reg = Region(1, 2, *shape)
    plan = BCAST.plan(SPEC, reg, {"length": 37}, "fp16", algorithm)
    inputs = BCAST.random_inputs(plan, np.random.default_rng(1))
    _, _, res = run(BCAST, reg, 37, "fp16", algorithm, inputs)
    assert res.output.shape == (shape[1], shape[0], 37)
    np.testing.assert_array_equal(res.output, BCAST.reference(plan, inputs))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("algorithm", Reduce.algorithms)
def test_reduce_fp16_exact_on_integers(shape, algorithm):
    reg = Region(0, 0, *shape)
    plan = RED.plan(SPEC, reg, {"length": 41}, "fp16", algorithm)
    inputs = integer_inputs(RED, plan, np.random.default_rng(2))
    _, _, res = run(RED, reg, 41, "fp16", algorithm, inputs)
    np.testing.assert_array_equal(res.output.astype(np.float64), RED.reference(plan, inputs))


@pytest.mark.parametrize("shape", [(4, 4), (5, 3), (1, 6), (7, 1)])
@pytest.mark.parametrize("algorithm", Reduce.algorithms)
def test_reduce_fp32_random(shape, algorithm):
    reg = Region(0, 0, *shape)
    plan = RED.plan(SPEC, reg, {"length": 300}, "fp32", algorithm)
    inputs = RED.random_inputs(plan, np.random.default_rng(3))
    _, _, res = run(RED, reg, 300, "fp32", algorithm, inputs)
    np.testing.assert_allclose(res.output, RED.reference(plan, inputs), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("algorithm", Allreduce.algorithms)
def test_allreduce_fp16_exact_on_integers(shape, algorithm):
    reg = Region(2, 1, *shape)
    plan = ALL.plan(SPEC, reg, {"length": 45}, "fp16", algorithm)
    inputs = integer_inputs(ALL, plan, np.random.default_rng(4))
    _, _, res = run(ALL, reg, 45, "fp16", algorithm, inputs)
    np.testing.assert_array_equal(res.output.astype(np.float64), ALL.reference(plan, inputs))


@pytest.mark.parametrize("algorithm", Allreduce.algorithms)
def test_allreduce_fp16_random_within_summation_bound(algorithm):
    """Random fp16 data: the error stays inside the recursive-summation bound P*eps*sum|x|."""
    reg = Region(0, 0, 6, 4)
    plan = ALL.plan(SPEC, reg, {"length": 200}, "fp16", algorithm)
    inputs = ALL.random_inputs(plan, np.random.default_rng(5))
    _, _, res = run(ALL, reg, 200, "fp16", algorithm, inputs)
    x = inputs["x"].astype(np.float64)
    bound = reg.num_pes * np.finfo(np.float16).eps * np.abs(x).sum(axis=(0, 1))
    err = np.abs(res.output.astype(np.float64) - ALL.reference(plan, inputs))
    assert np.all(err <= bound[None, None, :] + 1e-12)


@pytest.mark.parametrize("width", [3, 5, 6])
def test_ring_with_chunks_larger_than_buffers_is_deadlock_free(width):
    """Chunks of 120 wavelets outgrow every buffer on the path (sends wait for receivers);
    every PE sends in the background before it receives, so no ring, odd or even, deadlocks."""
    reg = Region(0, 0, width, 1)
    length = 120 * width
    plan = ALL.plan(SPEC, reg, {"length": length}, "fp32", "ring")
    assert plan.tiling["row_wavelets"] > 3 * SPEC.fabric.buffer_depth_wavelets
    inputs = ALL.random_inputs(plan, np.random.default_rng(6))
    _, _, res = run(ALL, reg, length, "fp32", "ring", inputs)
    np.testing.assert_allclose(res.output, ALL.reference(plan, inputs), rtol=1e-5, atol=1e-4)


def test_ring_pads_vector_to_multiple_of_pes():
    reg = Region(0, 0, 4, 3)
    plan = ALL.plan(SPEC, reg, {"length": 13}, "fp16", "ring")
    t = plan.tiling
    assert t["col_chunk"] == 2 and t["row_chunk"] == 6 and t["padded_length"] == 24
    assert t["row_wavelets"] == wavelets(SPEC, 6 * 2) and t["col_wavelets"] == 1


# -- closed forms ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape,length", [((16, 16), 2000), ((5, 3), 1), ((1, 9), 64)])
def test_multicast_broadcast_equals_message_cycles(shape, length):
    reg = Region(0, 0, *shape)
    _, _, res = run(BCAST, reg, length, "fp16", "multicast")
    n = wavelets(SPEC, 2 * length)
    assert res.cycles == message_cycles(SPEC, shape[0] - 1 + shape[1] - 1, n)


@pytest.mark.parametrize("pes,length", [(2, 1), (8, 64), (16, 2000), (16, 7)])
def test_chain_reduce_is_b_plus_c_p(pes, length):
    """A chain of P PEs each adding its B-element vector to a passing stream."""
    reg = Region(0, 0, pes, 1)
    _, _, res = run(RED, reg, length, "fp32", "chain")
    n = length  # fp32: one element per wavelet
    assert res.cycles == (pes - 1) * C + n


def test_two_phase_is_row_chain_plus_column_chain():
    reg = Region(0, 0, 12, 9)
    _, _, res = run(RED, reg, 500, "fp32", "two-phase")
    assert res.cycles == (11 * C + 500) + (8 * C + 500)


def test_tree_power_of_two_levels():
    """log2(L) levels, level k over 2^k hops: sum_k (2R + 2^k H + O + n)."""
    reg = Region(0, 0, 16, 1)
    _, _, res = run(RED, reg, 100, "fp32", "tree")
    assert res.cycles == sum(2 * R + (1 << k) * H + O + 100 for k in range(4))


@pytest.mark.parametrize("pes", [3, 5, 6, 7, 11])
def test_tree_on_any_length_is_contention_free_and_exact(pes):
    """The far end is folded first, so no sender starts before its receiver is ready: no
    message waits for a link and the recurrence of the closed form is exact."""
    plan, _, res = run(RED, Region(0, 0, pes, 1), 200, "fp32", "tree")
    assert res.link_stall_cycles.sum() == 0
    assert res.cycles == RED.estimate(plan, SPEC).cycles
    levels = (pes - 1).bit_length()  # ceil(log2 L)
    assert res.cycles <= levels * (2 * R + (pes - 1) * H + O + 200)


def test_chain_beats_tree_for_long_vectors_and_tree_wins_for_short():
    reg = Region(0, 0, 16, 1)
    short = {a: run(RED, reg, 1, "fp32", a)[2].cycles for a in ("chain", "tree")}
    long = {a: run(RED, reg, 2000, "fp32", a)[2].cycles for a in ("chain", "tree")}
    assert short["tree"] < short["chain"]
    assert long["chain"] < long["tree"] / 2


def test_relay_costs_more_than_multicast():
    reg = Region(0, 0, 8, 8)
    m = run(BCAST, reg, 500, "fp16", "multicast")[2].cycles
    r = run(BCAST, reg, 500, "fp16", "relay")[2].cycles
    n = wavelets(SPEC, 1000)
    assert r == cc.relay_cycles(SPEC, 8, n) * 2
    assert r > m + n  # the relay pays the message twice (row, then columns) plus per-PE latency


# -- DES vs analytic -------------------------------------------------------------------------
CASES = [
    (BCAST, "multicast", (16, 16), 3000),
    (BCAST, "relay", (9, 4), 100),
    (RED, "two-phase", (16, 16), 1000),
    (RED, "chain", (8, 3), 300),
    (RED, "tree", (16, 8), 500),
    (RED, "tree", (6, 1), 64),
    (ALL, "2d", (16, 16), 2000),
    (ALL, "tree", (8, 8), 64),
    (ALL, "ring", (16, 1), 4096),
    (ALL, "ring", (8, 4), 2000),
    (ALL, "ring", (15, 1), 1500),
    (ALL, "ring", (5, 7), 1),
]


@pytest.mark.parametrize("kernel,algorithm,shape,length", CASES)
def test_des_matches_analytic_within_10_percent(kernel, algorithm, shape, length):
    plan, prog, res = run(kernel, Region(0, 0, *shape), length, "fp16", algorithm)
    est = kernel.estimate(plan, SPEC)
    assert abs(est.cycles - res.cycles) <= 0.10 * res.cycles
    assert est.cycles == pytest.approx(sum(est.breakdown.values()))


@pytest.mark.parametrize(
    "kernel,algorithm", [(BCAST, "multicast"), (BCAST, "relay"), (RED, "two-phase")]
)
def test_des_matches_analytic_exactly_for_pipelines(kernel, algorithm):
    plan, _, res = run(kernel, Region(0, 0, 11, 6), 777, "fp16", algorithm)
    assert kernel.estimate(plan, SPEC).cycles == res.cycles


def test_odd_ring_with_large_chunks_costs_one_transfer_per_step():
    """Background sends remove the seam: every PE sends its chunk in the background and streams
    the incoming one, so an odd ring with chunks that outgrow the buffers (a ring of 3 used to
    run 37% over the estimate when a PE sent *or* received) now matches the closed form
    exactly, and a step costs one transfer ``2R + h H + O + m`` instead of two."""
    plan, _, res = run(ALL, Region(0, 0, 3, 1), 900, "fp32", "ring")
    m = plan.tiling["row_wavelets"]
    assert m > 3 * SPEC.fabric.buffer_depth_wavelets
    assert ALL.estimate(plan, SPEC).cycles == res.cycles
    # Two phases of L - 1 = 2 steps; each step one transfer over at most 2 hops.
    assert res.cycles <= 2 * 2 * (2 * R + 2 * H + O + m)
    assert res.cycles > 2 * 2 * m


@pytest.mark.parametrize("length,m", [(2, 1), (5, 40), (8, 300), (15, 7)])
def test_ring_phase_closed_form_is_exact_for_a_single_phase(length, m):
    """One phase of L - 1 steps on a line: (L - 1)(O + m) + sum(edge latencies) - min(...),
    the dependency crossing every folded-ring edge but the shortest (a one-hop end)."""
    e = cc.ring_edge_latencies(SPEC, length)
    hops = 1 if length == 2 else 2
    assert e.max() == 2 * R + hops * H
    expect = (length - 1) * (O + m) + e.sum() - e.min()
    assert cc.ring_phase_cycles(SPEC, length, m) == expect
    if length > 2:  # all but the two one-hop end edges are two hops
        assert e.sum() - e.min() == (length - 2) * (2 * R + 2 * H) + (2 * R + H)
    reg = Region(0, 0, length, 1)
    zero = np.zeros(reg.shape, dtype=np.int64)
    ops = ring_phase(Line(reg, "x"), "ag", m, 2 * m, "fp16", 0, "v", zero)
    res = run_program(Program("ring", reg, [Phase("ag", ops)]), SPEC)
    assert res.cycles == expect


# -- conservation ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kernel,algorithm",
    [(k, a) for k in (BCAST, RED, ALL) for a in k.algorithms],
)
def test_conservation(kernel, algorithm):
    reg = Region(0, 0, 6, 5)
    length = 90
    plan, prog, res = run(kernel, reg, length, "fp16", algorithm)
    est = kernel.estimate(plan, SPEC)
    # Links: every wavelet the estimate puts on a link the engine carried.
    assert res.link_wavelets.sum() == est.link_wavelets
    # FLOPs: engine, program and estimate agree PE by PE.
    np.testing.assert_array_equal(res.pe_flops[: reg.height, : reg.width], est.pe_flops)
    assert res.pe_flops.sum() == prog.flops
    assert res.pe_sram_peak_bytes.max() == plan.sram_bytes_per_pe
    if kernel is not BCAST:
        added = length if algorithm != "ring" else plan.tiling["padded_length"]
        assert prog.flops == (reg.num_pes - 1) * added
        assert plan.flops == (reg.num_pes - 1) * length


@pytest.mark.parametrize("algorithm", Reduce.algorithms)
def test_reduce_injects_one_vector_per_pe(algorithm):
    """Every PE but the root sends its (partial) vector exactly once to exactly one PE."""
    reg = Region(0, 0, 7, 4)
    _, _, res = run(RED, reg, 50, "fp16", algorithm)
    n = wavelets(SPEC, 100)
    assert res.messages == reg.num_pes - 1
    assert res.wavelets_injected == res.wavelets_expected == (reg.num_pes - 1) * n


def test_multicast_injects_once_and_delivers_to_every_pe():
    reg = Region(0, 0, 7, 4)
    _, _, res = run(BCAST, reg, 50, "fp16", "multicast")
    n = wavelets(SPEC, 100)
    assert res.messages == 1 and res.wavelets_injected == n
    assert res.wavelets_delivered == n * (reg.num_pes - 1)


def test_folded_ring_links_are_short_and_form_one_cycle():
    for length in (2, 3, 8, 9):
        rank, nxt, prv = folded_ring(length)
        assert sorted(rank) == list(range(length))
        assert np.abs(nxt).max() <= 2
        pos = np.arange(length)
        np.testing.assert_array_equal((pos + nxt)[pos + prv], pos)
        seen, p = [], 0
        for _ in range(length):
            seen.append(p)
            p += nxt[p]
        assert sorted(seen) == list(range(length)) and p == 0


# -- full-wafer timing programs --------------------------------------------------------------
def test_timing_programs_at_wafer_scale_have_region_independent_ops():
    """Per-PE quantities are arrays: the op count depends on the algorithm, not on the PEs."""
    wse2 = get_preset("wse2")
    big = Region(0, 0, wse2.mesh.width, wse2.mesh.height)
    for kernel, algorithm in ((RED, "two-phase"), (ALL, "2d"), (BCAST, "multicast")):
        small = kernel.program(kernel.plan(SPEC, Region(0, 0, 16, 16), {"length": 64}), SPEC)
        plan = kernel.plan(wse2, big, {"length": 4096}, "fp16", algorithm)
        prog = kernel.program(plan, wse2)
        assert len(list(prog.ops())) == len(list(small.ops()))
        assert prog.init is None and prog.collect is None
    plan = ALL.plan(wse2, big, {"length": 4096}, "fp16", "ring")
    steps = 2 * (big.width - 1) + 2 * (big.height - 1)
    # A background send and a streamed receive per step (the PEs no longer split into
    # send-first and receive-first halves), plus one staging op per phase.
    assert len(list(ALL.program(plan, wse2).ops())) == 2 * steps + 4
    est = ALL.estimate(plan, wse2)
    assert est.pe_flops.shape == big.shape


# -- errors ----------------------------------------------------------------------------------
def test_plan_errors():
    reg = Region(0, 0, 4, 4)
    with pytest.raises(PlanError, match=r"reduce/two-phase: needs 60000 bytes.*43008.*length <="):
        RED.plan(SPEC, reg, {"length": 30000}, "fp16")
    with pytest.raises(PlanError, match="colors"):
        RED.plan(
            SPEC.with_field("fabric", "colors", 4),
            Region(0, 0, 16, 16),
            {"length": 8},
            "fp16",
            "tree",
        )
    with pytest.raises(ConfigError, match="algorithm"):
        ALL.plan(SPEC, reg, {"length": 8}, "fp16", "butterfly")
    with pytest.raises(ConfigError, match="length"):
        RED.plan(SPEC, reg, {"length": 0}, "fp16")
    with pytest.raises(ConfigError, match="length"):
        RED.plan(SPEC, reg, {}, "fp16")
    with pytest.raises(ConfigError, match="region"):
        RED.plan(SPEC, Region(10, 10, 8, 8), {"length": 8}, "fp16")
    with pytest.raises(ConfigError, match="dtype"):
        RED.plan(SPEC, reg, {"length": 8}, "int8")
    with pytest.raises(ConfigError, match="root"):
        RED.plan(SPEC, reg, {"length": 8}, "fp16", root=3)
