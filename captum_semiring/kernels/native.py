"""Native CPU kernels: ``semiring_kernels.cpp``, built once and cached.

The source has a plain C interface on raw buffers and no torch headers, so it
compiles in about a second with the system's C++ compiler; the library is cached
under ``$CAPTUM_SEMIRING_CACHE`` (default ``~/.cache/captum_semiring``), keyed by
the source, the compiler flags and the CPU, and loaded with :mod:`ctypes` (which
releases the GIL during a call). ``make install`` builds it; without a compiler, or
with ``CAPTUM_SEMIRING_NATIVE=0``, the callers fall back to compiled or eager torch.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("semiring_kernels.cpp")
FLAGS = [
    "-O3",
    "-march=native",
    "-fopenmp",
    "-fno-math-errno",
    # no FP traps: lets GCC if-convert and vectorize loops with selects and calls
    # (the libmvec log, whose last bit can differ); infinities and NaNs as before
    "-fno-trapping-math",
    "-shared",
    "-fPIC",
    "-std=c++17",
]
if platform.machine().lower() in ("x86_64", "amd64"):
    # GCC keeps to 256-bit vectors by default even where AVX-512 exists; the
    # max-times tiles run about 1.7x faster with 512 (no effect without AVX-512).
    FLAGS.append("-mprefer-vector-width=512")
#: Vectorized log from glibc's libmvec, where the system has it.
VECTOR_MATH = ["-DCAPTUM_SEMIRING_MVEC", "-lmvec"]

_P, _I, _THREADS = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
#: Each entry point's arguments (pointers, then sizes, then a thread count); every
#: one exists for float32 (``_f32``) and float64 (``_f64``).
_SIGNATURES = {
    "max_times": [_P] * 5 + [_I] * 6 + [_THREADS],
    "top_k_times": [_P] * 3 + [_I] * 6 + [_THREADS],
    "layer_norm_max": [_P] * 5 + [_I] * 2 + [_THREADS],
    "layer_norm_sum": [_P] * 5 + [_I] * 2 + [_THREADS],
    "layer_norm_top_k": [_P] * 3 + [_I] * 3 + [_THREADS],
    "magnitude_log": [_P] * 3 + [_I, _THREADS],
    "merge_best": [_P] * 3 + [_I] * 3 + [_THREADS],  # the last size: largest
    "any_bad": [_P, _I, ctypes.c_int],  # the last: NaN only
}

_library: ctypes.CDLL | None = None
_tried = False


def enabled() -> bool:
    """Whether native kernels may be used (``CAPTUM_SEMIRING_NATIVE``, default on)."""
    return os.environ.get("CAPTUM_SEMIRING_NATIVE", "1") not in ("0", "false", "no")


def _cpu_key() -> str:
    """The CPU model and flags: ``-march=native`` code runs only where it was built."""
    try:
        info = Path("/proc/cpuinfo").read_text()
        return next(
            (line for line in info.splitlines() if line.startswith("flags")), ""
        )
    except OSError:
        return platform.processor()


def library_path() -> Path:
    """Where the built library is cached."""
    key = hashlib.sha256(
        SOURCE.read_bytes() + " ".join(FLAGS).encode() + _cpu_key().encode()
    ).hexdigest()[:16]
    default = Path.home() / ".cache" / "captum_semiring"
    root = Path(os.environ.get("CAPTUM_SEMIRING_CACHE") or default)
    return root / f"semiring_kernels-{key}.so"


def build() -> Path:
    """Compile the kernels into the cache (atomically: parallel processes may race)."""
    target = library_path()
    if target.exists():
        return target
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise RuntimeError("no C++ compiler (g++ or c++) found")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        command = [compiler, *FLAGS, str(SOURCE), "-o", str(built)]
        try:
            subprocess.run(command + VECTOR_MATH, check=True, capture_output=True)
        except subprocess.CalledProcessError:
            subprocess.run(command, check=True, capture_output=True, text=True)
        os.replace(built, target)
    return target


def _load() -> ctypes.CDLL | None:
    global _library, _tried
    if not _tried:
        _tried = True
        try:
            lib = ctypes.CDLL(str(build()))
        except (OSError, RuntimeError, subprocess.CalledProcessError) as err:
            detail = getattr(err, "stderr", "") or err
            warnings.warn(
                f"native semiring kernels unavailable ({detail}); using torch kernels",
                stacklevel=3,
            )
            return None
        for name, argtypes in _SIGNATURES.items():
            for suffix in ("f32", "f64"):
                getattr(lib, f"{name}_{suffix}").argtypes = argtypes
        for name in ("any_bad", "max_times", "top_k_times"):  # these return a flag
            for suffix in ("f32", "f64"):
                getattr(lib, f"{name}_{suffix}").restype = ctypes.c_int
        _library = lib
    return _library


#: The most paths per element the native top-k kernel keeps (its buffers' size).
MAX_K = 64

_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


def available(*tensors: Tensor) -> bool:
    """Whether the native kernels can run on these operands (CPU, float32/64)."""
    return (
        enabled()
        and all(t.device.type == "cpu" and t.dtype in _SUFFIX for t in tensors)
        and len({t.dtype for t in tensors}) == 1
        and _load() is not None
    )


def _ptr(t: Tensor) -> int:
    return t.data_ptr()


def _entry(name: str, dtype: torch.dtype) -> Any:
    """The library's ``name`` for ``dtype`` (the callers checked :func:`available`)."""
    lib = _load()
    assert lib is not None
    return getattr(lib, f"{name}_{_SUFFIX[dtype]}")


