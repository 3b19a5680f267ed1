/* nn/engine.h: what the architectures share inside nn/: the planned activation arena (nn_ctx), NHWC
 * tensors, strict weight loading (nn_loader) and the fused layers built on the kernels. Internal to nn/.
 * It knows no architecture; those live in nn/arch_*.c and register in nn/model.c. */
#ifndef NN_ENGINE_H
#define NN_ENGINE_H

#include "mc.h"
#include "nn/amx.h"
#include "nn/kernels.h"
#include "nn/nn.h"
#include "nn/weights.h"

/* ---- the activation arena ----------------------------------------------------------------------------
 * A plan is made by running the forward pass once with measure=1: no kernel runs, every allocation and
 * release is simulated on a virtual address space (first fit) and its offset recorded. The real passes
 * replay the same sequence and get the recorded offsets, so the per-batch path never calls malloc
 * (ggml's measure-then-allocate idea, with liveness so buffers are reused). */
typedef struct nn_ctx {
    int measure;
    int bf16; /* the plan's precision is bf16: matrix layers with a pack run on AMX */
    int release_fp32; /* bf16 only in this process: a weight's fp32 pages go back to the system once packed */
    int winograd;     /* fp32 3x3 stride-1 convolutions by Winograd F(4x4 or 2x2, 3x3) (nn/winograd.c) */
    int pgemm;        /* fp32 dense convolutions on packed weights (nn/gemm_packed.c) instead of sgemm */
    int too_small; /* set during measure when a layer's output would be empty */
    double macs;   /* multiply-adds of one pass, counted during measure (for GFLOP/s figures) */
    char *base;
    size_t size;
    size_t *off, *len; /* per allocation, in call order */
    int n, cap, next;
    /* measure-time live blocks, sorted by offset */
    size_t *live_off, *live_len;
    int n_live, cap_live;
} nn_ctx;

/* Whether new fp32 plans take Winograd for 3x3 stride-1 convolutions: yes, unless MORPHCAT_WINOGRAD=0 in the
 * environment (the im2col path, for comparisons). Read when a plan is made. */
int nn_winograd_default(void);
/* Likewise for nn/gemm_packed.c's product: on AVX-512 builds except on AMD Zen 4 (nn_pgemm_native); for
 * comparisons MORPHCAT_PGEMM=0 takes OpenBLAS sgemm and MORPHCAT_PGEMM=1 the packed product on any AVX-512 CPU. */
int nn_pgemm_default(void);

float *nn_ctx_alloc(nn_ctx *ctx, size_t nfloat);
void nn_ctx_release(nn_ctx *ctx, const float *p);
/* Free the arena and the plan's records. */
void nn_ctx_free(nn_ctx *ctx);

typedef struct nn_tensor {
    float *d;
    int n, h, w, c; /* NHWC, contiguous */
} nn_tensor;

static inline long nn_tensor_pixels(nn_tensor t)
{
    return (long)t.n * t.h * t.w;
}
nn_tensor nn_tensor_new(nn_ctx *ctx, int n, int h, int w, int c);
void nn_tensor_release(nn_ctx *ctx, nn_tensor t);

/* A model path that names a folder (a Hub folder) rather than a weight file. */
int nn_path_is_dir(const char *p);

/* ---- strict weight loading ---------------------------------------------------------------------------
 * Each architecture asks for every tensor it needs by name and shape; the first missing or mis-shaped key
 * is the error; afterwards nn_loader_finish reports the first key nobody asked for. */
typedef struct nn_loader {
    nn_wfile *wf;
    const char *prefix; /* "encoder." in Lightning checkpoints, "" otherwise */
    const char *arch;   /* for messages */
    char *err;
    int failed;
    int64_t n_params;
} nn_loader;

/* Returns the float32 data of prefix+name after checking its shape equals dims[0..ndim-1]; NULL (and the
 * loader marked failed with a message) when it is missing or mis-shaped. The name is printf-formatted. */
const float *nn_load(nn_loader *L, int ndim, const int *dims, const char *fmt, ...) MC_PRINTF(4, 5);
/* Shape of prefix+name without consuming it; returns ndim or -1 when absent. */
int nn_peek(const nn_loader *L, int64_t *shape, const char *fmt, ...) MC_PRINTF(3, 4);
int nn_loader_finish(nn_loader *L);

/* ---- layers ----------------------------------------------------------------------------------------- */
typedef struct nn_conv {
    int cin, cout, k, stride, pad;
    int depthwise;
    nn_act act;
    float *w; /* dense: [cout][k][k][cin] (NHWC patch order); depthwise: [k][k][c] */
    float *b; /* [cout], always present (zeros when the file has no bias) */
    nn_wpack *pk; /* dense: bf16 tiles of w, filled by the first bf16 plan, and the fp32 layout of w (which
                   * fp32 plans may switch to nn/gemm_packed.c's panels); NULL for depthwise */
} nn_conv;

