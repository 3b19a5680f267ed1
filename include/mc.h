/* mc.h: the few things every morphcat subsystem shares: invariant checks, allocation that aborts on
 * exhaustion, user-facing error messages and a clock. Header-only on purpose: no subsystem owns it.
 * It does not know about tensors, files or MPI. */
#ifndef MC_H
#define MC_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MC_VERSION "0.1.0"

/* Length of every user-facing error buffer (`char err[MC_ERR_LEN]`). */
#define MC_ERR_LEN 1024

#if defined(__GNUC__)
#define MC_NORETURN __attribute__((noreturn))
#define MC_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define MC_UNUSED __attribute__((unused))
#else
#define MC_NORETURN
#define MC_PRINTF(a, b)
#define MC_UNUSED
#endif

/* Broken invariants abort loudly with file, line and expression (ggml's GGML_ASSERT idiom). */
static inline MC_NORETURN void mc_abort_at(const char *file, int line, const char *what)
{
    fprintf(stderr, "morphcat: internal error at %s:%d: %s\n", file, line, what);
    fflush(stderr);
    abort();
}
#define MC_ASSERT(x)                                                                                         \
    do {                                                                                                     \
        if (!(x)) mc_abort_at(__FILE__, __LINE__, "assertion failed: " #x);                                  \
    } while (0)

/* Running out of memory aborts with the size asked for, so callers carry no NULL checks (redis zmalloc). */
static inline MC_NORETURN void mc_oom(size_t n)
{
    fprintf(stderr, "morphcat: out of memory allocating %zu bytes\n", n);
    fflush(stderr);
    abort();
}
static inline void *mc_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) mc_oom(n);
    return p;
}
static inline void *mc_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) mc_oom(n * size);
    return p;
}
static inline void *mc_realloc(void *q, size_t n)
{
    void *p = realloc(q, n ? n : 1);
    if (!p) mc_oom(n);
    return p;
}
/* 64-byte aligned (one cache line, one AVX-512 vector); release with free(). */
static inline void *mc_malloc_aligned(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? (n + 63) / 64 * 64 : 64) != 0) mc_oom(n);
    return p;
}
static inline char *mc_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = (char *)mc_malloc(n);
    memcpy(p, s, n);
    return p;
}

/* Write a user-facing message into err (MC_ERR_LEN bytes) and return -1, so `return mc_fail(err, ...)`
 * reads as one statement. Messages name the file, the object and the reason. */
static inline MC_PRINTF(2, 3) int mc_fail(char *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, MC_ERR_LEN, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Status of one catalogue row (one galaxy). Stored in the catalogue; values are stable across versions.
 * PENDING is the fill value of a row no rank has finished; everything from MISSING up is a per-galaxy
 * failure with a message naming the file, the object and the reason; the run goes on past it. */
typedef enum {
    MC_ROW_PENDING = 0,
    MC_ROW_OK = 1,
    MC_ROW_MISSING = 2,    /* file absent or unreadable (permissions, I/O error) */
    MC_ROW_CORRUPT = 3,    /* not a readable FITS/PNG/JPEG: truncated, corrupt, wrong format */
    MC_ROW_BAD_SHAPE = 4,  /* decoded, but not what the recipe needs: dimensions, bands, too small */
    MC_ROW_BAD_PIXELS = 5, /* NaN/Inf, or bands mostly zero or blank */
    MC_ROW_BAD_ROW = 6,    /* the manifest row itself is unusable (empty path, bad ra/dec) */
} mc_row_status;
#define MC_ROW_NSTATUS 7

static inline const char *mc_row_status_name(int s)
{
    static const char *const names[MC_ROW_NSTATUS] = {"pending",   "ok",         "missing_file", "corrupt_file",
                                                      "bad_shape", "bad_pixels", "bad_manifest_row"};
    return s >= 0 && s < MC_ROW_NSTATUS ? names[s] : "unknown";
}

/* Monotonic seconds. */
/* The current UTC time as ISO 8601 ("2026-11-29T17:41:35Z"), for catalogue attributes. */
static inline void mc_utc_now(char *buf, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static inline double mc_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
