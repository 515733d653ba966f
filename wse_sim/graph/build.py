"""Build the layer graph of a model: a networkx DiGraph of :class:`OpSpec` nodes.

Three modes (see docs/models.md for the full description and FLOP formulas):

* ``prefill``: ``batch`` sequences of ``seq`` tokens; the LM head runs on **all** tokens
  (prefill throughput, as when scoring a prompt); each attention op's ``state_bytes`` is the KV
  cache it leaves behind.
* ``decode``: one step that generates one token per sequence, each attending to ``context``
  cached keys (the new token's own key included); each attention op's ``state_bytes`` is its
  layer's KV cache, ``2 * batch * context * kv_heads * head_dim * bytes``.
* ``train``: one training step: the forward pass with the softmax cross-entropy loss at its end,
  the backward pass in reverse layer order (each matmul has a data-gradient and a weight-gradient
  matmul of the same size) and one AdamW op per layer (plus one for the embeddings and one for
  the final norm / untied LM head) whose ``state_bytes`` are the optimizer state and gradients.

Node insertion order is a topological order that follows execution. Edge attribute ``bytes`` is
the activation (or gradient) bytes flowing; ``tensor`` says which: ``activation`` (forward),
``gradient`` (backward), ``saved`` (a forward activation kept for the backward pass) or
``weight_grad`` (a weight gradient going to its optimizer op).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from wse_sim.errors import ConfigError
from wse_sim.graph._flops import (
    attention_flops,
    elementwise_flops,
    gemm_flops,
    norm_flops,
    softmax_flops,
)
from wse_sim.graph.ops import OpSpec
from wse_sim.spec.models import ModelSpec

MODES: tuple[str, ...] = ("prefill", "decode", "train")


@dataclass(frozen=True)
class BwdRule:
    """How the backward pass differentiates one forward op (train mode only).

    Attributes:
        flops_factor: backward FLOPs as a multiple of the forward op's (non-matmul ops); for
            elementwise ops the backward kernel's ``length`` is scaled by it instead.
        bwd_op: elementwise ops: the backward kernel's ``op`` option (default: the forward's).
        saves_inputs: the backward op reads the forward op's inputs (a ``saved`` edge).
        shared_grad: all inputs receive the same gradient tensor (additions).
        opt: the optimizer node that receives this op's weight gradient, if it has weights.
    """

    flops_factor: float = 1.0
    bwd_op: str | None = None
    saves_inputs: bool = True
    shared_grad: bool = False
    opt: str | None = None


@dataclass
class GraphBuilder:
    """Adds ops and edges to a graph; remembers the forward ops for the backward pass."""

    model: ModelSpec
    mode: str
    batch: int
    seq: int
    context: int
    dtype: str
    g: nx.DiGraph = field(default_factory=nx.DiGraph)
    forward: list[str] = field(default_factory=list)
    rules: dict[str, BwdRule] = field(default_factory=dict)

    @property
    def bytes_per_element(self) -> int:
        """Bytes of one activation or weight element."""
        return self.model.dtype_bytes

    @property
    def tokens(self) -> int:
        """Tokens each forward op processes (rows of the matmuls)."""
        return self.batch * self.seq

    def add(
        self,
        name: str,
        kind: str,
        layer: int | None,
        stage: str,
        kernel: str,
        sizes: dict[str, int],
        flops: float,
        *,
        output_bytes: float,
        inputs: Sequence[tuple[str, str]] = (),
        weight_bytes: float = 0.0,
        state_bytes: float = 0.0,
        options: dict[str, Any] | None = None,
        input_bytes: dict[str, float] | None = None,
    ) -> str:
        """Add one op; ``inputs`` are ``(producer, tensor)`` pairs, each edge carrying the
        producer's ``output_bytes`` unless ``input_bytes`` gives another amount per producer."""
        edges = []
        for src, tensor in inputs:
            nbytes = (input_bytes or {}).get(src, self.g.nodes[src]["op"].output_bytes)
            edges.append((src, float(nbytes), tensor))
        op = OpSpec(
            name=name,
            kind=kind,
            layer=layer,
            stage=stage,
            kernel=kernel,
            sizes=dict(sizes),
            flops=float(flops),
            weight_bytes=float(weight_bytes),
            input_bytes=math.fsum(e[1] for e in edges),
            output_bytes=float(output_bytes),
            state_bytes=float(state_bytes),
            dtype=self.dtype,
            options=dict(options or {}),
        )
        if name in self.g:
            raise ValueError(f"duplicate op name {name!r}")  # a bug in the builder, not user input
        self.g.add_node(name, op=op)
        for src, nbytes, tensor in edges:
            self.g.add_edge(src, name, bytes=nbytes, tensor=tensor)
        return name

    def add_forward(self, name: str, *args: Any, rule: BwdRule, **kwargs: Any) -> str:
        """Add a forward op (stage ``fwd``) and how the backward pass treats it."""
        self.add(name, *args, **kwargs)
        self.forward.append(name)
        self.rules[name] = rule
        return name

    # -- op helpers ---------------------------------------------------------------------------
    def gemm(
        self, name: str, layer: int | None, src: str, n: int, k: int, opt: str, bias: bool
    ) -> str:
        """A matmul of the ``[tokens, k]`` activations from ``src`` with a ``[k, n]`` weight."""
        b, m = self.bytes_per_element, self.tokens
        return self.add_forward(
            name,
            "matmul",
            layer,
            "fwd",
            "gemm",
            {"m": m, "n": n, "k": k},
            gemm_flops(m, n, k),
            output_bytes=m * n * b,
            inputs=[(src, "activation")],
            weight_bytes=(k * n + (n if bias else 0)) * b,
            rule=BwdRule(opt=opt),
        )

    def norm(self, name: str, layer: int | None, src: str, opt: str) -> str:
        """LayerNorm or RMSNorm over ``tokens x d_model``; backward costs twice the forward."""
        m, b, d = self.model, self.bytes_per_element, self.model.d_model
        return self.add_forward(
            name,
            "norm",
            layer,
            "fwd",
            str(m.norm),
            {"rows": self.tokens, "cols": d},
            norm_flops(str(m.norm), self.tokens, d),
            output_bytes=self.tokens * d * b,
            inputs=[(src, "activation")],
            weight_bytes=m.norm_params() * b,
            rule=BwdRule(flops_factor=2.0, opt=opt),
        )

    def elementwise(
        self,
        name: str,
        layer: int | None,
        srcs: list[str],
        op: str,
        length: int,
        output_bytes: float,
        rule: BwdRule,
        kind: str = "elementwise",
        weight_bytes: float = 0.0,
    ) -> str:
        """An elementwise op of ``length`` elements (``op`` is the kernel's ``op`` option)."""
        return self.add_forward(
            name,
            kind,
            layer,
            "fwd",
            "elementwise",
            {"length": length},
            elementwise_flops(op, length),
            output_bytes=output_bytes,
            inputs=[(s, "activation") for s in srcs],
            weight_bytes=weight_bytes,
            options={"op": op},
            rule=rule,
        )


