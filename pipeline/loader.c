/* pipeline/loader.c: the cutout loader thread. While the main thread computes one unit, this thread reads
 * and preprocesses the next (file I/O, decompression, recipes), so the encoder rarely waits on the disk.
 * It makes no MPI, HDF5 or BLAS calls; it only fills slots. Per-galaxy failures become the row's status and
 * message here ("<id_str>: <file>: <reason>"). */
#define _GNU_SOURCE /* sched_getaffinity, the thread id */
#include <math.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pipeline/run.h"

struct mc_loader {
    const io_manifest *m;
    pp_recipe recipe;
    const char *hdu;
    int batch, chans, size, nslots;
    mc_slot *slots;
    int *order; /* submitted slot indices, oldest first */
    int n_order;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int quit;
    io_cutout cut;
    pp_work work;
    int detect;
    mc_clump_post post;
};

/* A file's identity and last change: equal stamps before the checksum and after the decode mean both read
 * the same bytes (any write moves ctime, which the kernel keeps in nanoseconds). */
static int same_stamp(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static void load_row(mc_loader *l, mc_slot *s, int i)
{
    const io_manifest_row *row = &l->m->rows[s->row0 + i];
    char err[MC_ERR_LEN], *msg = s->message + (size_t)i * IO_CAT_MSG_LEN;
    const size_t per = (size_t)l->chans * l->size * l->size;
    int st;
    msg[0] = 0;
    s->sum[(size_t)i * IO_CAT_SUM_LEN] = 0;
    if (l->detect) {
        s->det_status[i] = MC_ROW_PENDING;
        io_wcs_free(s->wcs[i]);
        s->wcs[i] = NULL;
    }
    s->ra[i] = row->ra;
    s->dec[i] = row->dec;
    s->radec_src[i] = isnan(row->ra) || isnan(row->dec) ? 0 : 1;
    if (row->bad) {
        st = MC_ROW_BAD_ROW;
        snprintf(err, sizeof err, "manifest row %lld: %s", (long long)(s->row0 + i + 1), row->note ? row->note : "unusable");
    } else {
        io_read_opts o = {row->hdu && row->hdu[0] ? row->hdu : l->hdu};
        /* the content checksum (data-release reruns compare it), from the bytes the decoder reads; a file
         * that cannot be read is reported by the decoder, with its reason */
        char *sum = s->sum + (size_t)i * IO_CAT_SUM_LEN;
        /* a file replaced, rewritten, shrunk or removed between the checksum and the decode would leave a
         * row whose checksum describes other bytes than its values: read again, and after three tries say
         * that the file would not hold still */
        for (int attempt = 1;; attempt++) {
            struct stat before, after;
            int had = stat(row->path, &before) == 0;
            st = io_cutout_read_sum(row->path, &o, &l->cut, sum, err);
            int has = stat(row->path, &after) == 0;
            if (had == has && (!had || same_stamp(&before, &after))) break;
            if (attempt == 3) {
                sum[0] = 0;
                st = has ? MC_ROW_CORRUPT : MC_ROW_MISSING;
                snprintf(err, sizeof err, "%s: the file %s while it was being read (3 tries)", row->path,
                         has ? "kept changing" : "vanished");
                break;
            }
        }
        if (st == MC_ROW_OK) {
            if (s->radec_src[i] == 0 && l->cut.has_wcs) {
                s->ra[i] = l->cut.ra;
                s->dec[i] = l->cut.dec;
                s->radec_src[i] = 2;
            }
            char perr[MC_ERR_LEN];
            st = pp_apply(&l->recipe, &l->cut, l->chans, l->size, &l->work, s->x + (size_t)s->n_ok * per, perr);
            if (st != MC_ROW_OK) snprintf(err, sizeof err, "%s: %s", row->path, perr);
            if (st == MC_ROW_OK && l->detect) {
                /* the detector's picture of the same decoded cutout: a failure here (a crop that does not
                 * fit) costs the row its clumps only */
                int ds = mc_clump_render(&l->recipe, &l->cut, &l->post, &l->work, &s->det_img[i], &s->det_cap[i],
                                         &s->det_view[i], perr);
                s->det_status[i] = (uint8_t)ds;
                if (ds != MC_ROW_OK) snprintf(msg, IO_CAT_MSG_LEN, "%s: no clumps: %s", row->id_str, perr);
                s->wcs[i] = io_cutout_take_wcs(&l->cut);
            }
        }
    }
    s->status[i] = (uint8_t)st;
    if (st == MC_ROW_OK) {
        s->ok_rows[s->n_ok++] = i;
    } else {
        /* the catalogue's file column holds the full path: the message names the file by its base name,
         * so the reason fits the fixed-width message column */
        const char *reason = err;
        size_t pl = row->path ? strlen(row->path) : 0;
        if (pl && !strncmp(err, row->path, pl) && err[pl] == ':') reason = err + pl + 1 + (err[pl + 1] == ' ');
        const char *base = row->path ? strrchr(row->path, '/') : NULL;
        base = base ? base + 1 : (row->path ? row->path : "");
        if (reason != err)
            snprintf(msg, IO_CAT_MSG_LEN, "%s: %s: %s", row->id_str ? row->id_str : "?", base, reason);
        else
            snprintf(msg, IO_CAT_MSG_LEN, "%s: %s", row->id_str ? row->id_str : "?", err);
    }
}

/* A rank bound to one core (mpirun --bind-to core, srun --cpu-bind=cores) has its loader on that core too:
 * it cannot run beside the encoder, only in the scheduler's slices between the encoder's, and each switch
 * costs both their caches. At the lowest priority it runs when the encoder waits for it (and still reads
 * while the encoder computes, in its I/O waits), so the two take turns a unit at a time. Measured on the
 * catalogue job (efficientnet_b0, one core, alternating, 4 rounds): the CPU beside the encoder 10.6-11.4% ->
 * 9.8-11.0% of the encoder's for plain FITS, 15.2-16.1% -> 14.0-15.7% for RICE. Not done with more cores
 * to run on, where the loader overlaps the encoder, or when the binding cannot be read. */
static void loader_priority(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) == 1)
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19); /* this thread only (Linux) */
}

