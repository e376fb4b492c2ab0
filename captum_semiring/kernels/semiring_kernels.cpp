// Native semiring contractions: max-times and top-k-times with a real matrix or
// with each row's layer-norm block, the layer-norm sum and entropy pair, and the
// entropy semiring's |w| log |w|.
//
// Plain C ABI on raw contiguous buffers (no torch headers), so that building takes
// about a second; captum_semiring/kernels/native.py compiles this once and loads
// it with ctypes. Matrix shapes: values (B, M, N), weights w (Bw, N, P) with Bw 1
// or B, outputs (B, M, P); threads split the output tiles.
#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <vector>
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

struct Tile {
    int64_t b, m0, p0, rows, cols;
};

// Whether x is infinite or NaN (x - x is NaN exactly then).
template <typename T>
inline bool non_finite(T x) { return !(x - x == T(0)); }

// Max-times for one tile: hi = max_n max(w*pos, w*neg), lo = min_n min(...).
// For a path pos >= neg, so max(w*pos, w*neg) is w*pos for w >= 0 and w*neg
// otherwise: no sign test. A dead input (pos = -inf: no path) is skipped.
// Returns whether a NaN value or (with check_w) a non-finite weight was read:
// checked here, a separate pass over w would cost a quarter of a sweep.
// The tile's weights are ws[n * ldw + j]: its column strip of w.
template <typename T, int64_t R, int64_t C>
bool max_tile(const T* pos, const T* neg, const T* ws, int64_t ldw, T* hi, T* lo,
              int64_t N, int64_t P, int64_t M, const Tile& t, bool check_w) {
    const int64_t rows = R > 0 ? R : t.rows, cols = C > 0 ? C : t.cols;
    T acc_hi[kRows][kCols], acc_lo[kRows][kCols];
    for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) {
            acc_hi[i][j] = -std::numeric_limits<T>::infinity();
            acc_lo[i][j] = std::numeric_limits<T>::infinity();
        }
    const T* prow = pos + (t.b * M + t.m0) * N;
    const T* nrow = neg + (t.b * M + t.m0) * N;
    // The checks run before the tile's loop (the strip is then in cache): inside
    // it they would halve its speed.
    int bad = 0;
    if (check_w)
        for (int64_t n = 0; n < N; ++n) {
            const T* wr = ws + n * ldw;
#pragma omp simd reduction(| : bad)
            for (int64_t j = 0; j < cols; ++j) bad |= non_finite(wr[j]);
        }
    if (t.p0 == 0) {  // each row's values once, in its first column tile
#pragma omp simd reduction(| : bad)
        for (int64_t i = 0; i < rows * N; ++i)
            bad |= (prow[i] != prow[i]) | (nrow[i] != nrow[i]);
    }
    for (int64_t n = 0; n < N; ++n) {
        const T* wr = ws + n * ldw;
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
    return bad != 0;
}

// One tile of max_times, by its shape.
template <typename T>
bool max_tile_any(const T* pos, const T* neg, const T* ws, int64_t ldw, T* hi, T* lo,
                  int64_t N, int64_t P, int64_t M, const Tile& t, bool check_w) {
    if (t.rows == kRows && t.cols == kCols)
        return max_tile<T, kRows, kCols>(pos, neg, ws, ldw, hi, lo, N, P, M, t, check_w);
    return max_tile<T, 0, 0>(pos, neg, ws, ldw, hi, lo, N, P, M, t, check_w);
}

