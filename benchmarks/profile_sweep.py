"""Where a semiring run spends its time: the profile behind each ratio of run.py.

    python benchmarks/profile_sweep.py minilm-32 max topk5
    python benchmarks/profile_sweep.py mlp-16x256 --top 5

For each semiring, medians after a warm-up: the whole run (record, sweep, finalize)
beside autograd's forward + backward; the first sweep of a recording, which builds
the local maps, beside a second sweep of the same recording, which reuses them; then
the ATen ops with the most self time in a whole run (``torch.profiler``). Python
work shows as the gap between a run's time and its ops' total.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
from run import MODELS, SEMIRINGS, _call, _load, _runners

import captum_semiring as cs


def _median(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def profile(name: str, semirings: list[str], repeats: int, top: int) -> None:
    model, inputs, layer = _load(name)
    source: Any = layer if layer is not None else inputs["x"]
    autograd, _ = _runners(model, inputs, layer)
    autograd()
    base = _median(autograd, repeats)
    with cs.record(source) as graph:
        out = _call(model, inputs)
    record_s = _median(lambda: _record(source, model, inputs), repeats)
    print(
        f"{name}: autograd (forward + grad) {base * 1e3:.1f} ms; recorded forward "
        f"{record_s * 1e3:.1f} ms ({record_s / base:.2f}x); "
        f"{len(graph.records)} recorded ops"
    )
    for semiring in semirings:
        sr = SEMIRINGS[semiring]
        _run(source, model, inputs, sr)  # warm-up: compiles kernels
        total_s = _median(lambda sr=sr: _run(source, model, inputs, sr), repeats)
        # The first sweep of a recording also builds its local maps (cached after).
        first_s = statistics.median(
            _first_sweep(source, model, inputs, sr) for _ in range(repeats)
        )
        again_s = _median(lambda sr=sr: graph.backward(out, sr), repeats)
        with torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU]
        ) as p:
            _run(source, model, inputs, sr)
        events = sorted(p.key_averages(), key=lambda e: -e.self_cpu_time_total)
        ops_s = sum(e.self_cpu_time_total for e in events) / 1e6
        print(
            f"  {semiring:9s} record + sweep + finalize {total_s * 1e3:8.1f} ms "
            f"({total_s / base:6.2f}x autograd): first sweep {first_s * 1e3:.1f} ms, "
            f"a second sweep of the same recording {again_s * 1e3:.1f} ms "
            f"(the difference builds the local maps); ATen self time "
            f"{ops_s * 1e3:.1f} ms under the profiler"
        )
        for e in events[:top]:
            share = e.self_cpu_time_total / 1e6 / max(ops_s, 1e-12)
            print(
                f"      {e.key:40s} {e.self_cpu_time_total / 1e3:9.1f} ms "
                f"{share:6.1%}  x{e.count}"
            )


def _run(source: Any, model: Any, inputs: dict, sr: Any) -> None:
    with cs.record(source) as graph:
        out = _call(model, inputs)
    graph.backward(out, sr)[source]


def _first_sweep(source: Any, model: Any, inputs: dict, sr: Any) -> float:
    with cs.record(source) as graph:
        out = _call(model, inputs)
    start = time.perf_counter()
    graph.backward(out, sr)
    return time.perf_counter() - start


def _record(source: Any, model: Any, inputs: dict) -> None:
    with cs.record(source):
        _call(model, inputs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", choices=list(MODELS))
    parser.add_argument("semirings", nargs="*", default=list(SEMIRINGS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--top", type=int, default=6)
    args = parser.parse_args()
    profile(args.model, args.semirings, args.repeats, args.top)


if __name__ == "__main__":
    main()
