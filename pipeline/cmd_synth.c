/* pipeline/cmd_synth.c: `morphcat synth`: writes a synthetic survey (cutouts, manifest, broken entries) for
 * the demo and the tests, or regenerates one row's file. Only argument handling and the summary line live
 * here; the generator is io/synth.c. */
#include <errno.h>

#include "io/synth.h"
#include "pipeline/cli.h"

static void synth_usage(FILE *f)
{
    io_synth_opts d;
    io_synth_opts_default(&d);
    fprintf(
        f,
        "usage: morphcat synth --out DIR [--n %lld] [--size %d] [--seed %llu] [--broken %lld]\n"
        "                      [--png-fraction %g] [--pixscale %g] [--plain-fraction %g] [--quantize Q=%g]\n"
        "                      [--only INDEX]\n\n"
        "Writes a synthetic survey of DECaLS-style g,r,z cutouts of made-up galaxies (bulge + disk, spiral\n"
        "arms, bars, star-forming clumps, companions and mergers, background galaxies and stars; PSF, sky\n"
        "and photon noise; flux in nanomaggies, TAN WCS) and a manifest, deterministically: the same seed\n"
        "gives byte-identical files.\n\n"
        "  DIR/manifest.csv   id_str,file_loc,ra,dec: --n rows; ra,dec empty on a tenth of the FITS rows\n"
        "                     (the job then reads the WCS)\n"
        "  DIR/cutouts/       tile-compressed FITS (.fits.fz: RICE, quantisation step = sky sigma / Q),\n"
        "                     --plain-fraction plain .fits, --png-fraction PNG colour composites\n"
        "  DIR/broken.csv     the --broken rows that fail on purpose, one kind each in turn (truncated,\n"
        "                     garbage, missing and empty files, zero z band, NaN cube, 2-D image, 2-plane\n"
        "                     cube, corrupt PNG, truncated JPEG, empty file_loc, ra=abc), with the status\n"
        "                     each should get\n"
        "  DIR/truth.csv      what was drawn for each galaxy; DIR/clumps.csv: clump positions (FITS "
        "pixels)\n\n"
        "  --size PX          cutout side in pixels; --pixscale ARCSEC per pixel\n"
        "  --only INDEX       write only row INDEX's file (0-based), byte-identical to the full survey's\n",
        (long long)d.n, d.size, (unsigned long long)d.seed, (long long)d.broken, d.png_fraction, d.pixscale,
        d.plain_fraction, d.quantize);
}

static int synth_parse_i64(const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *v)
{
    char *end = NULL;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end || x < lo || x > hi) {
        fprintf(stderr, "morphcat: synth: %s %s: expected an integer in %lld..%lld\n", opt, s, (long long)lo,
                (long long)hi);
        return -1;
    }
    *v = x;
    return 0;
}

static int synth_parse_f64(const char *opt, const char *s, double lo, double hi, double *v)
{
    char *end = NULL;
    errno = 0;
    double x = strtod(s, &end);
    if (errno || end == s || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "morphcat: synth: %s %s: expected a number in %g..%g\n", opt, s, lo, hi);
        return -1;
    }
    *v = x;
    return 0;
}

