/* io/cutout.c: io_cutout_read's front door: opens the file, tells missing from empty, picks the decoder by
 * the file's first bytes (not its name) and owns the reusable pixel buffer. The decoders live in
 * io/cutout_fits.c and io/cutout_image.c; nothing here looks at pixel values. */
#include "io/cutout_internal.h"

#include <errno.h>
#include <math.h>
#include <strings.h>
#include <sys/stat.h>
/* xxHash's own implementation compiled in (its header-only form): with the build's AVX-512 or AVX2 it hashes a
 * 256 px float32 cube several times faster than the packaged library's SSE2 build. XXH3 is one function
 * whatever the vector width, so the checksums are the same. */
#define XXH_INLINE_ALL
#include <xxhash.h>

int io_cutout_fail(char *err, int status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, MC_ERR_LEN, fmt, ap);
        va_end(ap);
    }
    return status;
}

float *io_cutout_reserve(io_cutout *c, size_t n)
{
    if (c->cap < n || !c->pix) {
        free(c->pix);
        c->pix = (float *)mc_malloc_aligned(n * sizeof(float));
        c->cap = n;
    }
    return c->pix;
}

void *io_cutout_scratch(io_cutout *c, int k, size_t bytes)
{
    struct io_cutout_scratch *s = &c->scratch;
    MC_ASSERT(k >= 0 && k < 3);
    if (s->cap[k] < bytes || !s->mem[k]) {
        free(s->mem[k]);
        s->mem[k] = mc_malloc(bytes ? bytes : 1);
        s->cap[k] = bytes;
    }
    return s->mem[k];
}

int io_cutout_check_size(const char *path, const char *what, int64_t w, int64_t h, int64_t nband, char *err)
{
    if (w < 1 || h < 1 || nband < 1)
        return io_cutout_fail(err, MC_ROW_BAD_SHAPE, "%s: %s has an empty axis (%lld x %lld x %lld)", path,
                              what, (long long)nband, (long long)h, (long long)w);
    /* Each factor is below 2^31 here, so the products cannot overflow int64. */
    if (w > IO_MAX_PIXELS || h > IO_MAX_PIXELS || w * h > IO_MAX_PIXELS || w * h * nband > IO_MAX_PIXELS)
        return io_cutout_fail(err, MC_ROW_BAD_SHAPE,
                              "%s: %s is too large (%lld planes of %lld x %lld pixels; limit %lld floats)",
                              path, what, (long long)nband, (long long)h, (long long)w,
                              (long long)IO_MAX_PIXELS);
    return MC_ROW_OK;
}

