/* y = x W^T + b for a block-sparse W (BSR: blocks of R rows x C input columns), fp32, on CPU.
 *
 * Tokens are processed in tiles of two vectors: 32 tokens where the compiler targets AVX-512 (-march=native on a
 * CPU with it: 16 fp32 lanes), 16 elsewhere (8 lanes). A tile of x is packed column-major (one TILE-float row per
 * input feature), so each kept weight costs one broadcast and two fused multiply-adds into accumulators held in
 * registers; R output rows of a block share each packed row. Tiles are spread over OpenMP threads (torch's own
 * libgomp when torch is loaded first). Built at first use by ticketlab/export/kernels.py with the machine's C
 * compiler. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __AVX512F__
#define LANES 16
#else
#define LANES 8
#endif
#define TILE (2 * LANES)
typedef float vec __attribute__((vector_size(LANES * sizeof(float))));

#define BLOCK_ROWS(R)                                                                                               \
    static void block_rows_##R(const float *panel, const int32_t *row_ptr, const int32_t *cols, const float *vals,  \
                               int64_t block_rows, int64_t C, float *out_panel) {                                   \
        for (int64_t br = 0; br < block_rows; br++) {                                                               \
            vec acc[R][2];                                                                                          \
            for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = (vec){0};                                           \
            for (int32_t p = row_ptr[br]; p < row_ptr[br + 1]; p++) {                                               \
                const float *block = vals + (int64_t)p * R * C;                                                     \
                const vec *x = (const vec *)(panel + (int64_t)cols[p] * TILE);                                      \
                for (int64_t c = 0; c < C; c++) {                                                                   \
                    vec x0 = x[2 * c], x1 = x[2 * c + 1];                                                           \
                    for (int r = 0; r < R; r++) {                                                                   \
                        float w = block[r * C + c];                                                                 \
                        acc[r][0] += w * x0;                                                                        \
                        acc[r][1] += w * x1;                                                                        \
                    }                                                                                               \
                }                                                                                                   \
            }                                                                                                       \
            for (int r = 0; r < R; r++) {                                                                           \
                vec *o = (vec *)(out_panel + (br * R + r) * TILE);                                                  \
                o[0] = acc[r][0];                                                                                   \
                o[1] = acc[r][1];                                                                                   \
            }                                                                                                       \
        }                                                                                                           \
    }
BLOCK_ROWS(2)
BLOCK_ROWS(4)

/* Single weights (R = C = 1): four independent pairs of accumulators, so that consecutive fused multiply-adds do
 * not wait on each other's results (one pair is bound by the FMA latency); the pairs are summed at the end. */
static void block_rows_1(const float *panel, const int32_t *row_ptr, const int32_t *cols, const float *vals,
                         int64_t rows, int64_t C, float *out_panel) {
    if (C != 1) {  /* 1 x C blocks: each block's columns are independent weights of the same row */
        for (int64_t j = 0; j < rows; j++) {
            vec a0 = {0}, a1 = {0};
            for (int32_t p = row_ptr[j]; p < row_ptr[j + 1]; p++) {
                const vec *x = (const vec *)(panel + (int64_t)cols[p] * TILE);
                for (int64_t c = 0; c < C; c++) {
                    float w = vals[(int64_t)p * C + c];
                    a0 += w * x[2 * c];
                    a1 += w * x[2 * c + 1];
                }
            }
            vec *o = (vec *)(out_panel + j * TILE);
            o[0] = a0;
            o[1] = a1;
        }
        return;
    }
    for (int64_t j = 0; j < rows; j++) {
        vec a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0}, c0 = {0}, c1 = {0}, d0 = {0}, d1 = {0};
        int32_t p = row_ptr[j], end = row_ptr[j + 1];
        for (; p + 4 <= end; p += 4) {
            const vec *x = (const vec *)(panel + (int64_t)cols[p] * TILE);
            const vec *y = (const vec *)(panel + (int64_t)cols[p + 1] * TILE);
            const vec *z = (const vec *)(panel + (int64_t)cols[p + 2] * TILE);
            const vec *t = (const vec *)(panel + (int64_t)cols[p + 3] * TILE);
            a0 += vals[p] * x[0];
            a1 += vals[p] * x[1];
            b0 += vals[p + 1] * y[0];
            b1 += vals[p + 1] * y[1];
            c0 += vals[p + 2] * z[0];
            c1 += vals[p + 2] * z[1];
            d0 += vals[p + 3] * t[0];
            d1 += vals[p + 3] * t[1];
        }
        for (; p < end; p++) {
            const vec *x = (const vec *)(panel + (int64_t)cols[p] * TILE);
            a0 += vals[p] * x[0];
            a1 += vals[p] * x[1];
        }
        vec *o = (vec *)(out_panel + j * TILE);
        o[0] = (a0 + b0) + (c0 + d0);
        o[1] = (a1 + b1) + (c1 + d1);
    }
}


#ifdef __AVX512BF16__
#include <immintrin.h>

/* bf16 products (AVX512-BF16's vdpbf16ps: pairs of bf16 multiplied, summed into fp32): the panel holds, per pair of
 * input features, TILE = 32 tokens' two bf16 values side by side in one 32-bit word; a block's weights come in pairs
 * of the same row (C even); each pair costs one 32-bit broadcast and two dot products, two weights at a time. */
