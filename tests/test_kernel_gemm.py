"""GEMM kernels: numerics against numpy, closed forms against the DES and against an independent
cycle-level systolic array, conservation of FLOPs and wavelets, plans that do not fit."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from wse_sim.engine.des import run_program
from wse_sim.errors import ConfigError, PlanError
from wse_sim.hardware.presets import get_preset
from wse_sim.hardware.spec import WaferSpec
from wse_sim.kernels._common import (
    exchange_cycles,
    matmul_cycles,
    ring_exchange,
    ring_hops,
    ring_layout,
    shift_pair_cycles,
    smallest_fit,
)
from wse_sim.kernels.gemm import Gemm
from wse_sim.kernels.gemm_systolic import fold_cycles, pipelined_cycles
from wse_sim.kernels.runner import run_kernel
from wse_sim.program.ir import Phase, Program, Region

GEMM = Gemm()
ALGOS = ("summa", "cannon", "meshgemm", "systolic-os")


def mesh(w: int, h: int, **fields: float) -> WaferSpec:
    spec = get_preset("small").with_mesh(w, h)
    for key, value in fields.items():
        section, name = key.split("__")
        spec = spec.with_field(section, name, value)
    return spec


def plan_run(algo, w, h, m, n, k, dtype="fp16", functional=False, spec=None, **options):
    spec = spec or mesh(w, h)
    plan = GEMM.plan(spec, Region(0, 0, w, h), {"m": m, "n": n, "k": k}, dtype, algo, **options)
    inputs = GEMM.random_inputs(plan, np.random.default_rng(7)) if functional else None
    res = run_program(GEMM.program(plan, spec, inputs), spec, functional=functional)
    return spec, plan, inputs, res


# -- numerics ---------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize(
    "w,h,m,n,k,dtype",
    [
        (4, 4, 32, 32, 32, "fp16"),
        (5, 3, 23, 17, 11, "fp16"),  # ragged sizes: zero padding, non-square region
        (4, 4, 12, 20, 28, "fp32"),
    ],
)
def test_functional_result_matches_numpy(algo, w, h, m, n, k, dtype):
    _, plan, inputs, res = plan_run(algo, w, h, m, n, k, dtype, functional=True)
    ref = inputs["A"].astype(np.float64) @ inputs["B"].astype(np.float64)
    assert res.output.shape == (m, n)
    tol = 2e-2 if dtype == "fp16" else 1e-5
    np.testing.assert_allclose(res.output, ref, rtol=tol, atol=tol * np.abs(ref).max())
    assert res.wavelets_delivered == res.wavelets_expected


@pytest.mark.parametrize("algo", ("cannon", "meshgemm"))
def test_preskewed_layout_gives_the_same_product_without_the_skew(algo):
    spec, plan, inputs, res = plan_run(algo, 4, 4, 16, 16, 16, functional=True, skew="false")
    ref = inputs["A"].astype(np.float64) @ inputs["B"].astype(np.float64)
    np.testing.assert_allclose(res.output, ref, rtol=2e-2, atol=2e-2 * np.abs(ref).max())
    _, _, _, skewed = plan_run(algo, 4, 4, 16, 16, 16, skew=True)
    assert skewed.cycles > res.cycles
    assert GEMM.estimate(plan, spec).breakdown["skew"] == 0.0


def test_run_kernel_check_passes_and_reports_consistent_metrics():
    spec = mesh(4, 4)
    r = run_kernel("gemm", spec, {"m": 32, "n": 32, "k": 32}, "summa", check=True)
    assert r.check == "passed"
    peak = spec.peak_flops_per_cycle("fp16")
    assert r.flops == 2 * 32**3
    assert r.peak_fraction == pytest.approx(r.flops / (16 * peak * r.cycles))
    assert r.utilization["compute_mean"] == pytest.approx(r.pe_flops.sum() / (16 * peak * r.cycles))
    assert r.seconds == pytest.approx(r.cycles / spec.pe.clock_hz)
    assert r.achieved_flops_per_s == pytest.approx(r.flops / r.seconds)


# -- closed forms against the DES -------------------------------------------------------------
@pytest.mark.parametrize(
    "algo,w,h,m,n,k,tol",
    [
        ("summa", 4, 4, 64, 64, 64, 0.005),
        ("summa", 8, 8, 128, 128, 128, 0.005),
        ("summa", 6, 4, 48, 40, 24, 0.005),
        ("cannon", 8, 8, 128, 128, 128, 0.01),
        ("meshgemm", 8, 8, 128, 128, 128, 0.01),
        ("cannon", 16, 16, 256, 256, 256, 0.01),
        ("meshgemm", 16, 16, 256, 256, 256, 0.01),
        ("meshgemm", 5, 5, 80, 80, 80, 0.10),  # odd ring: the closed form is an average
        ("systolic-os", 4, 4, 9, 9, 256, 0.03),
    ],
)
def test_des_and_closed_form_agree(algo, w, h, m, n, k, tol):
    spec, plan, _, res = plan_run(algo, w, h, m, n, k)
    est = GEMM.estimate(plan, spec)
    assert est.cycles == pytest.approx(res.cycles, rel=tol)
    assert sum(est.breakdown.values()) == pytest.approx(est.cycles)


def test_closed_forms_follow_the_hardware_fields():
    """A slower fabric and a larger instruction overhead move DES and closed form together."""
    spec = mesh(8, 8, fabric__hop_latency_cycles=3, fabric__ramp_latency_cycles=4)
    spec = spec.with_field("pe", "instruction_overhead_cycles", 5)
    for algo in ("summa", "meshgemm", "cannon"):
        _, plan, _, res = plan_run(algo, 8, 8, 128, 128, 128, spec=spec)
        est = GEMM.estimate(plan, spec).cycles
        assert est == pytest.approx(res.cycles, rel=0.02), algo


@pytest.mark.parametrize("algo", ALGOS)
def test_flops_and_wavelets_are_conserved(algo):
    """Executed FLOPs = padded 2*M*N*K in the DES and the closed form; the closed form's link
    wavelets equal what the DES's links carried."""
    spec, plan, _, res = plan_run(algo, 6, 6, 40, 36, 30)
    est = GEMM.estimate(plan, spec)
    assert res.pe_flops.sum() == pytest.approx(est.pe_flops.sum())
    assert res.pe_flops.sum() >= plan.flops
    assert res.link_wavelets.sum() == pytest.approx(est.link_wavelets)
    np.testing.assert_allclose(res.pe_sram_peak_bytes[:6, :6], GEMM.sram_map(plan))
    assert GEMM.sram_map(plan).max() == plan.sram_bytes_per_pe


