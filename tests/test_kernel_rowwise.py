"""Softmax, layernorm and rmsnorm kernels: numpy results, FLOP counts, DES vs analytic."""

from __future__ import annotations

import numpy as np
import pytest

from wse_sim.engine.des import run_program
from wse_sim.errors import ConfigError, PlanError
from wse_sim.hardware import get_preset
from wse_sim.hardware.cost import VECTOR_OPS, dtype_bytes, message_cycles, vector_cycles
from wse_sim.kernels import _collective_cost as cc
from wse_sim.kernels._flops import ROWWISE_STEPS, flops_per_element
from wse_sim.kernels.base import KERNELS
from wse_sim.kernels.norms import LayerNorm, RMSNorm
from wse_sim.kernels.softmax import Softmax
from wse_sim.program import Region

SPEC = get_preset("small")
KERNEL_LIST = [Softmax(), LayerNorm(), RMSNorm()]
IDS = [k.name for k in KERNEL_LIST]
# (region width, height, rows, cols): even and uneven splits, one PE row, one PE column.
LAYOUTS = [(4, 4, 16, 64), (4, 3, 10, 37), (1, 5, 7, 9), (6, 1, 5, 64), (1, 1, 3, 20)]
# (rtol, atol) against the float64 reference: fp16 tiles, fp32 statistics.
TOL = {"fp32": (1e-5, 1e-5), "fp16": (1e-2, 1e-2)}


def run(kernel, shape, dtype="fp16", algorithm=None, functional=True, seed=0):
    w, h, rows, cols = shape
    x0, y0 = int(w < SPEC.mesh.width), int(h < SPEC.mesh.height)  # off the corner when it fits
    reg = Region(x0, y0, w, h)
    plan = kernel.plan(SPEC, reg, {"rows": rows, "cols": cols}, dtype, algorithm)
    inputs = kernel.random_inputs(plan, np.random.default_rng(seed)) if functional else None
    prog = kernel.program(plan, SPEC, inputs)
    res = run_program(prog, SPEC, functional=functional)
    assert res.wavelets_delivered == res.wavelets_expected
    return plan, prog, res, inputs


def test_registered():
    for name in IDS:
        assert name in KERNELS


@pytest.mark.parametrize("kernel", KERNEL_LIST, ids=IDS)
@pytest.mark.parametrize("algorithm", ["tree", "chain"])
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("shape", LAYOUTS)
def test_matches_numpy(kernel, algorithm, dtype, shape):
    plan, _, res, inputs = run(kernel, shape, dtype, algorithm)
    ref = kernel.reference(plan, inputs)
    assert res.output.shape == ref.shape
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(res.output.astype(np.float64), ref, rtol=rtol, atol=atol)


def test_softmax_rows_sum_to_one_and_are_shift_invariant():
    shape = (4, 2, 6, 40)
    plan, _, res, inputs = run(Softmax(), shape, "fp32")
    np.testing.assert_allclose(res.output.sum(axis=1), 1.0, rtol=1e-5)
    prog = Softmax().program(plan, SPEC, {"x": inputs["x"] + 100.0})
    shifted = run_program(prog, SPEC, functional=True).output
    np.testing.assert_allclose(shifted, res.output, rtol=1e-4, atol=1e-6)


# -- FLOPs -----------------------------------------------------------------------------------
def test_flops_per_element_are_sums_of_vector_ops():
    assert flops_per_element("softmax") == 5
    assert flops_per_element("layernorm") == 7
    assert flops_per_element("rmsnorm") == 4
    for name, kinds in ROWWISE_STEPS.items():
        assert flops_per_element(name) == sum(VECTOR_OPS[k].flops_per_element for k in kinds)
    with pytest.raises(ConfigError):
        flops_per_element("conv")