#define BF16_ROWS(R)                                                                                               \
    static void bf16_rows_##R(const uint32_t *panel, const int32_t *row_ptr, const int32_t *cols,                \
                              const uint32_t *vals, int64_t block_rows, int64_t pairs, float *out_panel) {        \
        for (int64_t br = 0; br < block_rows; br++) {                                                              \
            __m512 acc[R][2];                                                                                      \
            for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();                               \
            for (int32_t p = row_ptr[br]; p < row_ptr[br + 1]; p++) {                                              \
                const uint32_t *block = vals + (int64_t)p * R * pairs;                                             \
                const uint32_t *x = panel + (int64_t)(cols[p] / 2) * TILE;                                         \
                for (int64_t c = 0; c < pairs; c++) {                                                              \
                    __m512bh x0 = (__m512bh)_mm512_load_si512(x + c * TILE);                                       \
                    __m512bh x1 = (__m512bh)_mm512_load_si512(x + c * TILE + LANES);                               \
                    for (int r = 0; r < R; r++) {                                                                  \
                        __m512bh w = (__m512bh)_mm512_set1_epi32((int)block[r * pairs + c]);                       \
                        acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x0, w);                                            \
                        acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x1, w);                                            \
                    }                                                                                              \
                }                                                                                                  \
            }                                                                                                      \
            for (int r = 0; r < R; r++) {                                                                          \
                _mm512_store_ps(out_panel + (br * R + r) * TILE, acc[r][0]);                                       \
                _mm512_store_ps(out_panel + (br * R + r) * TILE + LANES, acc[r][1]);                               \
            }                                                                                                      \
        }                                                                                                          \
    }
BF16_ROWS(1)
BF16_ROWS(2)
BF16_ROWS(4)

/* Two floats rounded to bf16 (to nearest, ties to even), the first in the low half. */
static inline uint32_t bf16_pair(float first, float second) {
    uint32_t a, b;
    memcpy(&a, &first, sizeof a);
    memcpy(&b, &second, sizeof b);
    a = (a + 0x7FFF + ((a >> 16) & 1)) >> 16;
    b = (b + 0x7FFF + ((b >> 16) & 1)) >> 16;
    return a | (b << 16);
}
#define HAS_BF16 1
#else
#define HAS_BF16 0
#endif

/* Whether this build has the bf16 kernel (compiled for a CPU with AVX512-BF16). */
int ticketlab_has_bf16(void) { return HAS_BF16; }

/* x: T x in (row-major), y: T x out; row_ptr: out/R + 1 offsets into cols (first input column of each block) and
 * vals (R*C values per block, row-major: floats, or with bf16 set, C/2 pairs of bf16 per row); bias may be NULL.
 * R is 1, 2 or 4; with bf16, C and in are even. Returns 0, -1 when out of memory, -2 for bf16 in a build without. */
int ticketlab_bsr_linear(const float *x, int64_t T, int64_t in, int64_t out, const int32_t *row_ptr,
                         const int32_t *cols, const void *vals, int64_t R, int64_t C, const float *bias, float *y,
                         int threads, int bf16) {
    if (bf16 && !HAS_BF16) return -2;
    int64_t tiles = (T + TILE - 1) / TILE, rows = bf16 ? in / 2 : in, failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        void *panel = aligned_alloc(64, (size_t)rows * TILE * sizeof(float));  /* a float or a bf16 pair a slot */
        float *out_panel = aligned_alloc(64, (size_t)out * TILE * sizeof(float));
        if (!panel || !out_panel) failed = 1;
#pragma omp for schedule(static)
        for (int64_t tile = 0; tile < tiles; tile++) {
            if (failed) continue;
            int64_t t0 = tile * TILE, n = T - t0 < TILE ? T - t0 : TILE;
            if (n < TILE) memset(panel, 0, (size_t)rows * TILE * sizeof(float));
            if (!bf16) {
                float *fp32 = panel;
                for (int64_t i = 0; i < n; i++)
                    for (int64_t k = 0; k < in; k++) fp32[k * TILE + i] = x[(t0 + i) * in + k];
                if (R == 4) block_rows_4(fp32, row_ptr, cols, vals, out / 4, C, out_panel);
                else if (R == 2) block_rows_2(fp32, row_ptr, cols, vals, out / 2, C, out_panel);
                else block_rows_1(fp32, row_ptr, cols, vals, out, C, out_panel);
            }
#if HAS_BF16
            else {
                uint32_t *pairs = panel;
                for (int64_t i = 0; i < n; i++)
                    for (int64_t k = 0; k < rows; k++)
                        pairs[k * TILE + i] = bf16_pair(x[(t0 + i) * in + 2 * k], x[(t0 + i) * in + 2 * k + 1]);
                if (R == 4) bf16_rows_4(pairs, row_ptr, cols, vals, out / 4, C / 2, out_panel);
                else if (R == 2) bf16_rows_2(pairs, row_ptr, cols, vals, out / 2, C / 2, out_panel);
                else bf16_rows_1(pairs, row_ptr, cols, vals, out, C / 2, out_panel);
            }
#endif
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < out; j++)
                    y[(t0 + i) * out + j] = out_panel[j * TILE + i] + (bias ? bias[j] : 0.0f);
        }
        free(panel);
        free(out_panel);
    }
    return failed ? -1 : 0;
}
