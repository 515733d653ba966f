"""The backward pass and the AdamW update of a training step (used by :mod:`build`).

Rules (FLOPs; see docs/models.md):

* a matmul ``[m,k] x [k,n]`` gets ``.bwd_data`` (gemm ``m, n=k, k=n``: ``dX = dY W^T``) and
  ``.bwd_weight`` (gemm ``m=k, n, k=m``: ``dW = X^T dY``), each ``2*m*n*k``;
* attention and norms: one ``.bwd`` op of the same kernel and sizes with twice the forward FLOPs;
* elementwise ops: one ``.bwd`` op; GELU/SiLU/RoPE cost what the forward costs, the SwiGLU
  product twice (a gradient for each factor), a residual add one add per element (the gradient
  sum where the stream forks), the embedding lookup one add per element (scatter-add);
* the loss op already yields the logits' gradient (``softmax - onehot``);
* one AdamW op per layer, one for the embeddings (and the tied LM head), one for the final norm
  and the untied LM head: 12 FLOPs per parameter; ``state_bytes`` = fp32 master weights (4 B,
  none when training in fp32) + two fp32 moments (8 B) + gradients (the element size), per
  parameter.
"""

from __future__ import annotations

from collections import defaultdict

from wse_sim.graph._flops import elementwise_flops, gemm_flops
from wse_sim.graph.build import GraphBuilder

ADAMW_MOMENT_BYTES = 8
"""Two fp32 moments per parameter (bytes)."""
FP32_MASTER_BYTES = 4
"""fp32 master copy of each fp16/bf16 parameter (bytes)."""


def optimizer_state_bytes_per_param(dtype_bytes: int) -> int:
    """Bytes of optimizer state and gradient per parameter for weights of ``dtype_bytes``."""
    master = FP32_MASTER_BYTES if dtype_bytes < 4 else 0
    return master + ADAMW_MOMENT_BYTES + dtype_bytes


def _backward(bld: GraphBuilder) -> dict[str, list[tuple[str, float]]]:
    """Add the backward ops in reverse execution order; return weight gradients per optimizer."""
    g, b = bld.g, bld.bytes_per_element
    grad_producer: dict[str, str] = {}
    weight_grads: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for name in reversed(bld.forward):
        f = g.nodes[name]["op"]
        rule = bld.rules[name]
        if f.kind == "loss":
            grad_producer[name] = name
            continue
        consumers = [c for c in g.successors(name) if g.edges[name, c]["tensor"] == "activation"]
        grads = [(grad_producer[c], "gradient") for c in consumers]
        grad_bytes = {grad_producer[c]: f.output_bytes for c in consumers}
        producers = [p for p in g.predecessors(name) if g.edges[p, name]["tensor"] == "activation"]
        saved = [(p, "saved") for p in producers]
        if f.kind == "matmul":
            m, n, k = f.sizes["m"], f.sizes["n"], f.sizes["k"]
            grad_producer[name] = bld.add(
                name + ".bwd_data",
                "matmul",
                f.layer,
                "bwd",
                "gemm",
                {"m": m, "n": k, "k": n},
                gemm_flops(m, k, n),
                output_bytes=m * k * b,
                inputs=grads,
                input_bytes=grad_bytes,
                weight_bytes=f.weight_bytes,
            )
            wgrad = bld.add(
                name + ".bwd_weight",
                "matmul",
                f.layer,
                "bwd",
                "gemm",
                {"m": k, "n": n, "k": m},
                gemm_flops(k, n, m),
                output_bytes=f.weight_bytes,
                inputs=grads + saved,
                input_bytes=grad_bytes,
            )
            weight_grads[str(rule.opt)].append((wgrad, f.weight_bytes))
            continue
        if f.kernel == "elementwise":
            op = rule.bwd_op or f.options["op"]
            length = round(f.sizes["length"] * rule.flops_factor)
            sizes, options, flops = {"length": length}, {"op": op}, elementwise_flops(op, length)
        else:
            sizes, options, flops = f.sizes, f.options, f.flops * rule.flops_factor
        in_bytes = [g.nodes[p]["op"].output_bytes for p in producers]
        if not in_bytes:
            out = f.output_bytes  # a lookup: gradient rows scattered into the table
        else:
            out = max(in_bytes) if rule.shared_grad else sum(in_bytes)
        bwd = bld.add(
            name + ".bwd",
            f.kind,
            f.layer,
            "bwd",
            f.kernel,
            sizes,
            flops,
            output_bytes=out,
            inputs=grads + (saved if rule.saves_inputs else []),
            input_bytes=grad_bytes,
            weight_bytes=f.weight_bytes if f.kind == "norm" else 0.0,
            options=options,
        )
        grad_producer[name] = bwd
        if rule.opt and f.weight_bytes:
            nbytes = min(f.weight_bytes, out) if f.kind == "embedding" else f.weight_bytes
            weight_grads[rule.opt].append((bwd, nbytes))
    return weight_grads


def _optimizer(bld: GraphBuilder, weight_grads: dict[str, list[tuple[str, float]]]) -> None:
    """One AdamW op per parameter group; their lengths add up to ``model.params()``."""
    m, b = bld.model, bld.bytes_per_element
    parts = m.params_breakdown()
    groups: list[tuple[str, int | None, int]] = [
        ("embed.opt", None, parts["token_embedding"] + parts["position_embedding"])
    ]
    groups += [(f"L{i}.opt", i, m.params_per_layer()) for i in range(m.layers)]
    groups.append(("head.opt", None, parts["final_norm"] + parts["lm_head"]))
    per_param = optimizer_state_bytes_per_param(b)
    for name, layer, params in groups:
        srcs = weight_grads.get(name, [])
        bld.add(
            name,
            "optimizer",
            layer,
            "opt",
            "elementwise",
            {"length": params},
            elementwise_flops("adamw", params),
            output_bytes=0.0,  # weights are updated in place; nothing flows on
            inputs=[(s, "weight_grad") for s, _ in srcs],
            input_bytes=dict(srcs),
            weight_bytes=params * b,
            state_bytes=params * per_param,
            options={"op": "adamw"},
        )


def add_backward_and_optimizer(bld: GraphBuilder) -> None:
    """Append the backward pass (reverse layer order) and the optimizer ops to ``bld.g``."""
    _optimizer(bld, _backward(bld))
