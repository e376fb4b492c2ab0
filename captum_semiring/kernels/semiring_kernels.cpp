// Native semiring contractions: max-times and top-k-times over a real matrix.
//
// Plain C ABI on raw contiguous buffers (no torch headers), so that building takes
// about a second; captum_semiring/kernels/native.py compiles this once and loads
// it with ctypes. Shapes: values (B, M, N), weights w (Bw, N, P) with Bw 1 or B,
// outputs (B, M, P). Threads split (batch, row block, column tile).
#include <cmath>
#include <cstdint>
#include <limits>

#ifdef CAPTUM_SEMIRING_MVEC
// glibc's vector math (libmvec) has SIMD forms of log; its header declares them
// only under -ffast-math, which would also drop inf and NaN semantics.
#pragma omp declare simd notinbranch
extern "C" float logf(float);
#pragma omp declare simd notinbranch
extern "C" double log(double);
#endif

namespace {

constexpr int64_t kRows = 4;   // output rows per tile: one w load serves them all
constexpr int64_t kCols = 16;  // output columns per tile, held in registers

template <typename T>
struct Tile {
    int64_t b, m0, p0, rows, cols;
};

// Max-times for one tile: hi = max_n max(w*pos, w*neg), lo = min_n min(...).
// For a path pos >= neg, so max(w*pos, w*neg) is w*pos for w >= 0 and w*neg
// otherwise: no sign test. A dead input (pos = -inf: no path) is skipped.
template <typename T, int64_t R, int64_t C>
void max_tile(const T* pos, const T* neg, const T* w, T* hi, T* lo, int64_t N,
              int64_t P, int64_t M, const Tile<T>& t) {
    const int64_t rows = R > 0 ? R : t.rows, cols = C > 0 ? C : t.cols;
    T acc_hi[kRows][kCols], acc_lo[kRows][kCols];
    for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) {
            acc_hi[i][j] = -std::numeric_limits<T>::infinity();
            acc_lo[i][j] = std::numeric_limits<T>::infinity();
        }
    const T* prow = pos + (t.b * M + t.m0) * N;
    const T* nrow = neg + (t.b * M + t.m0) * N;
    for (int64_t n = 0; n < N; ++n) {
        const T* wr = w + n * P + t.p0;
        for (int64_t i = 0; i < rows; ++i) {
            const T a = prow[i * N + n], c = nrow[i * N + n];
            if (a == -std::numeric_limits<T>::infinity()) continue;
#pragma omp simd
            for (int64_t j = 0; j < cols; ++j) {
                const T x = wr[j] * a, y = wr[j] * c;
                const T big = x > y ? x : y, small = x > y ? y : x;
                acc_hi[i][j] = acc_hi[i][j] > big ? acc_hi[i][j] : big;
                acc_lo[i][j] = acc_lo[i][j] < small ? acc_lo[i][j] : small;
            }
        }
    }
    for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) {
            const int64_t at = (t.b * M + t.m0 + i) * P + t.p0 + j;
            hi[at] = acc_hi[i][j];
            lo[at] = acc_lo[i][j];
        }
}

template <typename T>
void max_times(const T* pos, const T* neg, const T* w, T* hi, T* lo, int64_t B,
               int64_t M, int64_t N, int64_t P, int64_t w_batched, int threads) {
    const int64_t row_blocks = (M + kRows - 1) / kRows;
    const int64_t col_tiles = (P + kCols - 1) / kCols;
#pragma omp parallel for collapse(3) schedule(static) num_threads(threads)
    for (int64_t b = 0; b < B; ++b)
        for (int64_t rb = 0; rb < row_blocks; ++rb)
            for (int64_t ct = 0; ct < col_tiles; ++ct) {
                Tile<T> t{b, rb * kRows, ct * kCols, 0, 0};
                t.rows = M - t.m0 < kRows ? M - t.m0 : kRows;
                t.cols = P - t.p0 < kCols ? P - t.p0 : kCols;
                const T* wb = w + (w_batched ? b * N * P : 0);
                if (t.rows == kRows && t.cols == kCols)
                    max_tile<T, kRows, kCols>(pos, neg, wb, hi, lo, N, P, M, t);
                else
                    max_tile<T, 0, 0>(pos, neg, wb, hi, lo, N, P, M, t);
            }
}

