"""The ``attention`` kernel: softmax(Q K^T / sqrt(d)) V for many heads on a region of the mesh.

Sizes: ``batch``, ``heads``, ``kv_heads`` (grouped-query attention when smaller than ``heads``;
it must divide ``heads``), ``seq`` (queries per sequence), ``head_dim`` and ``context`` (keys per
sequence; the KV-cache length for decode, equal to ``seq`` for prefill).

Options: ``phase`` = ``prefill`` (flash-style, query tiles resident, key/value tiles multicast
along PE rows, online softmax; ``causal`` skips fully masked tiles and computes only the lower
triangle of diagonal ones) or ``decode`` (one query per sequence against a KV cache spread over
PEs, partial softmax per PE, binary-tree merge). Layout overrides: ``ring``,
``rows_per_unit``, ``head_split`` and ``kv_split`` (prefill: replicas over key slices whose
partial states a tree merges), ``block_width``, ``block_height`` and ``head_split`` (decode:
query heads of a kv-head on separate blocks). ``sram_budget``: the most data bytes per PE the
plan may use (default ``pe.data_sram_bytes``).

Inputs (functional mode): ``q`` of shape (batch, heads, seq, head_dim), ``k`` and ``v`` of shape
(batch, kv_heads, context, head_dim). Output: (batch, heads, seq, head_dim).

The formulas of the estimate, the mapping and the FLOP count are in docs/kernels-attention.md.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from wse_sim.errors import ConfigError
from wse_sim.hardware.cost import dtype_bytes
from wse_sim.hardware.spec import WaferSpec
from wse_sim.kernels import _attention_decode as dec
from wse_sim.kernels import _attention_prefill as pre
from wse_sim.kernels._attention_common import numpy_dtype, round_to
from wse_sim.kernels.base import Estimate, Kernel, Plan, register
from wse_sim.program.ir import Program, Region

PHASES = ("prefill", "decode")
SOFTMAX_FLOPS_PER_SCORE = 5
"""max, subtract, exp, sum and scale: FLOPs counted per (query, key) score."""


def attention_pairs(seq: int, context: int, causal: bool) -> int:
    """(query, key) pairs one head of one sequence scores.

    The ``seq`` queries are the last ``seq`` positions of a ``context``-long sequence; causal
    query ``i`` sees ``context - seq + i + 1`` keys.
    """
    if not causal:
        return seq * context
    return seq * (context - seq) + seq * (seq + 1) // 2


def attention_flops(
    batch: int, heads: int, seq: int, context: int, head_dim: int, causal: bool
) -> int:
    """FLOPs of attention (an FMAC is 2):

    ``batch * heads * pairs * (4 * head_dim + 5)`` with ``pairs = seq * context``, or for causal
    ``seq * (context - seq) + seq * (seq + 1) / 2``: ``2 * head_dim`` for Q K^T and as many for
    P V per pair, plus 5 softmax FLOPs per score. Decode is ``seq = 1``. The count is the same
    for grouped-query attention (every query head scores every key).
    """
    for name, value in (
        ("batch", batch),
        ("heads", heads),
        ("seq", seq),
        ("context", context),
        ("head_dim", head_dim),
    ):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(name, value, "must be a whole number >= 1")
    if causal and context < seq:
        raise ConfigError("context", context, f"causal attention needs context >= seq ({seq})")
    pairs = attention_pairs(seq, context, causal)
    return batch * heads * pairs * (4 * head_dim + SOFTMAX_FLOPS_PER_SCORE)


def _whole(name: str, value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ConfigError(name, value, "must be a whole number >= 1")
    return int(value)


def _validate(sizes: dict[str, int], options: dict[str, Any]) -> tuple[dict[str, int], str]:
    """Checked sizes with defaults filled in, and the phase."""
    phase = options.get("phase", "prefill")
    if phase not in PHASES:
        raise ConfigError("phase", phase, f"use one of {', '.join(PHASES)}")
    names = AttentionKernel.size_names
    for name in sizes:
        if name not in names:
            raise ConfigError(
                name, sizes[name], f"unknown size; attention takes {', '.join(names)}"
            )
    out = {n: _whole(n, sizes.get(n)) for n in ("batch", "heads", "seq", "head_dim")}
    # kv_heads and context may be left out (None or 0): kv_heads = heads; prefill context = seq.
    out["kv_heads"] = _whole("kv_heads", sizes.get("kv_heads") or out["heads"])
    context = sizes.get("context") or (out["seq"] if phase == "prefill" else None)
    out["context"] = _whole("context", context)
    if out["heads"] % out["kv_heads"]:
        raise ConfigError(
            "kv_heads",
            out["kv_heads"],
            f"must divide heads ({out['heads']}), e.g. 1 or {out['heads']}",
        )
    if phase == "prefill" and out["context"] != out["seq"]:
        raise ConfigError(
            "context",
            out["context"],
            f"prefill attends its own keys: context must equal seq ({out['seq']})",
        )
    if phase == "decode" and out["seq"] != 1:
        raise ConfigError(
            "seq", out["seq"], "decode takes one query per sequence (seq=1); use phase=prefill"
        )
    return {n: out[n] for n in names}, phase


def _int_option(options: dict[str, Any], name: str) -> int | None:
    value = options.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(name, value, "must be a whole number >= 1")
    return int(value)


def _check_at_most(name: str, value: int | None, limit: int, what: str) -> None:
    """ConfigError when the option ``name`` is set above ``limit`` (the region's ``what``)."""
    if value and value > limit:
        raise ConfigError(name, value, f"must be at most the region {what} ({limit})")


def _check_head_split(split: int | None, sizes: dict[str, int]) -> None:
    """ConfigError when ``head_split`` is set and does not divide the head group."""
    group = sizes["heads"] // sizes["kv_heads"]
    if split and group % split:
        raise ConfigError(
            "head_split", split, f"must divide heads / kv_heads ({group}), e.g. 1 or {group}"
        )


def _check_shape_options(options: dict[str, Any], region: Region, sizes: dict[str, int]) -> None:
    """Prefill layout overrides must fit the region and the head group."""
    ring = _int_option(options, "ring")
    rows = _int_option(options, "rows_per_unit")
    split = _int_option(options, "head_split")
    _check_at_most("ring", ring, region.width, "width")
    _check_at_most("rows_per_unit", rows, region.height, "height")
    _check_head_split(split, sizes)
    if split and rows and rows % split:
        raise ConfigError("rows_per_unit", rows, f"must be a multiple of head_split ({split})")
    ksplit = _int_option(options, "kv_split")
    if ksplit and ring and ring % ksplit:
        raise ConfigError("kv_split", ksplit, f"must divide ring ({ring}), e.g. 1 or {ring}")
    _check_at_most("kv_split", ksplit, region.height, "height")


@register
class AttentionKernel(Kernel):
    """Multi-head / grouped-query attention, prefill (flash-style) and decode (KV cache)."""

    name = "attention"
    description = (
        "softmax(QK^T/sqrt(d))V: flash-style prefill with row multicast, tree-merged decode"
    )
    algorithms = ("flash",)
    size_names = ("batch", "heads", "kv_heads", "seq", "head_dim", "context")
    accepts_sram_budget = True

    def plan(
        self,
        spec: WaferSpec,
        region: Region,
        sizes: dict[str, int],
        dtype: str = "fp16",
        algorithm: str | None = None,
        **options: Any,
    ) -> Plan:
        """Choose the layout with the fewest estimated cycles that fits SRAM."""
        algorithm = algorithm or self.default_algorithm
        if algorithm not in self.algorithms:
            raise ConfigError("algorithm", algorithm, f"use one of {', '.join(self.algorithms)}")
        dtype_bytes(dtype)
        sz, phase = _validate(sizes, options)
        budget = _int_option(options, "sram_budget")
        causal = bool(options.get("causal", phase == "prefill"))
        if phase == "prefill":
            _check_shape_options(options, region, sz)
            lay = pre.choose_layout(
                spec, region, sz, dtype, causal,
                _int_option(options, "ring"), _int_option(options, "rows_per_unit"),
                _int_option(options, "head_split"), _int_option(options, "kv_split"), budget,
            )  # fmt: skip
            need = pre.sram_bytes(lay, dtype_bytes(dtype))
        else:
            bw, bh = _int_option(options, "block_width"), _int_option(options, "block_height")
            for name, value, limit in (
                ("block_width", bw, region.width),
                ("block_height", bh, region.height),
            ):
                if value and value > limit:
                    raise ConfigError(name, value, f"must be at most the region's {limit} PEs")
            block = None
            if bw or bh:
                block = (bw or region.width, bh or region.height)
            split = _int_option(options, "head_split")
            _check_head_split(split, sz)
            lay = dec.choose_layout(spec, region, sz, dtype, block, split, budget)
            need = dec.sram_bytes(lay, dtype_bytes(dtype))
        opts = {"phase": phase, "causal": causal if phase == "prefill" else False}
        flops = attention_flops(
            sz["batch"], sz["heads"], sz["seq"], sz["context"], sz["head_dim"], opts["causal"]
        )
        return Plan(
            kernel=self.name,
            algorithm=algorithm,
            region=region,
            dtype=dtype,
            sizes=sz,
            tiling=lay.tiling(),
            sram_bytes_per_pe=int(need),
            flops=float(flops),
            options=opts,
        )

    def program(
        self, plan: Plan, spec: WaferSpec, inputs: dict[str, np.ndarray] | None = None
    ) -> Program:
        """The IR program; functional (moves real data) when ``inputs`` are given."""
        if inputs is not None:
            self._check_inputs(plan, inputs)
        if plan.options["phase"] == "prefill":
            return pre.build_program(plan, spec, inputs)
        return dec.build_program(plan, spec, inputs)

    def sram_map(self, plan: Plan) -> np.ndarray:
        """Data bytes per PE of ``plan.region`` (idle PEs 0); the busiest is
        ``plan.sram_bytes_per_pe``."""
        if plan.options["phase"] == "prefill":
            return pre.sram_map(plan)
        return dec.sram_map(plan)

    def estimate(self, plan: Plan, spec: WaferSpec) -> Estimate:
        """Closed-form cycles (docs/kernels-attention.md)."""
        if plan.options["phase"] == "prefill":
            return pre.estimate(plan, spec)
        return dec.estimate(plan, spec)

    def reference(self, plan: Plan, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """softmax(Q K^T / sqrt(d) + mask) V in float64 from the dtype-rounded inputs."""
        self._check_inputs(plan, inputs)
        s = plan.sizes
        g = s["heads"] // s["kv_heads"]
        q = round_to(plan.dtype, inputs["q"]).astype(np.float64)
        k = np.repeat(round_to(plan.dtype, inputs["k"]).astype(np.float64), g, axis=1)
        v = np.repeat(round_to(plan.dtype, inputs["v"]).astype(np.float64), g, axis=1)
        scores = np.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(s["head_dim"])
        if plan.options.get("causal"):
            qpos = np.arange(s["seq"]) + s["context"] - s["seq"]
            masked = np.arange(s["context"])[None, :] > qpos[:, None]
            scores = np.where(masked, -np.inf, scores)
        scores -= scores.max(axis=-1, keepdims=True)
        p = np.exp(scores)
        p /= p.sum(axis=-1, keepdims=True)
        return np.einsum("bhqk,bhkd->bhqd", p, v)

    def random_inputs(self, plan: Plan, rng: np.random.Generator) -> dict[str, np.ndarray]:
        s = plan.sizes
        t = numpy_dtype(plan.dtype)
        qshape = (s["batch"], s["heads"], s["seq"], s["head_dim"])
        kshape = (s["batch"], s["kv_heads"], s["context"], s["head_dim"])
        return {
            "q": rng.standard_normal(qshape).astype(t),
            "k": rng.standard_normal(kshape).astype(t),
            "v": rng.standard_normal(kshape).astype(t),
        }

    @staticmethod
    def _check_inputs(plan: Plan, inputs: dict[str, np.ndarray]) -> None:
        s = plan.sizes
        want = {
            "q": (s["batch"], s["heads"], s["seq"], s["head_dim"]),
            "k": (s["batch"], s["kv_heads"], s["context"], s["head_dim"]),
            "v": (s["batch"], s["kv_heads"], s["context"], s["head_dim"]),
        }
        for name, shape in want.items():
            if name not in inputs:
                raise ConfigError(
                    "inputs", sorted(inputs), f"attention needs arrays q, k, v; {name} is missing"
                )
            got = tuple(np.shape(inputs[name]))
            if got != shape:
                raise ConfigError(f"inputs.{name}", got, f"expected shape {shape}")
