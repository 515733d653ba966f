"""Layer graph: structure, OpSpec contents, FLOP closed forms, KV cache and memory budget."""

from __future__ import annotations

import math

import networkx as nx
import pytest

from wse_sim.errors import ConfigError
from wse_sim.graph import OP_KINDS, OpSpec, build_graph, memory_budget, totals, totals_by
from wse_sim.graph.summary import peak_live_activation_bytes
from wse_sim.spec import ModelSpec, get_model

MODELS = ("gpt2-small", "cerebras-gpt-1.3b", "llama3-8b")
MODES = ("prefill", "decode", "train")

# Sizes each kernel takes (the lowering stage reads exactly these).
KERNEL_SIZES = {
    "gemm": {"m", "n", "k"},
    "attention": {"batch", "heads", "kv_heads", "seq", "head_dim", "context"},
    "layernorm": {"rows", "cols"},
    "rmsnorm": {"rows", "cols"},
    "elementwise": {"length"},
    "softmax": {"rows", "cols"},
}
ELEMENTWISE_FLOPS = {"add": 1, "mul": 1, "gelu": 8, "silu": 4, "copy": 0, "adamw": 13}
NORM_FLOPS = {"layernorm": 7, "rmsnorm": 4}


def _graph(name: str, mode: str, batch: int = 2, seq: int = 512, context: int = 768, **kw):
    m = get_model(name)
    if mode == "decode":
        return build_graph(m, mode, batch=batch, context=context, **kw)
    return build_graph(m, mode, batch=batch, seq=seq, **kw)


def _ops(g: nx.DiGraph) -> list[OpSpec]:
    return [g.nodes[n]["op"] for n in g.nodes]


# -- closed forms, written independently of the builder ---------------------------------------
def _attention(m: ModelSpec, batch: int, q: int, ctx: int) -> float:
    """Per (batch, head): (4*head_dim + 5) FLOPs per (query, key) pair (QK^T, PV, softmax).

    Causal prefill (q == ctx) visits the lower triangle with its diagonal: q*(q+1)/2 pairs.
    """
    pairs = q * (ctx - q) + q * (q + 1) / 2 if q > 1 else q * ctx
    return batch * m.heads * (4 * m.head_dim + 5) * pairs


def _layer_parts(m: ModelSpec, T: int) -> dict[str, float]:
    """FLOPs of one layer's forward by op class, for T tokens."""
    d, f = m.d_model, m.d_ff
    mlp_mats = 2 if m.mlp == "gelu" else 3
    return {
        "matmul": 2.0 * T * (d * m.qkv_features + d * d + mlp_mats * d * f),
        "norm": 2.0 * NORM_FLOPS[str(m.norm)] * T * d,
        "add": 2.0 * T * d,
        "act": (8.0 if m.mlp == "gelu" else 4.0) * T * f,
        "mul": float(T * f) if m.mlp == "swiglu" else 0.0,
        "rope": 3.0 * T * (m.heads + m.kv_heads) * m.head_dim if m.positions == "rope" else 0.0,
    }


def _forward_flops(m: ModelSpec, batch: int, q: int, ctx: int, loss: bool) -> float:
    T = batch * q
    per_layer = sum(_layer_parts(m, T).values()) + _attention(m, batch, q, ctx)
    head = 2.0 * T * m.d_model * m.vocab + NORM_FLOPS[str(m.norm)] * T * m.d_model
    pos = T * m.d_model if m.positions == "learned" else 0
    return m.layers * per_layer + head + pos + (5.0 * T * m.vocab if loss else 0.0)


def _backward_flops(m: ModelSpec, batch: int, q: int) -> float:
    """Matmuls, attention and norms twice the forward; GELU/SiLU/RoPE/adds once; the SwiGLU
    product twice; embedding scatter-add (and position add) one add per element; no loss term."""
    T = batch * q
    p = _layer_parts(m, T)
    per_layer = (
        2 * (p["matmul"] + p["norm"] + p["mul"] + _attention(m, batch, q, q))
        + p["act"]
        + p["rope"]
        + p["add"]
    )
    head = 2 * (2.0 * T * m.d_model * m.vocab + NORM_FLOPS[str(m.norm)] * T * m.d_model)
    embed = T * m.d_model * (2 if m.positions == "learned" else 1)
    return m.layers * per_layer + head + embed


