/* nn/vec.h: native-width float vectors in GCC vector extensions for the engine's elementwise kernels
 * (VA floats: 16 on AVX-512, 8 on AVX2, 4 on SSE) and the exp they share with nn/kernels.c's scalar forms,
 * operation for operation, so a vector lane and the scalar tail agree to an ulp. GCC's auto-vectoriser
 * handles the scalar loops poorly (masked divisions, calls per element). */
#ifndef NN_VEC_H
#define NN_VEC_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__)
#define VA 16
#elif defined(__AVX__)
#define VA 8
#else
#define VA 4
#endif
typedef float vfa __attribute__((vector_size(VA * 4)));
typedef int32_t via __attribute__((vector_size(VA * 4)));

static inline vfa vsplat(float v)
{
    return v - (vfa){0}; /* the scalar broadcast; x - 0 is x, signed zeros included */
}

static inline vfa vload(const float *p)
{
    vfa v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void vstore(float *p, vfa v)
{
    memcpy(p, &v, sizeof v);
}

/* the total of v's lanes, lane 0 first */
static inline float vhsum(vfa v)
{
    float s = 0.0f;
    for (int l = 0; l < VA; l++) s += v[l];
    return s;
}

static inline vfa vselect(via mask, vfa a, vfa b) /* mask lanes -1: a, 0: b */
{
    return (vfa)(((via)a & mask) | ((via)b & ~mask));
}

/* 1/d: on AVX-512 the 14-bit estimate and one Newton step (within an ulp, a tenth of vdivps's cost) */
static inline vfa vrecip(vfa d)
{
#ifdef __AVX512F__
    vfa r = (vfa)_mm512_rcp14_ps((__m512)d);
    return r * (2.0f - d * r);
#else
    return 1.0f / d;
#endif
}

/* e^r for |r| <= ln2/2: Taylor degree 6, highest term first (truncation error < 1.2e-7 relative); the one
 * table of coefficients for nn/kernels.c's scalar exp and the vector one here */
static const float NN_EXP_TAYLOR[7] = {1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f, 1.0f / 6.0f, 0.5f, 1.0f, 1.0f};

/* e[u] = e^r[u] * 2^n[u] for |r| <= ln2/2 (nn/kernels.c's exp_reduced), for nv vectors, each step taken for
 * all of them before the next: one vector's chain is too long for the out-of-order window to overlap the next
 * vector's, so callers with several vectors in hand pass them together (nn/kernels.c's activations) */
static inline __attribute__((always_inline)) void vexp_reduced_n(vfa *e, const vfa *r, const vfa *n, const int nv)
{
#pragma GCC unroll 4
    for (int u = 0; u < nv; u++) e[u] = vsplat(NN_EXP_TAYLOR[0]);
#pragma GCC unroll 8
    for (int k = 1; k < 7; k++)
#pragma GCC unroll 4
        for (int u = 0; u < nv; u++) e[u] = e[u] * r[u] + NN_EXP_TAYLOR[k];
#pragma GCC unroll 4
    for (int u = 0; u < nv; u++) e[u] = e[u] * (vfa)((__builtin_convertvector(n[u], via) + 127) << 23);
}

/* x[u] = e^x[u], x clamped to [-87, 88] (nn_expf), for nv vectors interleaved as above */
static inline __attribute__((always_inline)) void vexp_n(vfa *x, const int nv)
{
    vfa n[4], r[4];
#pragma GCC unroll 4
    for (int u = 0; u < nv; u++) {
        vfa v = vselect(x[u] < vsplat(-87.0f), vsplat(-87.0f), x[u]);
        v = vselect(v > vsplat(88.0f), vsplat(88.0f), v);
        const vfa shift = vsplat(12582912.0f);
        n[u] = (v * 1.44269504088896341f + shift) - shift;
        r[u] = v - n[u] * 0.693145751953125f;
        r[u] = r[u] - n[u] * 1.428606765330187045e-06f;
    }
    vexp_reduced_n(x, r, n, nv);
}

static inline vfa vexp(vfa x)
{
    vexp_n(&x, 1);
    return x;
}

#endif
