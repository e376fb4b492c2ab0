"""Where a semiring run spends its time: the profile behind each ratio of run.py.

    python benchmarks/profile_sweep.py minilm-32 max topk5
    python benchmarks/profile_sweep.py mlp-16x256 --top 5

For each semiring: the time of the recorded forward, of the sweep and of finalize
(medians after a warm-up) beside autograd's forward + backward, then the ATen ops
that take the most self time in the sweep (``torch.profiler``). Python work per
recorded op shows as the gap between the sweep time and the ops' total.
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
        graph.backward(out, sr)[source]  # warm-up: compiles kernels
        sweep_s = _median(lambda sr=sr: graph.backward(out, sr), repeats)
        res = graph.backward(out, sr)
        final_s = _median(lambda res=res: res[source], repeats)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as p:
            graph.backward(out, sr)
        events = sorted(p.key_averages(), key=lambda e: -e.self_cpu_time_total)
        ops_s = sum(e.self_cpu_time_total for e in events) / 1e6
        print(
            f"  {semiring:9s} sweep {sweep_s * 1e3:8.1f} ms ({sweep_s / base:6.2f}x "
            f"autograd), finalize {final_s * 1e3:.1f} ms; ATen self time "
            f"{ops_s * 1e3:.1f} ms under the profiler"
        )
        for e in events[:top]:
            share = e.self_cpu_time_total / 1e6 / max(ops_s, 1e-12)
            print(
                f"      {e.key:40s} {e.self_cpu_time_total / 1e3:9.1f} ms "
                f"{share:6.1%}  x{e.count}"
            )


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