@pytest.mark.parametrize("kernel", KERNEL_LIST, ids=IDS)
@pytest.mark.parametrize("algorithm", ["tree", "chain"])
def test_flop_accounting(kernel, algorithm):
    """Per-element FLOPs on every element, plus the reductions' combines and the per-row ops."""
    w, h, rows, cols = shape = (5, 3, 12, 40)
    plan, prog, res, _ = run(kernel, shape, algorithm=algorithm, functional=False)
    assert plan.flops == flops_per_element(kernel.name) * rows * cols
    # (W - 1) combines per statistic per reduction, then the root's per-row ops: softmax one
    # reciprocal; layernorm 3 FMACs and an rsqrt; rmsnorm one FMAC and an rsqrt.
    per_row = {
        "softmax": 1 * (w - 1) + 1 * (w - 1) + 1,
        "layernorm": 2 * (w - 1) + 3 * 2 + 1,
        "rmsnorm": 1 * (w - 1) + 2 + 1,
    }[kernel.name]
    assert prog.flops == plan.flops + rows * per_row
    assert res.pe_flops.sum() == prog.flops
    est = kernel.estimate(plan, SPEC)
    np.testing.assert_array_equal(res.pe_flops[1 : 1 + h, 1 : 1 + w], est.pe_flops)
    assert res.pe_flops.sum() == est.pe_flops.sum()
    # SRAM: 12 rows over 3 PE rows, 40 cols over 5 PE columns: 4 x 8 tiles everywhere.
    sram = res.pe_sram_peak_bytes[1 : 1 + h, 1 : 1 + w]
    assert np.all(sram == plan.sram_bytes_per_pe)
    vectors = {"softmax": 0, "layernorm": 2, "rmsnorm": 1}[kernel.name]
    stats = {"softmax": 1, "layernorm": 2, "rmsnorm": 1}[kernel.name]
    assert plan.sram_bytes_per_pe == 2 * 4 * 8 * 2 + vectors * 8 * 2 + stats * 4 * 4


# -- timing ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", KERNEL_LIST, ids=IDS)
def test_single_pe_is_the_sum_of_its_vector_instructions(kernel):
    """No fabric: the kernel is its per-element instructions (one per tile row) plus the
    per-row instructions, each costed by hardware.cost.vector_cycles."""
    rows, cols = 6, 50
    plan, _, res, _ = run(kernel, (1, 1, rows, cols), "fp16", functional=False)
    b = dtype_bytes("fp16")
    tile = rows * cols
    operands = {
        "softmax": [(1, 0), (1, 1), (1, 1), (1, 0), (1, 1)],
        "layernorm": [(1, 0), (1, 0), (1, 1), (3, 1)],
        "rmsnorm": [(1, 0), (1, 1), (2, 1)],
    }[kernel.name]
    expected = sum(
        vector_cycles(SPEC, kind, "fp16", tile, rows, r * tile * b, wr * tile * b)
        for kind, (r, wr) in zip(ROWWISE_STEPS[kernel.name], operands)
    )
    per_row = {
        "softmax": [("rsqrt", 1)],
        "layernorm": [("fmac", 3), ("rsqrt", 1)],
        "rmsnorm": [("fmac", 1), ("rsqrt", 1)],
    }[kernel.name]
    expected += sum(vector_cycles(SPEC, k, "fp32", n * rows) for k, n in per_row)
    assert res.cycles == expected


def test_row_reduction_is_chain_plus_multicast():
    """rmsnorm/chain on one PE row: local work, then a chain of W PEs carrying one fp32 per row
    (n = rows wavelets), the root's two per-row ops, a multicast back, then local work."""
    w, rows, cols = 8, 16, 64
    plan, _, res, _ = run(RMSNorm(), (w, 1, rows, cols), "fp32", "chain", functional=False)
    b, c = 4, cols // w
    tile = rows * c
    local = (
        vector_cycles(SPEC, "fmac", "fp32", tile, rows, tile * b)
        + vector_cycles(SPEC, "mul", "fp32", tile, rows, tile * b, tile * b)
        + vector_cycles(SPEC, "mul", "fp32", tile, rows, 2 * tile * b, tile * b)
    )
    root = vector_cycles(SPEC, "fmac", "fp32", rows) + vector_cycles(SPEC, "rsqrt", "fp32", rows)
    C = 2 * SPEC.fabric.ramp_latency_cycles + SPEC.fabric.hop_latency_cycles
    C += SPEC.pe.instruction_overhead_cycles
    chain = (w - 1) * C + rows
    assert res.cycles == local + chain + root + message_cycles(SPEC, w - 1, rows)


