/* nn/schema.c: Galaxy Zoo decision trees (which answers belong to which question, and which answer each
 * question follows) and the per-galaxy summary of a Dirichlet head: vote fractions, 90% intervals and the
 * proportion of volunteers asked, as Zoobot's load_predictions.prediction_hdf5_to_summary_parquet makes them.
 * Not here: the head itself, the friendly-table masking (NaN where asked < 0.5), or mixtures over passes. */
#include "nn/nn.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>

/* The built-in schemas: the JSON files in nn/schemas/, joined into one JSON array by the Makefile
 * (NUL-terminated). */
extern const char nn_schemas_json[];

struct nn_schema {
    char *name;
    int n_questions, n_answers;
    char **questions; /* n_questions names, e.g. "smooth-or-featured-dr5" */
    char **cols;      /* n_answers columns: question name + answer suffix */
    int *first;       /* n_questions + 1: the answers of q are [first[q], first[q + 1]) */
    int *question_of; /* n_answers */
    int *depends_on;  /* n_questions: the answer q is asked after, or -1 */
};

/* Largest user schema file we read; the largest built-in is ~6 kB. */
#define NN_SCHEMA_MAX_FILE (16 << 20)

void nn_schema_free(nn_schema *s)
{
    if (!s) return;
    for (int q = 0; q < s->n_questions; q++) free(s->questions[q]);
    for (int a = 0; a < s->n_answers; a++) free(s->cols[a]);
    free(s->questions);
    free(s->cols);
    free(s->first);
    free(s->question_of);
    free(s->depends_on);
    free(s->name);
    free(s);
}

static int nn_schema_find_col(const nn_schema *s, const char *col)
{
    for (int a = 0; a < s->n_answers; a++)
        if (!strcmp(s->cols[a], col)) return a;
    return -1;
}

/* Build and check a schema from one parsed JSON object. `where` names it in messages: the file path, or
 * "built-in schema NAME". Checks: the form, non-empty unique question names and answer columns, at least two
 * answers a question, and each depends_on naming an answer of an earlier question. That last rule is how
 * Zoobot's trees are written (schemas.py joint_p recurses towards the root) and it rules out cycles; a file
 * that breaks it is told whether it has a cycle or just lists a question too early. */