// Insert c into the descending list best[0..k) if it beats the last.
template <typename T>
inline bool insert_desc(T* best, int64_t k, T c) {
    if (!(c > best[k - 1])) return false;  // NaN (no path) never enters
    int64_t j = k - 1;
    for (; j > 0 && best[j - 1] < c; --j) best[j] = best[j - 1];
    best[j] = c;
    return true;
}

template <typename T>
inline bool insert_asc(T* best, int64_t k, T c) {
    if (!(c < best[k - 1])) return false;
    int64_t j = k - 1;
    for (; j > 0 && best[j - 1] > c; --j) best[j] = best[j - 1];
    best[j] = c;
    return true;
}

// The k best of the chosen inputs' whole lists: each list times its weight is
// sorted, so a list stops at its first candidate that misses.
template <typename T, bool Largest>
void merge_lists(const T* values, const int32_t* chosen, const T* head, int64_t k,
                 int64_t plane, int64_t neg_offset, const T* w, int64_t P,
                 T* best) {
    const T none = Largest ? -std::numeric_limits<T>::infinity()
                           : std::numeric_limits<T>::infinity();
    for (int64_t r = 0; r < k; ++r) best[r] = none;
    for (int64_t r = 0; r < k && head[r * kCols] != none; ++r) {
        const int64_t n = chosen[r * kCols];
        const T wn = w[n * P];
        // Positive weights extend the same-sign list, negative ones the other.
        const bool same = (wn >= 0) == Largest;
        const T* src = values + n + (same ? 0 : neg_offset);
        for (int64_t s = 0; s < k; ++s) {
            const T c = wn * src[s * plane];
            if (!(Largest ? insert_desc(best, k, c) : insert_asc(best, k, c))) break;
        }
    }
}

// Top-k-times. values (2k, B, M, N): per element its k largest non-negative path
// values (descending, NaN = none) then its k most negative (ascending). out has
// the same layout over (B, M, P). Only the k inputs whose first (best) entries
// extend best can contribute to an output: a branch-free insertion network over
// the inputs finds them for a tile of outputs at once, then their lists merge.
template <typename T>
void top_k_times(const T* values, const T* w, T* out, int64_t k, int64_t B,
                 int64_t M, int64_t N, int64_t P, int64_t w_batched,
                 int threads) {
    const int64_t plane = B * M * N, out_plane = B * M * P;
    const int64_t col_tiles = (P + kCols - 1) / kCols;
    const T inf = std::numeric_limits<T>::infinity();
    const T nan = std::numeric_limits<T>::quiet_NaN();
#pragma omp parallel for collapse(3) schedule(static) num_threads(threads)
    for (int64_t b = 0; b < B; ++b)
        for (int64_t m = 0; m < M; ++m)
            for (int64_t ct = 0; ct < col_tiles; ++ct) {
                const int64_t p0 = ct * kCols;
                const int64_t cols = P - p0 < kCols ? P - p0 : kCols;
                // (rank, column) of the best heads and their inputs; k <= 64.
                T hi[64 * kCols], lo[64 * kCols];
                int32_t hi_at[64 * kCols], lo_at[64 * kCols];
                for (int64_t i = 0; i < k * kCols; ++i) {
                    hi[i] = -inf, lo[i] = inf, hi_at[i] = lo_at[i] = 0;
                }
                const T* wb = w + (w_batched ? b * N * P : 0) + p0;
                const T* row = values + (b * M + m) * N;
                for (int64_t n = 0; n < N; ++n) {
                    const T a = row[n], c = row[k * plane + n];
                    if (std::isnan(a) && std::isnan(c)) continue;
                    const T* wr = wb + n * P;
                    T up[kCols], down[kCols];
                    int32_t up_at[kCols], down_at[kCols];
#pragma omp simd
                    for (int64_t j = 0; j < kCols; ++j) {
                        const T wj = j < cols ? wr[j] : T(0);
                        up[j] = wj >= 0 ? wj * a : wj * c;
                        down[j] = wj >= 0 ? wj * c : wj * a;
                        up_at[j] = down_at[j] = static_cast<int32_t>(n);
                    }
                    // Most inputs beat no output's k-th best: skip the network.
                    int enters = 0;
                    const T* h_last = hi + (k - 1) * kCols;
                    const T* l_last = lo + (k - 1) * kCols;
#pragma omp simd reduction(| : enters)
                    for (int64_t j = 0; j < kCols; ++j)
                        enters |= (up[j] > h_last[j]) | (down[j] < l_last[j]);
                    if (!enters) continue;
                    for (int64_t r = 0; r < k; ++r) {
                        T* h = hi + r * kCols;
                        T* l = lo + r * kCols;
                        int32_t* h_at = hi_at + r * kCols;
                        int32_t* l_at = lo_at + r * kCols;
#pragma omp simd
                        for (int64_t j = 0; j < kCols; ++j) {
                            const bool th = up[j] > h[j], tl = down[j] < l[j];
                            const T hv = h[j], lv = l[j];
                            const int32_t hn = h_at[j], ln = l_at[j];
                            h[j] = th ? up[j] : hv;
                            h_at[j] = th ? up_at[j] : hn;
                            up[j] = th ? hv : up[j];
                            up_at[j] = th ? hn : up_at[j];
                            l[j] = tl ? down[j] : lv;
                            l_at[j] = tl ? down_at[j] : ln;
                            down[j] = tl ? lv : down[j];
                            down_at[j] = tl ? ln : down_at[j];
                        }
                    }
                }
                for (int64_t j = 0; j < cols; ++j) {
                    T best[64];
                    const int64_t at = (b * M + m) * P + p0 + j;
                    merge_lists<T, true>(row, hi_at + j, hi + j, k, plane, k * plane,
                                         wb + j, P, best);
                    for (int64_t r = 0; r < k; ++r)
                        out[r * out_plane + at] = std::isinf(best[r]) ? nan : best[r];
                    merge_lists<T, false>(row, lo_at + j, lo + j, k, plane, k * plane,
                                          wb + j, P, best);
                    for (int64_t r = 0; r < k; ++r)
                        out[(k + r) * out_plane + at] = std::isinf(best[r]) ? nan : best[r];
                }
            }
}

