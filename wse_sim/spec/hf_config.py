"""Read a Hugging Face style ``config.json`` from disk into a :class:`ModelSpec`.

Two families are understood (nothing is fetched from a network):

* GPT-2 style (``model_type`` ``gpt2``, also Cerebras-GPT): ``n_layer``, ``n_embd``, ``n_head``,
  ``n_inner`` (``null`` means ``4 * n_embd``), ``vocab_size``, ``n_positions`` (or ``n_ctx``),
  ``layer_norm_epsilon``, ``tie_word_embeddings`` (default true).
* LLaMA style (``model_type`` ``llama``): ``num_hidden_layers``, ``hidden_size``,
  ``num_attention_heads``, ``num_key_value_heads`` (default: the attention heads),
  ``intermediate_size``, ``vocab_size``, ``max_position_embeddings``, ``tie_word_embeddings``
  (default false), ``rms_norm_eps``, ``attention_bias``/``mlp_bias`` (default false).

The family comes from ``model_type``; when that is absent or another name, from the fields present.
``torch_dtype`` ``float16``/``bfloat16`` picks fp16/bf16; anything else keeps the family default
(fp16 for GPT-2, bf16 for LLaMA); the ``dtype`` argument overrides both (fp32 is an option).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wse_sim.errors import ConfigError
from wse_sim.spec.models import ModelSpec

_GPT2_KEYS = ("n_layer", "n_embd", "n_head")
_LLAMA_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads")
_TORCH_DTYPES = {"float16": "fp16", "bfloat16": "bf16"}

# ModelSpec field -> the config.json key the user wrote, per family (for error messages).
_KEYS = {
    "gpt2": {
        "layers": "n_layer",
        "d_model": "n_embd",
        "heads": "n_head",
        "d_ff": "n_inner",
        "vocab": "vocab_size",
        "max_seq": "n_positions",
    },
    "llama": {
        "layers": "num_hidden_layers",
        "d_model": "hidden_size",
        "heads": "num_attention_heads",
        "kv_heads": "num_key_value_heads",
        "d_ff": "intermediate_size",
        "vocab": "vocab_size",
        "max_seq": "max_position_embeddings",
    },
}


def detect_family(config: dict[str, Any]) -> str:
    """``gpt2`` or ``llama`` from ``model_type``, else from the field names present."""
    model_type = config.get("model_type")
    if model_type in ("gpt2", "llama"):
        return str(model_type)
    if any(k in config for k in _GPT2_KEYS):
        return "gpt2"
    if any(k in config for k in _LLAMA_KEYS):
        return "llama"
    raise ConfigError(
        "model_type",
        model_type,
        "use gpt2 or llama, or give GPT-2 fields (n_layer, n_embd, n_head) "
        "or LLaMA fields (num_hidden_layers, hidden_size, num_attention_heads)",
    )


def _int(config: dict[str, Any], key: str, default: int | None = None) -> int:
    value = config.get(key, default)
    if value is None:
        raise ConfigError(key, None, "missing; give a positive integer")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(key, value, "must be a positive integer")
    return value


def _bool(config: dict[str, Any], key: str, default: bool) -> bool:
    value = config.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(key, value, "use true or false")
    return value


def _float(config: dict[str, Any], key: str, default: float) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(key, value, "must be a positive number")
    return float(value)


def _dtype(config: dict[str, Any], override: str | None) -> str | None:
    if override is not None:
        return override
    return _TORCH_DTYPES.get(str(config.get("torch_dtype")))


def spec_from_config(
    config: dict[str, Any], name: str = "config", dtype: str | None = None
) -> ModelSpec:
    """Build a :class:`ModelSpec` from a parsed config dict (see the module doc for fields).

    Errors name the config.json key (``n_head``), not the :class:`ModelSpec` field (``heads``).
    """
    family = detect_family(config)
    try:
        return _build(config, family, name, dtype)
    except ConfigError as exc:
        key = _KEYS[family].get(exc.field)
        if key is None:
            raise
        raise ConfigError(key, exc.value, exc.allowed) from None


def _build(config: dict[str, Any], family: str, name: str, dtype: str | None) -> ModelSpec:
    if family == "gpt2":
        d = _int(config, "n_embd")
        n_inner = config.get("n_inner")
        return ModelSpec(
            name=name,
            family="gpt2",
            layers=_int(config, "n_layer"),
            d_model=d,
            heads=_int(config, "n_head"),
            d_ff=4 * d if n_inner is None else _int(config, "n_inner"),
            vocab=_int(config, "vocab_size"),
            max_seq=_int(config, "n_positions", config.get("n_ctx")),
            tied_embeddings=_bool(config, "tie_word_embeddings", True),
            dtype=_dtype(config, dtype),
            norm_eps=_float(config, "layer_norm_epsilon", 1e-5),
        )
    heads = _int(config, "num_attention_heads")
    d = _int(config, "hidden_size")
    head_dim = config.get("head_dim")
    if head_dim is not None and head_dim * heads != d:
        raise ConfigError(
            "head_dim", head_dim, f"must equal hidden_size/num_attention_heads = {d / heads:g}"
        )
    attention_bias = _bool(config, "attention_bias", False)
    mlp_bias = _bool(config, "mlp_bias", attention_bias)
    if mlp_bias != attention_bias:
        raise ConfigError(
            "mlp_bias", mlp_bias, f"must equal attention_bias={attention_bias} (one bias setting)"
        )
    return ModelSpec(
        name=name,
        family="llama",
        layers=_int(config, "num_hidden_layers"),
        d_model=d,
        heads=heads,
        kv_heads=_int(config, "num_key_value_heads", heads),
        d_ff=_int(config, "intermediate_size"),
        vocab=_int(config, "vocab_size"),
        max_seq=_int(config, "max_position_embeddings"),
        tied_embeddings=_bool(config, "tie_word_embeddings", False),
        dtype=_dtype(config, dtype),
        bias=attention_bias,
        norm_eps=_float(config, "rms_norm_eps", 1e-5),
    )


def load_model(path: str | Path, dtype: str | None = None) -> ModelSpec:
    """Read ``path`` (a ``config.json``, or a folder holding one) into a :class:`ModelSpec`.

    The model is named after ``_name_or_path`` in the file when present, else after the folder
    (for a file called ``config.json``) or the file's stem.

    Raises:
        ConfigError: missing or unreadable file, invalid JSON, or a bad field (named, with value).
    """
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("model", str(path), f"cannot read file ({exc.strerror})") from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            "model", str(p), f"not valid JSON (line {exc.lineno}: {exc.msg})"
        ) from None
    if not isinstance(config, dict):
        raise ConfigError("model", str(p), "config.json must hold a JSON object")
    name = config.get("_name_or_path") or (p.parent.name if p.name == "config.json" else p.stem)
    return spec_from_config(config, name=str(name) or p.stem, dtype=dtype)
