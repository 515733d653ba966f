"""Model specs: preset parameter counts, config.json loading, validation errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from wse_sim.cli.main import main
from wse_sim.errors import ConfigError, WseSimError
from wse_sim.spec import MODEL_PRESETS, ModelSpec, get_model, load_model

# Published parameter counts (Hugging Face model cards / the papers): exact element counts.
PUBLISHED_EXACT = {
    "gpt2-small": 124_439_808,
    "gpt2-medium": 354_823_168,
    "gpt2-large": 774_030_080,
    "gpt2-xl": 1_557_611_200,
    "llama2-7b": 6_738_415_616,
    "llama2-13b": 13_015_864_320,
    "llama3-8b": 8_030_261_248,
    "llama3-70b": 70_553_706_496,
}

# Nominal sizes in the preset names (rounded by their authors; Cerebras-GPT 2.7B is 2.65B and
# 13B is 12.85B by the model cards, hence a 3 % tolerance).
NOMINAL = {
    "cerebras-gpt-111m": 111e6,
    "cerebras-gpt-256m": 256e6,
    "cerebras-gpt-590m": 590e6,
    "cerebras-gpt-1.3b": 1.3e9,
    "cerebras-gpt-2.7b": 2.7e9,
    "cerebras-gpt-6.7b": 6.7e9,
    "cerebras-gpt-13b": 12.9e9,
    "gpt2-small": 124e6,
    "gpt2-medium": 355e6,
    "gpt2-large": 774e6,
    "llama3-8b": 8.03e9,
}


def test_every_listed_preset_exists() -> None:
    expected = {*PUBLISHED_EXACT, *NOMINAL}
    assert expected == set(MODEL_PRESETS)
    for name, preset in MODEL_PRESETS.items():
        assert preset.name == name == preset.spec.name
        assert preset.description and "\n" not in preset.description


@pytest.mark.parametrize("name", sorted(PUBLISHED_EXACT))
def test_param_count_matches_published(name: str) -> None:
    assert get_model(name).params() == PUBLISHED_EXACT[name]


@pytest.mark.parametrize("name", sorted(NOMINAL))
def test_param_count_near_nominal(name: str) -> None:
    assert get_model(name).params() == pytest.approx(NOMINAL[name], rel=0.03)


def test_gpt2_param_closed_form() -> None:
    """GPT-2: embeddings + L*(12 d^2 + 13 d) + 2 d; tied head adds nothing."""
    m = get_model("gpt2-small")
    d, L, V, S = m.d_model, m.layers, m.vocab, m.max_seq
    assert m.params_per_layer() == 12 * d * d + 13 * d
    assert m.params() == V * d + S * d + L * (12 * d * d + 13 * d) + 2 * d
    assert m.tied_embeddings and m.params_breakdown()["lm_head"] == 0


def test_llama_param_closed_form_with_gqa() -> None:
    """LLaMA-3: no biases, GQA K/V projections, three MLP matrices, untied head."""
    m = get_model("llama3-8b")
    d, f, kv_dim = m.d_model, m.d_ff, m.kv_heads * m.head_dim
    assert m.head_dim == 128 and kv_dim == 1024
    assert m.params_per_layer() == 2 * d * d + 2 * d * kv_dim + 3 * d * f + 2 * d
    assert m.params() == 2 * m.vocab * d + m.layers * m.params_per_layer() + d
    assert not m.tied_embeddings and m.params_breakdown()["lm_head"] == m.vocab * d


def test_family_defaults() -> None:
    g, l = get_model("cerebras-gpt-1.3b"), get_model("llama2-7b")
    assert (g.norm, g.mlp, g.positions, g.bias, g.dtype) == (
        "layernorm",
        "gelu",
        "learned",
        True,
        "fp16",
    )
    assert (l.norm, l.mlp, l.positions, l.bias, l.dtype) == (
        "rmsnorm",
        "swiglu",
        "rope",
        False,
        "bf16",
    )
    assert g.kv_heads == g.heads and l.kv_heads == l.heads
    assert g.max_seq == 2048 and get_model("gpt2-xl").max_seq == 1024


def test_dtype_override() -> None:
    m = get_model("gpt2-small", dtype="fp32")
    assert m.dtype == "fp32" and m.dtype_bytes == 4
    assert MODEL_PRESETS["gpt2-small"].spec.dtype == "fp16"  # the preset is unchanged
    with pytest.raises(ConfigError, match="dtype"):
        get_model("gpt2-small", dtype="int8")


def test_spec_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_model("gpt2-small").layers = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"layers": 0}, "layers"),
        ({"heads": 7}, "heads"),  # 768 % 7 != 0
        ({"kv_heads": 5}, "kv_heads"),  # 12 % 5 != 0
        ({"family": "bert"}, "family"),
        ({"norm": "batchnorm"}, "norm"),
        ({"mlp": "relu"}, "mlp"),
        ({"positions": "alibi"}, "positions"),
        ({"dtype": "fp8"}, "dtype"),
        ({"vocab": 1.5}, "vocab"),
        ({"d_ff": True}, "d_ff"),
    ],
)
def test_bad_spec_fields(kwargs: dict, field: str) -> None:
    base = {"name": "x", "family": "gpt2", "layers": 2, "d_model": 768, "heads": 12}
    base.update({"d_ff": 3072, "vocab": 100, "max_seq": 64})
    base.update(kwargs)
    with pytest.raises(ConfigError) as info:
        ModelSpec(**base)
    assert info.value.field == field
    assert "\n" not in str(info.value) and field in str(info.value)


# -- config.json ------------------------------------------------------------------------------
def _gpt2_config(m: ModelSpec) -> dict:
    """A config.json as Hugging Face writes it for GPT-2 / Cerebras-GPT."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "n_layer": m.layers,
        "n_embd": m.d_model,
        "n_head": m.heads,
        "n_inner": m.d_ff,
        "n_positions": m.max_seq,
        "n_ctx": m.max_seq,
        "vocab_size": m.vocab,
        "layer_norm_epsilon": 1e-5,
        "activation_function": "gelu_new",
    }