// ----- layer norm: per-row Jacobians built inside the contraction -----------------
// For normalized rows s (rows, n): K_oi = [o == i] - (1 + s_o s_i) / n, symmetric.
// out[r, o] reduces over the inputs i of row r; each i is a broadcast over o.
inline float log_of(float x) { return logf(x); }
inline double log_of(double x) { return log(x); }

template <typename T>
inline T ln_entry(const T* s, int64_t o, int64_t i, T si, T minus_inv_n) {
    const T off = (T(1) + s[o] * si) * minus_inv_n;
    return o == i ? off + T(1) : off;
}

// Max-times with the blocks; pos >= neg on a path, as in max_tile.
template <typename T>
void ln_max(const T* pos, const T* neg, const T* s, T* hi, T* lo, int64_t rows,
            int64_t n, int threads) {
    const T minus_inv_n = T(-1) / T(n), inf = std::numeric_limits<T>::infinity();
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t r = 0; r < rows; ++r) {
        const T *sr = s + r * n, *pr = pos + r * n, *nr = neg + r * n;
        T *h = hi + r * n, *l = lo + r * n;
        for (int64_t o = 0; o < n; ++o) h[o] = -inf, l[o] = inf;
        for (int64_t i = 0; i < n; ++i) {
            const T a = pr[i], c = nr[i], si = sr[i];
            if (a == -inf) continue;
#pragma omp simd
            for (int64_t o = 0; o < n; ++o) {
                const T k = ln_entry(sr, o, i, si, minus_inv_n);
                const T x = k * a, y = k * c;
                const T big = x > y ? x : y, small = x > y ? y : x;
                h[o] = h[o] > big ? h[o] : big;
                l[o] = l[o] < small ? l[o] : small;
            }
        }
    }
}

// Sum of x_i |K_oi| (x >= 0), and for the entropy pair also
// sum of |K_oi| (xe_i + x_i log |K_oi|) (xe may be null: the sum alone).
template <typename T>
void ln_sum(const T* x, const T* xe, const T* s, T* total, T* weighted,
            int64_t rows, int64_t n, int threads) {
    const T minus_inv_n = T(-1) / T(n);
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t r = 0; r < rows; ++r) {
        const T *sr = s + r * n, *xr = x + r * n;
        T* t = total + r * n;
        for (int64_t o = 0; o < n; ++o) t[o] = T(0);
        if (xe == nullptr) {
            for (int64_t i = 0; i < n; ++i) {
                const T xi = xr[i], si = sr[i];
                if (xi == T(0)) continue;
#pragma omp simd
                for (int64_t o = 0; o < n; ++o)
                    t[o] += xi * std::fabs(ln_entry(sr, o, i, si, minus_inv_n));
            }
            continue;
        }
        const T* er = xe + r * n;
        T* wt = weighted + r * n;
        for (int64_t o = 0; o < n; ++o) wt[o] = T(0);
        for (int64_t i = 0; i < n; ++i) {
            const T xi = xr[i], ei = er[i], si = sr[i];
            if (xi == T(0) && ei == T(0)) continue;
#pragma omp simd
            for (int64_t o = 0; o < n; ++o) {
                const T m = std::fabs(ln_entry(sr, o, i, si, minus_inv_n));
                const T m_log = m > T(0) ? m * log_of(m) : T(0);
                t[o] += xi * m;
                wt[o] += ei * m + xi * m_log;
            }
        }
    }
}