// w is (Bw, N, P), or with w_transposed stored as (Bw, P, N) (a transposed view,
// as GPT-2's Conv1D weights arrive): then each task gathers one column strip into
// a buffer once and serves every row block from it, instead of the caller copying
// the whole weight.
template <typename T>
int max_times(const T* pos, const T* neg, const T* w, T* hi, T* lo, int64_t B,
              int64_t M, int64_t N, int64_t P, int64_t w_batched, int64_t w_transposed,
              int threads) {
    const int64_t row_blocks = (M + kRows - 1) / kRows;
    const int64_t col_tiles = (P + kCols - 1) / kCols;
    int bad = 0;
    if (w_transposed) {
#pragma omp parallel num_threads(threads) reduction(| : bad)
        {
            std::vector<T> strip(N * kCols);
#pragma omp for collapse(2) schedule(static)
            for (int64_t b = 0; b < B; ++b)
                for (int64_t ct = 0; ct < col_tiles; ++ct) {
                    const int64_t p0 = ct * kCols, cols = std::min(kCols, P - p0);
                    const T* wb = w + (w_batched ? b * N * P : 0);
                    for (int64_t j = 0; j < cols; ++j) {
                        const T* column = wb + (p0 + j) * N;
                        for (int64_t n = 0; n < N; ++n) strip[n * kCols + j] = column[n];
                    }
                    for (int64_t rb = 0; rb < row_blocks; ++rb) {
                        Tile t{b, rb * kRows, p0, std::min(kRows, M - rb * kRows), cols};
                        const bool check_w = rb == 0 && (w_batched || b == 0);
                        bad |= max_tile_any(pos, neg, strip.data(), kCols, hi, lo, N, P,
                                            M, t, check_w);
                    }
                }
        }
        return bad;
    }
    // Row blocks innermost: one column strip of w serves all rows while it is in
    // cache (w of a 384 x 1536 linear does not fit in L2).
#pragma omp parallel for collapse(3) schedule(static) num_threads(threads) \
    reduction(| : bad)
    for (int64_t b = 0; b < B; ++b)
        for (int64_t ct = 0; ct < col_tiles; ++ct)
            for (int64_t rb = 0; rb < row_blocks; ++rb) {
                Tile t{b, rb * kRows, ct * kCols, 0, 0};
                t.rows = M - t.m0 < kRows ? M - t.m0 : kRows;
                t.cols = P - t.p0 < kCols ? P - t.p0 : kCols;
                const T* wb = w + (w_batched ? b * N * P : 0);
                // Each weight is checked once: in the first row block of its batch.
                const bool check_w = rb == 0 && (w_batched || b == 0);
                bad |= max_tile_any(pos, neg, wb + t.p0, P, hi, lo, N, P, M, t, check_w);
            }
    return bad;
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

constexpr int64_t kBlock = 256;  // top-k: output columns per tile, a row of w
constexpr int64_t kMaxK = 64;     // the most paths a list keeps (native.MAX_K)

// Weights of a top-k tile: a dense matrix w (N, P) ...
template <typename T>
struct DenseWeights {
    const T* w;
    int64_t P;
    // Columns p0 .. p0 + width of row n, 0 past the last: contiguous reads, so
    // the prefetcher follows (a column tile of a wide w would miss on every row).
    void row(int64_t n, int64_t p0, int64_t cols, int64_t width, T* out) const {
        const T* r = w + n * P + p0;
#pragma omp simd
        for (int64_t j = 0; j < width; ++j) out[j] = j < cols ? r[j] : T(0);
    }
};

// ... or one row's layer-norm block, built on the fly (see ln_entry below).
template <typename T>
inline T ln_entry(const T* s, int64_t o, int64_t i, T si, T minus_inv_n);

template <typename T>
struct LayerNormWeights {
    const T* s;  // the row's normalized values (n,)
    T minus_inv_n;
    void row(int64_t n, int64_t p0, int64_t cols, int64_t width, T* out) const {
        const T sn = s[n];
#pragma omp simd
        for (int64_t j = 0; j < width; ++j)
            out[j] = j < cols ? ln_entry(s, p0 + j, n, sn, minus_inv_n) : T(0);
    }
};

constexpr int64_t kGroups = 2;  // top-k pass 1: groups of inputs per path kept
constexpr int64_t kTopKRows = 4;  // top-k: rows per tile, one w row read serves all

// Per-thread scratch of a top-k tile, sized for k once, per row of the tile.
template <typename T>
struct TopKScratch {
    std::vector<T> group_hi, group_lo;  // (row, group, column): each group's best head
    std::vector<T> rank_hi, rank_lo;    // (rank, column): the best group heads
    std::vector<T> best_hi, best_lo;    // (row, column, rank): the best paths so far
    std::vector<T> floor_hi, floor_lo;  // (row, column): what a head must beat
    explicit TopKScratch(int64_t k)
        : group_hi(kTopKRows * kGroups * k * kBlock),
          group_lo(kTopKRows * kGroups * k * kBlock), rank_hi(k * kBlock),
          rank_lo(k * kBlock), best_hi(kTopKRows * kBlock * k),
          best_lo(kTopKRows * kBlock * k), floor_hi(kTopKRows * kBlock),
          floor_lo(kTopKRows * kBlock) {}
};

// Top-k-times for the outputs p0 .. p0 + cols of ``rows`` rows that share their
// weights (one w row read serves them all). ``lists`` holds each row's inputs
// (rows ``row_stride`` apart), each input as 2k values: its k largest non-negative
// path values (descending, NaN = none), then its k most negative (ascending).
// Each list times one weight stays sorted, so an input whose first entry ("head")
// extends worse than an output's k-th best path so far cannot contribute to it.
//
// Pass 1 splits the inputs into G = 2k groups (n mod G) and keeps each group's
// best head per output, as max-times does: those are G distinct heads, so the
// k-th best of them bounds the k-th best head from below. Pass 2 merges the list
// of every input whose head reaches that bound, or, once it is higher, beats the
// k-th best path found so far: on MiniLM about 6 of 384 inputs per output and
// side (8.4 with k groups, 5.4 with 4k). Each pass costs about one max-times,
// the merges about as much again. Row r's outputs go to out + r * P (planes
// out_plane apart). Returns whether (with check_w) a non-finite weight was read.
template <typename T, typename W>
bool top_k_tile(const T* lists, int64_t row_stride, int64_t rows, int64_t k,
                int64_t N, const W& weights, int64_t p0, int64_t cols, T* out,
                int64_t P, int64_t out_plane, TopKScratch<T>& scratch, bool check_w) {
    const T inf = std::numeric_limits<T>::infinity();
    const T nan = std::numeric_limits<T>::quiet_NaN();
    const int64_t stride = 2 * k;
    const int64_t width = (cols + 15) / 16 * 16;  // whole vectors; 0 past cols
    const int64_t groups = kGroups * k, group_plane = groups * width;
    T *g_hi = scratch.group_hi.data(), *g_lo = scratch.group_lo.data();
    T *f_hi = scratch.floor_hi.data(), *f_lo = scratch.floor_lo.data();
    std::fill(g_hi, g_hi + rows * group_plane, -inf);
    std::fill(g_lo, g_lo + rows * group_plane, inf);
    // Whether an input has a path in no row: its weight row is not needed.
    auto dead_in_all = [&](int64_t n) {
        for (int64_t r = 0; r < rows; ++r) {
            const T* list = lists + r * row_stride + n * stride;
            if (!std::isnan(list[0]) || !std::isnan(list[k])) return false;
        }
        return true;
    };
    alignas(64) T wv[kBlock];
    int bad = 0;
    for (int64_t n = 0; n < N; ++n) {
        const bool unused = dead_in_all(n);
        if (unused && !check_w) continue;
        weights.row(n, p0, cols, width, wv);
        if (check_w) {
#pragma omp simd reduction(| : bad)
            for (int64_t j = 0; j < width; ++j) bad |= non_finite(wv[j]);
            if (unused) continue;
        }
        for (int64_t r = 0; r < rows; ++r) {
            const T a = lists[r * row_stride + n * stride];
            const T c = lists[r * row_stride + n * stride + k];
            T* h = g_hi + r * group_plane + (n % groups) * width;
            T* l = g_lo + r * group_plane + (n % groups) * width;
#pragma omp simd
            for (int64_t j = 0; j < width; ++j) {
                const T u = wv[j] >= 0 ? wv[j] * a : wv[j] * c;
                const T d = wv[j] >= 0 ? wv[j] * c : wv[j] * a;
                // NaN (no path) compares false: it never becomes a group's best
                h[j] = u > h[j] ? u : h[j];
                l[j] = d < l[j] ? d : l[j];
            }
        }
    }
    // Each row's k best group heads per output, by an insertion network across
    // the outputs (rank r becomes the middle of old r - 1, new, old r); an empty
    // group (-inf) leaves the floor at -inf, so every input may enter.
    T *r_hi = scratch.rank_hi.data(), *r_lo = scratch.rank_lo.data();
    for (int64_t row = 0; row < rows; ++row) {
        std::fill(r_hi, r_hi + k * width, -inf);
        std::fill(r_lo, r_lo + k * width, inf);
        for (int64_t g = 0; g < groups; ++g) {
            const T* gh = g_hi + row * group_plane + g * width;
            const T* gl = g_lo + row * group_plane + g * width;
            for (int64_t r = k - 1; r > 0; --r) {
                T *h = r_hi + r * width, *l = r_lo + r * width;
#pragma omp simd
                for (int64_t j = 0; j < width; ++j) {
                    const T h_in = gh[j] < h[j - width] ? gh[j] : h[j - width];
                    const T l_in = gl[j] > l[j - width] ? gl[j] : l[j - width];
                    h[j] = h[j] > h_in ? h[j] : h_in;
                    l[j] = l[j] < l_in ? l[j] : l_in;
                }
            }
#pragma omp simd
            for (int64_t j = 0; j < width; ++j) {
                r_hi[j] = r_hi[j] > gh[j] ? r_hi[j] : gh[j];
                r_lo[j] = r_lo[j] < gl[j] ? r_lo[j] : gl[j];
            }
        }
        // Pass 2 compares strictly, so that heads tied with the k-th best path
        // (zeros, often) are skipped; the bound moves one step out to keep the
        // heads at it.
        T *fh = f_hi + row * width, *fl = f_lo + row * width;
        for (int64_t j = 0; j < cols; ++j) {
            fh[j] = std::nextafter(r_hi[(k - 1) * width + j], -inf);
            fl[j] = std::nextafter(r_lo[(k - 1) * width + j], inf);
        }
        for (int64_t j = cols; j < width; ++j) fh[j] = inf, fl[j] = -inf;
    }
    T *b_hi = scratch.best_hi.data(), *b_lo = scratch.best_lo.data();
    std::fill(b_hi, b_hi + rows * width * k, -inf);
    std::fill(b_lo, b_lo + rows * width * k, inf);
    // One byte per output: bit 0 for the non-negative list, bit 1 for the other.
    alignas(64) uint8_t hit[kBlock];
    for (int64_t n = 0; n < N; ++n) {
        if (dead_in_all(n)) continue;
        weights.row(n, p0, cols, width, wv);
        for (int64_t row = 0; row < rows; ++row) {
            const T* list = lists + row * row_stride + n * stride;
            const T a = list[0], c = list[k];
            T *fh = f_hi + row * width, *fl = f_lo + row * width;
#pragma omp simd
            for (int64_t j = 0; j < width; ++j) {
                const T up = wv[j] >= 0 ? wv[j] * a : wv[j] * c;
                const T down = wv[j] >= 0 ? wv[j] * c : wv[j] * a;
                hit[j] = static_cast<uint8_t>((up > fh[j]) | ((down < fl[j]) << 1));
            }
            // The bytes packed into one bit per output and side, 64 outputs at a
            // time, so that the loops below run once per hit, with no branch per
            // output.
            for (int64_t base = 0; base < width; base += 64) {
                uint64_t mask[2] = {0, 0};
                for (int64_t q = 0; q < 64 && base + q < width; q += 8) {
                    uint64_t bytes;
                    std::memcpy(&bytes, hit + base + q, 8);
                    for (int side = 0; side < 2; ++side)
                        mask[side] |= ((((bytes >> side) & 0x0101010101010101ULL) *
                                        0x0102040810204080ULL) >> 56) << q;
                }
                for (int side = 0; side < 2; ++side)
                    for (uint64_t m = mask[side]; m != 0; m &= m - 1) {
                        const int64_t j = base + __builtin_ctzll(m);
                        const bool largest = side == 0;
                        const T wn = wv[j];
                        // Positive weights extend the same-sign list, negative
                        // the other.
                        const T* src = list + ((wn >= 0) == largest ? 0 : k);
                        T* best = (largest ? b_hi : b_lo) + (row * width + j) * k;
                        for (int64_t r = 0; r < k; ++r) {
                            const T cand = wn * src[r];
                            if (!(largest ? insert_desc(best, k, cand)
                                          : insert_asc(best, k, cand)))
                                break;
                        }
                        // A head not above the k-th best path cannot enter any more.
                        if (largest)
                            fh[j] = best[k - 1] > fh[j] ? best[k - 1] : fh[j];
                        else
                            fl[j] = best[k - 1] < fl[j] ? best[k - 1] : fl[j];
                    }
            }
        }
    }
    for (int64_t row = 0; row < rows; ++row)
        for (int64_t j = 0; j < cols; ++j)
            for (int side = 0; side < 2; ++side) {
                const T* best = (side == 0 ? b_hi : b_lo) + (row * width + j) * k;
                T* dst = out + row * P + (side == 0 ? 0 : k) * out_plane + p0 + j;
                for (int64_t r = 0; r < k; ++r)
                    dst[r * out_plane] = std::isinf(best[r]) ? nan : best[r];
            }
    return bad != 0;
}

// Top-k-times of lists (B, M, N, 2k) with w (Bw, N, P); out (2k, B, M, P).
template <typename T>
int top_k_times(const T* lists, const T* w, T* out, int64_t k, int64_t B,
                int64_t M, int64_t N, int64_t P, int64_t w_batched, int threads) {
    const int64_t out_plane = B * M * P, col_tiles = (P + kBlock - 1) / kBlock;
    const int64_t row_blocks = (M + kTopKRows - 1) / kTopKRows;
    int bad = 0;
#pragma omp parallel num_threads(threads) reduction(| : bad)
    {
        TopKScratch<T> scratch(k);
#pragma omp for collapse(3) schedule(static)
        for (int64_t b = 0; b < B; ++b)
            for (int64_t ct = 0; ct < col_tiles; ++ct)
                for (int64_t rb = 0; rb < row_blocks; ++rb) {
                    const int64_t p0 = ct * kBlock, m = rb * kTopKRows;
                    const DenseWeights<T> weights{w + (w_batched ? b * N * P : 0), P};
                    const bool check_w = m == 0 && (w_batched || b == 0);
                    bad |= top_k_tile(lists + (b * M + m) * N * 2 * k, N * 2 * k,
                                      std::min(kTopKRows, M - m), k, N, weights, p0,
                                      std::min(P - p0, kBlock), out + (b * M + m) * P,
                                      P, out_plane, scratch, check_w);
                }
    }
    return bad;
}

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

// Top-k-times with each row's layer-norm block: lists (rows, n, 2k), out
// (2k, rows, n).
template <typename T>
void ln_top_k(const T* lists, const T* s, T* out, int64_t k, int64_t rows,
              int64_t n, int threads) {
    const int64_t col_tiles = (n + kBlock - 1) / kBlock;
#pragma omp parallel num_threads(threads)
    {
        TopKScratch<T> scratch(k);
#pragma omp for collapse(2) schedule(static)
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t ct = 0; ct < col_tiles; ++ct) {
                const int64_t p0 = ct * kBlock;
                const LayerNormWeights<T> weights{s + r * n, T(-1) / T(n)};
                top_k_tile(lists + r * n * 2 * k, 0, 1, k, n, weights, p0,
                           std::min(n - p0, kBlock), out + r * n, n, rows * n,
                           scratch, false);
            }
    }
}

