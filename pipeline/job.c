/* pipeline/job.c: the catalogue job's configuration: `morphcat run` options, optionally from an INI file
 * (inih) whose keys are the long option names, command-line options winning. The effective configuration
 * is kept as text for the catalogue. Not here: checking that the files named are usable (the run does). */
#include <getopt.h>
#include <ini.h>

#include "pipeline/lock.h"
#include "pipeline/run.h"

static void run_usage(FILE *f)
{
    fprintf(f,
            "usage: morphcat run --manifest M --model PATH --output CAT.h5 [options]\n"
            "       mpirun -n N morphcat run ...          (ranks share the work dynamically)\n\n"
            "Runs a Zoobot encoder over every cutout of a manifest and writes one HDF5 catalogue: per galaxy\n"
            "its id, position, status, Dirichlet concentrations, vote fractions, 90%% intervals and proportion\n"
            "asked (when the model has a decision-tree head) and its embedding. Rerunning the same command\n"
            "resumes an interrupted job (nothing is computed twice, nothing lost) or, when it is complete, does\n"
            "nothing and says so.\n\n"
            "  --manifest M        CSV (id_str, file_loc [, ra, dec, hdu]) or a folder of cutouts\n"
            "  --model PATH        Hub folder, weight file or Lightning checkpoint (see morphcat info)\n"
            "  --output CAT.h5     the catalogue (created, or resumed when it exists)\n"
            "  --schema NAME       Galaxy Zoo decision tree of the head: %s, or a JSON file\n"
            "                      (default: the built-in schema whose size matches the head, when unique)\n"
            "  --recipe SPEC       preprocessing: auto (default), gz_decals, image, asinh[:key=value,...]\n"
            "                      (docs/preprocessing.md)\n"
            "  --hdu NAME|N        FITS extension to read (default: the first image HDU)\n"
            "  --size S            model input side in pixels (default 224)\n"
            "  --batch B           galaxies per work unit and forward pass (default 16); fixed per catalogue\n"
            "  --embedding KIND    f32 (default), f16 or none\n"
            "  --pca C.npy         also store embeddings projected on PCA components (K, D) ...\n"
            "  --pca-mean M.npy    ... after subtracting this mean (D) (default: no centring)\n"
            "  --model-note TEXT   recorded in the catalogue (e.g. where the weights came from)\n"
            "  --release NAME      data release recorded in every row (e.g. dr10; default empty)\n"
            "  --detector PATH     also find giant star-forming clumps with this Faster R-CNN (Clump Scout's\n"
            "                      torchvision fasterrcnn_resnet50_fpn, 3 classes) on the same cutouts, into the\n"
            "                      catalogue's clumps group (see morphcat detect --help)\n"
            "  --clumps SPEC       the detections' post-processing: clumpscout (default: class-agnostic NMS 0.2,\n"
            "                      score >= 0.3, none at the centre, 20 per galaxy), none, or key=value,...\n"
            "  --detector-bn-eps E frozen batch-norm epsilon of the detector (default 1e-5)\n"
            "  --precision P       fp32 (default: PyTorch's numbers) or bf16 (AMX tiles, fp32 accumulation;\n"
            "                      refused where AMX cannot be used); fixed per catalogue\n"
            "  --commit-seconds T  make results durable at least this often (default 30)\n"
            "  --progress-seconds T  progress lines this often (default 30)\n"
            "  --config FILE.ini   read options from an INI file (keys = option names, [job] section)\n"
            "  --lock-stale-after S  a lock on the output held from another host whose heartbeat is older\n"
            "                      than S seconds is stale and broken (default 300; one job per output)\n\n"
            "Exit status: 0 done (failed galaxies are rows with a status and message, not errors);\n"
            "1 nothing done (bad configuration, model, manifest or output, one line on stderr);\n"
            "4 stopped by a signal (SIGTERM, SIGUSR1, SIGINT) after committing: rerun to resume.\n",
            nn_schema_names());
}

static int set_option(mc_job *job, const char *key, const char *v, char *err)
{
#define STR(field) snprintf(job->field, sizeof job->field, "%s", v)
    if (!strcmp(key, "manifest")) STR(manifest);
    else if (!strcmp(key, "model")) STR(model);
    else if (!strcmp(key, "output")) STR(output);
    else if (!strcmp(key, "schema")) STR(schema);
    else if (!strcmp(key, "recipe")) STR(recipe);
    else if (!strcmp(key, "hdu")) STR(hdu);
    else if (!strcmp(key, "pca")) STR(pca);
    else if (!strcmp(key, "pca-mean")) STR(pca_mean);
    else if (!strcmp(key, "model-note")) STR(model_note);
    else if (!strcmp(key, "release")) STR(release);
    else if (!strcmp(key, "detector")) STR(detector);
    else if (!strcmp(key, "clumps")) STR(clumps);
    else if (!strcmp(key, "detector-bn-eps")) job->det_bn_eps = atof(v);
    else if (!strcmp(key, "precision")) return nn_precision_parse(v, &job->precision, err) ? -1 : 0;
    else if (!strcmp(key, "size")) job->size = atoi(v);
    else if (!strcmp(key, "batch")) job->batch = atoi(v);
    else if (!strcmp(key, "commit-seconds")) job->commit_seconds = atof(v);
    else if (!strcmp(key, "progress-seconds")) job->progress_seconds = atof(v);
    else if (!strcmp(key, "lock-stale-after")) job->lock_stale_after = atof(v);
    else if (!strcmp(key, "embedding")) {
        if (!strcmp(v, "f32") || !strcmp(v, "float32")) job->embed = 1;
        else if (!strcmp(v, "f16") || !strcmp(v, "float16")) job->embed = 2;
        else if (!strcmp(v, "none")) job->embed = 0;
        else return mc_fail(err, "--embedding must be f32, f16 or none, not '%s'", v);
    } else
        return mc_fail(err, "unknown option '%s'", key);
#undef STR
    return 0;
}

