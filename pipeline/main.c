/* pipeline/main.c: the `morphcat` command line: dispatches to one subcommand per file (pipeline/cmd_*.c).
 * Holds no logic of its own beyond choosing the command and printing the overview. */
#include "mc.h"
#include "nn/nn.h"
#include "pipeline/cli.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} mc_command;

static const mc_command commands[] = {
    {"run", cmd_run, "the catalogue job: a manifest of cutouts to one HDF5 catalogue, across MPI ranks, resumable"},
    {"detect", cmd_detect, "find giant star-forming clumps: torchvision's Faster R-CNN (Clump Scout) on an image or batch"},
    {"forward", cmd_forward, "run an encoder on a .npy batch (N,C,H,W float32) and write embeddings or head outputs"},
    {"info", cmd_info, "describe a model: architecture, parameters, channels, embedding and head sizes, sha256"},
    {"weights", cmd_weights, "list the tensors of a weight file (torch .bin/.ckpt or .safetensors)"},
    {"cutout", cmd_cutout, "what morphcat reads from one cutout file, and the model input a recipe makes of it"},
    {"plan", cmd_plan, "split a manifest into chunks for Slurm array tasks and estimate the node-hours"},
    {"status", cmd_status, "what catalogues or a planned job hold: done, failed by reason, remaining, rate"},
    {"merge", cmd_merge, "combine per-job catalogues into one release catalogue, one row per galaxy"},
    {"rerun", cmd_rerun, "a data-release rerun: recompute only new or changed cutouts, carry the rest over"},
    {"mosaic", cmd_mosaic, "a grid of catalogue galaxies' cutouts, by id, from a CSV or the top N of an answer, with clumps"},
    {"report", cmd_report, "the release report: a static HTML page with its figures (provenance, failures, histograms)"},
    {"export", cmd_export, "the catalogue as a FITS or CSV table with Zoobot's column names, clumps as a second table"},
    {"pca", cmd_pca, "principal components of catalogues' embeddings (fit, across MPI ranks), and projections (apply)"},
    {"similar", cmd_similar, "exact nearest neighbours of query galaxies in a catalogue (the paper's similarity search)"},
    {"anomalies", cmd_anomalies, "rank galaxies by anomaly: isolation forest, or a Gaussian process on interest labels"},
    {"finetune", cmd_finetune, "a linear head on frozen features from a few labels (logistic or ridge), cross-validated"},
    {"predict", cmd_predict, "apply a finetuned head to every ok row of a catalogue"},
    {"synth", cmd_synth, "generate a synthetic survey: FITS cutouts with WCS, a manifest, and a few broken files"},
};

static void usage(FILE *f)
{
    fprintf(f, "morphcat %s: Zoobot morphology and embeddings for survey cutouts, in C\n\n", MC_VERSION);
    fprintf(f, "usage: morphcat COMMAND [options]   (morphcat COMMAND --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

int cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    nn_cpu_request(); /* AMX tile permission: before MPI_Init, threads or signal stacks exist */
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("morphcat %s\n", MC_VERSION);
        if (nn_build_note()) printf("note: %s\n", nn_build_note());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "morphcat: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
