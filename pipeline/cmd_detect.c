/* pipeline/cmd_detect.c: `morphcat detect`: the clump detector (torchvision's Faster R-CNN) on one image
 * file or a .npy batch, boxes printed or saved. For checking a detector file, parity work (--trace dumps
 * every intermediate) and small jobs; survey runs use `morphcat run --detector`. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <strings.h>
#include <sys/stat.h>

#include "io/npy.h"
#include "pipeline/cli.h"
#include "pipeline/clumps.h"

static void detect_usage(FILE *f)
{
    fprintf(f,
            "usage: morphcat detect --model PATH (--image FILE | --input X.npy) [--output OUT.csv|OUT.npy]\n"
            "                       [--post SPEC] [--recipe SPEC] [--hdu H] [--bn-eps E] [--trace DIR]\n"
            "                       [--precision fp32|bf16]\n\n"
            "Runs a torchvision Faster R-CNN (fasterrcnn_resnet50_fpn, as Galaxy Zoo: Clump Scout trained it) on\n"
            "one image or on a batch, and prints one line per detection: image, label, score, box x1 y1 x2 y2 in\n"
            "pixels of the input (x right, y along the stored rows), and RA/Dec of the box centre when the FITS\n"
            "file has a WCS.\n\n"
            "  --model PATH     torch.save state dict (plain or 'module.' keys), Lightning checkpoint, safetensors\n"
            "  --image FILE     a PNG/JPEG picture (used as RGB / 255), or a FITS cutout rendered by --recipe\n"
            "  --input X.npy    (N, 3, H, W) float32 RGB in [0, 1], as torchvision takes it\n"
            "  --output FILE    .csv (the printed table) or .npy ((K, 7) float32: image, label, score, x1, y1,\n"
            "                   x2, y2); default: print\n"
            "  --post SPEC      'none' (default: torchvision's detections as they are), 'clumpscout' (the\n"
            "                   release's class-agnostic NMS 0.2, score >= 0.3, no detections at the centre), or\n"
            "                   key=value,...: nms, score, centre, crop=x0;y0;x1;y1, max\n"
            "  --recipe SPEC    colours for FITS cutouts (default gz_decals); see morphcat run --help\n"
            "  --hdu H          FITS HDU (EXTNAME or number)\n"
            "  --bn-eps E       frozen batch-norm epsilon (default 1e-5; 0 for torchvision's COCO weights)\n"
            "  --precision P    fp32 (default) or bf16: backbone, FPN, RPN conv and box head on AMX tiles\n"
            "                   (fp32 accumulation; box decoding, NMS and the predictor stay fp32)\n"
            "  --trace DIR      write every intermediate of the first image as DIR/<name>.npy (parity tests)\n\n"
            "Exit status: 0 done; 1 nothing done (bad model or input); 3 done, but some images were refused\n"
            "(too small, NaN): each is reported on stderr.\n");
}

typedef struct trace_ctx {
    const char *dir;
    int failed;
} trace_ctx;

static void trace_write(void *user, const char *name, const float *data, int ndim, const int64_t *shape)
{
    trace_ctx *t = user;
    char path[4096], err[MC_ERR_LEN];
    snprintf(path, sizeof path, "%s/%s.npy", t->dir, name);
    int64_t sh[4];
    for (int i = 0; i < ndim; i++) sh[i] = shape[i];
    if (io_npy_write(path, data ? data : (const float *)"", ndim, sh, err)) {
        fprintf(stderr, "morphcat: %s\n", err);
        t->failed = 1;
    }
}

typedef struct det_out {
    FILE *csv;
    float *rows; /* .npy rows of 7 */
    size_t n, cap;
} det_out;