def test_exact_padded_flops_of_summa():
    spec, plan, _, res = plan_run("summa", 4, 4, 10, 10, 10)
    t = plan.tiling
    padded = (t["tile_m"] * 4) * (t["tile_n"] * 4) * (t["panel_k"] * t["steps"])
    assert res.pe_flops.sum() == 2 * padded == 2 * 12 * 12 * 12


def test_meshgemm_and_cannon_differ_only_by_latency():
    """Both rings sum to 2(P-1) hops, so in steady state they cost the same; Cannon's long
    wrap-around link only moves the chain latency around (a few cycles either way)."""
    _, _, _, c = plan_run("cannon", 16, 16, 256, 256, 256)
    _, _, _, mg = plan_run("meshgemm", 16, 16, 256, 256, 256)
    assert abs(c.cycles - mg.cycles) <= 2 * 16
    ring_c, _ = ring_layout(16, False)
    ring_m, _ = ring_layout(16, True)
    assert ring_hops(ring_c).max() == 15 and ring_hops(ring_m).max() == 2
    assert ring_hops(ring_c).sum() == ring_hops(ring_m).sum() == 30


def test_background_shifts_cost_what_summa_receives():
    """With background sends a ring shift costs a PE one receive (``n - 1``) plus an ``O``
    issue, like a SUMMA receiver's panel, where it used to cost ``2n`` (send, then receive,
    one op at a time) and SUMMA won by half the communication. Same tiles, same compute: a
    pre-skewed Cannon and pipelined SUMMA now agree within 1%; Cannon's skew (``P - 1``
    rounds with nothing to hide their latency behind) is what still puts SUMMA ahead."""
    spec, ps, _, s = plan_run("summa", 8, 8, 256, 256, 256)
    _, pc, _, c = plan_run("cannon", 8, 8, 256, 256, 256, skew=False)
    _, _, _, skewed = plan_run("cannon", 8, 8, 256, 256, 256)
    est_s, est_c = GEMM.estimate(ps, spec), GEMM.estimate(pc, spec)
    assert est_s.breakdown["compute"] == est_c.breakdown["compute"]
    na, nb = pc.tiling["wavelets_a"], pc.tiling["wavelets_b"]
    o = spec.pe.instruction_overhead_cycles
    per_shift = est_c.breakdown["shift"] / (8 - 1)  # no shift after the last step
    assert per_shift == 2 * o + na + nb - 2  # the compute covers the transfer latency
    # SUMMA on 8 x 8: each PE owns one panel of each operand (2 O issues) and receives 7.
    assert ps.tiling["steps"] == 8
    assert est_s.breakdown["communication"] == 7 * (na - 1 + nb - 1) + 2 * o
    assert per_shift - (na - 1 + nb - 1) == 2 * o
    assert c.cycles == pytest.approx(s.cycles, rel=0.01)
    assert s.cycles < skewed.cycles


