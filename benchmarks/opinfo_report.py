"""Print the OpInfo sweep's classes: counts, and each MISMATCH and CRASH op with
its reason (UNSUPPORTED ops too with ``--unsupported``).

Run by hand, not in CI::

    python benchmarks/opinfo_report.py            # first sample per op (CI mode)
    python benchmarks/opinfo_report.py --all      # every sample
    python benchmarks/opinfo_report.py --ops cumprod,sort -j 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import opinfo_sweep as sweep  # noqa: E402


def _run(args: tuple[str, bool]) -> tuple[str, str, str, float]:
    key, all_samples = args
    op = _OPS[key]
    outcome = sweep.classify(op, all_samples)
    return key, outcome.status, outcome.reason, outcome.seconds


_OPS: dict = {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--all", action="store_true", help="every sample, not the first"
    )
    parser.add_argument("--ops", default="", help="comma-separated OpInfo names")
    parser.add_argument("-j", type=int, default=1, help="worker processes")
    parser.add_argument("--unsupported", action="store_true", help="list those too")
    parser.add_argument("--slowest", type=int, default=0, help="print the N slowest")
    options = parser.parse_args()
    for op in sweep.swept_ops():
        _OPS[sweep.op_key(op)] = op
    keys = list(_OPS)
    if options.ops:
        wanted = set(options.ops.split(","))
        keys = [k for k in keys if k in wanted or k.split(".")[0] in wanted]
    jobs = [(k, options.all) for k in keys]
    start = time.perf_counter()
    if options.j > 1:
        with multiprocessing.get_context("fork").Pool(options.j) as pool:
            results = pool.map(_run, jobs, chunksize=1)
    else:
        results = [_run(job) for job in jobs]
    elapsed = time.perf_counter() - start
    counts = Counter(status for _, status, _, _ in results)
    listed = set(getattr(_expected(), "EXPECTED_UNSUPPORTED", {}))
    print(
        f"{len(results)} ops in {elapsed:.0f} s ({'all samples' if options.all else 'first sample'})"
    )
    for status in (
        sweep.MATCH,
        sweep.UNSUPPORTED,
        sweep.MISMATCH,
        sweep.CRASH,
        sweep.SKIP,
    ):
        print(f"  {status:12s} {counts.get(status, 0)}")
    shown = [sweep.MISMATCH, sweep.CRASH] + (
        [sweep.UNSUPPORTED] if options.unsupported else []
    )
    for status in shown:
        rows = [r for r in results if r[1] == status]
        if rows:
            print(f"\n{status}:")
            for key, _, reason, _ in rows:
                print(f"  {key}: {reason}")
    stale = sorted(k for k, s, _, _ in results if s == sweep.MATCH and k in listed)
    if stale and options.all:
        print(
            "\nlisted as expected-unsupported but MATCH (remove them):",
            ", ".join(stale),
        )
    if options.slowest:
        print("\nslowest:")
        for key, status, _, seconds in sorted(results, key=lambda r: -r[3])[
            : options.slowest
        ]:
            print(f"  {seconds:6.1f} s  {key} ({status})")


def _expected():  # type: ignore[no-untyped-def]
    try:
        import test_opinfo  # noqa: PLC0415

        return test_opinfo
    except ImportError:
        return None


if __name__ == "__main__":
    main()
