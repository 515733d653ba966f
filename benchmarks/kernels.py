"""GEMM and GEMV algorithms over region sizes: cycles and fraction of peak, closed form (analytic)
and DES. Writes ``benchmarks/results/kernels.csv`` and ``benchmarks/results/kernels.png`` and
prints the markdown tables quoted in docs/kernels.md.

    python benchmarks/kernels.py [--des-max-side 64] [--no-plot]

GEMM: 2048^3 fp16 on 16^2, 32^2, 64^2 and 128^2 PEs (WSE-2 PEs), every algorithm (SUMMA both
pipelined, the default, and with blocking multicasts; Cannon and MeshGEMM also pre-skewed,
``skew=false``, to separate the skew from the shifts). A plan that does
not fit the 42 KiB of data SRAM per PE is still costed, on a spec whose SRAM is made large
enough (``fits = no``; the bytes it needs are in ``sram_bytes_per_pe``): the cycles say what the
algorithm would do, the flag says it cannot run there. The DES runs where a run takes under a
minute (square regions up to ``--des-max-side``; systolic-os only up to 64 folds: at 2048^3 it
has 289 to 18769 folds and a DES run takes 2 to 5 minutes, see docs/kernels.md).

GEMV: y = W x for a decode-like 2048 x 2048 and a long 8192 x 2048 on the same regions.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from wse_sim.engine.des import run_program
from wse_sim.errors import PlanError
from wse_sim.hardware.presets import get_preset
from wse_sim.hardware.spec import WaferSpec
from wse_sim.kernels.gemm import Gemm
from wse_sim.kernels.gemv import Gemv
from wse_sim.program.ir import Region

SIDES = (16, 32, 64, 128)
GEMM_SIZE = 2048
GEMV_SIZES = ((2048, 2048), (8192, 2048))
GEMV_VARIANTS = (("pipeline", {}), ("tree", {"k_ary": 2}), ("tree", {"k_ary": 4}))
GEMM_VARIANTS = (
    ("summa", {}),
    ("summa", {"pipelined": False}),
    ("cannon", {}),
    ("cannon", {"skew": False}),
    ("meshgemm", {}),
    ("meshgemm", {"skew": False}),
    ("systolic-os", {}),
)
MAX_SYSTOLIC_DES_FOLDS = 64
OUT = Path(__file__).parent / "results"

FIELDS = [
    "kernel",
    "algorithm",
    "options",
    "m",
    "n",
    "k",
    "side",
    "pes",
    "fits",
    "sram_bytes_per_pe",
    "analytic_cycles",
    "analytic_peak_fraction",
    "des_cycles",
    "des_peak_fraction",
    "analytic_over_des",
    "des_wall_s",
]


def roomy(spec: WaferSpec, need: int) -> WaferSpec:
    """``spec`` with enough SRAM for ``need`` data bytes per PE (what-if costing only)."""
    extra = need + spec.pe.reserved_sram_bytes
    return spec.with_field("pe", "sram_bytes", max(spec.pe.sram_bytes, extra))


def plan_anyway(kernel, spec, region, sizes, algo, options):
    """``(plan, spec used, fits)``: the real plan, or one on a roomier spec."""
    try:
        return kernel.plan(spec, region, sizes, "fp16", algo, **options), spec, True
    except PlanError:
        # Enlarge step by step: the footprint does not depend on the capacity.
        need = spec.pe.data_sram_bytes
        while True:
            need *= 2
            big = roomy(spec, need)
            try:
                return kernel.plan(big, region, sizes, "fp16", algo, **options), big, False
            except PlanError:
                continue


def measure(kernel, algo, options, sizes, side, run_des: bool) -> dict:
    spec = get_preset("small").with_mesh(side, side)
    region = Region(0, 0, side, side)
    plan, used, fits = plan_anyway(kernel, spec, region, sizes, algo, options)
    peak = used.peak_flops_per_cycle("fp16") * region.num_pes
    est = kernel.estimate(plan, used).cycles
    row = {
        "kernel": kernel.name,
        "algorithm": algo,
        "options": " ".join(f"{k}={v}" for k, v in options.items()),
        "m": sizes["m"],
        "n": sizes.get("n", 1),
        "k": sizes["k"],
        "side": side,
        "pes": region.num_pes,
        "fits": "yes" if fits else "no",
        "sram_bytes_per_pe": plan.sram_bytes_per_pe,
        "analytic_cycles": round(est),
        "analytic_peak_fraction": round(plan.flops / (peak * est), 4),
        "des_cycles": "",
        "des_peak_fraction": "",
        "analytic_over_des": "",
        "des_wall_s": "",
    }
    if run_des:
        start = time.perf_counter()
        res = run_program(kernel.program(plan, used), used)
        row["des_wall_s"] = round(time.perf_counter() - start, 2)
        row["des_cycles"] = round(res.cycles)
        row["des_peak_fraction"] = round(plan.flops / (peak * res.cycles), 4)
        row["analytic_over_des"] = round(est / res.cycles, 4)
    return row


def gemm_rows(des_max_side: int) -> list[dict]:
    rows = []
    gemm = Gemm()
    sizes = {"m": GEMM_SIZE, "n": GEMM_SIZE, "k": GEMM_SIZE}
    for side in SIDES:
        for algo, opts in GEMM_VARIANTS:
            des = side <= des_max_side
            if algo == "systolic-os":
                folds = (-(-GEMM_SIZE // (side - 1))) ** 2
                des = des and folds <= MAX_SYSTOLIC_DES_FOLDS
            rows.append(measure(gemm, algo, opts, sizes, side, des))
            print_row(rows[-1])
    return rows


def gemv_rows() -> list[dict]:
    rows = []
    gemv = Gemv()
    for m, k in GEMV_SIZES:
        for side in SIDES:
            for algo, opts in GEMV_VARIANTS:
                rows.append(measure(gemv, algo, opts, {"m": m, "k": k}, side, True))
                print_row(rows[-1])
    return rows


def print_header() -> None:
    print(
        "| kernel | algorithm | m x n x k | PEs | fits | analytic cycles | peak | DES cycles "
        "| analytic/DES |"
    )
    print("|---|---|---|---|---|---|---|---|---|")


def print_row(r: dict) -> None:
    name = r["algorithm"] + (f" ({r['options']})" if r["options"] else "")
    des = f"{r['des_cycles']:,}" if r["des_cycles"] != "" else "-"
    ratio = f"{r['analytic_over_des']:.3f}" if r["analytic_over_des"] != "" else "-"
    print(
        f"| {r['kernel']} | {name} | {r['m']}x{r['n']}x{r['k']} | {r['side']}^2 | {r['fits']} | "
        f"{r['analytic_cycles']:,} | {100 * r['analytic_peak_fraction']:.1f}% | {des} | {ratio} |"
    )


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    gemm = [r for r in rows if r["kernel"] == "gemm"]
    for algo, o in dict.fromkeys((r["algorithm"], r["options"]) for r in gemm):
        rs = [r for r in gemm if r["algorithm"] == algo and r["options"] == o]
        x = [r["pes"] for r in rs]
        style = {"linestyle": "--", "marker": "s"} if algo == "cannon" else {"marker": "o"}
        if o:
            style["linestyle"] = ":"
        label = f"{algo} {o}".strip()
        axes[0].plot(x, [r["analytic_cycles"] for r in rs], label=label, **style)
        axes[1].plot(x, [r["analytic_peak_fraction"] for r in rs], label=label, **style)
        des = [(r["pes"], r["des_cycles"]) for r in rs if r["des_cycles"] != ""]
        if des:
            axes[0].scatter(*zip(*des), marker="x", color="k", zorder=3)
        for r in rs:
            if r["fits"] == "no":
                axes[1].scatter(r["pes"], r["analytic_peak_fraction"], facecolors="none",
                                edgecolors="r", s=120, zorder=3)  # fmt: skip
    axes[0].set(xscale="log", yscale="log", xlabel="PEs", ylabel="cycles",
                title=f"GEMM {GEMM_SIZE}^3 fp16 (x: DES)")  # fmt: skip
    axes[1].set(xscale="log", xlabel="PEs", ylabel="fraction of fp16 peak",
                title="GEMM fraction of peak (red ring: does not fit)")  # fmt: skip
    gemv = [r for r in rows if r["kernel"] == "gemv"]
    for m, k in GEMV_SIZES:
        for algo, opts in GEMV_VARIANTS:
            o = " ".join(f"{a}={b}" for a, b in opts.items())
            rs = [r for r in gemv if r["m"] == m and r["algorithm"] == algo and r["options"] == o]
            label = f"{m}x{k} {algo} {o}".strip()
            axes[2].plot([r["pes"] for r in rs], [r["analytic_cycles"] for r in rs], marker="o",
                         label=label)  # fmt: skip
    axes[2].set(xscale="log", yscale="log", xlabel="PEs", ylabel="cycles", title="GEMV fp16")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--des-max-side", type=int, default=64, help="largest square region for DES")
    ap.add_argument("--no-plot", action="store_true", help="skip the PNG")
    args = ap.parse_args()
    print_header()
    rows = gemm_rows(args.des_max_side)
    print()
    print_header()
    rows += gemv_rows()
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / "kernels.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    if not args.no_plot:
        plot(rows, OUT / "kernels.png")
    print(
        f"\nwrote {OUT / 'kernels.csv'}" + ("" if args.no_plot else f" and {OUT / 'kernels.png'}")
    )


if __name__ == "__main__":
    main()