static const unsigned char PNG_SIG[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

/* Lower-case extension after the last dot of the file name, or "". */
static const char *name_ext(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    return dot ? dot + 1 : "";
}

/* The bytes of f (open at byte 0, a regular file of size bytes by fstat) into c->file, to its end: the count,
 * or -1 on a read error or when it grows past IO_FILE_WHOLE (f is then to be read as before). */
static int64_t file_whole(FILE *f, int64_t size, io_cutout *c)
{
    size_t want = (size_t)size + 1, n = 0; /* one more byte, to see the end */
    for (;;) {
        if (c->file_cap < want) {
            free(c->file);
            c->file = NULL;
            size_t cap = want > 2 * c->file_cap ? want : 2 * c->file_cap;
            c->file = mc_malloc(cap);
            c->file_cap = cap;
            if (n) {
                rewind(f); /* (the old buffer is gone: read the start again) */
                n = 0;
            }
        }
        size_t k = fread(c->file + n, 1, c->file_cap - n, f);
        n += k;
        if (ferror(f)) return -1;
        if (n < c->file_cap) return (int64_t)n; /* the end */
        if ((int64_t)n > IO_FILE_WHOLE) return -1;
        want = c->file_cap + (c->file_cap >> 1);
    }
}

static void checksum_hex(XXH128_hash_t h, char hex[33])
{
    snprintf(hex, 33, "%016llx%016llx", (unsigned long long)h.high64, (unsigned long long)h.low64);
}

static int cutout_read(const char *path, const io_read_opts *opts, io_cutout *c, char *sum, char *err)
{
    MC_ASSERT(path && c);
    /* Everything but the buffers describes the previous file: reset it. */
    float *pix = c->pix;
    size_t cap = c->cap, file_cap = c->file_cap;
    unsigned char *file = c->file;
    struct io_cutout_scratch scratch = c->scratch;
    io_cutout_wcs_free(c);
    memset(c, 0, sizeof *c);
    c->pix = pix;
    c->cap = cap;
    c->file = file;
    c->file_cap = file_cap;
    c->scratch = scratch;
    c->ra = c->dec = NAN;
    if (err) err[0] = 0;

    FILE *f = fopen(path, "rb");
    if (!f) {
        if (sum) sum[0] = 0;
        return io_cutout_fail(err, MC_ROW_MISSING, "%s: cannot open (%s)", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        int e = errno;
        fclose(f);
        if (sum && io_file_checksum(path, sum, NULL)) sum[0] = 0;
        return io_cutout_fail(err, MC_ROW_MISSING, "%s: cannot stat (%s)", path, strerror(e));
    }
    unsigned char magic[16];
    size_t nmagic = 0;
    if (!S_ISDIR(st.st_mode)) nmagic = fread(magic, 1, sizeof magic, f);
    const int picture = (nmagic >= 8 && !memcmp(magic, PNG_SIG, 8)) ||
                        (nmagic >= 3 && magic[0] == 0xff && magic[1] == 0xd8 && magic[2] == 0xff);
    /* A FITS file (or, for its checksum, any file) whole in memory; a directory, a device, a large file or a
     * read error: its checksum first and then the reading as it always was. PNG and JPEG are read from f. */
    int64_t whole = -1;
    if (nmagic > 0 && !ferror(f) && (sum || !picture) && S_ISREG(st.st_mode) && st.st_size <= IO_FILE_WHOLE) {
        rewind(f);
        whole = file_whole(f, (int64_t)st.st_size, c);
        if (whole < 0) {
            clearerr(f);
            rewind(f);
            nmagic = fread(magic, 1, sizeof magic, f);
        } else if (sum) {
            checksum_hex(XXH3_128bits(c->file, (size_t)whole), sum);
        }
    }
    if (sum && whole < 0 && io_file_checksum(path, sum, NULL)) sum[0] = 0;
    if (S_ISDIR(st.st_mode)) {
        fclose(f);
        return io_cutout_fail(err, MC_ROW_MISSING, "%s: is a directory, not a cutout file", path);
    }
    if (nmagic == 0) {
        int bad = ferror(f), e = errno;
        fclose(f);
        if (bad) return io_cutout_fail(err, MC_ROW_MISSING, "%s: cannot read (%s)", path, strerror(e));
        return io_cutout_fail(err, MC_ROW_CORRUPT, "%s: empty file (0 bytes)", path);
    }
    const char *ext = name_ext(path);
    int status;
    if (nmagic >= 8 && !memcmp(magic, PNG_SIG, 8)) {
        rewind(f);
        c->kind = IO_KIND_PNG;
        status = io_cutout_png_read(path, f, c, err);
        fclose(f);
    } else if (nmagic >= 3 && magic[0] == 0xff && magic[1] == 0xd8 && magic[2] == 0xff) {
        rewind(f);
        c->kind = IO_KIND_JPEG;
        status = io_cutout_jpeg_read(path, f, c, err);
        fclose(f);
    } else {
        fclose(f);
        if (!strcasecmp(ext, "png"))
            return io_cutout_fail(err, MC_ROW_CORRUPT, "%s: not a PNG file (bad signature)", path);
        if (!strcasecmp(ext, "jpg") || !strcasecmp(ext, "jpeg"))
            return io_cutout_fail(err, MC_ROW_CORRUPT, "%s: not a JPEG file (no SOI marker)", path);
        c->kind = IO_KIND_FITS;
        status = io_cutout_fits_read(path, magic, nmagic, whole >= 0 ? whole : (int64_t)st.st_size,
                                     whole >= 0 ? c->file : NULL, opts ? opts->hdu : NULL, c, err);
    }
    if (status != MC_ROW_OK) {
        /* Leave no half-described cutout behind; the buffer stays for the next file. */
        c->nband = c->h = c->w = 0;
        c->has_wcs = 0;
        c->ra = c->dec = NAN;
        io_cutout_wcs_free(c);
    }
    return status;
}

int io_cutout_read(const char *path, const io_read_opts *opts, io_cutout *c, char *err)
{
    return cutout_read(path, opts, c, NULL, err);
}

int io_cutout_read_sum(const char *path, const io_read_opts *opts, io_cutout *c, char sum[33], char *err)
{
    return cutout_read(path, opts, c, sum, err);
}

int io_file_checksum(const char *path, char hex[33], char *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return mc_fail(err, "%s: cannot open (%s)", path, strerror(errno));
    XXH3_state_t *st = XXH3_createState();
    MC_ASSERT(st && XXH3_128bits_reset(st) == XXH_OK);
    unsigned char buf[1 << 16]; /* on the stack: called for every cutout, no allocation each */
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) XXH3_128bits_update(st, buf, n);
    int bad = ferror(f);
    fclose(f);
    XXH128_hash_t h = XXH3_128bits_digest(st);
    XXH3_freeState(st);
    if (bad) return mc_fail(err, "%s: read error while checksumming", path);
    checksum_hex(h, hex);
    return 0;
}

void io_cutout_free(io_cutout *c)
{
    if (!c) return;
    free(c->pix);
    c->pix = NULL;
    c->cap = 0;
    free(c->file);
    c->file = NULL;
    c->file_cap = 0;
    for (int k = 0; k < 3; k++) free(c->scratch.mem[k]);
    memset(&c->scratch, 0, sizeof c->scratch);
    io_cutout_wcs_free(c);
}