// Whether any of x[0..count) is NaN, or also infinite unless nan_only (x - x is
// NaN exactly for those).
template <typename T>
bool any_bad(const T* x, int64_t count, bool nan_only) {
    int bad = 0;
    if (nan_only) {
#pragma omp simd reduction(| : bad)
        for (int64_t i = 0; i < count; ++i) bad |= x[i] != x[i];
    } else {
#pragma omp simd reduction(| : bad)
        for (int64_t i = 0; i < count; ++i) bad |= !(x[i] - x[i] == T(0));
    }
    return bad != 0;
}

// |w| and |w| log |w| (0 at w = 0): the entropy semiring's edge terms.
template <typename T>
void magnitude_log(const T* w, T* magnitude, T* m_log, int64_t count) {
#pragma omp simd
    for (int64_t i = 0; i < count; ++i) {
        const T m = std::fabs(w[i]);
        magnitude[i] = m;
        m_log[i] = m > T(0) ? m * log_of(m) : T(0);
    }
}

}  // namespace

extern "C" {

void max_times_f32(const float* pos, const float* neg, const float* w, float* hi,
                   float* lo, int64_t B, int64_t M, int64_t N, int64_t P,
                   int64_t w_batched, int threads) {
    max_times(pos, neg, w, hi, lo, B, M, N, P, w_batched, threads);
}

void max_times_f64(const double* pos, const double* neg, const double* w,
                   double* hi, double* lo, int64_t B, int64_t M, int64_t N,
                   int64_t P, int64_t w_batched, int threads) {
    max_times(pos, neg, w, hi, lo, B, M, N, P, w_batched, threads);
}

void top_k_times_f32(const float* values, const float* w, float* out, int64_t k,
                     int64_t B, int64_t M, int64_t N, int64_t P,
                     int64_t w_batched, int threads) {
    top_k_times(values, w, out, k, B, M, N, P, w_batched, threads);
}

void top_k_times_f64(const double* values, const double* w, double* out,
                     int64_t k, int64_t B, int64_t M, int64_t N, int64_t P,
                     int64_t w_batched, int threads) {
    top_k_times(values, w, out, k, B, M, N, P, w_batched, threads);
}

void layer_norm_max_f32(const float* pos, const float* neg, const float* s,
                        float* hi, float* lo, int64_t rows, int64_t n, int threads) {
    ln_max(pos, neg, s, hi, lo, rows, n, threads);
}

void layer_norm_max_f64(const double* pos, const double* neg, const double* s,
                        double* hi, double* lo, int64_t rows, int64_t n,
                        int threads) {
    ln_max(pos, neg, s, hi, lo, rows, n, threads);
}

void layer_norm_sum_f32(const float* x, const float* xe, const float* s,
                        float* total, float* weighted, int64_t rows, int64_t n,
                        int threads) {
    ln_sum(x, xe, s, total, weighted, rows, n, threads);
}

void layer_norm_sum_f64(const double* x, const double* xe, const double* s,
                        double* total, double* weighted, int64_t rows, int64_t n,
                        int threads) {
    ln_sum(x, xe, s, total, weighted, rows, n, threads);
}

int any_bad_f32(const float* x, int64_t count, int nan_only) {
    return any_bad(x, count, nan_only != 0);
}

int any_bad_f64(const double* x, int64_t count, int nan_only) {
    return any_bad(x, count, nan_only != 0);
}

void magnitude_log_f32(const float* w, float* magnitude, float* m_log,
                       int64_t count) {
    magnitude_log(w, magnitude, m_log, count);
}

void magnitude_log_f64(const double* w, double* magnitude, double* m_log,
                       int64_t count) {
    magnitude_log(w, magnitude, m_log, count);
}

}  // extern "C"
