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

/* e^r * 2^n for |r| <= ln2/2 (nn/kernels.c's exp_reduced) */
static inline vfa vexp_reduced(vfa r, vfa n)
{
    vfa p = vsplat(NN_EXP_TAYLOR[0]);
#pragma GCC unroll 8
    for (int k = 1; k < 7; k++) p = p * r + NN_EXP_TAYLOR[k];
    via bits = (__builtin_convertvector(n, via) + 127) << 23;
    return p * (vfa)bits;
}

/* e^x, x clamped to [-87, 88] (nn_expf) */
static inline vfa vexp(vfa x)
{
    x = vselect(x < vsplat(-87.0f), vsplat(-87.0f), x);
    x = vselect(x > vsplat(88.0f), vsplat(88.0f), x);
    const vfa shift = vsplat(12582912.0f);
    vfa n = (x * 1.44269504088896341f + shift) - shift;
    vfa r = x - n * 0.693145751953125f;
    r = r - n * 1.428606765330187045e-06f;
    return vexp_reduced(r, n);
}

#endif