#: Problems (m·n·p) below this run on one thread: waking a second costs more.
PARALLEL_THRESHOLD = 1 << 15


def _threads(size: int) -> int:
    return torch.get_num_threads() if size >= PARALLEL_THRESHOLD else 1


def max_times(pos: Tensor, neg: Tensor, w: Tensor) -> tuple[Tensor, Tensor] | None:
    """Max-times of ``pos, neg`` (B, M, N) with ``w`` (1 or B, N, P); ``pos, neg``
    contiguous, ``w`` contiguous or the transpose of a contiguous tensor. None where a
    value is NaN or a weight is not finite (the kernel checks them as it reads them):
    its loops would drop what torch's reductions keep."""
    (b, m, n), p = pos.shape, w.shape[-1]
    transposed = not w.is_contiguous() and w.mT.is_contiguous()
    w = w.mT if transposed else w.contiguous()  # the buffer as it is stored
    hi = pos.new_empty((b, m, p))
    lo = pos.new_empty((b, m, p))
    bad = _entry("max_times", pos.dtype)(
        _ptr(pos),
        _ptr(neg),
        _ptr(w),
        _ptr(hi),
        _ptr(lo),
        b,
        m,
        n,
        p,
        int(w.shape[0] != 1),
        int(transposed),
        _threads(b * m * n * p),
    )
    return None if bad else (hi, lo)


def top_k_times(values: Tensor, w: Tensor, k: int) -> Tensor | None:
    """Top-k-times of ``values`` (2k, B, M, N) with ``w`` (1 or B, N, P), contiguous;
    the kernel reads each input's 2k values side by side. None where a weight is not
    finite (checked as it is read)."""
    assert k <= MAX_K, k
    _, b, m, n = values.shape
    p = w.shape[-1]
    lists = values.permute(1, 2, 3, 0).contiguous()  # each input's 2k values together
    out = values.new_empty((2 * k, b, m, p))
    bad = _entry("top_k_times", values.dtype)(
        _ptr(lists),
        _ptr(w),
        _ptr(out),
        k,
        b,
        m,
        n,
        p,
        int(w.shape[0] != 1),
        _threads(b * m * n * p),
    )
    return None if bad else out


def layer_norm_times(kind: str, s: Tensor, *values: Tensor) -> tuple[Tensor, ...]:
    """:func:`captum_semiring.kernels.layer_norm_times` for rows ``s`` (rows, n):
    ``"max"`` (``pos, neg``), ``"sum"`` (``x``) or ``"entropy"`` (``x, e``)."""
    rows, n = s.shape
    s = s.contiguous()
    plain = [v.contiguous() for v in values]  # kept alive through the call
    out = (s.new_empty((rows, n)), s.new_empty((rows, n)))
    if kind == "max":
        fn = _entry("layer_norm_max", s.dtype)
        inputs: list[int | None] = [_ptr(plain[0]), _ptr(plain[1])]
    else:  # the sum alone passes no second input
        fn = _entry("layer_norm_sum", s.dtype)
        inputs = [_ptr(plain[0]), _ptr(plain[1]) if kind == "entropy" else None]
    fn(*inputs, _ptr(s), _ptr(out[0]), _ptr(out[1]), rows, n, _threads(rows * n * n))
    return out if kind != "sum" else out[:1]


def layer_norm_top_k(values: Tensor, s: Tensor, k: int) -> Tensor:
    """Top-k-times of ``values`` (2k, rows, n) with each row's layer-norm block of
    ``s`` (rows, n), the blocks built inside the kernel."""
    assert k <= MAX_K, k
    lists, s = values.permute(1, 2, 0).contiguous(), s.contiguous()
    rows, n = s.shape
    out = values.new_empty(values.shape)
    _entry("layer_norm_top_k", s.dtype)(
        _ptr(lists), _ptr(s), _ptr(out), k, rows, n, _threads(rows * n * n)
    )
    return out


def merge_best(a: Tensor, b: Tensor, largest: bool) -> Tensor:
    """Per element, the best ``k`` of two sorted path lists ``a, b`` (k, ...)."""
    a, b = a.contiguous(), b.contiguous()
    out = torch.empty_like(a)
    k, count = a.shape[0], a[0].numel()
    _entry("merge_best", a.dtype)(
        _ptr(a), _ptr(b), _ptr(out), k, count, int(largest), _threads(16 * k * count)
    )
    return out


def any_bad(t: Tensor, nan_only: bool = False) -> bool:
    """Whether ``t`` has a NaN, or an infinity unless ``nan_only`` (one pass, no
    temporaries)."""
    t = t.contiguous()
    return bool(_entry("any_bad", t.dtype)(_ptr(t), t.numel(), int(nan_only)))


def magnitude_log(w: Tensor) -> tuple[Tensor, Tensor]:
    """``|w|`` and ``|w| log |w|`` (0 where ``w`` is 0), in one pass."""
    w = w.contiguous()
    magnitude, m_log = torch.empty_like(w), torch.empty_like(w)
    # a log costs about as much as 16 multiply-max steps
    _entry("magnitude_log", w.dtype)(
        _ptr(w), _ptr(magnitude), _ptr(m_log), w.numel(), _threads(16 * w.numel())
    )
    return magnitude, m_log
