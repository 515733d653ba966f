"""Model shapes: :class:`ModelSpec`, the preset registry and Hugging Face config loading."""

from wse_sim.spec.hf_config import load_model, spec_from_config
from wse_sim.spec.models import MODEL_PRESETS, ModelPreset, ModelSpec, get_model

__all__ = [
    "MODEL_PRESETS",
    "ModelPreset",
    "ModelSpec",
    "get_model",
    "load_model",
    "spec_from_config",
]
