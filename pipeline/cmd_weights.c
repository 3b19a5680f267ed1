/* pipeline/cmd_weights.c: `morphcat weights PATH [--values]`: lists the tensors of a weight file with dtype,
 * shape and float64 checksums, so a file can be compared against torch without Python at run time.
 * It only reports what nn/weights.c read; it does not check the tensors against any architecture. */
#include "mc.h"
#include "nn/weights.h"
#include "pipeline/cli.h"

static void weights_usage(FILE *f)
{
    fprintf(f,
            "usage: morphcat weights PATH [--values]\n\n"
            "Reads a weight file (torch.save .bin, Lightning .ckpt or .safetensors) and prints one line per\n"
            "tensor, tab-separated, in file order:\n"
            "  name  dtype  shape  sum  sum_abs\n"
            "shape is (d0,d1,...); sum and sum_abs are float64 sums of the float32 data (- for integer and\n"
            "bool tensors, which are not loaded). Lines starting with '#' describe the file.\n\n"
            "options:\n"
            "  --values   add a sixth column: every float32 value (%%.9g, space-separated)\n"
            "  -h, --help this text\n");
}

/* Names come from the file: escape what would break the tab-separated, one-line-per-tensor listing. */
static void weights_print_name(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f || c == '\\')
            printf("\\x%02x", c);
        else
            putchar(c);
    }
}

int cmd_weights(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        weights_usage(stdout);
        return MC_EXIT_OK;
    }
    const char *path = NULL;
    int values = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--values")) {
            values = 1;
        } else if (argv[i][0] == '-' && argv[i][1] != 0) {
            fprintf(stderr, "morphcat: weights: unknown option '%s' (see morphcat weights --help)\n",
                    argv[i]);
            return MC_EXIT_FAIL;
        } else if (path) {
            fprintf(stderr, "morphcat: weights: more than one PATH given ('%s' and '%s')\n", path, argv[i]);
            return MC_EXIT_FAIL;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        fprintf(stderr,
                "morphcat: weights: no weight file given (usage: morphcat weights PATH [--values])\n");
        return MC_EXIT_FAIL;
    }

    char err[MC_ERR_LEN];
    nn_wfile *wf;
    if (nn_wfile_open(path, &wf, err) != 0) {
        fprintf(stderr, "morphcat: %s\n", err);
        return MC_EXIT_FAIL;
    }
    int64_t total = 0;
    for (int i = 0; i < wf->n; i++) total += wf->t[i].numel;
    printf("# file %s\n# kind %s\n# tensors %d\n# elements %lld\n", wf->path, nn_wkind_name(wf->kind), wf->n,
           (long long)total);
    if (wf->arch_hint) {
        printf("# arch_hint ");
        weights_print_name(wf->arch_hint);
        putchar('\n');
    }
    for (int i = 0; i < wf->n; i++) {
        const nn_wtensor *t = &wf->t[i];
        weights_print_name(t->name);
        printf("\t%s\t(", nn_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) printf(d ? ",%lld" : "%lld", (long long)t->shape[d]);
        putchar(')');
        if (t->data) {
            double s = 0, sa = 0;
            for (int64_t k = 0; k < t->numel; k++) {
                s += t->data[k];
                sa += t->data[k] < 0 ? -(double)t->data[k] : (double)t->data[k];
            }
            printf("\t%.17g\t%.17g", s, sa);
        } else {
            printf("\t-\t-");
        }
        if (values) {
            putchar('\t');
            for (int64_t k = 0; t->data && k < t->numel; k++) printf(k ? " %.9g" : "%.9g", t->data[k]);
        }
        putchar('\n');
    }
    nn_wfile_close(wf);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "morphcat: weights: cannot write the listing to stdout\n");
        return MC_EXIT_FAIL;
    }
    return MC_EXIT_OK;
}
