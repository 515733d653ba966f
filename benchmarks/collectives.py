"""DES against the closed forms for the collective, elementwise and row-wise kernels, and the
closed forms at full-wafer size. Prints two markdown tables (the ones in
docs/kernels-collectives.md) and writes ``benchmarks/results/collectives.csv``.

    python benchmarks/collectives.py [--quick]
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from wse_sim.engine.des import run_program
from wse_sim.hardware import get_preset
from wse_sim.kernels.allreduce import Allreduce
from wse_sim.kernels.broadcast import Broadcast
from wse_sim.kernels.elementwise import Elementwise
from wse_sim.kernels.norms import LayerNorm, RMSNorm
from wse_sim.kernels.reduce import Reduce
from wse_sim.kernels.softmax import Softmax
from wse_sim.program import Region

VECTOR = [Broadcast(), Reduce(), Allreduce()]
ROWWISE = [Softmax(), LayerNorm(), RMSNorm()]


def des_cases(quick: bool) -> list[tuple]:
    """(kernel, algorithm, region WxH, sizes, options)."""
    side = 16 if quick else 32
    cases = []
    for k in VECTOR:
        for algo in k.algorithms:
            for length in (2, 256, 4096):
                cases.append((k, algo, (side, side), {"length": length}, {}))
            cases.append((k, algo, (side, 1), {"length": 4096}, {}))
    for k in ROWWISE:
        for algo in k.algorithms:
            cases.append((k, algo, (side, side), {"rows": 4 * side, "cols": 24 * side}, {}))
    for op in ("add", "gelu", "adamw"):
        cases.append((Elementwise(), "default", (side, side), {"length": 1000 * side}, {"op": op}))
    return cases


def wafer_cases() -> list[tuple]:
    cases = []
    for k in VECTOR:
        for algo in k.algorithms:
            for length in (2, 4096):
                cases.append((k, algo, {"length": length}, {}))
    for k in ROWWISE:
        for algo in k.algorithms:
            cases.append((k, algo, {"rows": 8192, "cols": 8192}, {}))
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="16x16 instead of 32x32 DES runs")
    args = ap.parse_args()
    spec = get_preset("demo")
    rows = []
    print("| kernel | algorithm | region | sizes | DES cycles | analytic | diff | DES wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for k, algo, (w, h), sizes, opts in des_cases(args.quick):
        plan = k.plan(spec, Region(0, 0, w, h), sizes, "fp16", algo, **opts)
        t0 = time.perf_counter()
        res = run_program(k.program(plan, spec), spec)
        wall = time.perf_counter() - t0
        est = k.estimate(plan, spec).cycles
        diff = est / res.cycles - 1 if res.cycles else 0.0
        name = k.name + (f"/{opts['op']}" if opts else "")
        size = " ".join(f"{a}={b}" for a, b in sizes.items())
        print(
            f"| {name} | {algo} | {w}x{h} | {size} | {res.cycles:.0f} | {est:.0f} | "
            f"{diff:+.1%} | {wall:.2f} |"
        )
        rows.append([name, algo, w, h, size, res.cycles, est, wall])
    wse2 = get_preset("wse2")
    big = Region(0, 0, wse2.mesh.width, wse2.mesh.height)
    print()
    print(f"| kernel | algorithm | sizes | analytic cycles on {big.width}x{big.height} | us |")
    print("|---|---|---|---|---|")
    for k, algo, sizes, opts in wafer_cases():
        est = k.estimate(k.plan(wse2, big, sizes, "fp16", algo, **opts), wse2).cycles
        size = " ".join(f"{a}={b}" for a, b in sizes.items())
        print(f"| {k.name} | {algo} | {size} | {est:.0f} | {wse2.seconds(est) * 1e6:.1f} |")
    out = Path(__file__).parent / "results" / "collectives.csv"
    out.parent.mkdir(exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["kernel", "algorithm", "width", "height", "sizes", "des", "analytic", "wall_s"]
        )
        writer.writerows(rows)


if __name__ == "__main__":
    main()
