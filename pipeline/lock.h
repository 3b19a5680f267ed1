/* pipeline/lock.h: one job per output. A job holds OUTPUT.lock, a small text file created atomically with
 * link(2) (which works on NFS and Lustre, unlike flock alone), naming its host, pid, Slurm job id and start
 * time, with a heartbeat its holder refreshes from a thread. A lock whose holder is gone (dead pid on this
 * host; on another host, a heartbeat older than stale_after seconds) is broken and the breaker says so.
 * Not here: what the job does with its output; the lock protects the path, not HDF5's bytes. */
#ifndef PIPELINE_LOCK_H
#define PIPELINE_LOCK_H

#include <mpi.h>
#include <sys/types.h>

#define MC_LOCK_STALE_DEFAULT 300.0 /* seconds without a heartbeat before another host's lock is stale */

typedef struct mc_lock mc_lock;

typedef struct mc_lock_holder {
    char command[32];   /* run, merge, rerun */
    char host[256];
    long pid;
    unsigned long long pid_start; /* the holder's start time in clock ticks after boot (/proc/PID/stat) */
    char slurm_job[64];           /* "none" outside Slurm */
    char started_utc[32];
    double heartbeat;             /* Unix seconds of the last refresh */
    double heartbeat_age;         /* seconds since then, by this host's clock */
    int stale;                    /* 1 when the holder is known to be gone or silent too long */
    char why_stale[160];          /* the reason, when stale */
} mc_lock_holder;

/* Take the lock on output (OUTPUT.lock). command names the job kind in the lock. Returns 0 and *out, writing
 * into note (MC_ERR_LEN) a line when a stale lock was broken ("" otherwise); or -1 with err naming the holder
 * (or why the lock file cannot be made). The heartbeat runs until mc_lock_release. */
int mc_lock_acquire(const char *output, const char *command, double stale_after, mc_lock **out, char *note,
                    char *err);
/* 1 once the heartbeat found the lock file removed or replaced by someone else (another job judged this one
 * stale and broke it): the job must stop writing. Thread-safe. NULL: 0. */
int mc_lock_lost(mc_lock *l);
/* Remove the lock (when it is still ours) and stop the heartbeat. NULL is a no-op. Returns -1 (errno set) when
 * the lock file could not be removed (a folder made read-only): it stays, for the next job to break as stale. */
int mc_lock_release(mc_lock *l);
/* Who holds output's lock: 1 held (h filled, h->stale set if it is stale), 0 not held, -1 unreadable (err). */
int mc_lock_query(const char *output, double stale_after, mc_lock_holder *h, char *err);
/* One line describing a holder ("morphcat run on host H, pid P, Slurm job J, since T, heartbeat 3 s ago"). */
void mc_lock_describe(const mc_lock_holder *h, char *buf, size_t len);

/* Collective over comm: rank 0 takes the lock and broadcasts the verdict before any work; rank 0 prints the
 * refusal (or the broken-lock note) as one line prefixed "morphcat: " + prefix. Returns 0 on every rank with
 * *out set on rank 0 (NULL elsewhere), or -1 on every rank. */
int mc_lock_acquire_all(MPI_Comm comm, const char *output, const char *command, double stale_after, mc_lock **out,
                        const char *prefix);

/* The identity of the file at path now (st_dev, st_ino), to detect the catalogue being deleted or replaced
 * under a running job: mc_file_id_check fails with a message naming the file when path is no longer the file
 * first seen. */
typedef struct mc_file_id {
    dev_t dev;
    ino_t ino;
} mc_file_id;
int mc_file_id_get(const char *path, mc_file_id *id, char *err);
int mc_file_id_check(const char *path, const mc_file_id *id, char *err);
/* 0 while the folder holding path still takes writes; -1 with a message naming path and the folder when it
 * was made read-only (a read-only mount or bind mount, or, for users other than root, its permissions). */
int mc_output_dir_check(const char *path, char *err);

#endif
