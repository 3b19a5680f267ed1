/* tests/unit/test_schema.c: the Galaxy Zoo schemas and Dirichlet statistics of nn/schema.c and nn/beta.c.
 * With no arguments it runs its own checks (exit 0 passes): every built-in schema loads with Zoobot's answer
 * counts, columns and dependencies; bad user schema files fail with one line naming the file and the problem;
 * Beta quantiles match closed forms and their mirror image. With arguments it is the tool that
 * tests/test_schema_stats.py drives against scipy:
 *   test_schema summarise SCHEMA IN.npy OUT_PREFIX   (N, answers) float32 concentrations ->
 *       OUT_PREFIX_frac.npy, _lo.npy, _hi.npy (N, answers) and _asked.npy (N, questions)
 *   test_schema quantile                             lines "p a b" on stdin -> quantiles, %.17g, on stdout
 *   test_schema columns SCHEMA                       one line per answer: column, question index, depends_on
 */
#include "io/npy.h"
#include "nn/nn.h"

#include <math.h>
#include <unistd.h>

#include "tests/unit/unit.h"

/* ---- tool modes ---------------------------------------------------------------------------------------- */

static int tool_summarise(const char *schema, const char *in, const char *prefix)
{
    char err[MC_ERR_LEN];
    nn_schema *s;
    io_npy a;
    if (nn_schema_load(schema, &s, err) || io_npy_open(in, &a, err)) {
        fprintf(stderr, "test_schema: %s\n", err);
        return 1;
    }
    int na = nn_schema_n_answers(s), nq = nn_schema_n_questions(s);
    if (a.ndim != 2 || a.shape[1] != na) {
        fprintf(stderr, "test_schema: %s: expected shape (N, %d) for schema %s\n", in, na, schema);
        return 1;
    }
    int64_t n = a.shape[0];
    float *conc = mc_malloc((size_t)(n * na) * sizeof(float));
    float *out[4];
    for (int k = 0; k < 4; k++) out[k] = mc_malloc((size_t)(n * (k == 3 ? nq : na)) * sizeof(float));
    if (io_npy_read_rows(&a, 0, n, conc, err)) {
        fprintf(stderr, "test_schema: %s\n", err);
        return 1;
    }
    io_npy_close(&a);
    for (int64_t g = 0; g < n; g++)
        nn_schema_summarise(s, conc + g * na, out[0] + g * na, out[1] + g * na, out[2] + g * na,
                            out[3] + g * nq);
    static const char *suffix[4] = {"frac", "lo", "hi", "asked"};
    for (int k = 0; k < 4; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%s_%s.npy", prefix, suffix[k]);
        int64_t shape[2] = {n, k == 3 ? nq : na};
        if (io_npy_write(path, out[k], 2, shape, err)) {
            fprintf(stderr, "test_schema: %s\n", err);
            return 1;
        }
        free(out[k]);
    }
    free(conc);
    nn_schema_free(s);
    return 0;
}

static int tool_quantile(void)
{
    double p, a, b;
    while (scanf("%lf %lf %lf", &p, &a, &b) == 3) printf("%.17g\n", nn_beta_quantile(p, a, b));
    return 0;
}

static int tool_columns(const char *schema)
{
    char err[MC_ERR_LEN];
    nn_schema *s;
    if (nn_schema_load(schema, &s, err)) {
        fprintf(stderr, "test_schema: %s\n", err);
        return 1;
    }
    for (int a = 0; a < nn_schema_n_answers(s); a++) {
        int q = nn_schema_question_of(s, a), d = nn_schema_depends_on(s, q);
        printf("%s %d %s\n", nn_schema_answer_col(s, a), q, d < 0 ? "-" : nn_schema_answer_col(s, d));
    }
    nn_schema_free(s);
    return 0;
}

/* ---- self-contained checks ----------------------------------------------------------------------------- */

/* Zoobot's answer counts (galaxy-datasets label_metadata.py @3cd2149): questions, answers, and a few columns
 * by index that pin the order (decals_all_campaigns = dr12, then dr5, then dr8). */
