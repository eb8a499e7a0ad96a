/* y = x W^T + b for a block-sparse W (BSR: blocks of R rows x C input columns), fp32, on CPU.
 *
 * Tokens are processed in tiles of 16: a tile of x is packed column-major (one 16-float row per input feature),
 * so each kept weight costs one broadcast and two 8-wide fused multiply-adds into accumulators held in registers;
 * R output rows of a block share each packed row. Tiles are spread over OpenMP threads (torch's own libgomp when
 * torch is loaded first). Built at first use by ticketlab/export/kernels.py with the machine's C compiler. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TILE 16
typedef float v8 __attribute__((vector_size(32)));

#define BLOCK_ROWS(R)                                                                                              \
    static void block_rows_##R(const float *panel, const int32_t *row_ptr, const int32_t *cols, const float *vals, \
                               int64_t block_rows, int64_t C, float *out_panel) {                                   \
        for (int64_t br = 0; br < block_rows; br++) {                                                              \
            v8 acc[R][2];                                                                                          \
            for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = (v8){0};                                           \
            for (int32_t p = row_ptr[br]; p < row_ptr[br + 1]; p++) {                                              \
                const float *block = vals + (int64_t)p * R * C;                                                    \
                const v8 *x = (const v8 *)(panel + (int64_t)cols[p] * TILE);                                       \
                for (int64_t c = 0; c < C; c++) {                                                                  \
                    v8 x0 = x[2 * c], x1 = x[2 * c + 1];                                                           \
                    for (int r = 0; r < R; r++) {                                                                  \
                        float w = block[r * C + c];                                                                \
                        acc[r][0] += w * x0;                                                                       \
                        acc[r][1] += w * x1;                                                                       \
                    }                                                                                              \
                }                                                                                                  \
            }                                                                                                      \
            for (int r = 0; r < R; r++) {                                                                          \
                v8 *o = (v8 *)(out_panel + (br * R + r) * TILE);                                                   \
                o[0] = acc[r][0];                                                                                  \
                o[1] = acc[r][1];                                                                                  \
            }                                                                                                      \
        }                                                                                                          \
    }
BLOCK_ROWS(2)
BLOCK_ROWS(4)

/* Single weights (R = C = 1): four independent pairs of accumulators, so that consecutive fused multiply-adds do
 * not wait on each other's results (one pair is bound by the FMA latency); the pairs are summed at the end. */
static void block_rows_1(const float *panel, const int32_t *row_ptr, const int32_t *cols, const float *vals,
                         int64_t rows, int64_t C, float *out_panel) {
    if (C != 1) {  /* 1 x C blocks: each block's columns are independent weights of the same row */
        for (int64_t j = 0; j < rows; j++) {
            v8 a0 = {0}, a1 = {0};
            for (int32_t p = row_ptr[j]; p < row_ptr[j + 1]; p++) {
                const v8 *x = (const v8 *)(panel + (int64_t)cols[p] * TILE);
                for (int64_t c = 0; c < C; c++) {
                    float w = vals[(int64_t)p * C + c];
                    a0 += w * x[2 * c];
                    a1 += w * x[2 * c + 1];
                }
            }
            v8 *o = (v8 *)(out_panel + j * TILE);
            o[0] = a0;
            o[1] = a1;
        }
        return;
    }
    for (int64_t j = 0; j < rows; j++) {
        v8 a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0}, c0 = {0}, c1 = {0}, d0 = {0}, d1 = {0};
        int32_t p = row_ptr[j], end = row_ptr[j + 1];
        for (; p + 4 <= end; p += 4) {
            const v8 *x = (const v8 *)(panel + (int64_t)cols[p] * TILE);
            const v8 *y = (const v8 *)(panel + (int64_t)cols[p + 1] * TILE);
            const v8 *z = (const v8 *)(panel + (int64_t)cols[p + 2] * TILE);
            const v8 *t = (const v8 *)(panel + (int64_t)cols[p + 3] * TILE);
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
            const v8 *x = (const v8 *)(panel + (int64_t)cols[p] * TILE);
            a0 += vals[p] * x[0];
            a1 += vals[p] * x[1];
        }
        v8 *o = (v8 *)(out_panel + j * TILE);
        o[0] = (a0 + b0) + (c0 + d0);
        o[1] = (a1 + b1) + (c1 + d1);
    }
}


/* x: T x in (row-major), y: T x out; row_ptr: out/R + 1 offsets into cols (first input column of each block) and
 * vals (R*C floats per block, row-major); bias may be NULL. R is 1, 2 or 4. Returns 0, or -1 when out of memory. */
int ticketlab_bsr_linear(const float *x, int64_t T, int64_t in, int64_t out, const int32_t *row_ptr,
                         const int32_t *cols, const float *vals, int64_t R, int64_t C, const float *bias, float *y,
                         int threads) {
    int64_t tiles = (T + TILE - 1) / TILE, failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        float *panel = aligned_alloc(64, (size_t)in * TILE * sizeof(float));
        float *out_panel = aligned_alloc(64, (size_t)out * TILE * sizeof(float));
        if (!panel || !out_panel) failed = 1;
#pragma omp for schedule(static)
        for (int64_t tile = 0; tile < tiles; tile++) {
            if (failed) continue;
            int64_t t0 = tile * TILE, n = T - t0 < TILE ? T - t0 : TILE;
            if (n < TILE) memset(panel, 0, (size_t)in * TILE * sizeof(float));
            for (int64_t i = 0; i < n; i++)
                for (int64_t k = 0; k < in; k++) panel[k * TILE + i] = x[(t0 + i) * in + k];
            if (R == 4) block_rows_4(panel, row_ptr, cols, vals, out / 4, C, out_panel);
            else if (R == 2) block_rows_2(panel, row_ptr, cols, vals, out / 2, C, out_panel);
            else block_rows_1(panel, row_ptr, cols, vals, out, C, out_panel);
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < out; j++)
                    y[(t0 + i) * out + j] = out_panel[j * TILE + i] + (bias ? bias[j] : 0.0f);
        }
        free(panel);
        free(out_panel);
    }
    return failed ? -1 : 0;
}