def _usual_estimate(m: ModelSpec, batch: int, q: int, ctx: int) -> float:
    """2 x params x tokens (params without lookup-only tables) + attention."""
    return 2.0 * (m.params() - m.lookup_only_params()) * batch * q + m.layers * _attention(
        m, batch, q, ctx
    )


# -- structure --------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", MODELS)
def test_dag_in_execution_order(name: str, mode: str) -> None:
    g = _graph(name, mode)
    assert nx.is_directed_acyclic_graph(g)
    index = {n: i for i, n in enumerate(g.nodes)}
    assert all(index[u] < index[v] for u, v in g.edges)  # node order is a topological order
    stages = [op.stage for op in _ops(g)]
    expected = ["fwd"] * stages.count("fwd") + ["bwd"] * stages.count("bwd")
    assert stages == expected + ["opt"] * stages.count("opt")
    bwd_layers = [op.layer for op in _ops(g) if op.stage == "bwd" and op.layer is not None]
    assert bwd_layers == sorted(bwd_layers, reverse=True)  # backward in reverse layer order
    assert (mode == "train") == ("bwd" in stages) == ("opt" in stages)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", MODELS)
def test_every_node_has_a_documented_opspec(name: str, mode: str) -> None:
    g = _graph(name, mode)
    for node, data in g.nodes(data=True):
        op = data["op"]
        assert isinstance(op, OpSpec) and op.name == node
        assert op.kind in OP_KINDS and op.stage in ("fwd", "bwd", "opt")
        assert set(op.sizes) == KERNEL_SIZES[op.kernel], node
        assert all(isinstance(v, int) and v > 0 for v in op.sizes.values()), node
        assert op.dtype == g.graph["dtype"]
        s = op.sizes
        if op.kernel == "gemm":
            assert op.kind == "matmul" and op.flops == 2 * s["m"] * s["n"] * s["k"]
        elif op.kernel == "elementwise":
            assert op.flops == ELEMENTWISE_FLOPS[op.options["op"]] * s["length"], node
            assert (op.options["op"] == "adamw") == (op.kind == "optimizer")
            assert (op.options["op"] == "copy") == (node == "embed")
        elif op.kernel in NORM_FLOPS:
            assert op.kind == "norm"
            factor = 2 if op.stage == "bwd" else 1
            assert op.flops == factor * NORM_FLOPS[op.kernel] * s["rows"] * s["cols"]
        elif op.kernel == "softmax":
            assert op.kind == "loss" and op.flops == 5 * s["rows"] * s["cols"]
        else:
            assert op.kind == "attention"
            assert op.options == {
                "phase": "decode" if mode == "decode" else "prefill",
                "causal": True,
            }
            factor = 2 if op.stage == "bwd" else 1
            expected = _attention(get_model(name), s["batch"], s["seq"], s["context"])
            assert op.flops == pytest.approx(factor * expected, rel=1e-12)
        in_edges = [g.edges[u, node]["bytes"] for u in g.predecessors(node)]
        assert op.input_bytes == pytest.approx(math.fsum(in_edges))
    assert all(b > 0 for _, _, b in g.edges(data="bytes"))


@pytest.mark.parametrize("mode", MODES)
def test_graph_attributes(mode: str) -> None:
    g = _graph("llama3-8b", mode, batch=3, seq=100, context=200)
    m = get_model("llama3-8b")
    tokens = {"prefill": 300, "decode": 3, "train": 300}[mode]
    assert g.graph["model"] == "llama3-8b" and g.graph["mode"] == mode
    assert g.graph["batch"] == 3 and g.graph["tokens"] == tokens
    assert g.graph["seq"] == (1 if mode == "decode" else 100)
    assert g.graph["context"] == (200 if mode == "decode" else 100)
    assert g.graph["dtype"] == "bf16" and g.graph["params"] == m.params()
    assert g.graph["flops"] == pytest.approx(math.fsum(op.flops for op in _ops(g)), rel=1e-12)
    assert g.nodes["lm_head"]["op"].sizes == {"m": tokens, "n": m.vocab, "k": m.d_model}