def _llama_config(m: ModelSpec) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "num_hidden_layers": m.layers,
        "hidden_size": m.d_model,
        "num_attention_heads": m.heads,
        "num_key_value_heads": m.kv_heads,
        "intermediate_size": m.d_ff,
        "vocab_size": m.vocab,
        "max_position_embeddings": m.max_seq,
        "tie_word_embeddings": False,
        "rms_norm_eps": 1e-5,
        "hidden_act": "silu",
        "torch_dtype": "bfloat16",
    }


def _write(tmp_path: Path, config: object, folder: str = "model") -> Path:
    path = tmp_path / folder / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    return path


def _same_shape(a: ModelSpec, b: ModelSpec) -> bool:
    return dataclasses.replace(a, name="x") == dataclasses.replace(b, name="x")


@pytest.mark.parametrize("preset", ["gpt2-small", "cerebras-gpt-2.7b"])
def test_gpt2_config_round_trip(tmp_path: Path, preset: str) -> None:
    m = get_model(preset)
    path = _write(tmp_path, _gpt2_config(m), folder=preset)
    loaded = load_model(path)
    assert _same_shape(loaded, m)
    assert loaded.name == preset  # named after the folder
    assert loaded.params() == m.params()
    assert _same_shape(get_model(str(path)), m)  # get_model takes a path...
    assert _same_shape(get_model(path.parent), m)  # ...or the folder holding config.json


@pytest.mark.parametrize("preset", ["llama2-13b", "llama3-8b"])
def test_llama_config_round_trip(tmp_path: Path, preset: str) -> None:
    m = get_model(preset)
    loaded = load_model(_write(tmp_path, _llama_config(m)))
    assert _same_shape(loaded, m)
    assert loaded.params() == m.params()


