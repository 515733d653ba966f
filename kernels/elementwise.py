"""``elementwise``: one elementwise op over ``length`` elements spread evenly over the region.

Option ``op``: ``add`` and ``mul`` (inputs ``a``, ``b``), ``gelu`` and ``silu`` (input ``a``;
GELU in its tanh form), ``copy`` (input ``a``) and ``adamw`` (inputs ``param``, ``grad``, ``m``,
``v``; options ``lr``, ``beta1``, ``beta2``, ``eps``, ``weight_decay``, ``step``). PE ``i`` of the
region (row-major) holds elements ``offsets[i] .. offsets[i+1]``; the first ``length mod P`` PEs
hold one more. No fabric traffic: cycles are the busiest PE's vector instructions,
``sum over steps of vector_cycles(kind, count * per_element, instructions, SRAM bytes)``.

The AdamW output is ``stack([param, m, v])`` after one update (shape ``(3, length)``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from wse_sim.errors import ConfigError
from wse_sim.hardware.cost import dtype_bytes, flops
from wse_sim.hardware.spec import WaferSpec
from wse_sim.program.ir import Compute, Coord, Memory, Phase, Program

from ._common import CheckedKernel, PlanRequest, ceil_div, require_fit
from ._flops import ELEMENTWISE_STEPS, flops_per_element
from ._layout import (
    check_algorithm,
    check_options,
    compute_cycles,
    np_dtype,
    offsets,
    split,
)
from .base import Estimate, Plan, register

INPUTS: dict[str, tuple[str, ...]] = {
    "add": ("a", "b"),
    "mul": ("a", "b"),
    "gelu": ("a",),
    "silu": ("a",),
    "copy": ("a",),
    "adamw": ("param", "grad", "m", "v"),
}
"""Input arrays of each op (each of shape ``(length,)``)."""

ARRAYS_PER_ELEMENT = {"add": 3, "mul": 3, "gelu": 2, "silu": 2, "copy": 2, "adamw": 4}
"""Arrays held per element on a PE: inputs plus output (AdamW updates its four in place)."""

ADAMW_DEFAULTS: dict[str, float] = {
    "lr": 1e-3,
    "beta1": 0.9,
    "beta2": 0.999,
    "eps": 1e-8,
    "weight_decay": 0.01,
    "step": 1,
}


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def adamw(
    param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, o: dict[str, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One decoupled-weight-decay Adam step; returns ``(param, m, v)``."""
    m = o["beta1"] * m + (1.0 - o["beta1"]) * grad
    v = o["beta2"] * v + (1.0 - o["beta2"]) * grad * grad
    m_hat = m / (1.0 - o["beta1"] ** o["step"])
    v_hat = v / (1.0 - o["beta2"] ** o["step"])
    param = param - o["lr"] * (m_hat / (np.sqrt(v_hat) + o["eps"]) + o["weight_decay"] * param)
    return param, m, v


def apply(op: str, arrays: list[np.ndarray], options: dict[str, float]) -> list[np.ndarray]:
    """``op`` on ``arrays`` (``INPUTS[op]`` order); returns the output arrays."""
    if op == "add":
        return [arrays[0] + arrays[1]]
    if op == "mul":
        return [arrays[0] * arrays[1]]
    if op == "gelu":
        return [gelu(arrays[0])]
    if op == "silu":
        return [silu(arrays[0])]
    if op == "copy":
        return [arrays[0].copy()]
    return list(adamw(*arrays, options))