static void emit(det_out *o, int image, const nn_detection *d, double ra, double dec)
{
    if (o->csv)
        fprintf(o->csv, "%d,%d,%.6f,%.4f,%.4f,%.4f,%.4f,%.8f,%.8f\n", image, d->label, d->score, d->x1, d->y1, d->x2,
                d->y2, ra, dec);
    if (o->n == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 64;
        o->rows = mc_realloc(o->rows, sizeof(float) * 7 * o->cap);
    }
    float *r = o->rows + 7 * o->n++;
    r[0] = (float)image, r[1] = (float)d->label, r[2] = d->score;
    r[3] = d->x1, r[4] = d->y1, r[5] = d->x2, r[6] = d->y2;
}

int cmd_detect(int argc, char **argv)
{
    const char *model_path = NULL, *image = NULL, *input = NULL, *output = NULL, *post_spec = "none";
    const char *recipe_spec = "gz_decals", *hdu = NULL, *trace_dir = NULL;
    double bn_eps = 1e-5;
    const char *prec_s = "fp32";
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"image", required_argument, 0, 'I'},
        {"input", required_argument, 0, 'i'}, {"output", required_argument, 0, 'o'},
        {"post", required_argument, 0, 'p'},  {"recipe", required_argument, 0, 'r'},
        {"hdu", required_argument, 0, 'u'},   {"bn-eps", required_argument, 0, 'e'},
        {"trace", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'},
        {"precision", required_argument, 0, 'P'},
        {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:i:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'I': image = optarg; break;
        case 'i': input = optarg; break;
        case 'o': output = optarg; break;
        case 'p': post_spec = optarg; break;
        case 'r': recipe_spec = optarg; break;
        case 'u': hdu = optarg; break;
        case 'e': bn_eps = atof(optarg); break;
        case 't': trace_dir = optarg; break;
        case 'P': prec_s = optarg; break;
        case 'h': detect_usage(stdout); return MC_EXIT_OK;
        default: detect_usage(stderr); return MC_EXIT_USAGE;
        }
    }
    if (!model_path || (!image == !input) || optind != argc || !(bn_eps >= 0 && bn_eps < 1)) {
        fprintf(stderr, "morphcat detect: --model and one of --image or --input are required\n");
        detect_usage(stderr);
        return MC_EXIT_USAGE;
    }
    char err[MC_ERR_LEN];
    mc_clump_post post;
    pp_recipe recipe;
    nn_precision prec = NN_PREC_FP32;
    if (nn_precision_parse(prec_s, &prec, err) || nn_precision_check(prec, err)) {
        fprintf(stderr, "morphcat detect: %s\n", err);
        return MC_EXIT_FAIL;
    }
    if (mc_clump_post_parse(post_spec, &post, err) || pp_recipe_parse(recipe_spec, &recipe, err)) {
        fprintf(stderr, "morphcat: %s\n", err);
        return MC_EXIT_USAGE;
    }
    const char *ext = output ? strrchr(output, '.') : NULL;
    int out_npy = ext && !strcasecmp(ext, ".npy");
    if (output && !out_npy && !(ext && !strcasecmp(ext, ".csv"))) {
        fprintf(stderr, "morphcat: --output %s: name a .csv or a .npy file\n", output);
        return MC_EXIT_USAGE;
    }
    if (trace_dir) {
        struct stat st;
        if (stat(trace_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
            fprintf(stderr, "morphcat: --trace %s: not a folder\n", trace_dir);
            return MC_EXIT_USAGE;
        }
    }
    nn_init();
    nn_det_config cfg;
    nn_det_config_default(&cfg);
    cfg.bn_eps = (float)bn_eps;
    cfg.precision = prec;
    if (post.max_clumps > cfg.detections_per_img) cfg.detections_per_img = post.max_clumps;
    nn_detector *d = NULL;
    if (nn_detector_load(model_path, &cfg, &d, err)) {
        fprintf(stderr, "morphcat: %s\n", err);
        return MC_EXIT_FAIL;
    }
    det_out o = {0};
    if (!output || !out_npy) {
        o.csv = output ? fopen(output, "w") : stdout;
        if (!o.csv) {
            fprintf(stderr, "morphcat: %s: cannot write (%s)\n", output, strerror(errno));
            nn_detector_free(d);
            return MC_EXIT_FAIL;
        }
        fprintf(o.csv, "image,label,score,x1,y1,x2,y2,ra,dec\n");
    }
    trace_ctx tc = {trace_dir, 0};
    nn_detection *dets = mc_malloc(sizeof(nn_detection) * (size_t)cfg.detections_per_img);
    int rc = MC_EXIT_OK, n_images = 0;
    io_cutout cut = {0};
    pp_work work = {0};
    float *buf = NULL;
    size_t cap = 0;
    if (image) {
        io_read_opts ro = {hdu};
        mc_clump_view v;
        int st = io_cutout_read(image, &ro, &cut, err);
        if (st == MC_ROW_OK) st = mc_clump_render(&recipe, &cut, &post, &work, &buf, &cap, &v, err);
        int n = 0;
        if (st == MC_ROW_OK)
            st = nn_detect(d, buf, v.h, v.w, dets, cfg.detections_per_img, &n, trace_dir ? trace_write : NULL, &tc, err);
        if (st != MC_ROW_OK) {
            fprintf(stderr, "morphcat: %s: %s\n", image, err);
            rc = MC_EXIT_FAIL;
        } else {
            n = mc_clump_post_apply(&post, &v, dets, n);
            for (int i = 0; i < n; i++) {
                double ra, dec;
                mc_clump_radec(cut.wcs, &dets[i], &ra, &dec);
                emit(&o, 0, &dets[i], ra, dec);
            }
            n_images = 1;
        }
    } else {
        io_npy in;
        if (io_npy_open(input, &in, err)) {
            fprintf(stderr, "morphcat: %s\n", err);
            rc = MC_EXIT_FAIL;
        } else {
            if (in.ndim != 4 || in.shape[1] != 3 || in.shape[2] < 1 || in.shape[3] < 1) {
                fprintf(stderr, "morphcat: %s: detect takes an (N, 3, H, W) array\n", input);
                rc = MC_EXIT_FAIL;
            } else {
                int H = (int)in.shape[2], W = (int)in.shape[3];
                float *x = mc_malloc_aligned(sizeof(float) * (size_t)3 * H * W);
                for (int64_t i = 0; i < in.shape[0] && rc != MC_EXIT_FAIL; i++) {
                    if (io_npy_read_rows(&in, i, 1, x, err)) {
                        fprintf(stderr, "morphcat: %s\n", err);
                        rc = MC_EXIT_FAIL;
                        break;
                    }
                    int n = 0;
                    int st = nn_detect(d, x, H, W, dets, cfg.detections_per_img, &n,
                                       trace_dir && i == 0 ? trace_write : NULL, &tc, err);
                    if (st != MC_ROW_OK) {
                        fprintf(stderr, "morphcat: %s: image %lld: %s\n", input, (long long)i, err);
                        rc = MC_EXIT_PARTIAL;
                        continue;
                    }
                    mc_clump_view v = {.h = H, .w = W};
                    n = mc_clump_post_apply(&post, &v, dets, n);
                    for (int k = 0; k < n; k++) emit(&o, (int)i, &dets[k], NAN, NAN);
                    n_images++;
                }
                free(x);
            }
            io_npy_close(&in);
        }
    }
    if (rc != MC_EXIT_FAIL && out_npy) {
        int64_t sh[2] = {(int64_t)o.n, 7};
        if (io_npy_write(output, o.rows ? o.rows : (const float *)"", 2, sh, err)) {
            fprintf(stderr, "morphcat: %s\n", err);
            rc = MC_EXIT_FAIL;
        }
    }
    if (tc.failed) rc = MC_EXIT_FAIL;
    if (o.csv && o.csv != stdout) fclose(o.csv);
    if (rc != MC_EXIT_FAIL && output)
        fprintf(stderr, "morphcat: %zu detections on %d image(s) written to %s\n", o.n, n_images, output);
    free(o.rows);
    free(dets);
    free(buf);
    io_cutout_free(&cut);
    pp_work_free(&work);
    nn_detector_free(d);
    return rc;
}