static void *loader_main(void *arg)
{
    mc_loader *l = arg;
    loader_priority();
    pthread_mutex_lock(&l->mu);
    for (;;) {
        mc_slot *s = NULL;
        for (int k = 0; k < l->n_order && !s; k++)
            if (l->slots[l->order[k]].state == 1) s = &l->slots[l->order[k]];
        if (!s) {
            if (l->quit) break;
            pthread_cond_wait(&l->cv, &l->mu);
            continue;
        }
        pthread_mutex_unlock(&l->mu);
        s->n_ok = 0;
        for (int i = 0; i < s->n; i++) load_row(l, s, i);
        pthread_mutex_lock(&l->mu);
        s->state = 2;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

mc_loader *mc_loader_init(const io_manifest *m, const pp_recipe *recipe, const char *hdu, int batch, int chans,
                          int size, int nslots, const mc_clump_post *post)
{
    mc_loader *l = mc_calloc(1, sizeof *l);
    l->m = m;
    l->recipe = *recipe;
    l->hdu = hdu && hdu[0] ? hdu : NULL;
    l->batch = batch;
    l->chans = chans;
    l->size = size;
    l->nslots = nslots;
    l->detect = post != NULL;
    if (post) l->post = *post;
    l->slots = mc_calloc((size_t)nslots, sizeof(mc_slot));
    l->order = mc_calloc((size_t)nslots, sizeof(int));
    for (int i = 0; i < nslots; i++) {
        mc_slot *s = &l->slots[i];
        s->ok_rows = mc_malloc(sizeof(int) * (size_t)batch);
        s->x = mc_malloc_aligned(sizeof(float) * (size_t)batch * chans * size * size);
        s->status = mc_malloc((size_t)batch);
        s->message = mc_calloc((size_t)batch, IO_CAT_MSG_LEN);
        s->sum = mc_calloc((size_t)batch, IO_CAT_SUM_LEN);
        s->ra = mc_malloc(sizeof(double) * (size_t)batch);
        s->dec = mc_malloc(sizeof(double) * (size_t)batch);
        s->radec_src = mc_malloc((size_t)batch);
        if (l->detect) {
            s->det_img = mc_calloc((size_t)batch, sizeof(float *));
            s->det_cap = mc_calloc((size_t)batch, sizeof(size_t));
            s->det_view = mc_calloc((size_t)batch, sizeof(mc_clump_view));
            s->wcs = mc_calloc((size_t)batch, sizeof(io_wcs *));
            s->det_status = mc_calloc((size_t)batch, 1);
        }
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    MC_ASSERT(pthread_create(&l->thread, NULL, loader_main, l) == 0);
    return l;
}

int mc_loader_free_slots(mc_loader *l)
{
    pthread_mutex_lock(&l->mu);
    int n = l->nslots - l->n_order;
    pthread_mutex_unlock(&l->mu);
    return n;
}

int mc_loader_submit(mc_loader *l, int64_t unit)
{
    pthread_mutex_lock(&l->mu);
    int idx = -1;
    for (int i = 0; i < l->nslots && idx < 0; i++)
        if (l->slots[i].state == 0) idx = i;
    if (idx >= 0) {
        mc_slot *s = &l->slots[idx];
        s->unit = unit;
        s->row0 = unit * l->batch;
        int64_t left = l->m->n - s->row0;
        s->n = (int)(left < l->batch ? left : l->batch);
        MC_ASSERT(s->n > 0);
        s->state = 1;
        l->order[l->n_order++] = idx;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    return idx >= 0 ? 0 : -1;
}

mc_slot *mc_loader_wait(mc_loader *l)
{
    pthread_mutex_lock(&l->mu);
    mc_slot *s = NULL;
    if (l->n_order > 0) {
        s = &l->slots[l->order[0]];
        while (s->state != 2) pthread_cond_wait(&l->cv, &l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    return s;
}

void mc_loader_release(mc_loader *l, mc_slot *s)
{
    pthread_mutex_lock(&l->mu);
    MC_ASSERT(l->n_order > 0 && &l->slots[l->order[0]] == s);
    memmove(l->order, l->order + 1, sizeof(int) * (size_t)(l->n_order - 1));
    l->n_order--;
    s->state = 0;
    pthread_mutex_unlock(&l->mu);
}

void mc_loader_free(mc_loader *l)
{
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    l->quit = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    for (int i = 0; i < l->nslots; i++) {
        mc_slot *s = &l->slots[i];
        free(s->ok_rows);
        free(s->x);
        free(s->status);
        free(s->message);
        free(s->sum);
        free(s->ra);
        free(s->dec);
        free(s->radec_src);
        if (l->detect) {
            for (int i = 0; i < l->batch; i++) {
                free(s->det_img[i]);
                io_wcs_free(s->wcs[i]);
            }
            free(s->det_img);
            free(s->det_cap);
            free(s->det_view);
            free(s->wcs);
            free(s->det_status);
        }
    }
    free(l->slots);
    free(l->order);
    io_cutout_free(&l->cut);
    pp_work_free(&l->work);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
}
