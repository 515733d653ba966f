"""The elementwise kernel (add, mul, gelu, silu, copy, adamw): numpy results and cycle counts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wse_sim.engine.des import run_program
from wse_sim.errors import ConfigError, PlanError
from wse_sim.hardware import get_preset
from wse_sim.hardware.cost import vector_cycles
from wse_sim.kernels._flops import ADAMW_FLOPS_PER_ELEMENT, flops_per_element
from wse_sim.kernels.elementwise import Elementwise
from wse_sim.program import Region

SPEC = get_preset("small")
EW = Elementwise()
OPS = ["add", "mul", "gelu", "silu", "copy", "adamw"]
REGION = Region(1, 2, 5, 3)
TOL = {"fp32": (1e-5, 1e-6), "fp16": (2e-3, 2e-3)}


def run(op, length=1001, dtype="fp16", region=REGION, functional=True, **opts):
    plan = EW.plan(SPEC, region, {"length": length}, dtype, op=op, **opts)
    inputs = EW.random_inputs(plan, np.random.default_rng(0)) if functional else None
    prog = EW.program(plan, SPEC, inputs)
    return plan, prog, run_program(prog, SPEC, functional=functional), inputs


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_matches_numpy(op, dtype):
    plan, _, res, inputs = run(op, dtype=dtype)
    ref = EW.reference(plan, inputs)
    assert res.output.shape == ref.shape
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(res.output.astype(np.float64), ref, rtol=rtol, atol=atol)


def test_gelu_and_silu_known_values():
    from wse_sim.kernels.elementwise import gelu, silu

    x = np.array([-3.0, 0.0, 1.0, 3.0])
    np.testing.assert_allclose(gelu(x), [-0.0036373, 0.0, 0.8411920, 2.9963627], atol=1e-6)
    np.testing.assert_allclose(silu(x), x / (1 + np.exp(-x)))


def test_adamw_first_step_moves_lr_against_the_gradient():
    """Zero moments, step 1, no weight decay: bias correction makes the update
    ``lr * g / (|g| + eps)``, i.e. ``lr * sign(g)``; m and v become ``(1-b1) g`` and ``(1-b2) g^2``."""
    reg = Region(0, 0, 4, 2)
    plan = EW.plan(SPEC, reg, {"length": 80}, "fp32", op="adamw", lr=0.01, weight_decay=0.0)
    rng = np.random.default_rng(1)
    g = rng.standard_normal(80).astype(np.float32)
    p = rng.standard_normal(80).astype(np.float32)
    zero = np.zeros(80, dtype=np.float32)
    inputs = {"param": p, "grad": g, "m": zero, "v": zero}
    res = run_program(EW.program(plan, SPEC, inputs), SPEC, functional=True)
    param, m, v = res.output
    np.testing.assert_allclose(p - param, 0.01 * np.sign(g), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(m, 0.1 * g, rtol=1e-5)
    np.testing.assert_allclose(v, 0.001 * g * g, rtol=1e-4)


def test_cycles_are_the_busiest_pe():
    """1001 elements over 15 PEs: the first 11 PEs hold 67, the others 66."""
    plan, prog, res, _ = run("add", functional=False)
    n = math.ceil(1001 / 15)
    assert res.cycles == vector_cycles(SPEC, "add", "fp16", n, 1, 2 * 2 * n, 2 * n)
    assert EW.estimate(plan, SPEC).cycles == res.cycles
    assert res.link_wavelets.sum() == 0 and res.messages == 0
    # SRAM: a, b and the output, 2 bytes each, for 67 or 66 elements.
    sram = res.pe_sram_peak_bytes[2:5, 1:6].ravel()
    assert list(sram) == [67 * 6] * 11 + [66 * 6] * 4
    assert plan.sram_bytes_per_pe == 67 * 6


@pytest.mark.parametrize("op", OPS)
def test_estimate_and_flops(op):
    plan, prog, res, _ = run(op, length=5000, functional=False)
    est = EW.estimate(plan, SPEC)
    assert est.cycles == res.cycles
    assert res.pe_flops.sum() == prog.flops == est.pe_flops.sum()
    assert plan.flops == flops_per_element("elementwise", op) * 5000
    if op == "adamw":
        # 6 FMACs (12 FLOPs) counted; the engine also counts the rsqrt as one FLOP.
        assert plan.flops == ADAMW_FLOPS_PER_ELEMENT * 5000
        assert prog.flops == 13 * 5000
    else:
        assert prog.flops == plan.flops


def test_gelu_is_transcendental_bound():
    _, _, res, _ = run("gelu", length=1500, region=Region(0, 0, 3, 1), functional=False)
    assert res.cycles == SPEC.pe.transcendental_cycles_per_element * 500 + 2


def test_errors():
    reg = Region(0, 0, 4, 4)
    with pytest.raises(PlanError, match=r"elementwise/add: needs 375000 bytes.*smallest region"):
        EW.plan(SPEC, reg, {"length": 10**6}, "fp16", op="add")
    with pytest.raises(ConfigError, match="op"):
        EW.plan(SPEC, reg, {"length": 10}, "fp16", op="tanh")
    with pytest.raises(ConfigError, match="lr"):
        EW.plan(SPEC, reg, {"length": 10}, "fp16", op="add", lr=0.1)
    with pytest.raises(ConfigError, match="length"):
        EW.plan(SPEC, reg, {"length": -3}, "fp16", op="add")
