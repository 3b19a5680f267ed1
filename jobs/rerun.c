/* jobs/rerun.c: what a data-release rerun must recompute. A galaxy of the new manifest keeps its previous
 * row when the previous release catalogue has it finished under the same id_str and its file's bytes are
 * the same (XXH3-128, the catalogue's file_xxh3); everything else (new ids, changed files, rows left pending,
 * bad manifest rows) is recomputed. Not here: computing checksums or galaxies (pipeline/cmd_rerun.c), writing
 * the release catalogue (jobs/merge.c). */
#include "jobs/jobs.h"

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

int jobs_rerun_select(const char *previous, const io_manifest *m, const char *sums, int64_t *carry, int64_t **todo,
                      int64_t *n_todo, jobs_rerun_stats *st, char *err)
{
    memset(st, 0, sizeof *st);
    *todo = NULL;
    *n_todo = 0;
    jobs_cat *c;
    if (jobs_cat_open(previous, &c, err)) return -1;
    int64_t np = jobs_cat_rows(c);
    uint8_t *status = mc_malloc((size_t)(np > 0 ? np : 1));
    char *ids = NULL, *psum = NULL;
    size_t wid = 0, wsum = 0;
    int rc = jobs_cat_read_status(c, status, err);
    if (!rc) rc = jobs_cat_read_strings(c, "galaxies/id_str", &ids, &wid, err);
    if (!rc) rc = jobs_cat_read_strings(c, "galaxies/file_xxh3", &psum, &wsum, err);
    jobs_cat_close(c);
    if (rc) {
        free(status);
        free(ids);
        free(psum);
        return -1;
    }
    /* previous ids -> previous row */
    size_t cap = 16;
    while (cap < 2 * (size_t)np + 16) cap *= 2;
    int64_t *tab = mc_calloc(cap, sizeof(int64_t));
    for (int64_t j = 0; j < np; j++) {
        const char *id = ids + (size_t)j * wid;
        if (!id[0]) continue;
        size_t h = (size_t)hash_str(id) & (cap - 1);
        while (tab[h] && strcmp(ids + (size_t)(tab[h] - 1) * wid, id)) h = (h + 1) & (cap - 1);
        if (!tab[h]) tab[h] = j + 1;
    }
    uint8_t *seen = mc_calloc((size_t)(np > 0 ? np : 1), 1);
    *todo = mc_malloc(sizeof(int64_t) * (size_t)(m->n > 0 ? m->n : 1));
    st->rows = m->n;
    for (int64_t i = 0; i < m->n; i++) {
        const io_manifest_row *r = &m->rows[i];
        const char *sum = sums + (size_t)i * IO_CAT_SUM_LEN;
        int64_t j = -1;
        if (r->id_str && r->id_str[0]) {
            size_t h = (size_t)hash_str(r->id_str) & (cap - 1);
            while (tab[h] && strcmp(ids + (size_t)(tab[h] - 1) * wid, r->id_str)) h = (h + 1) & (cap - 1);
            if (tab[h]) j = tab[h] - 1;
        }
        carry[i] = -1;
        if (j >= 0) seen[j] = 1;
        if (r->bad) {
            st->redo_bad_row++;
        } else if (j < 0) {
            st->new_rows++;
        } else if (status[j] == MC_ROW_PENDING || status[j] == MC_ROW_BAD_ROW || status[j] >= MC_ROW_NSTATUS) {
            st->redo_pending++;
        } else if (strcmp(psum + (size_t)j * wsum, sum) ||
                   (!sum[0] && status[j] != MC_ROW_MISSING)) { /* unreadable now, readable then: changed */
            st->changed++;
        } else {
            carry[i] = j;
            if (status[j] == MC_ROW_OK) st->carried_ok++;
            else st->carried_failed++;
        }
        if (carry[i] < 0) (*todo)[(*n_todo)++] = i;
    }
    for (int64_t j = 0; j < np; j++) st->dropped += !seen[j] && ids[(size_t)j * wid];
    free(seen);
    free(tab);
    free(status);
    free(ids);
    free(psum);
    return 0;
}