static void test_builtins_match_zoobot(void)
{
    static const struct {
        const char *name;
        int nq, na;
        int col_index[3];
        const char *col[3];
    } want[] = {
        /* clang-format off */
        {"gz_decals_dr5", 10, 34, {0, 24, 33},
         {"smooth-or-featured-dr5_smooth", "spiral-arm-count-dr5_1", "merging-dr5_merger"}},
        {"gz_decals_dr8", 10, 34, {2, 10, 29},
         {"smooth-or-featured-dr8_artifact", "bulge-size-dr8_dominant", "spiral-arm-count-dr8_cant-tell"}},
        {"gz_desi", 10, 34, {0, 7, 33},
         {"smooth-or-featured_smooth", "bar_strong", "merging_merger"}},
        {"gz2", 10, 30, {0, 13, 29},
         {"smooth-or-featured-gz2_smooth", "something-odd-gz2_yes", "spiral-arm-count-gz2_cant-tell"}},
        {"gz_euclid", 13, 46, {2, 36, 45},
         {"smooth-or-featured_problem", "problem_star", "artifact_ghost"}},
        {"gz_cosmic_dawn", 13, 45, {2, 36, 44},
         {"smooth-or-featured_problem", "problem_star", "artifact_other"}},
        /* dr12 has 30 answers, so dr5 starts at 30 and dr8 at 64 */
        {"decals_all_campaigns", 30, 98, {29, 30, 64},
         {"merging-dr12_merger", "smooth-or-featured-dr5_smooth", "smooth-or-featured-dr8_smooth"}},
        /* clang-format on */
    };
    char err[MC_ERR_LEN];
    int n_builtin = 0;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        nn_schema *s = NULL;
        int rc = nn_schema_load(want[i].name, &s, err);
        CHECK(rc == 0, "built-in %s does not load: %s", want[i].name, err);
        if (rc) continue;
        n_builtin++;
        CHECK(!strcmp(nn_schema_name(s), want[i].name), "%s: name %s", want[i].name, nn_schema_name(s));
        CHECK(nn_schema_n_questions(s) == want[i].nq, "%s: %d questions, want %d", want[i].name,
              nn_schema_n_questions(s), want[i].nq);
        CHECK(nn_schema_n_answers(s) == want[i].na, "%s: %d answers, want %d", want[i].name,
              nn_schema_n_answers(s), want[i].na);
        for (int k = 0; k < 3 && nn_schema_n_answers(s) == want[i].na; k++)
            CHECK(!strcmp(nn_schema_answer_col(s, want[i].col_index[k]), want[i].col[k]),
                  "%s: column %d is %s, want %s", want[i].name, want[i].col_index[k],
                  nn_schema_answer_col(s, want[i].col_index[k]), want[i].col[k]);
        /* answers contiguous, every column starts with its question's name, dependencies point backwards */
        int prev_q = 0;
        for (int a = 0; a < nn_schema_n_answers(s); a++) {
            int q = nn_schema_question_of(s, a);
            CHECK(q == prev_q || q == prev_q + 1, "%s: answers of question %d not contiguous", want[i].name,
                  q);
            prev_q = q;
            const char *qn = nn_schema_question(s, q);
            CHECK(!strncmp(nn_schema_answer_col(s, a), qn, strlen(qn)), "%s: column %s not under question %s",
                  want[i].name, nn_schema_answer_col(s, a), qn);
        }
        for (int q = 0; q < nn_schema_n_questions(s); q++) {
            int d = nn_schema_depends_on(s, q);
            CHECK(d < 0 || nn_schema_question_of(s, d) < q, "%s: question %d depends on a later one",
                  want[i].name, q);
        }
        nn_schema_free(s);
    }
    /* every name nn_schema_names lists is one of the seven */
    const char *names = nn_schema_names();
    int listed = 1;
    for (const char *c = names; *c; c++) listed += *c == ',';
    CHECK(listed == 7 && n_builtin == 7, "nn_schema_names lists %d schemas (%s), want 7", listed, names);

    /* the dependency chains Zoobot uses (decals_ortho_dependencies / gz2_ortho_dependencies /
     * euclid_dependencies) */
    static const struct {
        const char *schema, *question, *after;
    } deps[] = {
        {"gz_decals_dr5", "has-spiral-arms-dr5", "disk-edge-on-dr5_no"},
        {"gz_decals_dr5", "merging-dr5", NULL},
        {"decals_all_campaigns", "spiral-winding-dr12", "has-spiral-arms-dr12_yes"},
        {"decals_all_campaigns", "edge-on-bulge-dr8", "disk-edge-on-dr8_yes"},
        {"gz_desi", "how-rounded", "smooth-or-featured_smooth"},
        {"gz2", "has-spiral-arms-gz2",
         "smooth-or-featured-gz2_featured-or-disk"}, /* gz2: not disk-edge-on_no */
        {"gz2", "bulge-shape-gz2", "disk-edge-on-gz2_yes"},
        {"gz2", "something-odd-gz2", NULL},
        {"gz_euclid", "artifact", "problem_artifact"},
        {"gz_euclid", "clumps", "disk-edge-on_no"},
        {"gz_cosmic_dawn", "problem", "smooth-or-featured_problem"},
    };
    for (size_t i = 0; i < sizeof deps / sizeof deps[0]; i++) {
        nn_schema *s;
        if (nn_schema_load(deps[i].schema, &s, err)) continue;
        int found = 0;
        for (int q = 0; q < nn_schema_n_questions(s); q++) {
            if (strcmp(nn_schema_question(s, q), deps[i].question)) continue;
            found = 1;
            int d = nn_schema_depends_on(s, q);
            const char *got = d < 0 ? "(none)" : nn_schema_answer_col(s, d);
            CHECK(deps[i].after ? d >= 0 && !strcmp(got, deps[i].after) : d < 0, "%s: %s follows %s, want %s",
                  deps[i].schema, deps[i].question, got, deps[i].after ? deps[i].after : "(none)");
        }
        CHECK(found, "%s: no question %s", deps[i].schema, deps[i].question);
        nn_schema_free(s);
    }
}