@register
class Elementwise(CheckedKernel):
    name = "elementwise"
    description = "add, mul, gelu, silu, copy or an AdamW update over elements spread on the PEs"
    algorithms = ("default",)
    size_names = ("length",)

    def check_choice(
        self, algorithm: str | None, options: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        algo = check_algorithm(self.name, algorithm, self.algorithms)
        check_options(self.name, options, ("op", *ADAMW_DEFAULTS))
        op = options.get("op", "add")
        if op not in INPUTS:
            raise ConfigError("op", op, f"use one of {', '.join(INPUTS)}")
        if op != "adamw" and set(options) - {"op"}:
            extra = sorted(set(options) - {"op"})[0]
            raise ConfigError(extra, options[extra], "only op=adamw takes optimizer options")
        opts: dict[str, Any] = {"op": op}
        if op == "adamw":
            opts.update({k: float(options.get(k, d)) for k, d in ADAMW_DEFAULTS.items()})
        return algo, opts

    def make_plan(self, req: PlanRequest) -> Plan:
        spec, region, nbytes, opts = req.spec, req.region, req.dtype_bytes, req.options
        op = opts["op"]
        length = req.sizes["length"]
        per_element = ARRAYS_PER_ELEMENT[op] * nbytes

        def bytes_for(width: int, height: int) -> int:
            return ceil_div(length, width * height) * per_element

        per_pe = ceil_div(length, region.num_pes)
        require_fit(f"elementwise/{op}", spec, region, per_pe * per_element, bytes_for)
        tiling = {"elements_per_pe": per_pe, "arrays_per_element": ARRAYS_PER_ELEMENT[op]}
        flops = float(flops_per_element("elementwise", op) * length)
        return self.plan_of(req, tiling, per_pe * per_element, flops, opts)

    @staticmethod
    def counts(plan: Plan) -> np.ndarray:
        """Elements per PE, shape ``region.shape`` (row-major split)."""
        return split(plan.sizes["length"], plan.region.num_pes).reshape(plan.region.shape)

    def sram_map(self, plan: Plan) -> np.ndarray:
        """Bytes each PE holds (its elements times the arrays per element)."""
        per_element = plan.tiling["arrays_per_element"] * dtype_bytes(plan.dtype)
        return self.counts(plan) * per_element

    def _computes(self, plan: Plan, counts: np.ndarray) -> list[Compute]:
        op = plan.options["op"]
        nbytes = dtype_bytes(plan.dtype)
        inputs = len(INPUTS[op])
        outputs = 3 if op == "adamw" else 1
        out = []
        for i, (kind, per) in enumerate(ELEMENTWISE_STEPS[op]):
            first = i == 0
            out.append(
                Compute(
                    kind,
                    counts * per,
                    plan.dtype,
                    instructions=per,
                    sram_read_bytes=counts * inputs * nbytes if first else 0,
                    sram_write_bytes=counts * outputs * nbytes if first else 0,
                )
            )
        return out

    def program(
        self, plan: Plan, spec: WaferSpec, inputs: dict[str, np.ndarray] | None = None
    ) -> Program:
        counts = self.counts(plan)
        computes = self._computes(plan, counts)
        reg = plan.region
        if inputs is not None:
            computes[0].fn = self._fn(plan)
        pe_flops = sum(flops(c.kind, 1) * c.elements for c in computes)
        return Program(
            name=f"elementwise/{plan.options['op']}",
            region=reg,
            phases=[Phase(plan.options["op"], list(computes))],
            sram_bytes=self.sram_map(plan),
            flops=float(np.sum(pe_flops)),
            init=self._init(plan, inputs) if inputs is not None else None,
            collect=self._collect(plan) if inputs is not None else None,
        )

    def _bounds(self, plan: Plan):
        reg = plan.region
        starts = offsets(split(plan.sizes["length"], reg.num_pes))

        def bounds(x: int, y: int) -> tuple[int, int]:
            i = (y - reg.y) * reg.width + (x - reg.x)
            return int(starts[i]), int(starts[i + 1])

        return bounds

    def _init(self, plan: Plan, inputs: dict[str, np.ndarray]):
        names = INPUTS[plan.options["op"]]
        dt = np_dtype(plan.dtype)
        data = [np.asarray(inputs[n]).astype(dt) for n in names]
        bounds = self._bounds(plan)

        def init(x: int, y: int) -> Memory:
            lo, hi = bounds(x, y)
            return {n: d[lo:hi].copy() for n, d in zip(names, data)}

        return init

    @staticmethod
    def _fn(plan: Plan):
        op = plan.options["op"]
        names = INPUTS[op]
        dt = np_dtype(plan.dtype)

        def fn(mem: Memory, x: int, y: int) -> None:
            arrays = [mem[n].astype(np.float32) for n in names]
            mem["out"] = [o.astype(dt) for o in apply(op, arrays, plan.options)]

        return fn

    def _collect(self, plan: Plan):
        bounds = self._bounds(plan)
        op = plan.options["op"]
        dt = np_dtype(plan.dtype)

        def collect(memories: dict[Coord, Memory]) -> np.ndarray:
            outs = 3 if op == "adamw" else 1
            result = np.zeros((outs, plan.sizes["length"]), dtype=dt)
            for xy, mem in memories.items():
                lo, hi = bounds(*xy)
                for i, arr in enumerate(mem["out"]):
                    result[i, lo:hi] = arr
            return result if op == "adamw" else result[0]

        return collect

    def estimate(self, plan: Plan, spec: WaferSpec) -> Estimate:
        counts = self.counts(plan)
        busiest = np.array(int(counts.max()))
        computes = self._computes(plan, busiest)
        breakdown = {c.kind: float(compute_cycles(spec, c)) for c in computes}
        pe_flops = sum(
            flops(kind, per) * counts for kind, per in ELEMENTWISE_STEPS[plan.options["op"]]
        )
        return Estimate(
            cycles=sum(breakdown.values()),
            breakdown=breakdown,
            link_wavelets=0.0,
            pe_flops=np.asarray(pe_flops, dtype=float),
        )

    def reference(self, plan: Plan, inputs: dict[str, np.ndarray]) -> np.ndarray:
        op = plan.options["op"]
        arrays = [np.asarray(inputs[n], dtype=np.float64) for n in INPUTS[op]]
        outs = apply(op, arrays, plan.options)
        return np.stack(outs) if op == "adamw" else outs[0]

    def random_inputs(self, plan: Plan, rng: np.random.Generator) -> dict[str, np.ndarray]:
        op = plan.options["op"]
        n = plan.sizes["length"]
        dt = np_dtype(plan.dtype)
        out = {name: rng.standard_normal(n).astype(dt) for name in INPUTS[op]}
        if op == "adamw":
            out["v"] = np.abs(out["v"]) * 1e-2
            out["m"] = out["m"] * 1e-1
        return out
