/* fuzz/fuzz_common.h: shared by the libFuzzer harnesses: the readers under test take paths, so each input is
 * written to one scratch file per process (in /dev/shm when it exists: no disk traffic) under the name the
 * reader expects. Not a reader itself; no checks of its own beyond the sanitizers'. */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The scratch path for this process with the given file name ("x.fits"): a folder of its own, created once,
 * under $FUZZ_SCRATCH (fuzz/run.sh points it into the scratch folder it removes afterwards), else /dev/shm. */
static inline const char *fuzz_path(const char *name)
{
    static char dir[256];
    static char path[512];
    if (!dir[0]) {
        const char *base = getenv("FUZZ_SCRATCH");
        if (!base || !base[0]) base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(dir, sizeof dir, "%s/morphcat-fuzz-%ld", base, (long)getpid());
        mkdir(dir, 0700);
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

/* Write data to the scratch file name; returns its path (aborts if the scratch folder is unusable: a broken
 * harness, not a finding). */
static inline const char *fuzz_write(const char *name, const uint8_t *data, size_t n)
{
    const char *p = fuzz_path(name);
    FILE *f = fopen(p, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        perror(p);
        abort();
    }
    return p;
}

#endif