/* A user schema file with the given text must be refused with one line naming the file and holding `frag`. */
static void expect_bad_file(const char *dir, const char *label, const char *text, const char *frag)
{
    char path[4096], err[MC_ERR_LEN] = "";
    snprintf(path, sizeof path, "%s/%s.json", dir, label);
    FILE *f = fopen(path, "wb");
    MC_ASSERT(f);
    fputs(text, f);
    fclose(f);
    nn_schema *s = NULL;
    int rc = nn_schema_load(path, &s, err);
    CHECK(rc == -1 && s == NULL, "%s: accepted", label);
    CHECK(strstr(err, path) == err, "%s: message does not start with the file: %s", label, err);
    CHECK(strstr(err, frag) != NULL, "%s: message lacks \"%s\": %s", label, frag, err);
    CHECK(strchr(err, '\n') == NULL, "%s: message is more than one line: %s", label, err);
    printf("refused %-20s %s\n", label, err);
    if (rc == 0) nn_schema_free(s);
    unlink(path);
}

static void test_user_schema_files(void)
{
    char dir[4096], path[4096], err[MC_ERR_LEN];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/mctest-schema-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    MC_ASSERT(mkdtemp(dir));

    /* a good file loads, and answers to what it says */
    snprintf(path, sizeof path, "%s/rings.json", dir);
    FILE *f = fopen(path, "wb");
    MC_ASSERT(f);
    fputs("{\"name\": \"my_rings\", \"source\": \"test\", \"questions\": [\n"
          " {\"name\": \"ring\", \"answers\": [\"_yes\", \"_no\"], \"depends_on\": null},\n"
          " {\"name\": \"ring-type\", \"answers\": [\"_inner\", \"_outer\", \"_both\"], \"depends_on\": "
          "\"ring_yes\"}]}\n",
          f);
    fclose(f);
    nn_schema *s = NULL;
    int rc = nn_schema_load(path, &s, err);
    CHECK(rc == 0, "good user schema refused: %s", err);
    if (rc == 0) {
        CHECK(!strcmp(nn_schema_name(s), "my_rings") && nn_schema_n_answers(s) == 5 &&
                  nn_schema_n_questions(s) == 2,
              "good user schema: wrong shape");
        CHECK(!strcmp(nn_schema_answer_col(s, 3), "ring-type_outer") && nn_schema_depends_on(s, 1) == 0,
              "good user schema: wrong columns or dependency");
        float conc[5] = {3, 1, 2, 2, 4}, frac[5], asked[2];
        nn_schema_summarise(s, conc, frac, NULL, NULL, asked);
        CHECK(fabsf(frac[0] - 0.75f) < 1e-7f && fabsf(frac[4] - 0.5f) < 1e-7f, "fractions %g %g", frac[0],
              frac[4]);
        CHECK(asked[0] == 1.0f && fabsf(asked[1] - 0.75f) < 1e-7f, "asked %g %g", asked[0], asked[1]);
        nn_schema_free(s);
    }
    unlink(path);

    expect_bad_file(dir, "not_json", "{\"name\": \"x\", \"questions\": [", "not valid JSON");
    expect_bad_file(dir, "array", "[1, 2]", "top level must be an object");
    expect_bad_file(dir, "no_name", "{\"questions\": []}", "\"name\"");
    expect_bad_file(dir, "no_questions", "{\"name\": \"x\", \"questions\": []}", "\"questions\"");
    expect_bad_file(dir, "dup_question",
                    "{\"name\": \"x\", \"questions\": ["
                    "{\"name\": \"a\", \"answers\": [\"_x\", \"_y\"], \"depends_on\": null},"
                    "{\"name\": \"a\", \"answers\": [\"_z\", \"_w\"], \"depends_on\": null}]}",
                    "question \"a\" appears twice");
    expect_bad_file(dir, "dup_answer",
                    "{\"name\": \"x\", \"questions\": ["
                    "{\"name\": \"a\", \"answers\": [\"_x\", \"_x\"], \"depends_on\": null}]}",
                    "\"a_x\" appears twice");
    /* columns collide across questions: "a" + "_b_c" and "a_b" + "_c" */
    expect_bad_file(dir, "dup_column",
                    "{\"name\": \"x\", \"questions\": ["
                    "{\"name\": \"a\", \"answers\": [\"_b_c\", \"_y\"], \"depends_on\": null},"
                    "{\"name\": \"a_b\", \"answers\": [\"_c\", \"_w\"], \"depends_on\": null}]}",
                    "\"a_b_c\" appears twice");
    expect_bad_file(
        dir, "one_answer",
        "{\"name\": \"x\", \"questions\": [{\"name\": \"a\", \"answers\": [\"_x\"], \"depends_on\": null}]}",
        "at least two");
    expect_bad_file(dir, "answer_not_string",
                    "{\"name\": \"x\", \"questions\": [{\"name\": \"a\", \"answers\": [\"_x\", 3], "
                    "\"depends_on\": null}]}",
                    "answer 1");
    expect_bad_file(dir, "missing_depends_on",
                    "{\"name\": \"x\", \"questions\": [{\"name\": \"a\", \"answers\": [\"_x\", \"_y\"]}]}",
                    "\"depends_on\" must be null or");
    expect_bad_file(dir, "typo_key",
                    "{\"name\": \"x\", \"questions\": ["
                    "{\"name\": \"a\", \"answers\": [\"_x\", \"_y\"], \"depends-on\": null}]}",
                    "question \"a\": unknown key \"depends-on\"");
    expect_bad_file(dir, "unknown_dependency",
                    "{\"name\": \"x\", \"questions\": ["
                    "{\"name\": \"a\", \"answers\": [\"_x\", \"_y\"], \"depends_on\": null},"
                    "{\"name\": \"b\", \"answers\": [\"_x\", \"_y\"], \"depends_on\": \"a_z\"}]}",
                    "depends_on \"a_z\" is not an answer column");
    expect_bad_file(dir, "self_dependency",
                    "{\"name\": \"x\", \"questions\": ["
                    "{\"name\": \"a\", \"answers\": [\"_x\", \"_y\"], \"depends_on\": \"a_x\"}]}",
                    "depends on its own answer");
    expect_bad_file(dir, "cycle",
                    "{\"name\": \"x\", \"questions\": ["
                    "{\"name\": \"a\", \"answers\": [\"_x\", \"_y\"], \"depends_on\": \"c_x\"},"
                    "{\"name\": \"b\", \"answers\": [\"_x\", \"_y\"], \"depends_on\": \"a_x\"},"
                    "{\"name\": \"c\", \"answers\": [\"_x\", \"_y\"], \"depends_on\": \"b_y\"}]}",
                    "dependency cycle: a -> c -> b -> a");
    expect_bad_file(dir, "out_of_order",
                    "{\"name\": \"x\", \"questions\": ["
                    "{\"name\": \"a\", \"answers\": [\"_x\", \"_y\"], \"depends_on\": \"b_x\"},"
                    "{\"name\": \"b\", \"answers\": [\"_x\", \"_y\"], \"depends_on\": null}]}",
                    "an answer of the later question \"b\"");

    /* a missing file and an unknown name */
    snprintf(path, sizeof path, "%s/absent.json", dir);
    rc = nn_schema_load(path, &s, err);
    CHECK(rc == -1 && strstr(err, path) == err && strstr(err, "cannot open"), "missing file: %s", err);
    rc = nn_schema_load("gz_decals_dr9", &s, err);
    CHECK(rc == -1 && strstr(err, "unknown schema \"gz_decals_dr9\"") && strstr(err, "gz_decals_dr5") &&
              !strchr(err, '\n'),
          "unknown name: %s", err);
    rmdir(dir);
}

