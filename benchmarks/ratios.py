"""One model's ratios to autograd, quickly: the runs of run.py (record + sweep +
finalize over forward + ``torch.autograd.grad``), the median of 7 after a warm-up,
in a normal process, with no memory probe and no Captum.

    python benchmarks/ratios.py minilm-32 sum max topk5

To compare two checkouts on the same day, run it once from each, back to back: with
the other checkout first on ``PYTHONPATH`` it imports that one's package.
"""

from __future__ import annotations

import sys
from typing import Any

from run import MODELS, SEMIRINGS, _load, _median_time, _runners


def _median(fn: Any) -> float:
    fn()  # warm-up
    return _median_time(fn, 7)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in MODELS or not set(argv[1:]) <= set(SEMIRINGS):
        print(__doc__)
        print(f"models: {', '.join(MODELS)}; semirings: {', '.join(SEMIRINGS)}")
        return 2
    model, inputs, layer = _load(argv[0])
    autograd, ours = _runners(model, inputs, layer)
    base = _median(autograd)
    cells = [f"{s} {_median(ours(s)) / base:.2f}x" for s in argv[1:]]
    print(f"{argv[0]}: autograd {base * 1e3:.1f} ms; " + "  ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
