"""How fast is the discrete-event engine? Messages and SimPy events per second of host time.

Two traffic patterns on square meshes:

* ``nearest``: every round, every PE sends one message to its east neighbour and receives one
  from its west neighbour (links used by one sender each);
* ``permutation``: every round, every PE sends to a random partner (a fixed random permutation,
  dimension-order routes, contended links) and receives from whoever sends to it.

Wall time covers the whole ``run_program`` call (compiling the program to per-PE operations and
simulating); ``sim_seconds`` is the simulation alone. Writes ``benchmarks/results/engine_speed.csv``
and ``engine_speed.png``; the last printed line is ``messages_per_second: N`` for the 64x64
nearest-neighbour case.

    python benchmarks/engine_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import csv
import resource
import sys
import time
from pathlib import Path

import numpy as np

from wse_sim.engine.des import DesRun
from wse_sim.hardware import get_preset
from wse_sim.program import Dest, Phase, Program, Recv, Region, Send

RESULTS = Path(__file__).resolve().parent / "results"
WAVELETS = 8


def nearest_program(size: int, rounds: int) -> Program:
    reg = Region(0, 0, size, size)
    senders = np.ones(reg.shape, dtype=bool)
    senders[:, -1] = False
    receivers = np.roll(senders, 1, axis=1)
    ops = []
    for r in range(rounds):
        ops.append(Send(r % 4, WAVELETS, Dest.to(1, 0), mask=senders))
        ops.append(Recv(r % 4, WAVELETS, (-1, 0), mask=receivers))
    return Program(f"nearest-{size}", reg, [Phase("shift", ops)])


def permutation_program(size: int, rounds: int, seed: int = 0) -> Program:
    reg = Region(0, 0, size, size)
    rng = np.random.default_rng(seed)
    n = size * size
    perm = rng.permutation(n)
    while np.any(perm == np.arange(n)):  # no PE sends to itself
        perm = rng.permutation(n)
    ys, xs = np.divmod(np.arange(n), size)
    ty, tx = np.divmod(perm, size)
    dx = (tx - xs).reshape(reg.shape)
    dy = (ty - ys).reshape(reg.shape)
    inverse = np.argsort(perm)
    sy, sx = np.divmod(inverse, size)
    src_dx = (sx - xs).reshape(reg.shape)
    src_dy = (sy - ys).reshape(reg.shape)
    ops = []
    for r in range(rounds):
        ops.append(Send(r % 4, WAVELETS, Dest.to(dx, dy)))
        ops.append(Recv(r % 4, WAVELETS, (src_dx, src_dy)))
    return Program(f"permutation-{size}", reg, [Phase("permute", ops)])


def measure(pattern: str, size: int, rounds: int) -> dict[str, float | int | str]:
    spec = get_preset("demo").with_mesh(size, size)
    build = nearest_program if pattern == "nearest" else permutation_program
    program = build(size, rounds)
    start = time.perf_counter()
    run = DesRun(program, spec)
    result = run.run()
    wall = time.perf_counter() - start
    return {
        "pattern": pattern,
        "mesh": f"{size}x{size}",
        "pes": size * size,
        "rounds": rounds,
        "messages": result.messages,
        "events": result.events,
        "simulated_cycles": result.cycles,
        "wall_seconds": round(wall, 4),
        "messages_per_second": round(result.messages / wall),
        "events_per_second": round(result.events / wall),
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    patterns = sorted({r["pattern"] for r in rows})
    meshes = [m for m in dict.fromkeys(r["mesh"] for r in rows)]
    width = 0.8 / len(patterns)
    for i, pattern in enumerate(patterns):
        vals = [
            next(
                (
                    r["messages_per_second"]
                    for r in rows
                    if r["pattern"] == pattern and r["mesh"] == m
                ),
                0,
            )
            for m in meshes
        ]
        ax.bar(np.arange(len(meshes)) + i * width, vals, width, label=pattern)
    ax.set_xticks(np.arange(len(meshes)) + width * (len(patterns) - 1) / 2, meshes)
    ax.set_ylabel("simulated messages per host second")
    ax.set_xlabel("mesh")
    ax.set_title(f"DES engine speed ({WAVELETS}-wavelet messages, one core)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and no 128x128")
    args = parser.parse_args(argv)
    cases = [(32, 100), (64, 50), (128, 10)]
    if args.quick:
        cases = [(32, 10), (64, 5)]
    rows = []
    for size, rounds in cases:
        for pattern in ("nearest", "permutation"):
            row = measure(pattern, size, rounds)
            rows.append(row)
            print(
                f"{row['pattern']:<12} {row['mesh']:>8} {row['messages']:>9} msgs "
                f"{row['wall_seconds']:>8.2f} s {row['messages_per_second']:>9} msg/s "
                f"{row['events_per_second']:>9} ev/s",
                flush=True,
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "engine_speed.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, RESULTS / "engine_speed.png")
    headline = next(r for r in rows if r["pattern"] == "nearest" and r["mesh"] == "64x64")
    print(f"messages_per_second: {headline['messages_per_second']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