/* Closed forms: Beta(1, b) has x = 1 - (1 - p)^(1/b), Beta(a, 1) has x = p^(1/a), Beta(1/2, 1/2) (arcsine)
 * has x = sin^2(pi p / 2); and for any a, b the quantile must invert the cdf, here checked through symmetry:
 * Q(p; a, b) = 1 - Q(1 - p; b, a). */
static void test_beta_quantile_closed_forms(void)
{
    static const double ps[] = {1e-300, 1e-100, 1e-20, 1e-8,  1e-3,     0.05,     0.3,
                                0.5,    0.7,    0.95,  0.999, 1 - 1e-8, 1 - 1e-15};
    static const double bs[] = {1.0, 1.0001, 2.5, 101.0, 600.0, 9000.0};
    double worst = 0.0;
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        double p = ps[i];
        for (size_t j = 0; j < sizeof bs / sizeof bs[0]; j++) {
            double b = bs[j];
            double want = -expm1(log1p(-p) / b), got = nn_beta_quantile(p, 1.0, b);
            double e = fabs(got - want) / want;
            worst = fmax(worst, e);
            CHECK(e < 1e-12, "Beta(1, %g) at p=%g: %.17g, want %.17g (rel %.2g)", b, p, got, want, e);
            if (p < 1e-200) continue; /* x = p^(1/a) below: skip where it underflows */
            want = exp(log(p) / b);
            got = nn_beta_quantile(p, b, 1.0);
            e = fabs(got - want) / want;
            worst = fmax(worst, e);
            CHECK(e < 1e-12, "Beta(%g, 1) at p=%g: %.17g, want %.17g (rel %.2g)", b, p, got, want, e);
        }
        if (p > 1e-100) {
            double s = sin(M_PI * p / 2.0), want = s * s, got = nn_beta_quantile(p, 0.5, 0.5);
            double e = fabs(got - want) / want;
            worst = fmax(worst, e);
            CHECK(e < 1e-12, "Beta(1/2, 1/2) at p=%g: %.17g, want %.17g (rel %.2g)", p, got, want, e);
        }
    }
    /* symmetry over the head's range (a = 1.0001, b = 9000 too): Q(p; a, b) = 1 - Q(1 - p; b, a), for p where
     * 1 - p keeps its digits; the error is measured on min(x, 1 - x), the side held to full precision */
    static const double ab[][2] = {{1.0001, 9000}, {1.0001, 1.0001}, {101, 101},
                                   {101, 505},     {3.7, 42.1},      {50, 2}};
    static const double pm[] = {1e-3, 0.05, 0.3, 0.5, 0.7, 0.95, 0.999};
    for (size_t k = 0; k < sizeof ab / sizeof ab[0]; k++)
        for (size_t i = 0; i < sizeof pm / sizeof pm[0]; i++) {
            double p = pm[i], a = ab[k][0], b = ab[k][1];
            double x = nn_beta_quantile(p, a, b), y = nn_beta_quantile(1.0 - p, b, a);
            double d = fabs(x - (1.0 - y));
            CHECK(d <= 1e-9 * fmin(x, 1.0 - x) + 4e-16, "symmetry Beta(%g, %g) p=%g: %.17g vs 1 - %.17g", a,
                  b, p, x, y);
        }
    for (size_t k = 0; k < sizeof ab / sizeof ab[0]; k++)
        for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
            double p = ps[i], a = ab[k][0], b = ab[k][1], x = nn_beta_quantile(p, a, b);
            CHECK(x > 0.0 && x <= 1.0 && (p < 0.5 ? x < 1.0 : 1), "Beta(%g, %g) p=%g: %.17g out of range", a,
                  b, p, x);
        }
    /* edges and nonsense */
    CHECK(nn_beta_quantile(0.0, 2, 3) == 0.0 && nn_beta_quantile(1.0, 2, 3) == 1.0, "p = 0 or 1");
    CHECK(isnan(nn_beta_quantile(NAN, 2, 3)) && isnan(nn_beta_quantile(0.5, 0.0, 3)) &&
              isnan(nn_beta_quantile(0.5, 2, -1)) && isnan(nn_beta_quantile(0.5, INFINITY, 1)),
          "NaN for NaN p or non-positive or infinite a, b");
    /* median of a symmetric Beta is 1/2 */
    for (double a = 1.0; a < 2000; a *= 3.7)
        CHECK(fabs(nn_beta_quantile(0.5, a, a) - 0.5) < 1e-14, "median of Beta(%g, %g)", a, a);
    printf("beta quantile: worst relative error against closed forms %.2g\n", worst);
}

