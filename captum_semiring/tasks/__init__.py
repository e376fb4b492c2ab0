"""Tasks and models: synthetic datasets, small model builders, local pretrained models."""

from .pretrained import load_minilm, minilm_dir

__all__ = ["load_minilm", "minilm_dir"]
