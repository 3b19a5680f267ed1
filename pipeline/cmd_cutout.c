/* pipeline/cmd_cutout.c: `morphcat cutout`: what morphcat reads from one cutout file (kind, planes, bands,
 * HDU, WCS centre) and, optionally, the decoded planes and a recipe's model input as .npy. It is the
 * inspection and reference-test door to io/cutout.h and io/preprocess.h; it runs no model. */
#include <cjson/cJSON.h>
#include <math.h>

#include "io/cutout.h"
#include "io/npy.h"
#include "io/preprocess.h"
#include "pipeline/cli.h"

static void cutout_usage(FILE *f)
{
    fprintf(f,
            "usage: morphcat cutout FILE [--hdu X] [--planes OUT.npy]\n"
            "                       [--recipe SPEC] [--size S] [--chans C] [--tensor OUT.npy] [--json] "
            "[--bench N]\n\n"
            "Decodes FILE (FITS, also .fits.gz and tile-compressed; PNG; JPEG) as a catalogue run would and "
            "prints\n"
            "its kind, planes, size, band names, HDU and the WCS centre (RA/Dec at the central pixel).\n"
            "  --hdu X          FITS HDU to read: 1-based number, EXTNAME or EXTNAME,EXTVER (default: first "
            "image)\n"
            "  --planes OUT     write the decoded planes as float32 .npy (nband, h, w); row 0 is the file's "
            "first row\n"
            "  --recipe SPEC    preprocessing recipe (default auto): gz_decals, image, asinh or auto, with "
            "options\n"
            "                   name:key=value,... (bands=g;r;z zoom=1.2 flip=0 quantize=1 max_blank=0.2;\n"
            "                   asinh: q=1 pmin=0 pmax=99.7). See docs/preprocessing.md.\n"
            "  --size S         model input size in pixels (default 224)\n"
            "  --chans C        model input channels, 1 or 3 (default 3)\n"
            "  --tensor OUT     write the recipe's output as float32 .npy (chans, size, size)\n"
            "  --json           print one JSON object instead of text\n"
            "  --bench N        decode (and apply the recipe) N more times and print the time per cutout\n"
            "A file that cannot be used prints one line 'morphcat: <status>: <reason>' and exits 1.\n");
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

static const char *kind_str(io_kind k)
{
    return k == IO_KIND_FITS ? "fits" : k == IO_KIND_PNG ? "png" : "jpeg";
}

static const char *recipe_kind_str(pp_kind k)
{
    return k == PP_GZ_DECALS ? "gz_decals" : k == PP_IMAGE ? "image" : k == PP_ASINH ? "asinh" : "auto";
}

int cmd_cutout(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        cutout_usage(stdout);
        return MC_EXIT_OK;
    }
    const char *path = NULL, *hdu = NULL, *planes_out = NULL, *tensor_out = NULL, *spec = NULL;
    int size = 224, chans = 3, json = 0, bench = 0, want_recipe = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--hdu") && has)
            hdu = argv[++i];
        else if (!strcmp(a, "--planes") && has)
            planes_out = argv[++i];
        else if (!strcmp(a, "--recipe") && has)
            spec = argv[++i], want_recipe = 1;
        else if (!strcmp(a, "--tensor") && has)
            tensor_out = argv[++i], want_recipe = 1;
        else if (!strcmp(a, "--size") && has) {
            if (parse_int(argv[++i], 8, 4096, &size)) {
                fprintf(stderr, "morphcat: cutout: --size must be an integer in [8, 4096], got '%s'\n",
                        argv[i]);
                return MC_EXIT_USAGE;
            }
            want_recipe = 1;
        } else if (!strcmp(a, "--chans") && has) {
            if (parse_int(argv[++i], 1, 3, &chans) || chans == 2) {
                fprintf(stderr, "morphcat: cutout: --chans must be 1 or 3, got '%s'\n", argv[i]);
                return MC_EXIT_USAGE;
            }
            want_recipe = 1;
        } else if (!strcmp(a, "--bench") && has) {
            if (parse_int(argv[++i], 1, 1000000, &bench)) {
                fprintf(stderr, "morphcat: cutout: --bench takes a positive count, got '%s'\n", argv[i]);
                return MC_EXIT_USAGE;
            }
        } else if (!strcmp(a, "--json"))
            json = 1;
        else if (a[0] != '-' && !path)
            path = a;
        else {
            fprintf(stderr, "morphcat: cutout: unexpected argument '%s'\n", a);
            cutout_usage(stderr);
            return MC_EXIT_USAGE;
        }
    }
    if (!path) {
        cutout_usage(stderr);
        return MC_EXIT_USAGE;
    }
    char err[MC_ERR_LEN];
    pp_recipe recipe;
    if (pp_recipe_parse(spec ? spec : "auto", &recipe, err)) {
        fprintf(stderr, "morphcat: %s\n", err);
        return MC_EXIT_FAIL;
    }
    io_read_opts opts = {.hdu = hdu};
    io_cutout c = {0};
    pp_work work = {0};
    float *tensor = NULL;
    int rc = MC_EXIT_OK;
    double t0 = mc_now();
    int st = io_cutout_read(path, &opts, &c, err);
    double t_read = mc_now() - t0;
    if (st != MC_ROW_OK) {
        fprintf(stderr, "morphcat: %s: %s\n", mc_row_status_name(st), err);
        rc = MC_EXIT_FAIL;
        goto out;
    }
    pp_kind resolved = pp_recipe_resolve(&recipe, &c);
    double t_pp = 0;
    if (want_recipe) {
        tensor = (float *)mc_malloc_aligned((size_t)chans * size * size * sizeof(float));
        t0 = mc_now();
        st = pp_apply(&recipe, &c, chans, size, &work, tensor, err);
        t_pp = mc_now() - t0;
        if (st != MC_ROW_OK) {
            fprintf(stderr, "morphcat: %s: %s: %s\n", mc_row_status_name(st), path, err);
            rc = MC_EXIT_FAIL;
            goto out;
        }
    }
    if (planes_out) {
        int64_t shape[3] = {c.nband, c.h, c.w};
        if (io_npy_write(planes_out, c.pix, 3, shape, err)) {
            fprintf(stderr, "morphcat: %s\n", err);
            rc = MC_EXIT_FAIL;
            goto out;
        }
    }
    if (tensor_out) {
        int64_t shape[3] = {chans, size, size};
        if (io_npy_write(tensor_out, tensor, 3, shape, err)) {
            fprintf(stderr, "morphcat: %s\n", err);
            rc = MC_EXIT_FAIL;
            goto out;
        }
    }
    /* Steady-state cost: the buffers are warm and sized, as in the catalogue loop. */
    double bench_read = 0, bench_pp = 0;
    for (int k = 0; k < bench; k++) {
        t0 = mc_now();
        st = io_cutout_read(path, &opts, &c, err);
        double t1 = mc_now();
        if (st == MC_ROW_OK && want_recipe) st = pp_apply(&recipe, &c, chans, size, &work, tensor, err);
        double t2 = mc_now();
        if (st != MC_ROW_OK) {
            fprintf(stderr, "morphcat: %s: %s\n", mc_row_status_name(st), err);
            rc = MC_EXIT_FAIL;
            goto out;
        }
        bench_read += t1 - t0;
        bench_pp += t2 - t1;
    }
    char desc[512];
    pp_recipe_describe(&recipe, desc, sizeof desc);
    double tmin = 0, tmax = 0, tmean = 0;
    if (tensor) {
        size_t n = (size_t)chans * size * size;
        tmin = tmax = tensor[0];
        for (size_t i = 0; i < n; i++) {
            tmin = fmin(tmin, tensor[i]);
            tmax = fmax(tmax, tensor[i]);
            tmean += tensor[i];
        }
        tmean /= (double)n;
    }
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "file", path);
        cJSON_AddStringToObject(o, "kind", kind_str(c.kind));
        cJSON_AddNumberToObject(o, "hdu", c.hdu);
        cJSON_AddStringToObject(o, "extname", c.extname);
        cJSON_AddNumberToObject(o, "nband", c.nband);
        cJSON_AddNumberToObject(o, "h", c.h);
        cJSON_AddNumberToObject(o, "w", c.w);
        cJSON *bands = cJSON_AddArrayToObject(o, "bands");
        for (int i = 0; i < c.nband; i++) cJSON_AddItemToArray(bands, cJSON_CreateString(c.band[i]));
        cJSON_AddBoolToObject(o, "has_wcs", c.has_wcs);
        if (c.has_wcs) {
            cJSON_AddNumberToObject(o, "ra", c.ra);
            cJSON_AddNumberToObject(o, "dec", c.dec);
        } else {
            cJSON_AddNullToObject(o, "ra");
            cJSON_AddNullToObject(o, "dec");
        }
        cJSON_AddStringToObject(o, "recipe", desc);
        cJSON_AddStringToObject(o, "resolved", recipe_kind_str(resolved));
        if (tensor) {
            cJSON_AddNumberToObject(o, "chans", chans);
            cJSON_AddNumberToObject(o, "size", size);
            cJSON_AddNumberToObject(o, "tensor_min", tmin);
            cJSON_AddNumberToObject(o, "tensor_max", tmax);
            cJSON_AddNumberToObject(o, "tensor_mean", tmean);
        }
        cJSON_AddNumberToObject(o, "read_ms", 1e3 * t_read);
        if (tensor) cJSON_AddNumberToObject(o, "recipe_ms", 1e3 * t_pp);
        if (bench) {
            cJSON_AddNumberToObject(o, "bench_n", bench);
            cJSON_AddNumberToObject(o, "bench_read_ms", 1e3 * bench_read / bench);
            cJSON_AddNumberToObject(o, "bench_recipe_ms", 1e3 * bench_pp / bench);
        }
        char *s = cJSON_PrintUnformatted(o);
        printf("%s\n", s);
        cJSON_free(s);
        cJSON_Delete(o);
    } else {
        printf("file:     %s\n", path);
        printf("kind:     %s\n", kind_str(c.kind));
        if (c.kind == IO_KIND_FITS)
            printf("hdu:      %d%s%s%s\n", c.hdu, c.extname[0] ? " (" : "", c.extname,
                   c.extname[0] ? ")" : "");
        printf("planes:   %d of %d x %d (h x w)\n", c.nband, c.h, c.w);
        printf("bands:   ");
        for (int i = 0; i < c.nband; i++) printf(" %s", c.band[i][0] ? c.band[i] : "?");
        printf("\n");
        if (c.has_wcs)
            printf("centre:   ra %.9f dec %.9f deg (pixel %.1f, %.1f)\n", c.ra, c.dec, (c.w + 1) / 2.0,
                   (c.h + 1) / 2.0);
        else
            printf("centre:   no celestial WCS\n");
        printf("recipe:   %s (resolves to %s)\n", desc, recipe_kind_str(resolved));
        if (tensor)
            printf("tensor:   %d x %d x %d, min %.6f max %.6f mean %.6f\n", chans, size, size, tmin, tmax,
                   tmean);
        if (bench)
            printf("time:     %.3f ms decode + %.3f ms recipe per cutout (mean of %d)\n",
                   1e3 * bench_read / bench, 1e3 * bench_pp / bench, bench);
    }
out:
    free(tensor);
    pp_work_free(&work);
    io_cutout_free(&c);
    return rc;
}