/* Summaries of a hand-made galaxy under gz_decals_dr5, against values worked out by hand. */
static void test_summarise_by_hand(void)
{
    char err[MC_ERR_LEN];
    nn_schema *s;
    if (nn_schema_load("gz_decals_dr5", &s, err)) return;
    float conc[34], frac[34], lo[34], hi[34], asked[10];
    for (int a = 0; a < 34; a++) conc[a] = 1.0f + (float)a;
    nn_schema_summarise(s, conc, frac, lo, hi, asked);
    /* smooth-or-featured: 1, 2, 3 -> 1/6, 2/6, 3/6; disk-edge-on: 4, 5 -> 4/9, 5/9 */
    CHECK(fabsf(frac[0] - 1.0f / 6) < 1e-7f && fabsf(frac[4] - 5.0f / 9) < 1e-7f, "fractions");
    /* asked: disk-edge-on after featured (2/6); has-spiral-arms after disk-edge-on_no (2/6 * 5/9);
     * spiral-winding after has-spiral-arms_yes (6/13): 2/6 * 5/9 * 6/13; merging is a root */
    CHECK(asked[0] == 1.0f && fabsf(asked[1] - 1.0f / 3) < 1e-7f, "asked[1] %g", asked[1]);
    CHECK(fabsf(asked[2] - (2.0f / 6) * (5.0f / 9)) < 1e-7f, "asked[2] %g", asked[2]);
    CHECK(fabsf(asked[7] - (2.0f / 6) * (5.0f / 9) * (6.0f / 13)) < 1e-7f, "asked[7] %g", asked[7]);
    CHECK(asked[9] == 1.0f, "merging asked %g", asked[9]);
    /* smooth = Beta(1, 5): quantiles 1 - 0.95^(1/5) and 1 - 0.05^(1/5) */
    CHECK(fabs(lo[0] - (1 - pow(0.95, 0.2))) < 1e-7 && fabs(hi[0] - (1 - pow(0.05, 0.2))) < 1e-7,
          "interval %g %g", lo[0], hi[0]);
    for (int a = 0; a < 34; a++)
        CHECK(lo[a] < frac[a] && frac[a] < hi[a], "answer %d: %g < %g < %g", a, lo[a], frac[a], hi[a]);
    /* a bad concentration spoils its own question (and what follows from it), nothing else */
    conc[3] = NAN;
    nn_schema_summarise(s, conc, frac, lo, hi, asked);
    CHECK(isnan(frac[3]) && isnan(frac[4]) && isnan(lo[4]) && isnan(asked[2]) && !isnan(frac[0]) &&
              !isnan(asked[1]),
          "NaN concentration handling");
    nn_schema_summarise(s, conc, NULL, NULL, NULL, NULL);
    nn_schema_free(s);
}

int main(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "summarise")) return tool_summarise(argv[2], argv[3], argv[4]);
    if (argc == 2 && !strcmp(argv[1], "quantile")) return tool_quantile();
    if (argc == 3 && !strcmp(argv[1], "columns")) return tool_columns(argv[2]);
    if (argc != 1) {
        fprintf(stderr,
                "usage: test_schema [summarise SCHEMA IN.npy OUT_PREFIX | quantile | columns SCHEMA]\n");
        return 2;
    }
    test_builtins_match_zoobot();
    test_user_schema_files();
    test_beta_quantile_closed_forms();
    test_summarise_by_hand();
    printf("%d checks, %d failed\n", n_checks, n_failed);
    return n_failed ? 1 : 0;
}