def test_layer_ops_per_family() -> None:
    gpt = _graph("gpt2-small", "prefill")
    llama = _graph("llama3-8b", "prefill")
    gpt_l0 = [n for n in gpt if n.startswith("L0.")]
    llama_l0 = [n for n in llama if n.startswith("L0.")]
    assert gpt_l0 == [
        "L0.attn.norm",
        "L0.attn.qkv",
        "L0.attn.core",
        "L0.attn.out",
        "L0.attn.residual",
        "L0.mlp.norm",
        "L0.mlp.fc",
        "L0.mlp.act",
        "L0.mlp.proj",
        "L0.mlp.residual",
    ]
    assert {"L0.attn.rope", "L0.mlp.gate", "L0.mlp.up", "L0.mlp.mul", "L0.mlp.down"} <= set(
        llama_l0
    )
    assert "embed.pos" in gpt and "embed.pos" not in llama
    assert llama.nodes["L0.attn.norm"]["op"].kernel == "rmsnorm"
    assert gpt.nodes["L0.mlp.act"]["op"].options == {"op": "gelu"}
    assert llama.nodes["L0.mlp.act"]["op"].options == {"op": "silu"}
    qkv = llama.nodes["L0.attn.qkv"]["op"].sizes
    assert qkv == {"m": 1024, "n": (32 + 2 * 8) * 128, "k": 4096}  # GQA: 8 K and V heads


# -- FLOPs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_prefill_flops(name: str) -> None:
    m, batch, seq = get_model(name), 2, 512
    g = _graph(name, "prefill", batch=batch, seq=seq)
    assert g.graph["flops"] == pytest.approx(_forward_flops(m, batch, seq, seq, False), rel=1e-12)
    # The usual estimate leaves out norms, activations and residual adds (< 0.3 % of the matmul
    # FLOPs: at most ~60 d FLOPs per token and layer against >= 24 d^2) and counts biases as
    # matmul weights (< 0.1 %), so 1 % is a safe bound.
    assert g.graph["flops"] == pytest.approx(_usual_estimate(m, batch, seq, seq), rel=0.01)


@pytest.mark.parametrize("name", MODELS)
def test_decode_flops(name: str) -> None:
    m, batch, ctx = get_model(name), 4, 768
    g = _graph(name, "decode", batch=batch, context=ctx)
    assert g.graph["flops"] == pytest.approx(_forward_flops(m, batch, 1, ctx, False), rel=1e-12)
    assert g.graph["flops"] == pytest.approx(_usual_estimate(m, batch, 1, ctx), rel=0.01)
    core = g.nodes["L0.attn.core"]["op"]
    assert core.sizes["seq"] == 1 and core.sizes["context"] == ctx
    # A decode step attends to every cached key: no causal halving.
    assert core.flops == batch * m.heads * (4 * m.head_dim + 5) * ctx


@pytest.mark.parametrize("name", MODELS)
def test_train_flops(name: str) -> None:
    m, batch, seq = get_model(name), 2, 512
    g = _graph(name, "train", batch=batch, seq=seq)
    by_stage = totals_by(g, "stage")
    fwd = _forward_flops(m, batch, seq, seq, True)
    assert by_stage["fwd"].flops == pytest.approx(fwd, rel=1e-12)
    assert by_stage["bwd"].flops == pytest.approx(_backward_flops(m, batch, seq), rel=1e-12)
    assert by_stage["opt"].flops == ELEMENTWISE_FLOPS["adamw"] * m.params()
    # Training ~ 3x forward: matmuls and attention (> 99 % of the forward) have a 2x backward;
    # only elementwise ops (1x) and the loss (no backward) fall short, hence the 1 % bound.
    ratio = (g.graph["flops"] - by_stage["opt"].flops) / (3 * by_stage["fwd"].flops)
    assert 0.99 < ratio <= 1.0


