/* nn/nn.h: morphcat's inference engine, public face of nn/. Loads Zoobot's released encoders (timm 0.9.10
 * ConvNeXt, EfficientNet, ResNet; Hub folders, safetensors, Lightning checkpoints) exactly as they are and
 * runs their forward pass in plain C with single-threaded OpenBLAS. Other folders include only this header.
 * It does not read images or catalogues (io/) and does not decide batching or threading policy (pipeline/). */
#ifndef NN_NN_H
#define NN_NN_H

#include "mc.h"

typedef struct nn_model nn_model;
typedef struct nn_plan nn_plan;

/* Numerical precision of a plan's matrix products. fp32 is the reference (PyTorch's numbers to ~1e-6);
 * bf16 runs convolutions and linear layers on AMX tiles with bf16 operands and fp32 accumulation, the rest
 * in fp32 (the policy: docs/engine.md). A plan-time choice: one loaded model can have plans of both. */
typedef enum { NN_PREC_FP32 = 0, NN_PREC_BF16 } nn_precision;

const char *nn_precision_name(nn_precision p);
/* "fp32" or "bf16" (-1 and a message otherwise). */
int nn_precision_parse(const char *s, nn_precision *p, char *err);
/* 0 when this process can run the precision; -1 and one line saying why not (no AMX, no permission). */
int nn_precision_check(nn_precision p, char *err);
/* Ask the kernel for AMX tile state. Call first thing in main(), before MPI_Init and before any thread or
 * signal stack exists; harmless where there is no AMX. */
void nn_cpu_request(void);
/* NULL in a real build; one line in a test build that is not what it seems (MC_AMX_EMU=1: AMX emulated in
 * software, docs/engine.md), for --version, info and the bf16 commands to show (nn/amx.c). */
const char *nn_build_note(void);

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
/* This process runs m in bf16 plans only: each packed weight's fp32 copy is given back to the system as it is
 * packed, so a bf16 process holds about the memory of an fp32 one (the packs in place of the weights). An
 * fp32 plan on m afterwards is a programming error and aborts. */
void nn_model_bf16_only(nn_model *m);

/* Names of the architectures morphcat knows, comma separated (for messages and --help). */
const char *nn_arch_names(void);

/* sha256 of the weight file, as 64 lowercase hex digits. */
int nn_file_sha256(const char *path, char hex[65], char *err);

/* A forward plan: the activation arena for one (model, batch, height, width), sized once by a dry run of
 * the network, so the per-batch path does no allocation. Fails (-1, message) when the input is too small. */
int nn_plan_init(const nn_model *m, int batch, int height, int width, nn_precision prec, nn_plan **out,
                 char *err);
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

/* ---- the clump detector: torchvision's Faster R-CNN (fasterrcnn_resnet50_fpn, v1) -----------------------
 * Galaxy Zoo: Clump Scout's detector is the stock torchvision 0.14 model with a 3-class predictor
 * (background, clump, odd clump). morphcat runs its whole eval-mode path in C and gives torchvision's
 * detections (../shared/notes/frcnn.md). Weights: torch.save state dicts (plain keys or DataParallel's
 * "module."), Lightning checkpoints ("model." or any prefix in front of backbone.body.*), safetensors;
 * every tensor checked by name and shape. The number of classes comes from the weights. */
typedef struct nn_detector nn_detector;

typedef struct nn_det_config {
    int min_size, max_size;                    /* transform: short side to 800, long side at most 1333 */
    int rpn_pre_nms_top_n, rpn_post_nms_top_n; /* 1000, 1000 (torchvision's test-time values) */
    double rpn_nms_thresh;                     /* 0.7 */
    double box_score_thresh;                   /* 0.05, strictly greater */
    double box_nms_thresh;                     /* 0.5, per class */
    int detections_per_img;                    /* 100 */
    float bn_eps;                              /* frozen batch norm: 1e-5 (0 for torchvision's COCO weights) */
    nn_precision precision;                    /* of the backbone, FPN, RPN conv and box head (fp32 default) */
} nn_det_config;
void nn_det_config_default(nn_det_config *c);

typedef struct nn_detector_info {
    char arch[64];          /* fasterrcnn_resnet50_fpn */
    char backbone[32];      /* resnet50 */
    char weight_path[4096];
    const char *file_kind;
    char prefix[64];        /* key prefix in front of backbone.body.*: "", "module.", "model." */
    int n_classes;          /* background included */
    int64_t n_params;
} nn_detector_info;

typedef struct nn_detection {
    float x1, y1, x2, y2; /* pixels of the input image, x to the right, y down (row 0 first) */
    float score;
    int label; /* 1 .. n_classes-1 */
} nn_detection;

/* Receives named intermediates (float32, torch's layouts: NCHW feature maps, row-major tables) for parity
 * tests and debugging; NULL in normal runs. */
typedef void (*nn_det_trace_fn)(void *user, const char *name, const float *data, int ndim, const int64_t *shape);

#define NN_DET_MIN_SIDE 8

int nn_detector_load(const char *path, const nn_det_config *cfg, nn_detector **out, char *err);
void nn_detector_free(nn_detector *d);
const nn_detector_info *nn_detector_info_of(const nn_detector *d);
/* The transform's sizes for an h x w input: resized (rh, rw) and padded to 32 (ph, pw). -1 with a message
 * when the image is smaller than NN_DET_MIN_SIDE a side or too elongated to resize. */
int nn_detect_sizes(const nn_detector *d, int h, int w, int *rh, int *rw, int *ph, int *pw, char *err);
/* Detect on one RGB image, chw = 3 planes of h x w in [0, 1] (row 0 = top). Writes at most cap detections,
 * by decreasing score, and their count to n_out. Returns MC_ROW_OK, or MC_ROW_BAD_SHAPE / MC_ROW_BAD_PIXELS
 * with the reason in err. Not thread-safe on one detector (it caches a plan per padded size). */
int nn_detect(nn_detector *d, const float *chw, int h, int w, nn_detection *out, int cap, int *n_out,
              nn_det_trace_fn tr, void *user, char *err);
/* Class-agnostic torchvision.ops.nms over detections already sorted by decreasing score: keeps, in place
 * and in order, those whose IoU with every better kept box is at most iou; returns the count. */
int nn_detections_nms(nn_detection *d, int n, double iou);
/* Arena bytes and multiply-adds of one pass at this input size (for bench figures). */
size_t nn_detector_plan_bytes(nn_detector *d, int h, int w);
double nn_detector_macs(nn_detector *d, int h, int w);

#endif
