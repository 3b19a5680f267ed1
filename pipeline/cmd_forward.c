/* pipeline/cmd_forward.c: `morphcat forward`: one model over a .npy batch file, embeddings or head outputs
 * to a .npy file. Streams the input a batch at a time through one planned arena. Images holding NaN or
 * Inf are reported one line each and get a NaN output row; the rest are computed and written. */
#include <getopt.h>
#include <math.h>

#include "io/npy.h"
#include "nn/nn.h"
#include "pipeline/cli.h"

static void forward_usage(FILE *f)
{
    fprintf(f, "usage: morphcat forward --model PATH --input X.npy --output Y.npy [--head] [--batch N]\n"
               "                        [--precision fp32|bf16]\n\n"
               "Runs a Zoobot encoder on X.npy, an (N, C, H, W) float32 array in PyTorch layout (values as the\n"
               "model was trained on: Zoobot takes [0, 1]), and writes Y.npy:\n"
               "  without --head: the pooled embeddings, (N, embedding size) float32;\n"
               "  with --head:    the head's outputs, (N, head size): Dirichlet concentrations for Zoobot tree\n"
               "                  checkpoints, class probabilities for classifier checkpoints.\n\n"
               "  --model PATH   Hub folder (config.json + model.safetensors or pytorch_model.bin),\n"
               "                 a weight file, or a Lightning checkpoint (.ckpt)\n"
               "  --batch N      images per forward pass (default 8)\n"
               "  --precision P  fp32 (default: PyTorch's numbers) or bf16 (AMX tiles, fp32 accumulation;\n"
               "                 refused where AMX cannot be used)\n\n"
               "Exit status: 0 all images done; 1 nothing done (bad model, input or output); 3 done, but some\n"
               "images held NaN or Inf: each is reported on stderr and its output row is NaN.\n");
}