def test_backward_matmuls_mirror_forward() -> None:
    g = _graph("llama3-8b", "train", batch=1, seq=256)
    for op in _ops(g):
        if op.kind != "matmul" or op.stage != "fwd":
            continue
        m, n, k = op.sizes["m"], op.sizes["n"], op.sizes["k"]
        data = g.nodes[op.name + ".bwd_data"]["op"]
        weight = g.nodes[op.name + ".bwd_weight"]["op"]
        assert data.sizes == {"m": m, "n": k, "k": n}  # dX = dY W^T
        assert weight.sizes == {"m": k, "n": n, "k": m}  # dW = X^T dY
        assert data.flops == weight.flops == op.flops
        assert weight.output_bytes == op.weight_bytes  # the weight gradient
    # the loss feeds the LM head's gradients; the head's weight gradient goes to its optimizer
    assert g.has_edge("loss", "lm_head.bwd_data") and g.has_edge("loss", "lm_head.bwd_weight")
    assert g.edges["lm_head.bwd_weight", "head.opt"]["tensor"] == "weight_grad"
    assert g.edges["L3.mlp.down.bwd_weight", "L3.opt"]["tensor"] == "weight_grad"


def test_tied_head_gradient_goes_to_embedding_optimizer() -> None:
    g = _graph("gpt2-small", "train", batch=1, seq=128)
    assert g.has_edge("lm_head.bwd_weight", "embed.opt")
    assert not g.has_edge("lm_head.bwd_weight", "head.opt")
    assert g.graph["shared_weights"] == {"lm_head": "embed"}


# -- bytes ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "batch", "ctx"), [("gpt2-small", 3, 1000), ("llama3-8b", 5, 4096)]
)
def test_decode_kv_cache_bytes(name: str, batch: int, ctx: int) -> None:
    m = get_model(name)
    g = _graph(name, "decode", batch=batch, context=ctx)
    per_layer = 2 * batch * ctx * m.kv_heads * m.head_dim * m.dtype_bytes
    attn = [op for op in _ops(g) if op.kind == "attention"]
    assert len(attn) == m.layers and all(op.state_bytes == per_layer for op in attn)
    assert memory_budget(g).kv_cache == 2 * m.layers * batch * ctx * m.kv_heads * m.head_dim * 2


def test_training_has_no_kv_cache_and_adamw_state() -> None:
    m = get_model("cerebras-gpt-1.3b")
    g = _graph("cerebras-gpt-1.3b", "train", batch=1, seq=256)
    opt = [op for op in _ops(g) if op.kind == "optimizer"]
    assert len(opt) == m.layers + 2  # one per layer, embeddings, final norm
    assert sum(op.sizes["length"] for op in opt) == m.params()
    budget = memory_budget(g)
    assert budget.kv_cache == 0
    # fp32 master (4) + two fp32 moments (8) + fp16 gradient (2) bytes per parameter
    assert budget.optimizer_state == 14 * m.params()
    g32 = _graph("cerebras-gpt-1.3b", "train", batch=1, seq=256, dtype="fp32")
    assert memory_budget(g32).optimizer_state == 12 * m.params()  # no master copy, fp32 grads
    assert memory_budget(g32).weights == 4 * m.params()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["gpt2-small", "llama2-7b"])
def test_weights_counted_once(name: str, mode: str) -> None:
    """Forward weight bytes = params x element bytes, once the tied head's reuse is removed."""
    m = get_model(name)
    g = _graph(name, mode)
    fwd_weights = math.fsum(op.weight_bytes for op in _ops(g) if op.stage == "fwd")
    shared = sum(g.nodes[n]["op"].weight_bytes for n in g.graph["shared_weights"])
    assert fwd_weights - shared == m.params() * m.dtype_bytes == memory_budget(g).weights


