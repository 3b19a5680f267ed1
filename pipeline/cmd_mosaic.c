/* pipeline/cmd_mosaic.c: `morphcat mosaic`: a grid of catalogue galaxies' cutouts rendered by the catalogue's
 * recipe, chosen by id, by a CSV of ids (the output of `similar`, `anomalies` or `predict`), or as the top N
 * of a column. Argument handling only: selection and drawing are report/. */
#include <csv.h>
#include <errno.h>
#include <getopt.h>

#include "pipeline/cli.h"
#include "report/report.h"

static void mosaic_usage(FILE *f)
{
    fprintf(
        f,
        "usage: morphcat mosaic --catalogue CAT.h5 (--ids A,B,... | --from OUT.csv | --answer COLUMN --top "
        "N)\n"
        "                       --output M.png [--boxes] [--size S]\n\n"
        "A grid of the galaxies' cutouts (8 a row, in the order given), each decoded from its file and\n"
        "rendered by the catalogue's own recipe (its preprocessing attribute) at S x S pixels (default "
        "128),\n"
        "labelled with its id_str and, for --answer, its value.\n"
        "  --ids A,B,...     these galaxies (id_str), in this order\n"
        "  --from OUT.csv    the galaxies of a CSV's id_str column (or its first column), in file order\n"
        "  --answer COLUMN --top N   the N ok galaxies with the largest COLUMN (a column of the catalogue's\n"
        "                    columns/ group, e.g. bar-dr5_strong_fraction, or an answer: its _fraction)\n"
        "  --boxes           draw the catalogue's clumps (yellow clump, magenta odd clump) with scores\n"
        "A galaxy whose file cannot be rendered gets a grey tile and a line on stderr (exit 3).\n"
        "Exit 1 (one line) when the catalogue, an id or the output is unusable.\n");
}

typedef struct ids_list {
    char **v;
    int n, cap;
} ids_list;

static void ids_add(ids_list *l, const char *s, size_t len)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = mc_realloc(l->v, sizeof(char *) * (size_t)l->cap);
    }
    l->v[l->n] = mc_malloc(len + 1);
    memcpy(l->v[l->n], s, len);
    l->v[l->n++][len] = 0;
}

typedef struct from_state {
    ids_list *ids;
    int col, field, line, found_header;
} from_state;

static void from_field(void *s, size_t len, void *data)
{
    from_state *st = data;
    if (st->line == 0) {
        if (len == 6 && !memcmp(s, "id_str", 6)) st->col = st->field, st->found_header = 1;
    } else if (st->field == st->col) {
        ids_add(st->ids, s, len);
    }
    st->field++;
}

static void from_row(int c, void *data)
{
    (void)c;
    from_state *st = data;
    st->field = 0;
    st->line++;
}

/* id_str column of a CSV (else its first column, the header row skipped), in file order */
static int read_from_csv(const char *path, ids_list *ids, char *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return mc_fail(err, "%s: cannot be read: %s", path, strerror(errno));
    struct csv_parser p;
    csv_init(&p, CSV_APPEND_NULL);
    from_state st = {.ids = ids};
    char buf[65536];
    size_t n;
    int rc = 0;
    while ((n = fread(buf, 1, sizeof buf, fp)) > 0)
        if (csv_parse(&p, buf, n, from_field, from_row, &st) != n) {
            rc = mc_fail(err, "%s: not a readable CSV: %s", path, csv_strerror(csv_error(&p)));
            break;
        }
    if (!rc) csv_fini(&p, from_field, from_row, &st);
    csv_free(&p);
    fclose(fp);
    if (!rc && ids->n == 0) rc = mc_fail(err, "%s: no galaxies listed (expected an id_str column)", path);
    return rc;
}