/* Load conv `wname` ([cout, cin/groups, k, k]) with optional bias `bname` and optional batch norm at
 * `bnprefix` (weight, bias, running_mean, running_var; folded in, eps as given). Names are full keys
 * without the loader prefix; NULL to omit. Returns 0 or -1 (loader failed). */
int nn_conv_load(nn_loader *L, nn_conv *cv, const char *wname, const char *bname, const char *bnprefix, float bn_eps,
                 int cin, int cout, int k, int stride, int pad, int depthwise, nn_act act);
void nn_conv_free(nn_conv *cv);
int nn_conv_out(int in, int k, int stride, int pad);

/* y = act(conv(x) + res); res (same shape as y) may be NULL. Returns y, newly allocated in ctx. */
nn_tensor nn_conv_forward(nn_ctx *ctx, const nn_conv *cv, nn_tensor x, const nn_tensor *res);

/* Keep a dense convolution in fp32 in every plan (the precision policy's exceptions, docs/engine.md). */
void nn_conv_keep_fp32(nn_conv *cv);

/* A matrix layer C = act(A W^T + bias (+res | +C)) that follows the plan's precision. pk is the layer's
 * pack (nn_wpack_new at load; NULL keeps the layer fp32 on sgemm). nn_matmul_prepare, called in both passes
 * before the products, packs W during a bf16 plan's measure pass and returns the AMX scratch for up to maxM
 * rows (NULL for fp32; release it with nn_ctx_release after the products); nn_matmul then runs one product,
 * on AMX when scratch is not NULL, else on nn/gemm_packed.c's panels where nn_matmul_panels says so (W is
 * switched to them in place, and back for a bf16 pack; plans are made and run from one thread), else
 * through nn_gemm_fused. The panels take accumulate or res, not both.
 * With ctx->release_fp32 the pages of W are given back to the system (madvise) right after packing, and any
 * later fp32 product on that layer aborts (nn_model_bf16_only).
 */
nn_wpack *nn_wpack_new(int split);
void nn_wpack_delete(nn_wpack *pk);
float *nn_matmul_prepare(nn_ctx *ctx, nn_wpack *pk, int maxM, int N, int K, const float *W, int ldw);
int nn_matmul_panels(const nn_ctx *ctx, const nn_wpack *pk, int N, int K, int ldw);
void nn_matmul(const nn_wpack *pk, float *scratch, int M, int N, int K, const float *A, int lda, const float *W,
               int ldw, const float *bias, const float *res, int ldr, int accumulate, nn_act act, float *C, int ldc);

/* Copy of a [rows][cols] float matrix from the loader (for linear layers). */
float *nn_copy_floats(const float *src, size_t n);

/* ---- architectures ----------------------------------------------------------------------------------- */
typedef struct nn_arch_ops {
    const char *family;
    /* Build the network from the loader (arch = timm name); return opaque net or NULL (loader failed). */
    void *(*build)(nn_loader *L, const char *arch, int in_chans);
    /* x: (n,h,w,in_chans) in the arena; returns the pooled embedding as (n,1,1,embed_dim). */
    nn_tensor (*forward)(nn_ctx *ctx, const void *net, nn_tensor x);
    void (*destroy)(void *net);
    int (*embed_dim)(const void *net);
    /* Infer the timm name from the tensors present: 0 with name filled; -1 when the keys are not this
     * family's; -2 when they are but match no known variant (message in err). */
    int (*detect)(const nn_loader *L, char *name, size_t len, char *err);
    int min_size;
    /* Optional: the timm classifier's key stem when not the family default ("head.fc" for MaxViT). */
    const char *classifier;
    /* Optional: refuse an input size the network cannot take (-1, one line naming the sizes it accepts). */
    int (*check_size)(const void *net, const char *arch, int height, int width, char *err);
} nn_arch_ops;

extern const nn_arch_ops nn_convnext_ops, nn_efficientnet_ops, nn_resnet_ops;
extern const nn_arch_ops nn_maxvit_ops, nn_efficientnetv2_ops;
int nn_maxvit_knows(const char *arch);
int nn_efficientnetv2_knows(const char *arch);
/* Whether the family knows this timm name (used to pick the family from config.json). */
int nn_convnext_knows(const char *arch);
int nn_efficientnet_knows(const char *arch);
int nn_resnet_knows(const char *arch);

/* The ResNet body alone (no pooling), for detectors: keys as timm/torchvision name them under the loader's
 * prefix, batch norm folded with bn_eps. Forward keeps the output of each of the four stages (strides 4,
 * 8, 16, 32) in stages[]; the caller releases them. */
void *nn_resnet_body_build(nn_loader *L, const char *arch, int in_chans, float bn_eps);
void nn_resnet_body_forward(nn_ctx *ctx, const void *net, nn_tensor in, nn_tensor stages[4]);
void nn_resnet_body_free(void *net);

#endif