// TopK's plus: per element, the k best of two sorted path lists a and b (k,
// count), into out (k, count); descending (largest) or ascending, NaN (no path)
// last, and last too any infinity, as keep_best in kernels/__init__.py. The k best
// of two sorted lists are max(a_r, b_{k-1-r}); an odd-even transposition network
// sorts them, all branch-free across elements.
template <typename T>
void merge_best(const T* a, const T* b, T* out, int64_t k, int64_t count,
                bool largest, int threads) {
    const T worst = largest ? -std::numeric_limits<T>::infinity()
                            : std::numeric_limits<T>::infinity();
    const T nan = std::numeric_limits<T>::quiet_NaN();
    constexpr int64_t kLanes = 16;
    const int64_t blocks = (count + kLanes - 1) / kLanes;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t blk = 0; blk < blocks; ++blk) {
        const int64_t j0 = blk * kLanes, lanes = std::min(kLanes, count - j0);
        alignas(64) T v[kMaxK][kLanes];
        for (int64_t r = 0; r < k; ++r) {
            const T *x = a + r * count + j0, *y = b + (k - 1 - r) * count + j0;
#pragma omp simd
            for (int64_t j = 0; j < kLanes; ++j) {
                const T p = j < lanes && !std::isnan(x[j]) ? x[j] : worst;
                const T q = j < lanes && !std::isnan(y[j]) ? y[j] : worst;
                v[r][j] = largest ? (p > q ? p : q) : (p < q ? p : q);
            }
        }
        for (int64_t round = 0; round < k; ++round)
            for (int64_t r = round % 2; r + 1 < k; r += 2)
#pragma omp simd
                for (int64_t j = 0; j < kLanes; ++j) {
                    const T p = v[r][j], q = v[r + 1][j];
                    const bool keep = largest ? p >= q : p <= q;
                    v[r][j] = keep ? p : q;
                    v[r + 1][j] = keep ? q : p;
                }
        for (int64_t r = 0; r < k; ++r)
            for (int64_t j = 0; j < lanes; ++j)
                out[r * count + j0 + j] = std::isinf(v[r][j]) ? nan : v[r][j];
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
        for (int64_t i = 0; i < count; ++i) bad |= non_finite(x[i]);
    }
    return bad != 0;
}