def test_dtype_override_scales_bytes() -> None:
    g16 = _graph("gpt2-small", "prefill")
    g32 = _graph("gpt2-small", "prefill", dtype="fp32")
    assert g32.graph["dtype"] == "fp32" and g32.graph["flops"] == g16.graph["flops"]
    t16, t32 = totals(g16), totals(g32)
    assert t32.weight_bytes == 2 * t16.weight_bytes
    assert t32.activation_bytes == 2 * t16.activation_bytes


def test_totals_by_partitions_the_graph() -> None:
    g = _graph("llama3-8b", "train", batch=1, seq=128)
    whole = totals(g)
    for key in ("kind", "stage", "kernel", "layer"):
        parts = totals_by(g, key).values()
        assert sum(p.ops for p in parts) == whole.ops == g.number_of_nodes()
        assert math.fsum(p.flops for p in parts) == pytest.approx(whole.flops, rel=1e-12)
        assert math.fsum(p.weight_bytes for p in parts) == pytest.approx(whole.weight_bytes)
    assert set(totals_by(g, "stage")) == {"fwd", "bwd", "opt"}
    with pytest.raises(ConfigError, match="key"):
        totals_by(g, "colour")


def test_peak_live_activations_on_a_hand_built_graph() -> None:
    """Ops run in node order a, b, c, d; an output lives from its op to its last consumer."""
    g = nx.DiGraph()
    for name, out in (("a", 10.0), ("b", 20.0), ("c", 5.0), ("d", 30.0)):
        op = OpSpec(name, "elementwise", None, "fwd", "elementwise", {}, 0.0, output_bytes=out)
        g.add_node(name, op=op)
    g.add_edge("a", "b", bytes=10.0)
    g.add_edge("b", "c", bytes=20.0)
    g.add_edge("a", "c", bytes=10.0)
    # at c: a (kept for c) + b + c = 35; at d only d (30) is live
    assert peak_live_activation_bytes(g) == 35.0
    g.add_edge("b", "d", bytes=20.0)
    # now b lives until d: at d, b + d = 50
    assert peak_live_activation_bytes(g) == 50.0
    g.add_edge("d", "e", bytes=30.0, tensor="weight_grad")
    g.add_node("e", op=OpSpec("e", "optimizer", None, "opt", "elementwise", {}, 0.0))
    # d now only feeds an optimizer: a weight gradient, not an activation
    assert peak_live_activation_bytes(g) == 35.0


def test_training_keeps_forward_activations() -> None:
    """Activations saved for the backward pass make training's peak far above prefill's."""
    pre = memory_budget(_graph("gpt2-small", "prefill", batch=1, seq=1024))
    train = memory_budget(_graph("gpt2-small", "train", batch=1, seq=1024))
    m, T = get_model("gpt2-small"), 1024
    # at least every layer's norm inputs and MLP hidden (GELU input) are alive at the loss
    saved_lower_bound = m.layers * (2 * T * m.d_model + T * m.d_ff) * 2
    assert train.activations > saved_lower_bound > pre.activations
    assert pre.activations >= T * m.vocab * 2  # the logits of every token (LM head on all)


# -- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mode": "serve"}, "mode"),
        ({"mode": "prefill", "batch": 0}, "batch"),
        ({"mode": "prefill", "seq": 1025}, "seq"),
        ({"mode": "train", "seq": 64, "context": 128}, "context"),
        ({"mode": "decode", "context": 4096}, "context"),
        ({"mode": "decode", "context": 10, "dtype": "int4"}, "dtype"),
    ],
)
def test_bad_sizes(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_graph(get_model("gpt2-small"), **kwargs)
    assert info.value.field == field and "\n" not in str(info.value)


def test_defaults() -> None:
    m = get_model("gpt2-small")
    assert build_graph(m, "prefill").graph["tokens"] == m.max_seq
    assert build_graph(m, "decode").graph["context"] == m.max_seq
    assert build_graph(m, "decode", seq=300).graph["context"] == 300  # seq stands in
