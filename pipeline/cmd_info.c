/* pipeline/cmd_info.c: `morphcat info`: what a model file holds, as morphcat understands it. Loading is
 * the full strict load, so `info` is also the quickest check that a downloaded model is usable. */
#include "nn/nn.h"
#include "pipeline/cli.h"

static void info_usage(FILE *f)
{
    fprintf(f, "usage: morphcat info --model PATH\n\n"
               "Loads the model as `forward` would (every tensor checked by name and shape) and prints its\n"
               "architecture, parameter count, input channels, embedding size, head, and the sha256 of the\n"
               "weight file. PATH: Hub folder, weight file, or Lightning checkpoint.\n"
               "Known architectures: %s\n",
            nn_arch_names());
}

int cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    if (cli_wants_help(argc, argv)) {
        info_usage(stdout);
        return MC_EXIT_OK;
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc)
            path = argv[++i];
        else if (!path && argv[i][0] != '-')
            path = argv[i];
        else {
            info_usage(stderr);
            return MC_EXIT_USAGE;
        }
    }
    if (!path) {
        info_usage(stderr);
        return MC_EXIT_USAGE;
    }
    nn_init();
    char err[MC_ERR_LEN], hex[65];
    nn_model *m = NULL;
    if (nn_model_load(path, &m, err)) {
        fprintf(stderr, "morphcat: %s\n", err);
        return MC_EXIT_FAIL;
    }
    const nn_model_info *mi = nn_model_info_of(m);
    if (nn_file_sha256(mi->weight_path, hex, err)) {
        fprintf(stderr, "morphcat: %s\n", err);
        nn_model_free(m);
        return MC_EXIT_FAIL;
    }
    printf("architecture: %s\n", mi->arch);
    printf("family:       %s\n", mi->family);
    printf("weight file:  %s\n", mi->weight_path);
    printf("file kind:    %s\n", mi->file_kind);
    printf("parameters:   %lld\n", (long long)mi->n_params);
    printf("in_chans:     %d (%s)\n", mi->in_chans, mi->in_chans == 1 ? "greyscale" : "colour");
    printf("embedding:    %d\n", mi->embed_dim);
    printf("head:         %s", nn_head_kind_name(mi->head_kind));
    if (mi->head_kind != NN_HEAD_NONE) printf(" (%d outputs)", mi->head_dim);
    printf("\nmin input:    %d px\n", mi->min_size);
    printf("sha256:       %s\n", hex);
    printf("blas:         %s\n", nn_blas_describe());
    if (nn_blas_advice()) printf("blas advice:  %s\n", nn_blas_advice());
    if (nn_build_note()) printf("build:        %s\n", nn_build_note());
    nn_model_free(m);
    return MC_EXIT_OK;
}
