"""Transformer model shapes: :class:`ModelSpec`, the preset registry and :func:`get_model`.

A :class:`ModelSpec` is one frozen, validated value that describes a decoder-only Transformer
(GPT-2 style or LLaMA style). Parameter counts are exact element counts (not bytes); multiply by
:attr:`ModelSpec.dtype_bytes` for bytes. Shapes come from /work/shared/reference/models.md and the
public model cards.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from wse_sim.errors import ConfigError
from wse_sim.hardware.spec import DTYPE_BYTES

FAMILIES: tuple[str, ...] = ("gpt2", "llama")
NORMS: tuple[str, ...] = ("layernorm", "rmsnorm")
MLPS: tuple[str, ...] = ("gelu", "swiglu")
POSITIONS: tuple[str, ...] = ("learned", "rope")
MODEL_DTYPES: tuple[str, ...] = ("fp16", "bf16", "fp32")

# What each family implies when a field is left as ``None``.
_FAMILY_DEFAULTS: dict[str, dict[str, object]] = {
    "gpt2": {
        "norm": "layernorm",
        "mlp": "gelu",
        "positions": "learned",
        "tied_embeddings": True,
        "bias": True,
        "dtype": "fp16",
    },
    "llama": {
        "norm": "rmsnorm",
        "mlp": "swiglu",
        "positions": "rope",
        "tied_embeddings": False,
        "bias": False,
        "dtype": "bf16",
    },
}


def _positive_int(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(field, value, "must be a positive integer")


def _one_of(field: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(field, value, f"use one of {', '.join(allowed)}")


@dataclass(frozen=True)
class ModelSpec:
    """Shape of a decoder-only Transformer.

    Attributes:
        name: preset or file name.
        family: ``gpt2`` (GPT-2, Cerebras-GPT) or ``llama``.
        layers: number of Transformer blocks.
        d_model: hidden size (elements).
        heads: query heads.
        kv_heads: key/value heads (``== heads`` for multi-head attention, fewer for GQA);
            ``None`` means ``heads``.
        d_ff: MLP inner size (elements).
        vocab: vocabulary size (tokens).
        max_seq: longest sequence (positions) the model accepts.
        norm: ``layernorm`` (scale and bias) or ``rmsnorm`` (scale only); ``None``: family default.
        mlp: ``gelu`` (two matrices) or ``swiglu`` (three matrices); ``None``: family default.
        positions: ``learned`` (a position table) or ``rope``; ``None``: family default.
        tied_embeddings: the LM head reuses the token-embedding matrix; ``None``: family default.
        dtype: element type of weights and activations, ``fp16``, ``bf16`` or ``fp32``;
            ``None``: family default (fp16 for gpt2, bf16 for llama).
        bias: linear layers carry biases (GPT-2 yes, LLaMA no); ``None``: family default.
        norm_eps: epsilon of the norms (no effect on cost; kept for round trips).
    """

    name: str
    family: str
    layers: int
    d_model: int
    heads: int
    d_ff: int
    vocab: int
    max_seq: int
    kv_heads: int | None = None
    norm: str | None = None
    mlp: str | None = None
    positions: str | None = None
    tied_embeddings: bool | None = None
    dtype: str | None = None
    bias: bool | None = None
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        _one_of("family", self.family, FAMILIES)
        for key, value in _FAMILY_DEFAULTS[self.family].items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)
        if self.kv_heads is None:
            object.__setattr__(self, "kv_heads", self.heads)
        for name in ("layers", "d_model", "heads", "kv_heads", "d_ff", "vocab", "max_seq"):
            _positive_int(name, getattr(self, name))
        if self.d_model % self.heads:
            raise ConfigError(
                "heads",
                self.heads,
                f"must divide d_model={self.d_model} (head_dim is d_model/heads)",
            )
        if self.heads % self.kv_heads:
            raise ConfigError("kv_heads", self.kv_heads, f"must divide heads={self.heads}")
        _one_of("norm", self.norm, NORMS)
        _one_of("mlp", self.mlp, MLPS)
        _one_of("positions", self.positions, POSITIONS)
        _one_of("dtype", self.dtype, MODEL_DTYPES)
        for name in ("tied_embeddings", "bias"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, getattr(self, name), "use true or false")

    # -- derived shapes -----------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        """Elements per attention head (``d_model // heads``)."""
        return self.d_model // self.heads

    @property
    def qkv_features(self) -> int:
        """Output features of the fused Q/K/V projection: ``(heads + 2*kv_heads) * head_dim``."""
        return (self.heads + 2 * int(self.kv_heads)) * self.head_dim

    @property
    def dtype_bytes(self) -> int:
        """Bytes per element of :attr:`dtype`."""
        return DTYPE_BYTES[str(self.dtype)]

    def with_dtype(self, dtype: str | None) -> ModelSpec:
        """The same model in another element type (``None`` keeps this one)."""
        return (
            self if dtype is None or dtype == self.dtype else dataclasses.replace(self, dtype=dtype)
        )

    # -- parameter counts (elements) ----------------------------------------------------------
    def norm_params(self) -> int:
        """Parameters of one norm: scale and bias for LayerNorm, scale only for RMSNorm."""
        return 2 * self.d_model if self.norm == "layernorm" else self.d_model

    def attention_params(self) -> int:
        """Q/K/V and output projections of one layer (with biases when :attr:`bias`)."""
        d, qkv = self.d_model, self.qkv_features
        weights = d * qkv + self.heads * self.head_dim * d
        return weights + (qkv + d if self.bias else 0)

    def mlp_params(self) -> int:
        """MLP matrices of one layer: 2 for GELU, 3 (gate, up, down) for SwiGLU (+ biases)."""
        d, f = self.d_model, self.d_ff
        if self.mlp == "gelu":
            return 2 * d * f + (f + d if self.bias else 0)
        return 3 * d * f + (2 * f + d if self.bias else 0)

    def params_per_layer(self) -> int:
        """Parameters of one Transformer block: two norms, attention and MLP."""
        return 2 * self.norm_params() + self.attention_params() + self.mlp_params()

    def params_breakdown(self) -> dict[str, int]:
        """Parameters by part: token/position embeddings, layers, final norm, LM head.

        ``lm_head`` is 0 when the embeddings are tied (the head reuses ``token_embedding``).
        """
        return {
            "token_embedding": self.vocab * self.d_model,
            "position_embedding": self.max_seq * self.d_model if self.positions == "learned" else 0,
            "layers": self.layers * self.params_per_layer(),
            "final_norm": self.norm_params(),
            "lm_head": 0 if self.tied_embeddings else self.vocab * self.d_model,
        }

    def params(self) -> int:
        """Total parameters (each shared matrix counted once)."""
        return sum(self.params_breakdown().values())

    def lookup_only_params(self) -> int:
        """Parameters only ever read by an embedding lookup (no matmul uses them).

        The position table, plus the token table when it is not tied to the LM head. The usual
        ``2 * params * tokens`` forward-FLOP estimate uses ``params() - lookup_only_params()``.
        """
        b = self.params_breakdown()
        return b["position_embedding"] + (0 if self.tied_embeddings else b["token_embedding"])


@dataclass(frozen=True)
class ModelPreset:
    """A named model with one line of description (listed by ``wse-sim presets models``)."""

    name: str
    description: str
    spec: ModelSpec


def _gpt2(name: str, layers: int, d: int, heads: int, d_ff: int, max_seq: int) -> ModelSpec:
    return ModelSpec(name, "gpt2", layers, d, heads, d_ff, vocab=50257, max_seq=max_seq)


def _llama(
    name: str, layers: int, d: int, heads: int, kv: int, d_ff: int, vocab: int, max_seq: int
) -> ModelSpec:
    return ModelSpec(name, "llama", layers, d, heads, d_ff, vocab, max_seq, kv_heads=kv)


_GPT2 = "learned positions, LayerNorm, GELU, tied embeddings"
_CEREBRAS = "GPT-3 style, seq 2048, tied embeddings"
_LLAMA = "RoPE, RMSNorm, SwiGLU, untied embeddings"


def _gpt2_preset(name: str, title: str, layers: int, d: int, heads: int, d_ff: int) -> ModelPreset:
    """A GPT-2 preset (1024 positions); ``title`` names it and its size."""
    return ModelPreset(name, f"{title}: {_GPT2}", _gpt2(name, layers, d, heads, d_ff, 1024))


def _cerebras_preset(size: str, layers: int, d: int, heads: int, d_ff: int) -> ModelPreset:
    """A Cerebras-GPT preset (GPT-2 shape, 2048 positions) named by its ``size`` (``1.3B``)."""
    name = f"cerebras-gpt-{size.lower()}"
    spec = _gpt2(name, layers, d, heads, d_ff, 2048)
    return ModelPreset(name, f"Cerebras-GPT {size}: {_CEREBRAS}", spec)


def _llama_preset(
    name: str,
    title: str,
    layers: int,
    d: int,
    heads: int,
    kv: int,
    d_ff: int,
    vocab: int,
    max_seq: int,
) -> ModelPreset:
    """A LLaMA preset; the description states MHA or GQA, the vocabulary and ``max_seq``."""
    attention = "MHA" if kv == heads else f"GQA {kv} kv heads"
    description = f"{title}: {_LLAMA}, {attention}, vocab {vocab}, seq {max_seq}"
    spec = _llama(name, layers, d, heads, kv, d_ff, vocab, max_seq)
    return ModelPreset(name, description, spec)


MODEL_PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in (
        _gpt2_preset("gpt2-small", "GPT-2 124M", 12, 768, 12, 3072),
        _gpt2_preset("gpt2-medium", "GPT-2 355M", 24, 1024, 16, 4096),
        _gpt2_preset("gpt2-large", "GPT-2 774M", 36, 1280, 20, 5120),
        _gpt2_preset("gpt2-xl", "GPT-2 1.5B", 48, 1600, 25, 6400),
        _cerebras_preset("111M", 10, 768, 12, 3072),
        _cerebras_preset("256M", 14, 1088, 17, 4352),
        _cerebras_preset("590M", 18, 1536, 12, 6144),
        _cerebras_preset("1.3B", 24, 2048, 16, 8192),
        _cerebras_preset("2.7B", 32, 2560, 32, 10240),
        _cerebras_preset("6.7B", 32, 4096, 32, 16384),
        _cerebras_preset("13B", 40, 5120, 40, 20480),
        _llama_preset("llama2-7b", "LLaMA-2 7B", 32, 4096, 32, 32, 11008, 32000, 4096),
        _llama_preset("llama2-13b", "LLaMA-2 13B", 40, 5120, 40, 40, 13824, 32000, 4096),
        _llama_preset("llama3-8b", "LLaMA-3 8B", 32, 4096, 32, 8, 14336, 128256, 8192),
        _llama_preset("llama3-70b", "LLaMA-3 70B", 80, 8192, 64, 8, 28672, 128256, 8192),
    )
}


def get_model(name_or_path: str | Path, dtype: str | None = None) -> ModelSpec:
    """A preset by name, or a Hugging Face style ``config.json`` read from disk.

    Args:
        name_or_path: a key of :data:`MODEL_PRESETS`, a path to a config file, or a folder
            holding ``config.json``.
        dtype: ``fp16``, ``bf16`` or ``fp32`` to override the model's element type.

    Raises:
        ConfigError: unknown name, missing file, or a bad config (names the field and value).
    """
    key = str(name_or_path)
    if key in MODEL_PRESETS:
        return MODEL_PRESETS[key].spec.with_dtype(dtype)
    path = Path(key)
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        from wse_sim.spec.hf_config import load_model

        return load_model(path, dtype=dtype)
    raise ConfigError(
        "model",
        key,
        f"no such preset or file; use one of {', '.join(MODEL_PRESETS)} or a path to config.json",
    )