int cmd_synth(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        synth_usage(stdout);
        return MC_EXIT_OK;
    }
    io_synth_opts o;
    io_synth_opts_default(&o);
    int64_t only = -1, v = 0;
    for (int i = 1; i < argc; i++) {
        /* --opt VALUE or --opt=VALUE */
        char name[64];
        const char *val = NULL, *eq = strchr(argv[i], '=');
        if (!strncmp(argv[i], "--", 2) && eq && (size_t)(eq - argv[i]) < sizeof name) {
            memcpy(name, argv[i], (size_t)(eq - argv[i]));
            name[eq - argv[i]] = '\0';
            val = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", argv[i]);
            if (i + 1 < argc) val = argv[i + 1], i++;
        }
        if (!val) {
            fprintf(stderr, "morphcat: synth: %s needs a value (morphcat synth --help)\n", name);
            return MC_EXIT_USAGE;
        }
        int bad = 0;
        if (!strcmp(name, "--out")) {
            o.out_dir = val;
        } else if (!strcmp(name, "--n")) {
            bad = synth_parse_i64(name, val, 1, 100000000, &o.n);
        } else if (!strcmp(name, "--size")) {
            bad = synth_parse_i64(name, val, 16, 4096, &v);
            o.size = (int)v;
        } else if (!strcmp(name, "--seed")) {
            char *end = NULL;
            errno = 0;
            o.seed = strtoull(val, &end, 10);
            if (errno || end == val || *end || val[0] == '-') {
                fprintf(stderr, "morphcat: synth: --seed %s: expected a non-negative integer\n", val);
                bad = 1;
            }
        } else if (!strcmp(name, "--broken")) {
            bad = synth_parse_i64(name, val, 0, 100000000, &o.broken);
        } else if (!strcmp(name, "--png-fraction")) {
            bad = synth_parse_f64(name, val, 0, 1, &o.png_fraction);
        } else if (!strcmp(name, "--plain-fraction")) {
            bad = synth_parse_f64(name, val, 0, 1, &o.plain_fraction);
        } else if (!strcmp(name, "--pixscale")) {
            bad = synth_parse_f64(name, val, 0.01, 100, &o.pixscale);
        } else if (!strcmp(name, "--quantize")) {
            bad = synth_parse_f64(name, val, 0.5, 1024, &o.quantize);
        } else if (!strcmp(name, "--only")) {
            bad = synth_parse_i64(name, val, 0, 100000000, &only);
        } else {
            fprintf(stderr, "morphcat: synth: unknown option '%s' (morphcat synth --help)\n", name);
            return MC_EXIT_USAGE;
        }
        if (bad) return MC_EXIT_USAGE;
    }
    if (!o.out_dir || !o.out_dir[0]) {
        fprintf(stderr, "morphcat: synth: --out DIR is required (morphcat synth --help)\n");
        return MC_EXIT_USAGE;
    }
    if (o.broken > o.n) {
        fprintf(stderr, "morphcat: synth: --broken %lld is more than --n %lld rows\n", (long long)o.broken,
                (long long)o.n);
        return MC_EXIT_USAGE;
    }
    char err[MC_ERR_LEN];
    if (only >= 0) {
        char path[4096 + 128];
        if (only >= o.n) {
            fprintf(stderr, "morphcat: synth: --only %lld: the survey has rows 0..%lld\n", (long long)only,
                    (long long)(o.n - 1));
            return MC_EXIT_USAGE;
        }
        if (io_synth_row_write(&o, only, path, sizeof path, err)) {
            fprintf(stderr, "morphcat: synth: %s\n", err);
            return MC_EXIT_FAIL;
        }
        io_synth_row r;
        io_synth_row_plan(&o, only, &r);
        printf("synth: row %lld (%s): %s\n", (long long)only, r.id_str,
               path[0] ? path : "(no file for this row)");
        return MC_EXIT_OK;
    }
    io_synth_summary s;
    if (io_synth_survey_write(&o, &s, err)) {
        fprintf(stderr, "morphcat: synth: %s\n", err);
        return MC_EXIT_FAIL;
    }
    printf(
        "synth: %lld rows in %s/manifest.csv: %lld fits.fz, %lld fits, %lld png, %lld broken (broken.csv), "
        "%lld without ra,dec; %d px at %g\"/px, seed %llu; %.1f MB in %.1f s\n",
        (long long)s.rows, o.out_dir, (long long)s.fz, (long long)s.fits, (long long)s.png,
        (long long)s.broken, (long long)s.radec_empty, o.size, o.pixscale, (unsigned long long)o.seed,
        s.bytes / 1e6, s.seconds);
    return MC_EXIT_OK;
}
