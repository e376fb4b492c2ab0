"""The paper's experiments (``captum-semiring reproduce NAME``), with their tasks and
data. Nothing here is imported by ``import captum_semiring``; :func:`available`
imports the modules of :data:`MODULES` on demand.

- :mod:`.fig2`: sec. 5.1 / Fig. 2, branch flow by token type (``reproduce fig2``);
- :mod:`.fig4`: sec. 5.2 / Fig. 4, subject-verb agreement (``reproduce fig4``);
- :mod:`.fig5`: sec. 5.3 / Fig. 5, gradient entropy vs MDL (``reproduce fig5``);
- :mod:`.appb`: App. B.1 / Fig. 6, the sanity checks (``reproduce appB``);
- :mod:`.ablation`: gradients vs ablation (``reproduce ablation``);
- :mod:`.circuits`: circuits by semiring paths against EAP and EAP-IG, on a trained
  induction model, the fig2 model and MiniLM (``reproduce induction``,
  ``fig2-circuits``, ``minilm-circuits``);
- :mod:`.tasks`: the synthetic datasets, the agreement sentences, the App. B data and
  the models trained on them.

Examples::

    >>> from captum_semiring.reproductions import available
    >>> sorted(available())
    ['ablation', 'appB', 'fig2', 'fig2-circuits', 'fig4', 'fig5', 'induction', 'minilm-circuits']
"""

from .registry import (
    MODULES,
    REPRODUCTIONS,
    ReproduceError,
    ReproduceOptions,
    Reproduction,
    Runner,
    available,
    pick_scale,
    register_reproduction,
)

__all__ = [
    "MODULES",
    "REPRODUCTIONS",
    "Reproduction",
    "ReproduceError",
    "ReproduceOptions",
    "Runner",
    "available",
    "pick_scale",
    "register_reproduction",
]
