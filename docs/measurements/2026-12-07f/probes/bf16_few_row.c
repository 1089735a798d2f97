#include <string.h>
#define LANES 16
typedef float vf __attribute__((vector_size(64)));
typedef unsigned short vh __attribute__((vector_size(32)));
typedef unsigned int vu __attribute__((vector_size(64)));
static inline vf loadf(const float* p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline vf loadh(const unsigned short* p) { vh h; memcpy(&h, p, sizeof h); vu u = __builtin_convertvector(h, vu) << 16; vf f; memcpy(&f, &u, sizeof f); return f; }
#define ROWS(M) \
static void rows_##M(const unsigned short* w, const float* x, float* y, long out, long in) { \
    long vin = in - in % LANES; \
    for (long j = 0; j < out; j++) { \
        const unsigned short* wr = w + j * in; \
        vf acc[M]; \
        for (int r = 0; r < M; r++) acc[r] = (vf){0}; \
        for (long k = 0; k < vin; k += LANES) { \
            __builtin_prefetch(wr + k + 8 * in); \
            vf wv = loadh(wr + k); \
            for (int r = 0; r < M; r++) acc[r] += wv * loadf(x + r * in + k); \
        } \
        for (int r = 0; r < M; r++) { \
            float s = 0.0f; \
            for (int l = 0; l < LANES; l++) s += acc[r][l]; \
            for (long k = vin; k < in; k++) { unsigned int u = ((unsigned int)wr[k]) << 16; float f; memcpy(&f, &u, 4); s += f * x[r * in + k]; } \
            y[r * out + j] = s; \
        } \
    } \
}
ROWS(1) ROWS(2) ROWS(3) ROWS(4) ROWS(5) ROWS(6) ROWS(7) ROWS(8)
ROWS(9) ROWS(10) ROWS(11) ROWS(12) ROWS(13) ROWS(14) ROWS(15) ROWS(16)
typedef void (*rows_fn)(const unsigned short*, const float*, float*, long, long);
static const rows_fn TABLE[17] = {0, rows_1, rows_2, rows_3, rows_4, rows_5, rows_6, rows_7, rows_8,
                                  rows_9, rows_10, rows_11, rows_12, rows_13, rows_14, rows_15, rows_16};
int dspark_few_row_linear_bf16(const unsigned short* w, const float* x, float* y, long out, long in, long m) {
    if (m < 1 || m > 16) return 1;
    TABLE[m](w, x, y, out, in);
    return 0;
}