@pytest.mark.parametrize(
    "w,h,m,n,k",
    [
        (4, 4, 64, 64, 64),
        (6, 4, 48, 40, 24),
        (5, 3, 23, 17, 11),
        (1, 4, 16, 16, 16),
        (7, 5, 70, 50, 90),
    ],
)
def test_pipelined_summa_is_exact_and_never_slower(w, h, m, n, k):
    """Pipelined SUMMA's closed form (the slowest of the corner PEs' timelines) equals the
    DES, and overlapping step s+1's multicasts with step s hides the per-step latency that the
    blocking variant (its own closed form, within 2 cycles) pays."""
    spec, plan, _, res = plan_run("summa", w, h, m, n, k)
    assert plan.tiling["pipelined"] is True
    assert GEMM.estimate(plan, spec).cycles == res.cycles
    _, blocking, _, old = plan_run("summa", w, h, m, n, k, pipelined=False)
    assert GEMM.estimate(blocking, spec).cycles == pytest.approx(old.cycles, abs=2)
    assert res.cycles < old.cycles
    assert blocking.sram_bytes_per_pe == plan.sram_bytes_per_pe  # the panels wait in the fabric


def test_blocking_summa_still_computes_the_product():
    _, plan, inputs, res = plan_run("summa", 5, 3, 23, 17, 11, functional=True, pipelined=False)
    ref = inputs["A"].astype(np.float64) @ inputs["B"].astype(np.float64)
    np.testing.assert_allclose(res.output, ref, rtol=2e-2, atol=2e-2 * np.abs(ref).max())


def test_shift_steps_without_skew_are_exact_and_expose_latency_only_without_compute():
    """Pre-skewed Cannon: ``P matmul + (P - 1)(shift pair - matmul)`` is exact. With large
    tiles a pair costs ``2O + nA + nB - 2`` beyond the product; with tiny ones the product no
    longer covers ``2R + h H`` and the lap-mean latency shows."""
    for m in (16, 128):
        spec, plan, _, res = plan_run("cannon", 8, 8, m, m, m, skew=False)
        assert GEMM.estimate(plan, spec).cycles == res.cycles
    t = plan.tiling
    comp = matmul_cycles(spec, "fp16", t["tile_m"], t["tile_n"], t["tile_k"])
    na, nb = t["wavelets_a"], t["wavelets_b"]
    assert shift_pair_cycles(spec, na, nb, comp, 2.0) == comp + 2 * 2 + na + nb - 2
    # Nothing to compute: the receive waits for the head, 2R + hH after the send.
    assert shift_pair_cycles(spec, 4, 4, 0, 15.0) == max(4, 4) + 2 * 2 + 15 + 4 - 1