typedef struct ini_ctx {
    mc_job *job;
    char *err;
    int failed;
    const char *path;
} ini_ctx;

static int job_ini_entry(void *user, const char *section, const char *name, const char *value)
{
    ini_ctx *c = user;
    if (c->failed) return 0;
    if (section[0] && strcmp(section, "job")) {
        c->failed = 1;
        mc_fail(c->err, "%s: unknown section [%s] (options go in [job])", c->path, section);
        return 0;
    }
    char e[MC_ERR_LEN];
    if (set_option(c->job, name, value, e)) {
        c->failed = 1;
        mc_fail(c->err, "%s: %s", c->path, e);
        return 0;
    }
    return 1;
}

int mc_job_parse(int argc, char **argv, mc_job *job, char *err)
{
    memset(job, 0, sizeof *job);
    snprintf(job->recipe, sizeof job->recipe, "auto");
    job->batch = 16;
    job->size = 224;
    job->embed = 1;
    job->commit_seconds = 30;
    job->progress_seconds = 30;
    job->max_messages = 50;
    job->det_bn_eps = 1e-5;
    job->lock_stale_after = MC_LOCK_STALE_DEFAULT;
    snprintf(job->clumps, sizeof job->clumps, "clumpscout");
    static const struct option opts[] = {
        {"manifest", required_argument, 0, 0},         {"model", required_argument, 0, 0},
        {"output", required_argument, 0, 0},           {"schema", required_argument, 0, 0},
        {"recipe", required_argument, 0, 0},           {"hdu", required_argument, 0, 0},
        {"size", required_argument, 0, 0},             {"batch", required_argument, 0, 0},
        {"embedding", required_argument, 0, 0},        {"pca", required_argument, 0, 0},
        {"pca-mean", required_argument, 0, 0},         {"model-note", required_argument, 0, 0},
        {"commit-seconds", required_argument, 0, 0},   {"progress-seconds", required_argument, 0, 0},
        {"config", required_argument, 0, 0},           {"release", required_argument, 0, 0},
        {"detector", required_argument, 0, 0},         {"clumps", required_argument, 0, 0},
        {"detector-bn-eps", required_argument, 0, 0},  {"precision", required_argument, 0, 0},
        {"lock-stale-after", required_argument, 0, 0},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    /* first pass: the INI file, so command-line options override it */
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--config")) continue;
        ini_ctx c = {job, err, 0, argv[i + 1]};
        int r = ini_parse(argv[i + 1], job_ini_entry, &c);
        if (c.failed) return -1;
        if (r < 0) return mc_fail(err, "%s: cannot open the configuration file", argv[i + 1]);
        if (r > 0) return mc_fail(err, "%s: line %d is not an INI 'key = value' line", argv[i + 1], r);
    }
    optind = 1;
    int c, idx;
    while ((c = getopt_long(argc, argv, "h", opts, &idx)) != -1) {
        if (c == 'h') {
            run_usage(stdout);
            return 1;
        }
        if (c != 0) {
            run_usage(stderr);
            return mc_fail(err, "bad arguments (see above)");
        }
        if (!strcmp(opts[idx].name, "config")) continue;
        if (set_option(job, opts[idx].name, optarg, err)) return -1;
    }
    if (optind != argc) return mc_fail(err, "unexpected argument '%s'", argv[optind]);
    if (!job->manifest[0] || !job->model[0] || !job->output[0])
        return mc_fail(err, "--manifest, --model and --output are required (morphcat run --help)");
    if (job->batch < 1 || job->batch > 4096) return mc_fail(err, "--batch must be 1..4096");
    if (job->size < 16 || job->size > 4096) return mc_fail(err, "--size must be 16..4096");
    if (!(job->det_bn_eps >= 0 && job->det_bn_eps < 1)) return mc_fail(err, "--detector-bn-eps must be in [0, 1)");
    if (!(job->lock_stale_after > 0)) return mc_fail(err, "--lock-stale-after must be > 0 seconds");
    if (job->commit_seconds < 0 || job->progress_seconds <= 0)
        return mc_fail(err, "--commit-seconds must be >= 0 and --progress-seconds > 0");
    snprintf(job->config_text, sizeof job->config_text,
             "manifest = %s\nmodel = %s\noutput = %s\nschema = %s\nrecipe = %s\nhdu = %s\nsize = %d\nbatch = %d\n"
             "embedding = %s\npca = %s\npca-mean = %s\nmodel-note = %s\nrelease = %s\ncommit-seconds = %g\n"
             "detector = %s\nclumps = %s\ndetector-bn-eps = %g\nprecision = %s\n",
             job->manifest, job->model, job->output, job->schema, job->recipe, job->hdu, job->size, job->batch,
             job->embed == 2 ? "f16" : job->embed ? "f32" : "none", job->pca, job->pca_mean, job->model_note,
             job->release, job->commit_seconds, job->detector, job->clumps, job->det_bn_eps,
             nn_precision_name(job->precision));
    return 0;
}