int cmd_mosaic(int argc, char **argv)
{
    static const struct option opts[] = {{"catalogue", required_argument, 0, 'c'},
                                         {"ids", required_argument, 0, 'i'},
                                         {"from", required_argument, 0, 'f'},
                                         {"answer", required_argument, 0, 'a'},
                                         {"top", required_argument, 0, 't'},
                                         {"output", required_argument, 0, 'o'},
                                         {"boxes", no_argument, 0, 'b'},
                                         {"size", required_argument, 0, 's'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *cat = NULL, *ids_arg = NULL, *from = NULL, *answer = NULL, *output = NULL;
    int top = 0, c;
    rpt_mosaic_opts mo = {.size = 128};
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            cat = optarg;
            break;
        case 'i':
            ids_arg = optarg;
            break;
        case 'f':
            from = optarg;
            break;
        case 'a':
            answer = optarg;
            break;
        case 't':
            top = atoi(optarg);
            break;
        case 'o':
            output = optarg;
            break;
        case 'b':
            mo.boxes = 1;
            break;
        case 's':
            mo.size = atoi(optarg);
            break;
        case 'h':
            mosaic_usage(stdout);
            return MC_EXIT_OK;
        default:
            mosaic_usage(stderr);
            return MC_EXIT_USAGE;
        }
    }
    int sources = !!ids_arg + !!from + !!answer;
    if (!cat || !output || optind != argc || sources != 1 || (answer && (top < 1 || top > 10000)) ||
        (!answer && top)) {
        fprintf(
            stderr,
            "morphcat: mosaic: give --catalogue, --output and one of --ids, --from, --answer with --top N "
            "(1..10000)\n");
        mosaic_usage(stderr);
        return MC_EXIT_USAGE;
    }
    if (mo.size < 16 || mo.size > 1024) {
        fprintf(stderr, "morphcat: mosaic: --size must be 16..1024 pixels, got %d\n", mo.size);
        return MC_EXIT_USAGE;
    }
    char err[MC_ERR_LEN];
    rpt_cat *rc_cat;
    if (rpt_cat_open(cat, &rc_cat, err)) {
        fprintf(stderr, "morphcat: mosaic: %s\n", err);
        return MC_EXIT_FAIL;
    }
    ids_list ids = {0};
    int64_t *rows = NULL;
    char **labels = NULL;
    int n = 0, rc = MC_EXIT_OK;
    if (answer) {
        rows = mc_malloc(sizeof *rows * (size_t)top);
        float *vals = mc_malloc(sizeof *vals * (size_t)top);
        if (rpt_select_top(rc_cat, answer, top, rows, vals, &n, err)) {
            rc = MC_EXIT_FAIL;
        } else if (n == 0) {
            snprintf(err, sizeof err, "%s: no ok galaxy has a value of '%s'", cat, answer);
            rc = MC_EXIT_FAIL;
        } else {
            labels = mc_calloc((size_t)n, sizeof *labels);
            for (int i = 0; i < n; i++) {
                labels[i] = mc_malloc(32);
                snprintf(labels[i], 32, "%.3f", (double)vals[i]);
            }
        }
        free(vals);
    } else {
        if (ids_arg) {
            for (const char *p = ids_arg; *p;) {
                const char *e = strchr(p, ',');
                size_t len = e ? (size_t)(e - p) : strlen(p);
                if (len) ids_add(&ids, p, len);
                p += len + (e ? 1 : 0);
            }
            if (!ids.n) snprintf(err, sizeof err, "--ids lists no galaxy"), rc = MC_EXIT_FAIL;
        } else if (read_from_csv(from, &ids, err)) {
            rc = MC_EXIT_FAIL;
        }
        if (!rc) {
            n = ids.n;
            rows = mc_malloc(sizeof *rows * (size_t)n);
            if (rpt_cat_find_ids(rc_cat, (const char *const *)ids.v, n, rows, err)) rc = MC_EXIT_FAIL;
        }
    }
    int bad = 0;
    if (!rc && rpt_mosaic_write(rc_cat, rows, (const char *const *)labels, n, &mo, output, &bad, err))
        rc = MC_EXIT_FAIL;
    if (rc) {
        fprintf(stderr, "morphcat: mosaic: %s\n", err);
    } else {
        printf("mosaic: %s: %d galaxies%s", output, n, mo.boxes ? " with clump boxes" : "");
        if (bad) printf(", %d could not be rendered (see above)", bad);
        printf("\n");
        if (bad) rc = MC_EXIT_PARTIAL;
    }
    for (int i = 0; i < ids.n; i++) free(ids.v[i]);
    free(ids.v);
    for (int i = 0; labels && i < n; i++) free(labels[i]);
    free(labels);
    free(rows);
    rpt_cat_close(rc_cat);
    return rc;
}