int cmd_forward(int argc, char **argv)
{
    const char *model_path = NULL, *in_path = NULL, *out_path = NULL;
    int want_head = 0, batch = 8;
    const char *prec_s = "fp32";
    nn_precision prec = NN_PREC_FP32;
    static const struct option opts[] = {{"model", required_argument, 0, 'm'}, {"input", required_argument, 0, 'i'},
                                         {"output", required_argument, 0, 'o'}, {"head", no_argument, 0, 'H'},
                                         {"batch", required_argument, 0, 'b'}, {"help", no_argument, 0, 'h'},
                                         {"precision", required_argument, 0, 'P'},
                                         {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:i:o:b:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'i': in_path = optarg; break;
        case 'o': out_path = optarg; break;
        case 'H': want_head = 1; break;
        case 'b': batch = atoi(optarg); break;
        case 'P': prec_s = optarg; break;
        case 'h': forward_usage(stdout); return MC_EXIT_OK;
        default: forward_usage(stderr); return MC_EXIT_USAGE;
        }
    }
    if (!model_path || !in_path || !out_path || optind != argc || batch < 1) {
        fprintf(stderr, "morphcat forward: --model, --input and --output are required (and --batch >= 1)\n");
        forward_usage(stderr);
        return MC_EXIT_USAGE;
    }
    nn_init();
    char err[MC_ERR_LEN];
    if (nn_precision_parse(prec_s, &prec, err) || nn_precision_check(prec, err)) {
        fprintf(stderr, "morphcat forward: %s\n", err);
        return MC_EXIT_FAIL;
    }
    nn_model *m = NULL;
    if (nn_model_load(model_path, &m, err)) {
        fprintf(stderr, "morphcat: %s\n", err);
        return MC_EXIT_FAIL;
    }
    const nn_model_info *mi = nn_model_info_of(m);
    if (want_head && mi->head_kind == NN_HEAD_NONE) {
        fprintf(stderr, "morphcat: %s: --head given but %s has no head (an encoder-only file)\n", model_path, mi->arch);
        nn_model_free(m);
        return MC_EXIT_FAIL;
    }
    io_npy in;
    if (io_npy_open(in_path, &in, err)) {
        fprintf(stderr, "morphcat: %s\n", err);
        nn_model_free(m);
        return MC_EXIT_FAIL;
    }
    int rc = MC_EXIT_FAIL;
    nn_plan *plan = NULL;
    float *xb = NULL, *out = NULL;
    if (in.ndim != 4 || in.shape[1] != mi->in_chans) {
        if (in.ndim != 4)
            fprintf(stderr, "morphcat: %s: %d-D array; forward takes (N, C, H, W)\n", in_path, in.ndim);
        else
            fprintf(stderr, "morphcat: %s: images have %lld channels but %s takes %d\n", in_path,
                    (long long)in.shape[1], mi->arch, mi->in_chans);
        goto done;
    }
    const int64_t N = in.shape[0];
    const int H = (int)in.shape[2], W = (int)in.shape[3];
    const int D = want_head ? mi->head_dim : mi->embed_dim;
    if (N == 0) {
        fprintf(stderr, "morphcat: %s: holds no images\n", in_path);
        goto done;
    }
    if (batch > N) batch = (int)N;
    if (prec == NN_PREC_BF16) nn_model_bf16_only(m); /* one plan, bf16: the fp32 weights go once packed */
    if (nn_plan_init(m, batch, H, W, prec, &plan, err)) {
        fprintf(stderr, "morphcat: %s: %s\n", in_path, err);
        goto done;
    }
    xb = mc_malloc_aligned(sizeof(float) * (size_t)batch * (size_t)in.row_floats);
    out = mc_malloc_aligned(sizeof(float) * (size_t)N * D);
    float *scratch = mc_malloc(sizeof(float) * (size_t)batch * (mi->embed_dim + (mi->head_dim ? mi->head_dim : 1)));
    int64_t n_bad = 0;
    for (int64_t s = 0; s < N; s += batch) {
        int n = (int)(N - s < batch ? N - s : batch);
        if (io_npy_read_rows(&in, s, n, xb, err)) {
            fprintf(stderr, "morphcat: %s\n", err);
            free(scratch);
            goto done;
        }
        unsigned char bad[4096];
        MC_ASSERT(n <= 4096);
        for (int i = 0; i < n; i++) {
            float *img = xb + (size_t)i * in.row_floats;
            int64_t nonfinite = 0;
            for (int64_t k = 0; k < in.row_floats; k++) nonfinite += !isfinite(img[k]);
            bad[i] = nonfinite > 0;
            if (bad[i]) {
                fprintf(stderr, "morphcat: %s: image %lld: %lld non-finite values (NaN or Inf); its output row is NaN\n",
                        in_path, (long long)(s + i), (long long)nonfinite);
                memset(img, 0, sizeof(float) * (size_t)in.row_floats);
                n_bad++;
            }
        }
        float *emb = scratch, *hd = scratch + (size_t)batch * mi->embed_dim;
        nn_forward(plan, xb, n, emb, want_head ? hd : NULL);
        const float *src = want_head ? hd : emb;
        for (int i = 0; i < n; i++) {
            float *dst = out + (size_t)(s + i) * D;
            if (bad[i])
                for (int k = 0; k < D; k++) dst[k] = NAN;
            else
                memcpy(dst, src + (size_t)i * D, sizeof(float) * (size_t)D);
        }
    }
    free(scratch);
    int64_t shape[2] = {N, D};
    if (io_npy_write(out_path, out, 2, shape, err)) {
        fprintf(stderr, "morphcat: %s\n", err);
        goto done;
    }
    rc = n_bad ? MC_EXIT_PARTIAL : MC_EXIT_OK;
    if (n_bad)
        fprintf(stderr, "morphcat: %s: %lld of %lld images were not computed (non-finite input)\n", in_path,
                (long long)n_bad, (long long)N);
done:
    free(xb);
    free(out);
    nn_plan_free(plan);
    io_npy_close(&in);
    nn_model_free(m);
    return rc;
}
