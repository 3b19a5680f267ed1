/* io/npy.c: the .npy reader and writer. The header is a Python dict literal; only the three keys NumPy
 * writes (descr, fortran_order, shape) are parsed, strictly. */
#include "io/npy.h"

#include <errno.h>
#include <unistd.h>

static const char NPY_MAGIC[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

/* Value text after 'key': in the header dict, or NULL. */
static const char *dict_value(const char *hdr, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "'%s'", key);
    const char *p = strstr(hdr, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ') p++;
    if (*p != ':') return NULL;
    p++;
    while (*p == ' ') p++;
    return p;
}

int io_npy_open(const char *path, io_npy *a, char *err)
{
    memset(a, 0, sizeof *a);
    a->f = fopen(path, "rb");
    if (!a->f) return mc_fail(err, "%s: cannot open (%s)", path, strerror(errno));
    a->path = mc_strdup(path);
    unsigned char pre[12];
    if (fread(pre, 1, 10, a->f) != 10 || memcmp(pre, NPY_MAGIC, 6)) {
        io_npy_close(a);
        return mc_fail(err, "%s: not a .npy file (bad magic)", path);
    }
    int major = pre[6];
    uint32_t hlen;
    if (major == 1) {
        hlen = (uint32_t)pre[8] | (uint32_t)pre[9] << 8;
    } else if (major == 2 || major == 3) {
        if (fread(pre + 10, 1, 2, a->f) != 2) {
            io_npy_close(a);
            return mc_fail(err, "%s: truncated .npy header", path);
        }
        hlen = (uint32_t)pre[8] | (uint32_t)pre[9] << 8 | (uint32_t)pre[10] << 16 | (uint32_t)pre[11] << 24;
    } else {
        io_npy_close(a);
        return mc_fail(err, "%s: unsupported .npy format version %d", path, major);
    }
    if (hlen > (1u << 20)) {
        io_npy_close(a);
        return mc_fail(err, "%s: .npy header of %u bytes is implausible", path, hlen);
    }
    char *hdr = mc_malloc(hlen + 1);
    if (fread(hdr, 1, hlen, a->f) != hlen) {
        free(hdr);
        io_npy_close(a);
        return mc_fail(err, "%s: truncated .npy header", path);
    }
    hdr[hlen] = 0;
    a->data_off = (major == 1 ? 10 : 12) + (long)hlen;
    int rc = 0;
    const char *d = dict_value(hdr, "descr"), *fo = dict_value(hdr, "fortran_order"), *sh = dict_value(hdr, "shape");
    if (!d || !fo || !sh) {
        rc = mc_fail(err, "%s: .npy header lacks descr, fortran_order or shape", path);
    } else if (!strncmp(d, "'<f4'", 5)) {
        a->itemsize = 4;
    } else if (!strncmp(d, "'<f8'", 5)) {
        a->itemsize = 8;
    } else {
        const char *e = strchr(d + 1, '\'');
        rc = mc_fail(err, "%s: dtype %.*s is not supported (float32 or float64, little-endian)", path,
                     e ? (int)(e - d + 1) : 8, d);
    }
    if (!rc && strncmp(fo, "False", 5))
        rc = mc_fail(err, "%s: Fortran-ordered array; save it C-ordered (np.ascontiguousarray)", path);
    if (!rc) {
        const char *p = sh;
        if (*p != '(') rc = mc_fail(err, "%s: malformed shape in .npy header", path);
        p++;
        a->row_floats = 1;
        while (!rc) {
            while (*p == ' ' || *p == ',') p++;
            if (*p == ')') break;
            char *end;
            long long v = strtoll(p, &end, 10);
            if (end == p || v < 0 || a->ndim >= IO_NPY_MAXDIM) {
                rc = mc_fail(err, "%s: malformed shape in .npy header", path);
                break;
            }
            a->shape[a->ndim++] = v;
            p = end;
            if (*p == 'L') p++;
        }
        for (int i = 1; i < a->ndim; i++) a->row_floats *= a->shape[i];
    }
    free(hdr);
    if (!rc && a->ndim == 0) rc = mc_fail(err, "%s: a 0-dimensional array holds no rows", path);
    if (!rc) {
        /* the data must be all there */
        if (fseek(a->f, 0, SEEK_END) == 0) {
            long size = ftell(a->f);
            double need = (double)a->data_off + (double)a->shape[0] * a->row_floats * a->itemsize;
            if ((double)size < need)
                rc = mc_fail(err, "%s: truncated: %ld bytes, the header promises %.0f", path, size, need);
        }
    }
    if (rc) io_npy_close(a);
    return rc;
}

int io_npy_read_rows(io_npy *a, int64_t start, int64_t count, float *dst, char *err)
{
    MC_ASSERT(start >= 0 && count >= 0 && start + count <= a->shape[0]);
    size_t n = (size_t)(count * a->row_floats);
    if (fseek(a->f, a->data_off + (long)(start * a->row_floats * a->itemsize), SEEK_SET))
        return mc_fail(err, "%s: seek failed (%s)", a->path, strerror(errno));
    if (a->itemsize == 4) {
        if (fread(dst, 4, n, a->f) != n) return mc_fail(err, "%s: short read", a->path);
        return 0;
    }
    double buf[4096];
    for (size_t done = 0; done < n;) {
        size_t k = n - done < 4096 ? n - done : 4096;
        if (fread(buf, 8, k, a->f) != k) return mc_fail(err, "%s: short read", a->path);
        for (size_t i = 0; i < k; i++) dst[done + i] = (float)buf[i];
        done += k;
    }
    return 0;
}

void io_npy_close(io_npy *a)
{
    if (a->f) fclose(a->f);
    free(a->path);
    a->f = NULL;
    a->path = NULL;
}

int io_npy_write(const char *path, const float *data, int ndim, const int64_t *shape, char *err)
{
    char hdr[512];
    int o = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        o += snprintf(hdr + o, sizeof hdr - (size_t)o, "%lld%s", (long long)shape[i], ndim == 1 || i < ndim - 1 ? ", " : "");
        n *= (size_t)shape[i];
    }
    o += snprintf(hdr + o, sizeof hdr - (size_t)o, "), }");
    /* pad with spaces so magic+len+header ends on a 64-byte boundary, newline last */
    int total = 10 + o + 1;
    int pad = (64 - total % 64) % 64;
    memset(hdr + o, ' ', (size_t)pad);
    o += pad;
    hdr[o++] = '\n';
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return mc_fail(err, "%s: cannot create (%s)", tmp, strerror(errno));
    unsigned char pre[10];
    memcpy(pre, NPY_MAGIC, 6);
    pre[6] = 1;
    pre[7] = 0;
    pre[8] = (unsigned char)(o & 0xff);
    pre[9] = (unsigned char)(o >> 8);
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(hdr, 1, (size_t)o, f) == (size_t)o &&
             fwrite(data, sizeof(float), n, f) == n;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return mc_fail(err, "%s: write failed (%s)", path, strerror(e));
    }
    return 0;
}