static int nn_schema_from_json(const cJSON *root, const char *where, nn_schema **out, char *err)
{
    *out = NULL;
    if (!cJSON_IsObject(root))
        return mc_fail(err, "%s: the top level must be an object with \"name\" and \"questions\"", where);
    const cJSON *jname = cJSON_GetObjectItemCaseSensitive(root, "name");
    const cJSON *jqs = cJSON_GetObjectItemCaseSensitive(root, "questions");
    if (!cJSON_IsString(jname) || !jname->valuestring[0])
        return mc_fail(err, "%s: \"name\" must be a non-empty string", where);
    if (!cJSON_IsArray(jqs) || cJSON_GetArraySize(jqs) == 0)
        return mc_fail(err, "%s: \"questions\" must be a non-empty array", where);

    nn_schema *s = mc_calloc(1, sizeof *s);
    s->name = mc_strdup(jname->valuestring);
    int nq = cJSON_GetArraySize(jqs), na = 0;
    s->n_questions = nq; /* so that nn_schema_free sees every slot, filled or not */
    s->questions = mc_calloc((size_t)nq, sizeof *s->questions);
    s->first = mc_calloc((size_t)nq + 1, sizeof *s->first);
    s->depends_on = mc_calloc((size_t)nq, sizeof *s->depends_on);
    const char **dep_text = mc_calloc((size_t)nq, sizeof *dep_text);
    int rc = 0, q = 0;

    /* pass 1: questions and their answer columns */
    const cJSON *jq;
    cJSON_ArrayForEach(jq, jqs)
    {
        if (!cJSON_IsObject(jq)) {
            rc = mc_fail(err, "%s: question %d is not an object", where, q);
            goto done;
        }
        const cJSON *qn = cJSON_GetObjectItemCaseSensitive(jq, "name");
        const cJSON *ja = cJSON_GetObjectItemCaseSensitive(jq, "answers");
        const cJSON *jd = cJSON_GetObjectItemCaseSensitive(jq, "depends_on");
        if (!cJSON_IsString(qn) || !qn->valuestring[0]) {
            rc = mc_fail(err, "%s: question %d: \"name\" must be a non-empty string", where, q);
            goto done;
        }
        const cJSON *item;
        cJSON_ArrayForEach(item, jq)
        {
            /* a misspelt key would otherwise pass silently as a missing one */
            const char *k = item->string;
            if (strcmp(k, "name") && strcmp(k, "answers") && strcmp(k, "depends_on")) {
                rc = mc_fail(err,
                             "%s: question \"%s\": unknown key \"%s\" (expected name, answers, depends_on)",
                             where, qn->valuestring, k);
                goto done;
            }
        }
        const char *qname = qn->valuestring;
        for (int p = 0; p < q; p++)
            if (!strcmp(s->questions[p], qname)) {
                rc = mc_fail(err, "%s: question \"%s\" appears twice (questions %d and %d)", where, qname, p,
                             q);
                goto done;
            }
        if (!cJSON_IsArray(ja) || cJSON_GetArraySize(ja) < 2) {
            /* a Dirichlet over one answer is a point mass: such a question says nothing */
            rc = mc_fail(err, "%s: question \"%s\": \"answers\" must be an array of at least two strings",
                         where, qname);
            goto done;
        }
        if (!jd || !(cJSON_IsNull(jd) || (cJSON_IsString(jd) && jd->valuestring[0]))) {
            rc = mc_fail(err, "%s: question \"%s\": \"depends_on\" must be null or an answer column", where,
                         qname);
            goto done;
        }
        s->questions[q] = mc_strdup(qname);
        dep_text[q] = cJSON_IsString(jd) ? jd->valuestring : NULL;
        s->first[q] = na;
        const cJSON *ans;
        cJSON_ArrayForEach(ans, ja)
        {
            if (!cJSON_IsString(ans) || !ans->valuestring[0]) {
                rc = mc_fail(err, "%s: question \"%s\": answer %d is not a non-empty string", where, qname,
                             na - s->first[q]);
                goto done;
            }
            size_t lq = strlen(qname), la = strlen(ans->valuestring);
            char *col = mc_malloc(lq + la + 1);
            memcpy(col, qname, lq);
            memcpy(col + lq, ans->valuestring, la + 1);
            int dup = nn_schema_find_col(s, col);
            if (dup >= 0) {
                rc = mc_fail(err, "%s: answer column \"%s\" appears twice", where, col);
                free(col);
                goto done;
            }
            s->cols = mc_realloc(s->cols, (size_t)(na + 1) * sizeof *s->cols);
            s->question_of = mc_realloc(s->question_of, (size_t)(na + 1) * sizeof *s->question_of);
            s->cols[na] = col;
            s->question_of[na] = q;
            s->n_answers = ++na;
        }
        q++;
    }
    s->first[nq] = na;

    /* pass 2: resolve dependencies; pass 3: each must point to an earlier question */
    for (q = 0; q < nq; q++) {
        s->depends_on[q] = -1;
        if (!dep_text[q]) continue;
        int a = nn_schema_find_col(s, dep_text[q]);
        if (a < 0) {
            rc = mc_fail(err, "%s: question \"%s\": depends_on \"%s\" is not an answer column of this schema",
                         where, s->questions[q], dep_text[q]);
            goto done;
        }
        s->depends_on[q] = a;
    }
    for (q = 0; q < nq; q++) {
        int a = s->depends_on[q];
        if (a < 0 || s->question_of[a] < q) continue;
        if (s->question_of[a] == q) {
            rc = mc_fail(err, "%s: question \"%s\" depends on its own answer \"%s\"", where, s->questions[q],
                         s->cols[a]);
            goto done;
        }
        /* follow the chain on from the later question: back to q is a cycle, else it is only misordered */
        char chain[512];
        int len = snprintf(chain, sizeof chain, "%s", s->questions[q]), p = q, steps = 0;
        while (s->depends_on[p] >= 0 && steps++ <= nq) {
            p = s->question_of[s->depends_on[p]];
            if (len < (int)sizeof chain)
                len += snprintf(chain + len, sizeof chain - (size_t)len, " -> %s", s->questions[p]);
            if (p == q) break;
        }
        if (p == q)
            rc = mc_fail(err, "%s: dependency cycle: %s", where, chain);
        else
            rc = mc_fail(err,
                         "%s: question \"%s\" depends on \"%s\", an answer of the later question \"%s\" "
                         "(list each question after the one it depends on)",
                         where, s->questions[q], s->cols[a], s->questions[s->question_of[a]]);
        goto done;
    }

done:
    free(dep_text);
    if (rc) {
        nn_schema_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* Parse text as JSON; a failure names the line and byte. */
static cJSON *nn_schema_parse(const char *text, size_t len, const char *where, char *err)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t off = end && end >= text ? (size_t)(end - text) : 0;
        int line = 1;
        for (size_t i = 0; i < off && i < len; i++) line += text[i] == '\n';
        mc_fail(err, "%s: not valid JSON (line %d, byte %zu)", where, line, off);
    }
    return root;
}

