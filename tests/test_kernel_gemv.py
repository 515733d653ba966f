"""GEMV kernels: numerics against numpy, exact closed forms against the DES, the trade-off
between the streaming pipeline and the K-ary tree, conservation and bad options."""

from __future__ import annotations

import numpy as np
import pytest

from wse_sim.engine.des import run_program
from wse_sim.errors import ConfigError, PlanError
from wse_sim.hardware.cost import vector_cycles
from wse_sim.hardware.presets import get_preset
from wse_sim.kernels._common import log_ceil
from wse_sim.kernels.gemv import Gemv
from wse_sim.kernels.runner import run_kernel
from wse_sim.program.ir import Region

GEMV = Gemv()


def mesh(w: int, h: int):
    return get_preset("small").with_mesh(w, h)


def plan_run(algo, w, h, m, k, dtype="fp16", functional=False, spec=None, **options):
    spec = spec or mesh(w, h)
    plan = GEMV.plan(spec, Region(0, 0, w, h), {"m": m, "k": k}, dtype, algo, **options)
    inputs = GEMV.random_inputs(plan, np.random.default_rng(5)) if functional else None
    res = run_program(GEMV.program(plan, spec, inputs), spec, functional=functional)
    return spec, plan, inputs, res


CASES = [
    ("pipeline", {}),
    ("tree", {"k_ary": 2}),
    ("tree", {"k_ary": 3}),
    ("tree", {"k_ary": 4}),
]


@pytest.mark.parametrize("algo,opts", CASES)
@pytest.mark.parametrize(
    "w,h,m,k,dtype",
    [(4, 4, 64, 64, "fp16"), (7, 3, 50, 70, "fp16"), (9, 2, 10, 45, "fp32"), (1, 4, 8, 8, "fp16")],
)
def test_every_pe_of_a_row_ends_with_its_block_of_y(algo, opts, w, h, m, k, dtype):
    _, plan, inputs, res = plan_run(algo, w, h, m, k, dtype, functional=True, **opts)
    y = inputs["W"].astype(np.float64) @ inputs["x"].astype(np.float64)
    pw = plan.tiling["grid"][0]
    assert res.output.shape == (pw, m)
    tol = 2e-2 if dtype == "fp16" else 1e-5
    for column in res.output:  # the all-reduce leaves a copy on every column
        np.testing.assert_allclose(column, y, rtol=tol, atol=tol * np.abs(y).max())


@pytest.mark.parametrize(
    "w,h,m,k", [(2, 2, 8, 8), (8, 4, 64, 256), (16, 16, 256, 256), (7, 3, 50, 70)]
)
def test_pipeline_closed_form_is_exact(w, h, m, k):
    spec, plan, _, res = plan_run("pipeline", w, h, m, k)
    est = GEMV.estimate(plan, spec)
    assert est.cycles == res.cycles
    t = plan.tiling
    pw, ny = t["grid"][0], t["wavelets"]
    local = vector_cycles(
        spec, "fmac", "fp16", t["tile_m"] * t["tile_k"], min(t["tile_m"], t["tile_k"])
    )
    r, hop, o = 2, 1, 2
    assert est.cycles == local + (pw - 1) * (2 * r + hop + o) + ny + 2 * r + (pw - 1) * hop + ny - 1


@pytest.mark.parametrize("k_ary,w", [(2, 2), (2, 8), (2, 16), (4, 16), (3, 9), (4, 4)])
def test_tree_closed_form_is_exact_on_full_trees(k_ary, w):
    spec, plan, _, res = plan_run("tree", w, 2, 64, 16 * w, k_ary=k_ary)
    est = GEMV.estimate(plan, spec)
    assert est.cycles == res.cycles
    assert plan.tiling["levels"] == log_ceil(w, k_ary)


@pytest.mark.parametrize("k_ary,w", [(2, 7), (3, 16), (4, 7), (2, 13)])
def test_tree_closed_form_within_ten_percent_on_partial_trees(k_ary, w):
    spec, plan, _, res = plan_run("tree", w, 2, 256, 16 * w, k_ary=k_ary)
    assert GEMV.estimate(plan, spec).cycles == pytest.approx(res.cycles, rel=0.10)


def test_tree_wins_for_short_vectors_and_pipeline_for_long_ones():
    """The pipeline pays the per-hop latency Pw - 1 times and streams once; the tree pays
    log2(Pw) levels of one stream each."""
    for m, h, winner in ((32, 2, "tree"), (8192, 16, "pipeline")):
        cycles = {}
        for algo in ("pipeline", "tree"):
            spec, plan, _, res = plan_run(algo, 32, h, m, 32 * 16)
            est = GEMV.estimate(plan, spec)
            cycles[algo] = (res.cycles, est.cycles)
        loser = "pipeline" if winner == "tree" else "tree"
        assert cycles[winner][0] < cycles[loser][0], (m, cycles)
        assert cycles[winner][1] < cycles[loser][1], (m, cycles)


@pytest.mark.parametrize("algo,opts", CASES)
def test_flops_and_wavelets_are_conserved(algo, opts):
    spec, plan, _, res = plan_run(algo, 7, 3, 50, 70, **opts)
    est = GEMV.estimate(plan, spec)
    pw, ph = plan.tiling["grid"]
    tm, tk = plan.tiling["tile_m"], plan.tiling["tile_k"]
    adds = (pw - 1) * tm * ph  # every partial but the root's is added once per row
    assert res.pe_flops.sum() == 2 * tm * tk * pw * ph + adds == est.pe_flops.sum()
    assert res.link_wavelets.sum() == est.link_wavelets
    assert res.wavelets_delivered == res.wavelets_expected


def test_run_kernel_checks_gemv():
    r = run_kernel("gemv", mesh(8, 4), {"m": 100, "k": 300}, "tree", check=True, k_ary=3)
    assert r.check == "passed"
    assert r.options == {"k_ary": 3}
    assert r.flops == 2 * 100 * 300


@pytest.mark.parametrize("value", [1, 13, "x", 2.5, True])
def test_k_ary_must_be_a_small_whole_number(value):
    with pytest.raises(ConfigError) as info:
        GEMV.plan(mesh(4, 4), Region(0, 0, 4, 4), {"m": 8, "k": 8}, "fp16", "tree", k_ary=value)
    assert info.value.field == "k_ary"


def test_k_ary_belongs_to_the_tree():
    with pytest.raises(ConfigError) as info:
        GEMV.plan(mesh(4, 4), Region(0, 0, 4, 4), {"m": 8, "k": 8}, "fp16", "pipeline", k_ary=2)
    assert info.value.field == "k_ary"


def test_gemv_that_does_not_fit_suggests_a_region():
    spec = mesh(4, 4)
    with pytest.raises(PlanError, match=r"needs \d+ bytes per PE .* smallest region that fits"):
        GEMV.plan(spec, Region(0, 0, 4, 4), {"m": 4096, "k": 4096}, "fp16", "pipeline")