// |w| and |w| log |w| (0 at w = 0): the entropy semiring's edge terms.
template <typename T>
void magnitude_log(const T* w, T* magnitude, T* m_log, int64_t count, int threads) {
#pragma omp parallel for simd schedule(static) num_threads(threads)
    for (int64_t i = 0; i < count; ++i) {
        const T m = std::fabs(w[i]);
        magnitude[i] = m;
        m_log[i] = m > T(0) ? m * log_of(m) : T(0);
    }
}

}  // namespace

extern "C" {

int max_times_f32(const float* pos, const float* neg, const float* w, float* hi,
                  float* lo, int64_t B, int64_t M, int64_t N, int64_t P,
                  int64_t w_batched, int64_t w_transposed, int threads) {
    return max_times(pos, neg, w, hi, lo, B, M, N, P, w_batched, w_transposed, threads);
}

int max_times_f64(const double* pos, const double* neg, const double* w,
                  double* hi, double* lo, int64_t B, int64_t M, int64_t N, int64_t P,
                  int64_t w_batched, int64_t w_transposed, int threads) {
    return max_times(pos, neg, w, hi, lo, B, M, N, P, w_batched, w_transposed, threads);
}

int top_k_times_f32(const float* values, const float* w, float* out, int64_t k,
                     int64_t B, int64_t M, int64_t N, int64_t P,
                     int64_t w_batched, int threads) {
    return top_k_times(values, w, out, k, B, M, N, P, w_batched, threads);
}

int top_k_times_f64(const double* values, const double* w, double* out,
                     int64_t k, int64_t B, int64_t M, int64_t N, int64_t P,
                     int64_t w_batched, int threads) {
    return top_k_times(values, w, out, k, B, M, N, P, w_batched, threads);
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

void layer_norm_top_k_f32(const float* values, const float* s, float* out,
                          int64_t k, int64_t rows, int64_t n, int threads) {
    ln_top_k(values, s, out, k, rows, n, threads);
}

void layer_norm_top_k_f64(const double* values, const double* s, double* out,
                          int64_t k, int64_t rows, int64_t n, int threads) {
    ln_top_k(values, s, out, k, rows, n, threads);
}

void merge_best_f32(const float* a, const float* b, float* out, int64_t k,
                    int64_t count, int64_t largest, int threads) {
    merge_best(a, b, out, k, count, largest != 0, threads);
}

void merge_best_f64(const double* a, const double* b, double* out, int64_t k,
                    int64_t count, int64_t largest, int threads) {
    merge_best(a, b, out, k, count, largest != 0, threads);
}

int any_bad_f32(const float* x, int64_t count, int nan_only) {
    return any_bad(x, count, nan_only != 0);
}

int any_bad_f64(const double* x, int64_t count, int nan_only) {
    return any_bad(x, count, nan_only != 0);
}

void magnitude_log_f32(const float* w, float* magnitude, float* m_log,
                       int64_t count, int threads) {
    magnitude_log(w, magnitude, m_log, count, threads);
}

void magnitude_log_f64(const double* w, double* magnitude, double* m_log,
                       int64_t count, int threads) {
    magnitude_log(w, magnitude, m_log, count, threads);
}

}  // extern "C"