# -- ring exchange ----------------------------------------------------------------------------
@pytest.mark.parametrize("p", (2, 3, 5, 8, 9))
def test_interleaved_ring_is_a_permutation_with_short_hops(p):
    ring, pos = ring_layout(p, True)
    assert sorted(ring.tolist()) == list(range(p))
    np.testing.assert_array_equal(ring[pos], np.arange(p))
    assert ring_hops(ring).max() <= 2


@pytest.mark.parametrize("p,interleaved", [(8, True), (8, False), (6, True), (16, False)])
def test_repeated_ring_exchanges_match_the_closed_form(p, interleaved):
    spec = mesh(p, p)
    reg = Region(0, 0, p, p)
    ring, pos = ring_layout(p, interleaved)
    n, reps = 200, 4
    ops = []
    for _ in range(reps):
        ops += ring_exchange("x", reg.shape, ring, pos, n, 0, "A")
    res = run_program(Program("ex", reg, [Phase("p", ops)]), spec)
    per = exchange_cycles(spec, n, ring)
    # One transfer per exchange (the send is in the background): n - 1 + 2R + lap-mean hops.
    assert per == n - 1 + 2 * 2 + ring_hops(ring).sum() / p
    # The first exchange pays its chain's full latency, later ones the lap average.
    assert res.cycles == pytest.approx(reps * per, abs=2 * p)
    assert res.cycles < reps * 1.1 * n  # it used to be 2n per exchange


def test_ring_exchange_moves_each_tile_one_position_back():
    p = 6
    spec = mesh(p, 1)
    reg = Region(0, 0, p, 1)
    ring, pos = ring_layout(p, True)
    ops = ring_exchange("x", reg.shape, ring, pos, 3, 0, "A")
    prog = Program(
        "ex",
        reg,
        [Phase("p", ops)],
        init=lambda x, y: {"A": np.full(6, float(pos[x]))},
        collect=lambda mems: {x: mem["A"][0] for (x, _), mem in mems.items()},
    )
    out = run_program(prog, spec, functional=True).output
    for x in range(p):
        assert out[x] == (pos[x] + 1) % p  # position i now holds what position i+1 held


# -- systolic-os: the classic array -----------------------------------------------------------
def classic_os_cycles(a: np.ndarray, b: np.ndarray, rows: int, cols: int):
    """A cycle-by-cycle output-stationary array, independent of the closed form.

    Each cycle every PE multiplies the operands in its west and north input registers into
    its accumulator and passes them east and south. Row r's A values enter r cycles late and
    column c's B values c cycles late. After the last MAC the outputs drain south, one row per
    cycle. Folds run one after the other. Returns (cycles, C).
    """
    m, k = a.shape
    n = b.shape[1]
    out = np.zeros((m, n))
    total = 0
    for i0 in range(0, m, rows):
        for j0 in range(0, n, cols):
            ra = np.zeros((rows, cols))
            rb = np.zeros((rows, cols))
            va = np.zeros((rows, cols), bool)
            vb = np.zeros((rows, cols), bool)
            acc = np.zeros((rows, cols))
            macs = np.zeros((rows, cols), int)
            cycle = 0
            while macs.min() < k:
                ra = np.roll(ra, 1, axis=1)
                va = np.roll(va, 1, axis=1)
                rb = np.roll(rb, 1, axis=0)
                vb = np.roll(vb, 1, axis=0)
                for r in range(rows):
                    t = cycle - r
                    va[r, 0] = 0 <= t < k
                    ra[r, 0] = a[i0 + r, t] if va[r, 0] and i0 + r < m else 0.0
                for c in range(cols):
                    t = cycle - c
                    vb[0, c] = 0 <= t < k
                    rb[0, c] = b[t, j0 + c] if vb[0, c] and j0 + c < n else 0.0
                both = va & vb
                acc += np.where(both, ra * rb, 0.0)
                macs += both
                cycle += 1
            drained, drain = np.zeros((rows, cols), bool), 0
            while not drained.all():  # the bottom row leaves first
                drained[rows - 1 - drain] = True
                drain += 1
            total += cycle + drain
            rr, cc = min(rows, m - i0), min(cols, n - j0)
            out[i0 : i0 + rr, j0 : j0 + cc] = acc[:rr, :cc]
    return total, out


