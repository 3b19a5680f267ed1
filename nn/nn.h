/* nn/nn.h: morphcat's inference engine, public face of nn/. Loads Zoobot's released encoders (timm 0.9.10
 * ConvNeXt, EfficientNet, ResNet; Hub folders, safetensors, Lightning checkpoints) exactly as they are and
 * runs their forward pass in plain C with single-threaded OpenBLAS. Other folders include only this header.
 * It does not read images or catalogues (io/) and does not decide batching or threading policy (pipeline/). */
#ifndef NN_NN_H
#define NN_NN_H

#include "mc.h"

typedef struct nn_model nn_model;
typedef struct nn_plan nn_plan;

typedef enum {
    NN_HEAD_NONE = 0,
    NN_HEAD_DIRICHLET, /* Zoobot tree head: concentrations 1 + 100*sigmoid(W x + b) */
    NN_HEAD_SOFTMAX,   /* Zoobot classifier head (head.linear): softmax(W x + b) */
    NN_HEAD_LOGITS,    /* timm classifier kept in the file (config num_classes > 0): W x + b */
} nn_head_kind;

typedef struct nn_model_info {
    char arch[64];          /* timm name: convnext_nano, efficientnet_b0, resnet50, ... */
    const char *family;     /* "convnext", "efficientnet", "resnet" */
    const char *file_kind;  /* "torch.save zip", "safetensors", "lightning checkpoint" */
    char weight_path[4096]; /* the weight file actually read */
    int in_chans;           /* from the stem weights: 1 (greyscale) or 3 */
    int embed_dim;          /* pooled embedding size */
    nn_head_kind head_kind;
    int head_dim;           /* 0 without a head */
    int64_t n_params;       /* learnable parameters as stored (batch-norm running statistics excluded) */
    int min_size;           /* smallest square input side the network accepts, pixels */
} nn_model_info;

const char *nn_head_kind_name(nn_head_kind k);

/* Load a model from a Hub folder (config.json + model.safetensors or pytorch_model.bin), a weight file
 * (with or without config.json beside it) or a Lightning checkpoint. Checks every tensor by name and shape
 * against the architecture; batch norm is folded into the convolutions here, once. On failure returns -1
 * and one line in err naming the file and the reason. */
int nn_model_load(const char *path, nn_model **out, char *err);
void nn_model_free(nn_model *m);
const nn_model_info *nn_model_info_of(const nn_model *m);

/* Names of the architectures morphcat knows, comma separated (for messages and --help). */
const char *nn_arch_names(void);

/* sha256 of the weight file, as 64 lowercase hex digits. */
int nn_file_sha256(const char *path, char hex[65], char *err);

/* A forward plan: the activation arena for one (model, batch, height, width), sized once by a dry run of
 * the network, so the per-batch path does no allocation. Fails (-1, message) when the input is too small. */
int nn_plan_init(const nn_model *m, int batch, int height, int width, nn_plan **out, char *err);
void nn_plan_free(nn_plan *p);
size_t nn_plan_bytes(const nn_plan *p);
/* Multiply-adds of one full-batch pass (convolutions, MLPs, squeeze-excite, head), for GFLOP/s figures. */
double nn_plan_macs(const nn_plan *p);

/* Run n <= batch images. x: n*C*H*W float32, NCHW (PyTorch layout). embed: n*embed_dim, or NULL.
 * head: n*head_dim, or NULL (ignored without a head). */
void nn_forward(nn_plan *p, const float *x, int n, float *embed, float *head);

/* Configure this thread for inference, once at startup: one BLAS thread (ranks, not threads, give
 * parallelism), and subnormal floats flushed to zero (FTZ/DAZ: they cost 5-20x per operation on x86 and
 * are far below anything a network's output depends on; efficientnet_b0 runs 20% faster on uniform-noise
 * input). Then describe the BLAS for logs. */
void nn_init(void);
const char *nn_blas_describe(void);
/* A one-line hint when OpenBLAS runs kernels below what the CPU offers (OpenBLAS 0.3.21 takes AMD Zen 4/5
 * for Haswell: AVX2 kernels on an AVX-512 CPU, half the sgemm speed); NULL when there is nothing to say. */
const char *nn_blas_advice(void);

/* ---- Galaxy Zoo decision trees: from Dirichlet concentrations to vote fractions ------------------------
 * A schema lists the questions of a Galaxy Zoo decision tree, each with its answers (contiguous in the
 * head's output) and the answer it depends on (asked only after that answer). Built-in schemas, compiled
 * into the binary from the JSON files in nn/schemas/: gz_decals_dr5, gz_decals_dr8, gz_desi, gz2, gz_euclid,
 * gz_cosmic_dawn, decals_all_campaigns (98 answers). Facts: ../shared/notes/zoobot.md section 3. */
typedef struct nn_schema nn_schema;

/* A built-in schema by name, or a JSON file of the same form by path. -1 with a message when unknown. */
int nn_schema_load(const char *name_or_path, nn_schema **out, char *err);
void nn_schema_free(nn_schema *s);
const char *nn_schema_name(const nn_schema *s);
const char *nn_schema_names(void); /* built-in names, comma separated */
int nn_schema_n_answers(const nn_schema *s);
int nn_schema_n_questions(const nn_schema *s);
const char *nn_schema_question(const nn_schema *s, int q);       /* "smooth-or-featured-dr5" */
const char *nn_schema_answer_col(const nn_schema *s, int a);     /* "smooth-or-featured-dr5_smooth" */
int nn_schema_question_of(const nn_schema *s, int a);            /* question index of answer a */
int nn_schema_depends_on(const nn_schema *s, int q);             /* answer index q follows, or -1 */

/* For one galaxy's concentrations (n_answers): per answer the expected vote fraction alpha_a / sum over its
 * question, and the 5% and 95% points of its Beta(alpha_a, sum - alpha_a) marginal; per question the
 * proportion of volunteers expected to be asked it (product of fractions along the dependency chain).
 * Any output pointer may be NULL. */
void nn_schema_summarise(const nn_schema *s, const float *conc, float *frac, float *lo90, float *hi90,
                         float *asked);

/* Quantile of Beta(a, b) at p in (0, 1), to ~1e-10 relative (regularised incomplete beta, inverted). */
double nn_beta_quantile(double p, double a, double b);

#endif