/* The built-in array, parsed anew by each caller: it is small, and so loading needs no lock. */
static cJSON *nn_schema_builtins(void)
{
    char err[MC_ERR_LEN];
    cJSON *all = nn_schema_parse(nn_schemas_json, strlen(nn_schemas_json), "built-in schemas", err);
    MC_ASSERT(all && cJSON_IsArray(all)); /* the Makefile wrote it from files the unit test checks */
    return all;
}

static char nn_schema_names_buf[1024];
static pthread_once_t nn_schema_names_once = PTHREAD_ONCE_INIT;

static void nn_schema_names_init(void)
{
    cJSON *all = nn_schema_builtins(), *it;
    size_t len = 0;
    cJSON_ArrayForEach(it, all)
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(it, "name");
        MC_ASSERT(cJSON_IsString(n));
        int w = snprintf(nn_schema_names_buf + len, sizeof nn_schema_names_buf - len, "%s%s", len ? ", " : "",
                         n->valuestring);
        MC_ASSERT(w > 0 && len + (size_t)w < sizeof nn_schema_names_buf);
        len += (size_t)w;
    }
    cJSON_Delete(all);
}

const char *nn_schema_names(void)
{
    pthread_once(&nn_schema_names_once, nn_schema_names_init);
    return nn_schema_names_buf;
}

static int nn_schema_load_file(const char *path, nn_schema **out, char *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return mc_fail(err, "%s: cannot open schema file (%s)", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            if (cap >= NN_SCHEMA_MAX_FILE) {
                fclose(f);
                free(buf);
                return mc_fail(err, "%s: schema file larger than %d MiB", path, NN_SCHEMA_MAX_FILE >> 20);
            }
            cap = cap ? 2 * cap : 8192;
            buf = mc_realloc(buf, cap);
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return mc_fail(err, "%s: cannot read schema file", path);
    }
    cJSON *root = nn_schema_parse(buf, len, path, err);
    free(buf);
    if (!root) return -1;
    int rc = nn_schema_from_json(root, path, out, err);
    cJSON_Delete(root);
    return rc;
}

