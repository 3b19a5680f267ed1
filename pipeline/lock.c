/* pipeline/lock.c: the output lock of pipeline/lock.h. The lock file is written complete under a unique
 * temporary name and linked into place, so it either exists whole or not at all (link(2) is atomic on local
 * and network file systems; over NFS a lost reply is caught by the temporary's link count). Breaking a stale
 * lock goes through a second exclusive file (OUTPUT.lock.break), so two resuming jobs cannot both break it and
 * then remove each other's fresh lock. Not here: waiting for a lock (a refused job exits at once). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "mc.h"
#include "pipeline/lock.h"

#define HB_WIDTH 20 /* the heartbeat's fixed-width field, rewritten in place */

struct mc_lock {
    char path[4200];
    int fd;
    dev_t dev;
    ino_t ino;
    off_t hb_offset;
    double interval;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop, lost, warned;
};

static double unix_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Field 22 of /proc/PID/stat (start time in clock ticks), and whether the process is a zombie (killed,
 * not yet reaped: gone for our purposes). 0 when unknown. */
static unsigned long long proc_start(long pid, int *zombie)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    *zombie = 0;
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (!p) return 0;
    char state = 0;
    unsigned long long v = 0;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime
     * cstime priority nice threads itrealvalue starttime */
    if (sscanf(p + 1, " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu", &state,
               &v) != 2)
        return 0;
    *zombie = state == 'Z' || state == 'X';
    return v;
}

static void host_name(char *buf, size_t len)
{
    if (gethostname(buf, len) != 0) snprintf(buf, len, "unknown");
    buf[len - 1] = 0;
}

static int parse_holder(const char *text, mc_lock_holder *h)
{
    memset(h, 0, sizeof *h);
    int seen = 0;
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        char l[512];
        snprintf(l, sizeof l, "%.*s", (int)(n < sizeof l ? n : sizeof l - 1), line);
        char *eq = strchr(l, '=');
        if (eq) {
            *eq = 0;
            const char *k = l, *v = eq + 1;
            if (!strcmp(k, "command")) snprintf(h->command, sizeof h->command, "%s", v), seen |= 1;
            else if (!strcmp(k, "host")) snprintf(h->host, sizeof h->host, "%s", v), seen |= 2;
            else if (!strcmp(k, "pid")) h->pid = atol(v), seen |= 4;
            else if (!strcmp(k, "pid_start")) h->pid_start = strtoull(v, NULL, 10);
            else if (!strcmp(k, "slurm_job")) snprintf(h->slurm_job, sizeof h->slurm_job, "%s", v);
            else if (!strcmp(k, "started_utc")) snprintf(h->started_utc, sizeof h->started_utc, "%s", v);
            else if (!strcmp(k, "heartbeat")) h->heartbeat = atof(v), seen |= 8;
        }
        line = end ? end + 1 : NULL;
    }
    return seen == 15 ? 0 : -1;
}

/* Judge h stale or alive (fills stale, why_stale, heartbeat_age). */
static void judge(mc_lock_holder *h, double stale_after)
{
    char me[256];
    host_name(me, sizeof me);
    h->heartbeat_age = unix_now() - h->heartbeat;
    h->stale = 0;
    if (!strcmp(me, h->host)) {
        int zombie = 0;
        unsigned long long st = proc_start(h->pid, &zombie);
        int alive = h->pid > 0 && (kill((pid_t)h->pid, 0) == 0 || errno == EPERM);
        if (!alive || zombie) {
            h->stale = 1;
            snprintf(h->why_stale, sizeof h->why_stale, "process %ld is gone on this host", h->pid);
        } else if (h->pid_start && st && st != h->pid_start) {
            h->stale = 1;
            snprintf(h->why_stale, sizeof h->why_stale, "pid %ld is now another process", h->pid);
        }
    } else if (h->heartbeat_age > stale_after) {
        h->stale = 1;
        snprintf(h->why_stale, sizeof h->why_stale, "no heartbeat from host %s for %.0f s (stale after %.0f s)",
                 h->host, h->heartbeat_age, stale_after);
    }
}

void mc_lock_describe(const mc_lock_holder *h, char *buf, size_t len)
{
    snprintf(buf, len, "morphcat %s on host %s, pid %ld, Slurm job %s, since %s, heartbeat %.0f s ago", h->command,
             h->host, h->pid, h->slurm_job, h->started_utc, h->heartbeat_age);
}

