"""The attention kernel: FLOP count, functional results vs numpy, DES vs closed form, SRAM fit."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from wse_sim.engine.des import run_program
from wse_sim.errors import ConfigError, PlanError
from wse_sim.hardware.presets import get_preset
from wse_sim.kernels import KERNELS
from wse_sim.kernels.attention import AttentionKernel, attention_flops
from wse_sim.program.ir import Region

K = AttentionKernel()
SMALL = get_preset("small")  # 16 x 16 PEs
DEMO = get_preset("demo")  # 64 x 64 PEs
WSE2 = get_preset("wse2")
TOL = {"fp32": 2e-5, "fp16": 4e-3, "bf16": 3e-2}


def _plan(sizes, dtype="fp32", region=None, spec=SMALL, **opts):
    region = region or Region(0, 0, 16, 16)
    return K.plan(spec, region, sizes, dtype, **opts)


def _run(plan, spec=SMALL, seed=0):
    """Functional DES run: (engine result, output error vs reference, inputs)."""
    inputs = K.random_inputs(plan, np.random.default_rng(seed))
    program = K.program(plan, spec, inputs)
    res = run_program(program, spec, functional=True)
    ref = K.reference(plan, inputs)
    assert res.output.shape == ref.shape
    return res, float(np.abs(res.output - ref).max()), program


def _crop(a, region):
    return a[region.y : region.y + region.height, region.x : region.x + region.width]


# -- FLOP count --------------------------------------------------------------------------------


def _brute_pairs(seq, context, causal):
    qpos = np.arange(seq)[:, None] + context - seq
    visible = np.ones((seq, context), bool)
    if causal:
        visible &= np.arange(context)[None, :] <= qpos
    return int(visible.sum())


@pytest.mark.parametrize("seq,context", [(1, 1), (7, 7), (16, 16), (5, 12), (1, 300)])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_flops_counts_visible_pairs(seq, context, causal):
    d, batch, heads = 16, 2, 3
    want = batch * heads * _brute_pairs(seq, context, causal) * (4 * d + 5)
    assert attention_flops(batch, heads, seq, context, d, causal) == want


def test_causal_prefill_is_half_to_first_order():
    full = attention_flops(1, 8, 2048, 2048, 128, False)
    causal = attention_flops(1, 8, 2048, 2048, 128, True)
    assert causal / full == pytest.approx((2048 + 1) / (2 * 2048))


def test_attention_flops_rejects_bad_sizes():
    with pytest.raises(ConfigError, match="head_dim"):
        attention_flops(1, 1, 4, 4, 0, False)
    with pytest.raises(ConfigError, match="context"):
        attention_flops(1, 1, 8, 4, 16, True)


@pytest.mark.parametrize(
    "sizes,opts",
    [
        (dict(batch=2, heads=4, seq=24, head_dim=8), dict(phase="prefill", causal=True)),
        (
            dict(batch=1, heads=4, kv_heads=2, seq=20, head_dim=8),
            dict(phase="prefill", causal=False),
        ),
        (dict(batch=3, heads=4, kv_heads=1, seq=1, head_dim=8, context=50), dict(phase="decode")),
    ],
)
def test_plan_flops_equal_attention_flops(sizes, opts):
    plan = _plan(sizes, **opts)
    s = plan.sizes
    want = attention_flops(
        s["batch"], s["heads"], s["seq"], s["context"], s["head_dim"], opts.get("causal", False)
    )
    assert plan.flops == want


def test_registered_under_its_name():
    assert isinstance(KERNELS["attention"], AttentionKernel)


# -- reference -----------------------------------------------------------------------------------


def test_reference_matches_per_query_loop():
    plan = _plan(
        dict(batch=1, heads=4, kv_heads=2, seq=5, head_dim=3), phase="prefill", causal=True
    )
    inp = K.random_inputs(plan, np.random.default_rng(3))
    ref = K.reference(plan, inp)
    q, k, v = (inp[n].astype(np.float64) for n in ("q", "k", "v"))
    for h in range(4):
        for i in range(5):
            s = np.array([q[0, h, i] @ k[0, h // 2, j] / math.sqrt(3) for j in range(i + 1)])
            p = np.exp(s - s.max())
            want = (p / p.sum()) @ v[0, h // 2, : i + 1]
            np.testing.assert_allclose(ref[0, h, i], want, rtol=1e-12)


# -- functional prefill ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sizes,opts,dtype",
    [
        # one ring of 4 columns x 2 rows (row replication), causal and not
        (
            dict(batch=1, heads=2, seq=32, head_dim=8),
            dict(causal=True, ring=4, rows_per_unit=2),
            "fp32",
        ),
        (
            dict(batch=1, heads=2, seq=32, head_dim=8),
            dict(causal=False, ring=4, rows_per_unit=2),
            "fp32",
        ),
        # grouped-query heads split over rows; several block columns
        (
            dict(batch=2, heads=4, kv_heads=1, seq=16, head_dim=8),
            dict(causal=True, ring=4, rows_per_unit=4, head_split=2),
            "fp32",
        ),
        # sequence not divisible by the chunks: padded keys and queries
        (
            dict(batch=1, heads=3, seq=13, head_dim=4),
            dict(causal=False, ring=3, rows_per_unit=2),
            "fp32",
        ),
        (
            dict(batch=1, heads=3, seq=13, head_dim=4),
            dict(causal=True, ring=3, rows_per_unit=2),
            "fp32",
        ),
        # the planner's own choice, fp16
        (dict(batch=2, heads=4, kv_heads=2, seq=24, head_dim=16), dict(causal=True), "fp16"),
        (
            dict(batch=1, heads=2, seq=40, head_dim=16),
            dict(causal=False, ring=8, rows_per_unit=1),
            "fp16",
        ),
    ],
)
def test_prefill_matches_numpy(sizes, opts, dtype):
    plan = _plan(sizes, dtype, phase="prefill", **opts)
    _, err, _ = _run(plan)
    assert err < TOL[dtype]


# -- functional decode -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sizes,opts,dtype",
    [
        (dict(batch=1, heads=4, kv_heads=1, seq=1, head_dim=16, context=100), {}, "fp32"),
        (dict(batch=2, heads=4, kv_heads=2, seq=1, head_dim=16, context=37), {}, "fp16"),
        # fewer tokens than PEs: most PEs hold nothing and merge empty states
        (
            dict(batch=1, heads=2, seq=1, head_dim=8, context=5),
            dict(block_width=4, block_height=4),
            "fp32",
        ),
        # more units than blocks: two units per block
        (
            dict(batch=3, heads=2, kv_heads=1, seq=1, head_dim=8, context=77),
            dict(block_width=8, block_height=16),
            "fp32",
        ),
    ],
)
def test_decode_matches_numpy(sizes, opts, dtype):
    plan = _plan(sizes, dtype, phase="decode", **opts)
    _, err, _ = _run(plan)
    assert err < TOL[dtype]


def test_decode_spreads_cache_evenly():
    plan = _plan(dict(batch=1, heads=1, seq=1, head_dim=8, context=1000), phase="decode")
    sram = K.sram_map(plan)
    used = sram[sram > 0]
    per_token = 2 * 8 * 4 + 4  # K and V rows plus one fp32 score
    assert used.max() - used.min() <= per_token  # PEs differ by at most one token


# -- DES vs closed form ------------------------------------------------------------------------------

UNCONTENDED = [
    (
        dict(batch=1, heads=2, seq=32, head_dim=8),
        dict(phase="prefill", causal=True, ring=4, rows_per_unit=2),
        "fp32",
    ),
    (
        dict(batch=1, heads=2, seq=32, head_dim=8),
        dict(phase="prefill", causal=False, ring=8, rows_per_unit=1),
        "fp16",
    ),
    (
        dict(batch=2, heads=4, kv_heads=2, seq=30, head_dim=8),
        dict(phase="prefill", causal=True, ring=8, rows_per_unit=2),
        "fp32",
    ),
    (
        dict(batch=1, heads=1, seq=64, head_dim=64),
        dict(phase="prefill", causal=True, ring=16, rows_per_unit=1),
        "fp16",
    ),
    (
        dict(batch=3, heads=3, seq=16, head_dim=8),
        dict(phase="prefill", causal=True, ring=4, rows_per_unit=4),
        "fp16",
    ),
    (
        dict(batch=1, heads=4, kv_heads=1, seq=1, head_dim=16, context=512),
        dict(phase="decode", block_width=16, block_height=16),
        "fp16",
    ),
    (
        dict(batch=4, heads=2, kv_heads=2, seq=1, head_dim=8, context=96),
        dict(phase="decode", block_width=8, block_height=4),
        "fp32",
    ),
]


@pytest.mark.parametrize("sizes,opts,dtype", UNCONTENDED)
def test_des_matches_closed_form_uncontended(sizes, opts, dtype):
    plan = _plan(sizes, dtype, region=Region(0, 0, 16, 16), **opts)
    program = K.program(plan, SMALL)
    res = run_program(program, SMALL)
    est = K.estimate(plan, SMALL)
    assert est.cycles == pytest.approx(res.cycles, rel=0.02)
    # the parts of the estimate add up to it
    assert sum(est.breakdown.values()) == pytest.approx(est.cycles)


@pytest.mark.parametrize("sizes,opts,dtype", UNCONTENDED[:5:2] + UNCONTENDED[5:])
def test_conservation_des_vs_estimate(sizes, opts, dtype):
    """Per-PE FLOPs and SRAM, and link wavelets, are the same in the DES and the estimate."""
    region = Region(3, 5, 16, 16)
    plan = _plan(sizes, dtype, region=region, spec=DEMO, **opts)
    program = K.program(plan, DEMO)
    res = run_program(program, DEMO)
    est = K.estimate(plan, DEMO)
    np.testing.assert_array_equal(_crop(res.pe_flops, region), est.pe_flops)
    np.testing.assert_array_equal(_crop(res.pe_sram_peak_bytes, region), K.sram_map(plan))
    assert res.pe_flops.sum() == pytest.approx(program.flops)
    assert res.link_wavelets.sum() == pytest.approx(est.link_wavelets)
    assert res.wavelets_delivered == res.wavelets_expected
    assert K.sram_map(plan).max() == plan.sram_bytes_per_pe


def test_decode_odd_blocks_and_uneven_slices_stay_exact():
    """Block sides that are not powers of two and C mod N != 0: still uncontended."""
    for w, h, context in ((4, 6, 130), (5, 3, 37), (7, 2, 59)):
        sizes = dict(batch=1, heads=2, kv_heads=1, seq=1, head_dim=8, context=context)
        plan = _plan(sizes, "fp16", region=Region(0, 0, w, h), phase="decode")
        assert run_program(K.program(plan, SMALL), SMALL).cycles == K.estimate(plan, SMALL).cycles


def test_decode_tree_contention_when_extra_tokens_sit_near_the_root(monkeypatch):
    """Where DES and closed form differ: with the C mod N extra tokens on the PEs nearest the
    root, the PE at row 4 of a 4 x 6 block (no partner at level 1, one token less) sends its
    level-2 state while row 2's level-1 state is on the same links; the DES serialises the two,
    the closed form does not. The kernel deals tokens from the far corner to avoid this."""
    from wse_sim.kernels import _attention_decode as dec

    def near_root(self):
        k = np.arange(self.block_pes).reshape(self.block_height, self.block_width)
        base, extra = divmod(self.context, self.block_pes)
        return base + (k < extra).astype(np.int64)

    monkeypatch.setattr(dec.DecodeLayout, "token_counts", near_root)
    sizes = dict(batch=1, heads=1, seq=1, head_dim=8, context=130)
    plan = _plan(sizes, "fp16", region=Region(0, 0, 4, 6), phase="decode")
    des = run_program(K.program(plan, SMALL), SMALL).cycles
    est = K.estimate(plan, SMALL).cycles
    assert est < des <= 1.1 * est


def test_prefill_fractional_stream_rate_rounds_once():
    """The other difference: a stream whose computation is slower than its input advances a
    fraction of a cycle per wavelet; the DES rounds up the finish time per PE, the closed form
    its total, so they can differ by one cycle."""
    sizes = dict(batch=2, heads=4, kv_heads=2, seq=4, head_dim=4)
    plan = _plan(sizes, "fp16", phase="prefill", causal=False, ring=3, rows_per_unit=3)
    des = run_program(K.program(plan, SMALL), SMALL).cycles
    assert abs(des - K.estimate(plan, SMALL).cycles) <= 1


def test_decode_power_of_two_closed_form():
    """The doc's formula equals the estimate for power-of-two blocks with N | C, and is an
    upper bound when slices are uneven (it charges ceil(C/N) tokens everywhere)."""
    from wse_sim.kernels import _attention_decode as dec

    for context, exact in ((4096 * 3, True), (5000, False)):
        sizes = dict(batch=1, heads=2, kv_heads=1, seq=1, head_dim=16, context=context)
        plan = _plan(sizes, "fp16", region=Region(0, 0, 64, 64), spec=DEMO, phase="decode")
        closed = dec.quick_cycles(DEMO, "fp16", dec.DecodeLayout.from_plan(plan))
        est = K.estimate(plan, DEMO).cycles
        assert closed == est if exact else closed >= est


# -- executed FLOPs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("causal", [False, True])
def test_prefill_executes_only_visible_pairs(causal):
    """No padding: executed = model FLOPs + the online-softmax bookkeeping, nothing else; so the
    causal program skips exactly the masked pairs."""
    d = 8
    plan = _plan(
        dict(batch=1, heads=2, seq=32, head_dim=d),
        phase="prefill",
        causal=causal,
        ring=4,
        rows_per_unit=2,
        kv_split=1,
    )
    t = plan.tiling
    assert t["padded_seq"] == 32
    rows_pe = 2 * t["qchunk"]  # one head per unit, two query chunks
    pes = t["width"] * t["height"]
    extra = pes * (t["ring"] * rows_pe * (d + 5) + rows_pe * (d + 2))
    assert K.program(plan, SMALL).flops == plan.flops + extra


# -- plans that do not fit -------------------------------------------------------------------------


def test_prefill_too_large_raises_plan_error():
    sizes = dict(batch=1, heads=1, seq=4096, head_dim=128)
    with pytest.raises(PlanError) as info:
        _plan(sizes, "fp16", phase="prefill")
    msg = str(info.value)
    assert "\n" not in msg
    assert "attention prefill" in msg and str(SMALL.pe.data_sram_bytes) in msg
    assert "ring=" in msg  # the smallest tiling that would fit


def test_decode_too_long_raises_plan_error():
    sizes = dict(batch=1, heads=1, seq=1, head_dim=128, context=10**6)
    with pytest.raises(
        PlanError, match=r"attention decode: needs \d+ bytes per PE.*43008.*at least \d+ PEs"
    ):
        _plan(sizes, "fp16", phase="decode")


def test_plan_error_hint_fits():
    """The region the prefill error suggests does fit."""
    sizes = dict(batch=1, heads=1, seq=512, head_dim=64)
    with pytest.raises(PlanError) as info:
        _plan(sizes, "fp16", region=Region(0, 0, 4, 4), phase="prefill")
    ring = int(str(info.value).split("ring=")[1].split(",")[0])
    plan = _plan(
        sizes,
        "fp16",
        region=Region(0, 0, ring, 16),
        spec=get_preset("demo"),
        phase="prefill",
        ring=ring,
    )
    assert plan.sram_bytes_per_pe <= SMALL.pe.data_sram_bytes


@pytest.mark.parametrize(
    "sizes,opts,field",
    [
        (dict(batch=1, heads=3, kv_heads=2, seq=4, head_dim=8), {}, "kv_heads"),
        (dict(batch=1, heads=2, seq=4, head_dim=8), dict(phase="sideways"), "phase"),
        (dict(batch=1, heads=2, seq=4, head_dim=8, context=9), {}, "context"),
        (dict(batch=1, heads=2, seq=3, head_dim=8, context=9), dict(phase="decode"), "seq"),
        (dict(batch=0, heads=2, seq=4, head_dim=8), {}, "batch"),
        (dict(batch=1, heads=2, seq=4, head_dim=8), dict(ring=17), "ring"),
        (dict(batch=1, heads=4, seq=4, head_dim=8), dict(head_split=3), "head_split"),
        (
            dict(batch=1, heads=4, seq=1, head_dim=8, context=9),
            dict(phase="decode", block_width=17),
            "block_width",
        ),
    ],
)
def test_bad_sizes_and_options(sizes, opts, field):
    with pytest.raises(ConfigError) as info:
        _plan(sizes, **opts)
    assert info.value.field == field


# -- full wafer ----------------------------------------------------------------------------------


def test_long_context_decode_on_full_wse2_is_linear():
    """Analytic decode on 750 x 994 PEs: finite, positive, and linear in the context once every
    PE holds several tokens (k tokens per PE for k = 8, 16, 32)."""
    region = Region(0, 0, WSE2.mesh.width, WSE2.mesh.height)
    n = region.num_pes
    cycles = []
    for k in (8, 16, 32):
        sizes = dict(batch=1, heads=8, kv_heads=1, seq=1, head_dim=128, context=k * n)
        plan = K.plan(WSE2, region, sizes, "fp16", phase="decode", head_split=1)
        assert plan.tiling["max_tokens_per_pe"] == k
        c = K.estimate(plan, WSE2).cycles
        assert math.isfinite(c) and c > 0
        cycles.append(c)
    assert cycles[2] - cycles[1] == pytest.approx(2 * (cycles[1] - cycles[0]), rel=1e-6)


def test_timing_program_at_full_wafer_is_cheap():
    """A full-wafer prefill program is built from scalars and broadcast views, not per-PE
    copies per operation."""
    region = Region(0, 0, WSE2.mesh.width, WSE2.mesh.height)
    plan = K.plan(WSE2, region, dict(batch=1, heads=32, seq=2048, head_dim=128), "fp16")
    tracemalloc.start()
    program = K.program(plan, WSE2)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    levels = math.ceil(math.log2(plan.tiling["kv_split"]))
    rounds = plan.tiling["ring"] // plan.tiling["kv_split"]
    assert len(program.phases) == rounds + 3 + levels
    assert peak < 32 * 2**20


# -- key/value split (prefill) and head split (decode) -------------------------------------------

KV_SPLIT = [
    # replicas interleaved with two query slices, causal and not
    (dict(batch=1, heads=2, seq=32, head_dim=8), dict(causal=True, ring=4, rows_per_unit=2, kv_split=2), "fp32"),
    (dict(batch=1, heads=2, seq=32, head_dim=8), dict(causal=False, ring=4, rows_per_unit=1, kv_split=4), "fp32"),
    # grouped-query heads split over rows, two units per block column, fp16
    (dict(batch=2, heads=4, kv_heads=1, seq=16, head_dim=8), dict(causal=True, ring=4, rows_per_unit=2, head_split=2, kv_split=2), "fp16"),
    # padded sequence, three replicas (odd tree)
    (dict(batch=1, heads=3, seq=13, head_dim=4), dict(causal=True, ring=3, rows_per_unit=2, kv_split=3), "fp32"),
    # one column per replica: the merge does all the combining
    (dict(batch=1, heads=1, seq=64, head_dim=16), dict(causal=True, ring=8, rows_per_unit=1, kv_split=8), "fp16"),
]  # fmt: skip


@pytest.mark.parametrize("sizes,opts,dtype", KV_SPLIT)
def test_prefill_kv_split_matches_numpy_and_closed_form(sizes, opts, dtype):
    """Replicas over key slices merged by a tree: right result, and on these uncontended
    programs the DES and the closed form agree to the cycle."""
    plan = _plan(sizes, dtype, phase="prefill", **opts)
    assert plan.tiling["kv_split"] == opts["kv_split"]
    res, err, _ = _run(plan)
    assert err < TOL[dtype]
    assert res.cycles == K.estimate(plan, SMALL).cycles


@pytest.mark.parametrize("sizes,opts,dtype", KV_SPLIT[::2])
def test_prefill_kv_split_conservation(sizes, opts, dtype):
    region = Region(3, 5, 16, 16)
    plan = _plan(sizes, dtype, region=region, spec=DEMO, phase="prefill", **opts)
    program = K.program(plan, DEMO)
    res = run_program(program, DEMO)
    est = K.estimate(plan, DEMO)
    np.testing.assert_array_equal(_crop(res.pe_flops, region), est.pe_flops)
    np.testing.assert_array_equal(_crop(res.pe_sram_peak_bytes, region), K.sram_map(plan))
    assert res.link_wavelets.sum() == pytest.approx(est.link_wavelets)
    assert res.wavelets_delivered == res.wavelets_expected
    assert sum(est.breakdown.values()) == pytest.approx(est.cycles)


@pytest.mark.parametrize("causal", [False, True])
def test_prefill_kv_split_executes_each_pair_once(causal):
    """Every (query, key) pair is scored by exactly one replica: executed FLOPs = model FLOPs
    + per-tile bookkeeping + kv_split - 1 merges per (query slice, column) + one final scaling
    per query row."""
    from wse_sim.hardware import cost

    d, ks = 8, 4
    plan = _plan(
        dict(batch=1, heads=2, seq=32, head_dim=d),
        phase="prefill", causal=causal, ring=4, rows_per_unit=2, kv_split=ks,
    )  # fmt: skip
    t = plan.tiling
    rows_pe = 2 * t["qchunk"]
    pes = t["width"] * t["height"]
    slices = pes // ks  # (query slice, column) pairs: PEs of one replica
    merge = {
        "max": rows_pe,
        "add": 3 * rows_pe,
        "exp": 2 * rows_pe,
        "mul": 2 * rows_pe + rows_pe * d,
    }
    merge_flops = sum(cost.vector_op(k).flops_per_element * e for k, e in merge.items())
    merge_flops += cost.vector_op("fmac").flops_per_element * rows_pe * d
    rounds = t["ring"] // ks
    extra = pes * rounds * rows_pe * (d + 5) + slices * rows_pe * (d + 2)
    extra += slices * (ks - 1) * merge_flops
    assert K.program(plan, SMALL).flops == pytest.approx(plan.flops + extra)


def test_prefill_spreads_over_the_region_and_shrinks_its_footprint():
    """LLaMA-2-7B-like prefill at seq 512: the old layout could use at most g * seq / 2 PEs per
    (sequence, kv-head) pair with an 18 KB footprint; splitting the keys uses more of a larger
    region and needs fewer bytes per PE there, and is faster."""
    sizes = dict(batch=1, heads=32, seq=512, head_dim=128)
    one_replica = K.plan(WSE2, Region(0, 0, 750, 994), sizes, "fp16", kv_split=1)
    plans = [K.plan(WSE2, Region(0, 0, w, h), sizes, "fp16") for w, h in ((128, 128), (750, 994))]
    pes = [p.tiling["width"] * p.tiling["height"] for p in plans]
    assert pes[1] > 32 * 512 // 2 >= one_replica.tiling["width"] * one_replica.tiling["height"]
    assert pes[1] > pes[0]
    assert plans[1].sram_bytes_per_pe < plans[0].sram_bytes_per_pe
    assert plans[1].sram_bytes_per_pe < one_replica.sram_bytes_per_pe / 2
    c_split, c_one = (K.estimate(p, WSE2).cycles for p in (plans[1], one_replica))
    assert c_split < c_one / 4


@pytest.mark.parametrize("phase,sizes,budget", [
    ("prefill", dict(batch=1, heads=8, seq=256, head_dim=64), 3400),
    ("decode", dict(batch=1, heads=8, kv_heads=2, seq=1, head_dim=64, context=65536), 20000),
])  # fmt: skip
def test_sram_budget_is_respected(phase, sizes, budget):
    """``sram_budget`` (bytes a PE can spare, e.g. beside resident weights) bounds the plan's
    footprint; a tighter budget never makes the plan faster; one too small is a PlanError."""
    region = Region(0, 0, 64, 64)
    free = K.plan(DEMO, region, sizes, "fp16", phase=phase)
    assert free.sram_bytes_per_pe > budget
    tight = K.plan(DEMO, region, sizes, "fp16", phase=phase, sram_budget=budget)
    assert tight.sram_bytes_per_pe <= budget
    assert K.estimate(tight, DEMO).cycles >= K.estimate(free, DEMO).cycles
    with pytest.raises(PlanError, match=r"a PE has 64 \(sram_budget\)") as info:
        K.plan(DEMO, region, sizes, "fp16", phase=phase, sram_budget=64)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_decode_head_split_matches_numpy_and_closed_form(dtype):
    """GQA decode with the query heads of a kv-head on separate blocks (each with a copy of the
    cache): right result; DES equals the closed form."""
    sizes = dict(batch=2, heads=8, kv_heads=2, seq=1, head_dim=8, context=45)
    plan = _plan(sizes, dtype, phase="decode", head_split=4, block_width=4, block_height=4)
    assert plan.tiling["head_split"] == 4
    res, err, _ = _run(plan)
    assert err < TOL[dtype]
    assert res.cycles == K.estimate(plan, SMALL).cycles


def test_gqa_decode_uses_head_split_on_the_wafer():
    """LLaMA-3-8B-like decode (32 heads, 8 kv heads): splitting each kv group's 4 query heads
    is faster than keeping them together (shorter merge messages, more blocks)."""
    region = Region(0, 0, WSE2.mesh.width, WSE2.mesh.height)
    sizes = dict(batch=1, heads=32, kv_heads=8, seq=1, head_dim=128, context=2048)
    auto = K.plan(WSE2, region, sizes, "bf16", phase="decode")
    together = K.plan(WSE2, region, sizes, "bf16", phase="decode", head_split=1)
    assert auto.tiling["head_split"] > 1
    assert K.estimate(auto, WSE2).cycles < K.estimate(together, WSE2).cycles


def test_kv_split_must_divide_ring():
    with pytest.raises(ConfigError) as info:
        _plan(dict(batch=1, heads=2, seq=32, head_dim=8), phase="prefill", ring=4, kv_split=3)
    assert info.value.field == "kv_split"


def test_head_group_taller_than_the_region_is_a_plan_error_not_a_crash() -> None:
    """GQA with 4 query heads per KV head on a 2-row region: no head split fits its height."""
    spec = get_preset("small")
    sizes = dict(batch=8, heads=32, kv_heads=8, seq=2048, head_dim=128, context=2048)
    with pytest.raises(PlanError) as info:
        KERNELS["attention"].plan(spec, Region(0, 0, 2, 2), sizes, "fp16", phase="prefill")
    text = str(info.value)
    assert "\n" not in text and "43008" in text and "region at least" in text