def test_family_detected_from_fields(tmp_path: Path) -> None:
    cfg = _llama_config(get_model("llama3-8b"))
    del cfg["model_type"]
    assert load_model(_write(tmp_path, cfg, "a")).family == "llama"
    gcfg = _gpt2_config(get_model("gpt2-small"))
    gcfg["model_type"] = "some-gpt"
    assert load_model(_write(tmp_path, gcfg, "b")).family == "gpt2"


def test_config_defaults(tmp_path: Path) -> None:
    """n_inner null -> 4*n_embd; n_ctx stands in for n_positions; missing kv heads -> MHA."""
    cfg = _gpt2_config(get_model("gpt2-small"))
    cfg["n_inner"] = None
    del cfg["n_positions"]
    loaded = load_model(_write(tmp_path, cfg, "g"))
    assert loaded.d_ff == 4 * loaded.d_model and loaded.max_seq == 1024
    lcfg = _llama_config(get_model("llama2-7b"))
    del lcfg["num_key_value_heads"], lcfg["torch_dtype"]
    loaded = load_model(_write(tmp_path, lcfg, "l"))
    assert loaded.kv_heads == loaded.heads == 32 and loaded.dtype == "bf16"


def test_config_dtype(tmp_path: Path) -> None:
    cfg = _llama_config(get_model("llama3-8b"))
    cfg["torch_dtype"] = "float16"
    path = _write(tmp_path, cfg)
    assert load_model(path).dtype == "fp16"
    assert load_model(path, dtype="fp32").dtype == "fp32"
    cfg["torch_dtype"] = "float32"  # fp32 only on request: the family default applies
    assert load_model(_write(tmp_path, cfg)).dtype == "bf16"


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        ({"n_layer": None}, "n_layer"),
        ({"n_head": 0}, "n_head"),
        ({"n_embd": "768"}, "n_embd"),
        ({"vocab_size": -5}, "vocab_size"),
        ({"n_head": 7}, "n_head"),  # does not divide n_embd=768
        ({"tie_word_embeddings": "yes"}, "tie_word_embeddings"),
        ({"layer_norm_epsilon": "tiny"}, "layer_norm_epsilon"),
    ],
)
def test_bad_gpt2_config(tmp_path: Path, edit: dict, field: str) -> None:
    cfg = _gpt2_config(get_model("gpt2-small"))
    for key, value in edit.items():
        if value is None:
            del cfg[key]
        else:
            cfg[key] = value
    with pytest.raises(ConfigError) as info:
        load_model(_write(tmp_path, cfg))
    assert info.value.field == field and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        ({"intermediate_size": None}, "intermediate_size"),
        ({"num_key_value_heads": 5}, "num_key_value_heads"),
        ({"head_dim": 64}, "head_dim"),
        ({"max_position_embeddings": 0}, "max_position_embeddings"),
        ({"mlp_bias": True}, "mlp_bias"),
    ],
)
def test_bad_llama_config(tmp_path: Path, edit: dict, field: str) -> None:
    cfg = _llama_config(get_model("llama3-8b"))
    for key, value in edit.items():
        if value is None:
            del cfg[key]
        else:
            cfg[key] = value
    with pytest.raises(ConfigError) as info:
        load_model(_write(tmp_path, cfg))
    assert info.value.field == field


def test_unreadable_configs(tmp_path: Path) -> None:
    bad_json = tmp_path / "broken.json"
    bad_json.write_text("{ not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_model(bad_json)
    with pytest.raises(ConfigError, match="JSON object"):
        load_model(_write(tmp_path, [1, 2, 3]))
    with pytest.raises(ConfigError, match="model_type"):
        load_model(_write(tmp_path, {"model_type": "bert", "hidden_layers": 3}))
    with pytest.raises(ConfigError, match="cannot read"):
        load_model(tmp_path / "missing.json")


def test_unknown_model_name_lists_presets() -> None:
    with pytest.raises(WseSimError) as info:
        get_model("gpt5-huge")
    assert "gpt2-small" in str(info.value) and "llama3-70b" in str(info.value)


def test_cli_lists_model_presets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets", "models"]) == 0
    out = capsys.readouterr().out
    for name in MODEL_PRESETS:
        assert name in out