static char *slurp(const char *path, struct stat *st, int *errno_out)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        *errno_out = errno;
        return NULL;
    }
    if (fstat(fd, st) != 0 || st->st_size > 65536) {
        *errno_out = EINVAL;
        close(fd);
        return NULL;
    }
    char *buf = mc_malloc((size_t)st->st_size + 1);
    ssize_t n = pread(fd, buf, (size_t)st->st_size, 0);
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    *errno_out = 0;
    return buf;
}

int mc_lock_query(const char *output, double stale_after, mc_lock_holder *h, char *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s.lock", output);
    struct stat st;
    int e;
    char *text = slurp(path, &st, &e);
    if (!text) {
        if (e == ENOENT) return 0;
        return mc_fail(err, "%s: cannot read the lock file (%s)", path, strerror(e));
    }
    int rc = parse_holder(text, h);
    free(text);
    if (rc) {
        /* not a lock we wrote whole (written by hand, or a file system lost its tail): judge by its age */
        memset(h, 0, sizeof *h);
        snprintf(h->command, sizeof h->command, "?");
        snprintf(h->host, sizeof h->host, "?");
        snprintf(h->slurm_job, sizeof h->slurm_job, "?");
        snprintf(h->started_utc, sizeof h->started_utc, "?");
        h->heartbeat = (double)st.st_mtime;
        h->heartbeat_age = unix_now() - h->heartbeat;
        h->stale = h->heartbeat_age > stale_after;
        snprintf(h->why_stale, sizeof h->why_stale, "unreadable lock file untouched for %.0f s", h->heartbeat_age);
        return 1;
    }
    judge(h, stale_after);
    return 1;
}