int nn_schema_load(const char *name_or_path, nn_schema **out, char *err)
{
    MC_ASSERT(name_or_path && out);
    *out = NULL;
    cJSON *all = nn_schema_builtins(), *it;
    cJSON_ArrayForEach(it, all)
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(it, "name");
        if (cJSON_IsString(n) && !strcmp(n->valuestring, name_or_path)) {
            char where[256];
            snprintf(where, sizeof where, "built-in schema %s", name_or_path);
            int rc = nn_schema_from_json(it, where, out, err);
            cJSON_Delete(all);
            return rc;
        }
    }
    cJSON_Delete(all);
    size_t n = strlen(name_or_path);
    FILE *probe = fopen(name_or_path, "rb");
    if (probe) fclose(probe);
    if (probe || strchr(name_or_path, '/') || (n > 5 && !strcmp(name_or_path + n - 5, ".json")))
        return nn_schema_load_file(name_or_path, out, err);
    return mc_fail(err, "unknown schema \"%s\" (built-in: %s; or give the path of a .json schema file)",
                   name_or_path, nn_schema_names());
}

const char *nn_schema_name(const nn_schema *s)
{
    return s->name;
}
int nn_schema_n_answers(const nn_schema *s)
{
    return s->n_answers;
}
int nn_schema_n_questions(const nn_schema *s)
{
    return s->n_questions;
}
const char *nn_schema_question(const nn_schema *s, int q)
{
    MC_ASSERT(q >= 0 && q < s->n_questions);
    return s->questions[q];
}
const char *nn_schema_answer_col(const nn_schema *s, int a)
{
    MC_ASSERT(a >= 0 && a < s->n_answers);
    return s->cols[a];
}
int nn_schema_question_of(const nn_schema *s, int a)
{
    MC_ASSERT(a >= 0 && a < s->n_answers);
    return s->question_of[a];
}
int nn_schema_depends_on(const nn_schema *s, int q)
{
    MC_ASSERT(q >= 0 && q < s->n_questions);
    return s->depends_on[q];
}

/* Sum of question q's concentrations, or NaN when any is not positive (no Dirichlet then). */
static double nn_schema_question_sum(const nn_schema *s, const float *conc, int q)
{
    double sum = 0.0;
    for (int a = s->first[q]; a < s->first[q + 1]; a++) {
        if (!(conc[a] > 0.0f)) return NAN;
        sum += (double)conc[a];
    }
    return sum;
}

void nn_schema_summarise(const nn_schema *s, const float *conc, float *frac, float *lo90, float *hi90,
                         float *asked)
{
    /* Zoobot's interval: beta.ppf(0.5 -+ interval_width / 2) with interval_width = 0.9 (stats.py
     * get_confidence_interval_from_ppf_medians), kept as that expression so p is the same double */
    const double width = 0.9, p_lo = 0.5 - width / 2.0, p_hi = 0.5 + width / 2.0;
    for (int q = 0; q < s->n_questions; q++) {
        double sum = nn_schema_question_sum(s, conc, q);
        for (int a = s->first[q]; a < s->first[q + 1]; a++) {
            double c = isnan(sum) ? NAN : (double)conc[a];
            /* alpha_a / sum over the question: stats.py get_beta_mean, the mean of the Beta(alpha_a,
             * sum - alpha_a) marginal; with one forward pass, the mixture's mean and median are these */
            if (frac) frac[a] = (float)(c / sum);
            if (lo90) lo90[a] = (float)nn_beta_quantile(p_lo, c, sum - c);
            if (hi90) hi90[a] = (float)nn_beta_quantile(p_hi, c, sum - c);
        }
    }
    if (!asked) return;
    /* proportion asked: 1 for a root question, else the product of the expected fractions of the answers
     * along the chain back to the root, as stats.py get_expected_votes_ml(votes_for_base_question=1) gets it
     * from schemas.py joint_p; walked in double rather than multiplied through the float outputs */
    for (int q = 0; q < s->n_questions; q++) {
        double p = 1.0;
        for (int d = s->depends_on[q]; d >= 0; d = s->depends_on[s->question_of[d]])
            p *= (double)conc[d] / nn_schema_question_sum(s, conc, s->question_of[d]);
        asked[q] = (float)p;
    }
}