def _check_sizes(
    model: ModelSpec, mode: str, batch: int, seq: int | None, context: int | None
) -> tuple[int, int]:
    """Validate the run sizes; return ``(seq, context)`` as the graph uses them."""
    if mode not in MODES:
        raise ConfigError("mode", mode, f"use one of {', '.join(MODES)}")
    for name, value in (("batch", batch), ("seq", seq), ("context", context)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ConfigError(name, value, "must be a positive integer")
    if mode == "decode":
        ctx = context if context is not None else (seq if seq is not None else model.max_seq)
        if ctx > model.max_seq:
            raise ConfigError(
                "context", ctx, f"must be at most max_seq={model.max_seq} of {model.name}"
            )
        return 1, ctx
    s = seq if seq is not None else model.max_seq
    if s > model.max_seq:
        raise ConfigError("seq", s, f"must be at most max_seq={model.max_seq} of {model.name}")
    if context is not None and context != s:
        raise ConfigError(
            "context", context, f"only decode takes a context; {mode} attends within seq={s}"
        )
    return s, s


def _layer(bld: GraphBuilder, i: int, x: str) -> str:
    """Add Transformer block ``i`` reading the residual stream from ``x``; return its output."""
    m, b, T = bld.model, bld.bytes_per_element, bld.tokens
    d, hd, kv = m.d_model, m.head_dim, int(m.kv_heads)
    opt, p = f"L{i}.opt", f"L{i}."
    act = T * d * b
    add_rule = BwdRule(saves_inputs=False, shared_grad=True)

    h = bld.norm(p + "attn.norm", i, x, opt)
    qkv = bld.gemm(p + "attn.qkv", i, h, m.qkv_features, d, opt, bool(m.bias))
    if m.positions == "rope":
        rotated = T * (m.heads + kv) * hd  # elements of Q and K
        qkv = bld.elementwise(
            p + "attn.rope",
            i,
            [qkv],
            "mul",
            3 * rotated,  # x*cos + rot(x)*sin: three vector passes over Q and K
            T * m.qkv_features * b,
            BwdRule(saves_inputs=False),
        )
    ctx = bld.context
    kv_cache = 2 * bld.batch * ctx * kv * hd * b if bld.mode != "train" else 0
    phase = "decode" if bld.mode == "decode" else "prefill"
    attn = bld.add_forward(
        p + "attn.core",
        "attention",
        i,
        "fwd",
        "attention",
        {
            "batch": bld.batch,
            "heads": m.heads,
            "kv_heads": kv,
            "seq": bld.seq,
            "head_dim": hd,
            "context": ctx,
        },
        attention_flops(bld.batch, m.heads, bld.seq, ctx, hd, True),
        output_bytes=T * m.heads * hd * b,
        inputs=[(qkv, "activation")],
        state_bytes=kv_cache,
        options={"phase": phase, "causal": True},
        rule=BwdRule(flops_factor=2.0),
    )
    out = bld.gemm(p + "attn.out", i, attn, d, m.heads * hd, opt, bool(m.bias))
    x = bld.elementwise(p + "attn.residual", i, [x, out], "add", T * d, act, add_rule)

    h = bld.norm(p + "mlp.norm", i, x, opt)
    f = m.d_ff
    if m.mlp == "gelu":
        up = bld.gemm(p + "mlp.fc", i, h, f, d, opt, bool(m.bias))
        a = bld.elementwise(p + "mlp.act", i, [up], "gelu", T * f, T * f * b, BwdRule())
        down = bld.gemm(p + "mlp.proj", i, a, d, f, opt, bool(m.bias))
    else:
        gate = bld.gemm(p + "mlp.gate", i, h, f, d, opt, bool(m.bias))
        up = bld.gemm(p + "mlp.up", i, h, f, d, opt, bool(m.bias))
        a = bld.elementwise(p + "mlp.act", i, [gate], "silu", T * f, T * f * b, BwdRule())
        g = bld.elementwise(
            p + "mlp.mul", i, [a, up], "mul", T * f, T * f * b, BwdRule(flops_factor=2.0)
        )
        down = bld.gemm(p + "mlp.down", i, g, d, f, opt, bool(m.bias))
    return bld.elementwise(p + "mlp.residual", i, [x, down], "add", T * d, act, add_rule)


def _forward(bld: GraphBuilder) -> None:
    """Embedding, the layers, final norm, LM head and (train) the loss."""
    m, b, T, d = bld.model, bld.bytes_per_element, bld.tokens, bld.model.d_model
    x = bld.elementwise(
        "embed",
        None,
        [],
        "copy",
        T * d,
        T * d * b,
        BwdRule(bwd_op="add", saves_inputs=False, opt="embed.opt"),
        kind="embedding",
        weight_bytes=m.vocab * d * b,
    )
    if m.positions == "learned":
        x = bld.elementwise(
            "embed.pos",
            None,
            [x],
            "add",
            T * d,
            T * d * b,
            BwdRule(saves_inputs=False, shared_grad=True, opt="embed.opt"),
            kind="embedding",
            weight_bytes=m.max_seq * d * b,
        )
    for i in range(m.layers):
        x = _layer(bld, i, x)
    x = bld.norm("final_norm", None, x, "head.opt")
    head_opt = "embed.opt" if m.tied_embeddings else "head.opt"
    x = bld.gemm("lm_head", None, x, m.vocab, d, head_opt, False)
    if bld.mode == "train":
        bld.add_forward(
            "loss",
            "loss",
            None,
            "fwd",
            "softmax",
            {"rows": T, "cols": m.vocab},
            softmax_flops(T, m.vocab),
            output_bytes=T * m.vocab * b,  # the logits' gradient, softmax(z) - onehot
            inputs=[(x, "activation")],
            rule=BwdRule(saves_inputs=False),
        )


def build_graph(
    model: ModelSpec,
    mode: str,
    batch: int = 1,
    seq: int | None = None,
    context: int | None = None,
    dtype: str | None = None,
) -> nx.DiGraph:
    """The layer graph of ``model`` for one prefill, one decode step or one training step.

    Args:
        model: the model shape.
        mode: ``prefill``, ``decode`` or ``train``.
        batch: sequences processed together.
        seq: tokens per sequence (prefill, train; default ``model.max_seq``). For decode it is
            only the default of ``context``.
        context: decode only: keys each new token attends to (default ``seq``, else
            ``model.max_seq``).
        dtype: element type (``fp16``, ``bf16``, ``fp32``); default ``model.dtype``.

    Returns:
        A DiGraph whose nodes carry ``op`` (:class:`OpSpec`) and whose edges carry ``bytes``.
        ``G.graph`` holds ``model``, ``family``, ``mode``, ``batch``, ``seq`` (1 for decode),
        ``context``, ``tokens``, ``dtype``, ``params``, ``flops`` and ``shared_weights`` (maps
        an op to the op whose weights it reuses: the tied LM head to ``embed``).

    Raises:
        ConfigError: unknown mode or dtype, or sizes that are not positive or exceed ``max_seq``.
    """
    model = model.with_dtype(dtype)
    s, ctx = _check_sizes(model, mode, batch, seq, context)
    bld = GraphBuilder(model, mode, batch, s, ctx, str(model.dtype))
    _forward(bld)
    if mode == "train":
        from wse_sim.graph.backward import add_backward_and_optimizer

        add_backward_and_optimizer(bld)
    g = bld.g
    g.graph.update(
        model=model.name,
        family=model.family,
        mode=mode,
        batch=batch,
        seq=s,
        context=ctx,
        tokens=bld.tokens,
        dtype=str(model.dtype),
        params=model.params(),
        flops=math.fsum(data["op"].flops for _, data in g.nodes(data=True)),
        shared_weights={"lm_head": "embed"} if model.tied_embeddings else {},
    )
    return g