static void *heartbeat_main(void *arg)
{
    mc_lock *l = arg;
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double t = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec + l->interval;
        ts.tv_sec = (time_t)t;
        ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
        pthread_cond_timedwait(&l->cv, &l->mu, &ts);
        if (l->stop) break;
        char hb[HB_WIDTH + 2];
        snprintf(hb, sizeof hb, "%*.3f\n", HB_WIDTH, unix_now());
        ssize_t w = pwrite(l->fd, hb, HB_WIDTH + 1, l->hb_offset);
        struct stat st;
        int ours = stat(l->path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino;
        if (!ours && !l->lost) {
            l->lost = 1;
            fprintf(stderr, "morphcat: %s: the lock file was removed or replaced by someone else: this job stops "
                            "at its next commit\n", l->path);
        } else if (ours && w != HB_WIDTH + 1 && !l->warned) { /* a full disk, say: not a lost lock */
            l->warned = 1;
            fprintf(stderr, "morphcat: warning: %s: cannot refresh the lock's heartbeat (%s)\n", l->path,
                    strerror(errno));
        }
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* Break a stale lock (path) whose file had identity (dev, ino) when judged. 0 broken (or already gone),
 * -1 someone else is breaking it or it changed meanwhile (retry from the start). */
static int break_stale(const char *path, dev_t dev, ino_t ino)
{
    char brk[4300], me[256], text[320];
    snprintf(brk, sizeof brk, "%s.break", path);
    host_name(me, sizeof me);
    int fd = open(brk, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) {
        /* someone is breaking it, or a breaker was killed mid-break and left its file: that one is gone when
         * its pid is on this host and dead, or after a minute from anywhere */
        struct stat bs;
        int e;
        char *cur = errno == EEXIST ? slurp(brk, &bs, &e) : NULL;
        if (cur) {
            char host[256] = "";
            long pid = 0;
            int zombie = 0;
            int gone = unix_now() - (double)bs.st_mtime > 60;
            if (!gone && sscanf(cur, "%255s %ld", host, &pid) == 2 && !strcmp(host, me)) {
                proc_start(pid, &zombie);
                gone = pid > 0 && ((kill((pid_t)pid, 0) != 0 && errno == ESRCH) || zombie);
            }
            if (gone) unlink(brk);
            free(cur);
        }
        return -1;
    }
    int n = snprintf(text, sizeof text, "%s %ld\n", me, (long)getpid());
    if (write(fd, text, (size_t)n) != n) { /* an unnamed breaker is still removed after a minute */
    }
    close(fd);
    struct stat st;
    int rc = 0;
    if (stat(path, &st) == 0) {
        if (st.st_dev == dev && st.st_ino == ino) unlink(path);
        else rc = -1; /* replaced since we judged it: judge again */
    }
    unlink(brk);
    return rc;
}

/* Temporary lock files (OUTPUT.lock.HOST.PID.tmp) of processes of this host that died before removing theirs. */
static void remove_dead_tmps(const char *path)
{
    char dir[4200], me[256], prefix[4400];
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    host_name(me, sizeof me);
    snprintf(prefix, sizeof prefix, "%s.%s.", slash ? slash + 1 : path, me);
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        size_t pl = strlen(prefix), nl = strlen(e->d_name);
        if (nl <= pl + 4 || strncmp(e->d_name, prefix, pl) || strcmp(e->d_name + nl - 4, ".tmp")) continue;
        long pid = atol(e->d_name + pl);
        int zombie = 0;
        proc_start(pid, &zombie);
        if (pid > 0 && pid != (long)getpid() && ((kill((pid_t)pid, 0) != 0 && errno == ESRCH) || zombie)) {
            char full[8700];
            snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
            unlink(full);
        }
    }
    closedir(d);
}

int mc_lock_acquire(const char *output, const char *command, double stale_after, mc_lock **out, char *note,
                    char *err)
{
    *out = NULL;
    note[0] = 0;
    char path[4200], tmp[4600], host[256], started[32], text[2048];
    snprintf(path, sizeof path, "%s.lock", output);
    host_name(host, sizeof host);
    mc_utc_now(started, sizeof started);
    int zombie;
    unsigned long long pstart = proc_start((long)getpid(), &zombie);
    const char *slurm = getenv("SLURM_JOB_ID");
    int len = snprintf(text, sizeof text,
                       "# morphcat: this output is being written by the job below; it removes this file when it "
                       "ends\ncommand=%s\nhost=%s\npid=%ld\npid_start=%llu\nslurm_job=%s\nstarted_utc=%s\n"
                       "heartbeat=",
                       command, host, (long)getpid(), pstart, slurm && slurm[0] ? slurm : "none", started);
    off_t hb_offset = len;
    len += snprintf(text + len, sizeof text - (size_t)len, "%*.3f\n", HB_WIDTH, unix_now());
    snprintf(tmp, sizeof tmp, "%s.%s.%ld.tmp", path, host, (long)getpid());
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return mc_fail(err, "%s: cannot create the lock file (%s)", path, strerror(errno));
    if (write(fd, text, (size_t)len) != len || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return mc_fail(err, "%s: cannot write the lock file (%s)", path, strerror(e ? e : EIO));
    }
    int rc = -1;
    for (int attempt = 0; attempt < 20; attempt++) {
        int lr = link(tmp, path), le = errno;
        struct stat ts;
        if (lr == 0 || (fstat(fd, &ts) == 0 && ts.st_nlink == 2)) {
            rc = 0;
            break;
        }
        if (le != EEXIST) {
            mc_fail(err, "%s: cannot create the lock file (%s)", path, strerror(le));
            break;
        }
        struct stat st;
        int e;
        char *cur = slurp(path, &st, &e);
        if (!cur) {
            if (e == ENOENT) continue; /* released meanwhile */
            mc_fail(err, "%s: cannot read the lock file (%s)", path, strerror(e));
            break;
        }
        mc_lock_holder h;
        char desc[700];
        if (parse_holder(cur, &h) == 0) {
            judge(&h, stale_after);
        } else {
            memset(&h, 0, sizeof h);
            h.heartbeat_age = unix_now() - (double)st.st_mtime;
            h.stale = h.heartbeat_age > stale_after;
            snprintf(h.why_stale, sizeof h.why_stale, "unreadable lock file untouched for %.0f s", h.heartbeat_age);
        }
        free(cur);
        if (!h.stale) {
            if (h.host[0]) mc_lock_describe(&h, desc, sizeof desc);
            else snprintf(desc, sizeof desc, "an unreadable lock file touched %.0f s ago", h.heartbeat_age);
            mc_fail(err, "%s is in use by another job (%s); refusing to start a second writer (if that job is "
                         "gone for good, remove %s)", output, desc, path);
            break;
        }
        if (break_stale(path, st.st_dev, st.st_ino) != 0) {
            usleep(50000);
            continue;
        }
        if (h.host[0]) {
            mc_lock_describe(&h, desc, sizeof desc);
            snprintf(note, MC_ERR_LEN, "%s: broke a stale lock (%s): %s", output, h.why_stale, desc);
        } else {
            snprintf(note, MC_ERR_LEN, "%s: broke a stale lock (%s)", output, h.why_stale);
        }
    }
    if (rc && !err[0]) mc_fail(err, "%s: could not take the lock (it kept changing)", path);
    unlink(tmp);
    if (!rc) remove_dead_tmps(path);
    if (rc) {
        close(fd);
        return -1;
    }
    struct stat st;
    fstat(fd, &st);
    mc_lock *l = mc_calloc(1, sizeof *l);
    snprintf(l->path, sizeof l->path, "%s", path);
    l->fd = fd;
    l->dev = st.st_dev;
    l->ino = st.st_ino;
    l->hb_offset = hb_offset;
    l->interval = stale_after / 5 < 30 ? stale_after / 5 : 30;
    if (l->interval < 0.2) l->interval = 0.2;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    /* the heartbeat thread must not take the job's stop signals (the main thread handles them) */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    MC_ASSERT(pthread_create(&l->thread, NULL, heartbeat_main, l) == 0);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    *out = l;
    return 0;
}

int mc_lock_lost(mc_lock *l)
{
    if (!l) return 0;
    pthread_mutex_lock(&l->mu);
    int lost = l->lost;
    pthread_mutex_unlock(&l->mu);
    return lost;
}

int mc_lock_release(mc_lock *l)
{
    if (!l) return 0;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    struct stat st;
    int rc = 0, e = 0;
    if (stat(l->path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino && unlink(l->path) != 0 &&
        errno != ENOENT) {
        rc = -1;
        e = errno;
    }
    close(l->fd);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
    errno = e;
    return rc;
}

int mc_lock_acquire_all(MPI_Comm comm, const char *output, const char *command, double stale_after, mc_lock **out,
                        const char *prefix)
{
    int rank, rc = 0;
    MPI_Comm_rank(comm, &rank);
    *out = NULL;
    if (rank == 0) {
        char err[MC_ERR_LEN] = "", note[MC_ERR_LEN];
        rc = mc_lock_acquire(output, command, stale_after, out, note, err);
        if (rc) fprintf(stderr, "morphcat: %s%s\n", prefix, err);
        else if (note[0]) fprintf(stderr, "morphcat: %s%s\n", prefix, note);
    }
    MPI_Bcast(&rc, 1, MPI_INT, 0, comm);
    return rc;
}

int mc_file_id_get(const char *path, mc_file_id *id, char *err)
{
    struct stat st;
    if (stat(path, &st) != 0) return mc_fail(err, "%s: %s", path, strerror(errno));
    id->dev = st.st_dev;
    id->ino = st.st_ino;
    return 0;
}

int mc_file_id_check(const char *path, const mc_file_id *id, char *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return mc_fail(err, "%s: the catalogue was %s while the job ran: stopping (this job's rows went into the "
                            "removed file)", path, errno == ENOENT ? "deleted" : "made unreachable");
    if (st.st_dev != id->dev || st.st_ino != id->ino)
        return mc_fail(err, "%s: the catalogue was replaced by another file while the job ran: stopping without "
                            "writing into the new one", path);
    return 0;
}

int mc_output_dir_check(const char *path, char *err)
{
    char dir[4200];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    /* a read-only mount (or bind mount) shows in statvfs; permissions (for users other than root) in access */
    struct statvfs sv;
    int e = 0;
    if (statvfs(dir, &sv) == 0 && (sv.f_flag & ST_RDONLY)) e = EROFS;
    else if (access(dir, W_OK) != 0 && (errno == EACCES || errno == EPERM || errno == EROFS)) e = errno;
    if (!e) return 0;
    return mc_fail(err, "%s: the output folder %s became read-only while the job ran (%s): stopping; the rows "
                        "committed so far stay, and the same command resumes once the folder is writable",
                   path, dir, strerror(e));
}