@pytest.mark.parametrize("kernel", KERNEL_LIST, ids=IDS)
@pytest.mark.parametrize("algorithm", ["tree", "chain"])
@pytest.mark.parametrize("shape", [(16, 16, 64, 768), (8, 4, 32, 256), (5, 3, 15, 45)])
def test_des_matches_analytic(kernel, algorithm, shape):
    """Even splits: every PE starts each stage together, as the estimate assumes, and the
    reductions never contend for a link: the closed form is exact."""
    plan, _, res, _ = run(kernel, shape, algorithm=algorithm, functional=False)
    est = kernel.estimate(plan, SPEC)
    assert est.cycles == res.cycles
    assert est.link_wavelets == res.link_wavelets.sum()
    assert res.link_stall_cycles.sum() == 0


@pytest.mark.parametrize("kernel", KERNEL_LIST, ids=IDS)
def test_des_matches_analytic_uneven_split(kernel):
    """Uneven splits: PEs with smaller tiles reach the reduction early, so the DES is faster
    than the estimate (which charges the largest tile everywhere) but within 10%."""
    plan, _, res, _ = run(kernel, (4, 4, 10, 37), functional=False)
    est = kernel.estimate(plan, SPEC).cycles
    assert res.cycles <= est <= 1.10 * res.cycles


def test_tree_is_the_default_and_beats_chain_on_wide_rows():
    """Per-row statistics are short: latency decides, and the tree has log2(W) levels."""
    sm = Softmax()
    assert sm.default_algorithm == "tree"
    wse2 = get_preset("wse2")
    reg = Region(0, 0, wse2.mesh.width, wse2.mesh.height)
    sizes = {"rows": 8192, "cols": 8192}
    tree = sm.estimate(sm.plan(wse2, reg, sizes, "fp16", "tree"), wse2)
    chain = sm.estimate(sm.plan(wse2, reg, sizes, "fp16", "chain"), wse2)
    assert tree.cycles < chain.cycles / 2
    n = 9  # ceil(8192 / 994) rows per PE, one fp32 statistic each
    assert chain.breakdown["1:row max"] == cc.chain_cycles(wse2, 750, n) + message_cycles(
        wse2, 749, n
    )


# -- errors ----------------------------------------------------------------------------------
def test_plan_errors():
    ln = LayerNorm()
    reg = Region(0, 0, 4, 4)
    with pytest.raises(PlanError, match=r"layernorm: needs \d+ bytes.*43008.*smallest region"):
        ln.plan(SPEC, reg, {"rows": 4096, "cols": 4096}, "fp16")
    with pytest.raises(PlanError, match="at most 4x2"):
        ln.plan(SPEC, reg, {"rows": 2, "cols": 64}, "fp16")
    with pytest.raises(ConfigError, match="cols"):
        ln.plan(SPEC, reg, {"rows": 8}, "fp16")
    with pytest.raises(ConfigError, match="momentum"):
        ln.plan(SPEC, reg, {"rows": 8, "cols": 8}, "fp16", momentum=0.1)
    with pytest.raises(ConfigError, match="algorithm"):
        Softmax().plan(SPEC, reg, {"rows": 8, "cols": 8}, "fp16", "ring")
    plan = ln.plan(SPEC, reg, {"rows": 8, "cols": 8}, "fp16", eps=1e-3)
    assert plan.options == {"eps": 1e-3}