@pytest.mark.parametrize("rows,cols,m,n,k", [(3, 3, 3, 3, 5), (4, 2, 8, 4, 7), (2, 5, 5, 9, 4)])
def test_systolic_closed_form_equals_a_cycle_level_array(rows, cols, m, n, k):
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    cycles, c = classic_os_cycles(a, b, rows, cols)
    np.testing.assert_allclose(c, a @ b)
    folds = -(-m // rows) * -(-n // cols)
    assert cycles == folds * (2 * rows + cols + k - 2)
    spec = mesh(cols + 1, rows + 1)
    plan = GEMM.plan(
        spec, Region(0, 0, cols + 1, rows + 1), {"m": m, "n": n, "k": k}, "fp16", "systolic-os"
    )
    assert plan.tiling["array"] == [cols, rows]
    assert GEMM.estimate(plan, spec).cycles == cycles
    assert fold_cycles(rows, cols, k) == 2 * rows + cols + k - 2


def test_systolic_fp32_feeds_one_mac_every_two_cycles():
    spec = mesh(4, 4)
    plan = GEMM.plan(spec, Region(0, 0, 4, 4), {"m": 3, "n": 3, "k": 10}, "fp32", "systolic-os")
    assert GEMM.estimate(plan, spec).cycles == 2 * 3 + 3 + 2 * 10 - 2


@pytest.mark.parametrize(
    "w,h,m,n,k,dtype",
    [(4, 4, 6, 6, 64, "fp16"), (9, 9, 16, 16, 128, "fp16"), (5, 3, 7, 9, 33, "fp32")],
)
def test_systolic_des_overlaps_folds(w, h, m, n, k, dtype):
    """The DES runs the program with consecutive folds overlapping: exactly the pipelined
    form, and faster than the fold-by-fold closed form by about (2R + C) per fold."""
    spec, plan, _, res = plan_run("systolic-os", w, h, m, n, k, dtype)
    assert res.cycles == pipelined_cycles(spec, plan)
    est = GEMM.estimate(plan, spec).cycles
    cols, rows = plan.tiling["array"]
    folds = plan.tiling["folds"][0] * plan.tiling["folds"][1]
    assert 0 < est - res.cycles < folds * (2 * rows + cols)


def test_systolic_uses_one_mac_per_cycle():
    """fp16 on WSE-2: 4 FMACs per cycle at peak; the systolic array does one, so a long fold
    reaches just under 1/4 of peak on its array PEs."""
    r = run_kernel("gemm", mesh(4, 4), {"m": 3, "n": 3, "k": 2048}, "systolic-os")
    per_pe = r.pe_flops[1:, 1:] / (8 * r.cycles)
    assert per_pe.min() == pytest.approx(0.25, rel=0.01)
    assert per_pe.max() <= 0.25


# -- plans ------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ("summa", "cannon", "meshgemm"))
def test_plan_that_does_not_fit_names_bytes_and_the_smallest_region(algo):
    spec = mesh(16, 16)
    with pytest.raises(PlanError) as info:
        GEMM.plan(spec, Region(0, 0, 16, 16), {"m": 2048, "n": 2048, "k": 2048}, "fp16", algo)
    msg = str(info.value)
    assert "\n" not in msg
    need = int(re.search(r"needs (\d+) bytes per PE", msg).group(1))
    assert need > spec.pe.data_sram_bytes
    assert str(spec.pe.data_sram_bytes) in msg
    w, h = (int(v) for v in re.search(r"fits: (\d+)x(\d+) PEs", msg).groups())
    big = mesh(w, h)
    sizes = {"m": 2048, "n": 2048, "k": 2048}
    fits = GEMM.plan(big, Region(0, 0, w, h), sizes, "fp16", algo)
    assert fits.sram_bytes_per_pe <= spec.pe.data_sram_bytes
    with pytest.raises(PlanError):
        GEMM.plan(mesh(w - 1, h - 1), Region(0, 0, w - 1, h - 1), sizes, "fp16", algo)


def test_smallest_fit_searches_the_boundary():
    assert smallest_fit(lambda w, h: 1000 // (w * h), 10) == (10, 10)
    assert smallest_fit(lambda w, h: 10**9, 10) is None
    assert smallest_fit(lambda w, h: 100 // w, 10, aspect=2.0) == (10, 20)


def test_systolic_feeders_hold_the_operands():
    spec = mesh(4, 4)
    plan = GEMM.plan(spec, Region(0, 0, 4, 4), {"m": 6, "n": 9, "k": 20}, "fp16", "systolic-os")
    sram = GEMM.sram_map(plan)
    assert sram[1, 0] == 2 * 20 * 2  # west feeder: 2 folds of A rows, fp16
    assert sram[0, 1] == 3 * 20 * 2  # north feeder: 3 folds of B columns
    assert sram[1, 1] == (20 + 6) * 2  # B column buffer + one output per fold
    assert sram[0, 0] == 0


@pytest.mark.parametrize(
    "sizes,algo,options,field",
    [
        ({"m": 4, "n": 4}, "summa", {}, "k"),
        ({"m": 4, "n": 0, "k": 4}, "summa", {}, "n"),
        ({"m": 4, "n": 4, "k": 4}, "strassen", {}, "algorithm"),
        ({"m": 4, "n": 4, "k": 4}, "summa", {"skew": True}, "skew"),
        ({"m": 4, "n": 4, "k": 4}, "cannon", {"skew": "maybe"}, "skew"),
        ({"m": 4, "n": 4, "k": 4}, "summa", {"pipelined": "maybe"}, "pipelined"),
        ({"m": 4, "n": 4, "k": 4}, "meshgemm", {"pipelined": True}, "pipelined"),
    ],
)
def test_bad_requests_raise_config_errors(sizes, algo, options, field):
    with pytest.raises(ConfigError) as info:
        GEMM.plan(mesh(4, 4), Region(0, 0, 4, 4), sizes, "fp16", algo, **options)
    assert info.value.field == field


def test_systolic_needs_room_for_feeders():
    with pytest.raises(ConfigError, match="2x2"):
        GEMM.plan(mesh(4, 4), Region(0, 0, 1, 4), {"m": 4, "n": 4, "k": 4}, "fp16", "systolic-os")


def test_full_wafer_timing_is_cheap():
    """The analytic engine answers for the whole WSE-2 instantly, and a timing-only program
    for the whole wafer is built from broadcast per-PE fields (no per-PE Python)."""
    spec = get_preset("wse2")
    start = time.perf_counter()
    r = run_kernel("gemm", spec, {"m": 8192, "n": 8192, "k": 8192}, "summa", engine="analytic")
    assert time.perf_counter() - start < 1.0
    assert 0 < r.peak_fraction <= 1
    plan = GEMM.plan(
        spec, Region(0, 0, 750, 994), {"m": 8192, "n": 8192, "k": 8192}, "fp16", "summa"
    )
    start = time.perf_counter()
    prog = GEMM.program(plan, spec)
    assert time.perf_counter() - start < 2.0
    # One phase per step plus the pipelined prologue (step 0's multicasts).
    assert len(prog.phases) == plan.tiling["steps"] + 1 == 995
