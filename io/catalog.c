/* io/catalog.c: the parallel-HDF5 catalogue (layout in docs/catalogue.md). Creation and closing are
 * collective; everything between is independent raw-data I/O into preallocated chunks, so no metadata
 * changes while galaxies are being computed and a killed rank cannot leave the file unreadable. */
#include "io/catalog.h"
#include "io/h5attr.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

uint16_t io_catalog_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint16_t sign = (uint16_t)(x >> 16 & 0x8000);
    const uint32_t ax = x & 0x7fffffff;
    if (ax > 0x7f800000) return sign | 0x7e00 | (uint16_t)(ax >> 13 & 0x3ff); /* NaN, quieted */
    if (ax >= 0x477ff000) return sign | 0x7c00; /* 65520 and up (halfway past 65504, the largest): infinity */
    if (ax >= 0x38800000) {                     /* normal: rebias the exponent (127 -> 15), round 23 -> 10 bits */
        uint32_t r = ax - 0x38000000;
        return sign | (uint16_t)((r + 0xfff + (r >> 13 & 1)) >> 13);
    }
    int e = (int)(ax >> 23); /* below 2^-14: a subnormal half counts units of 2^-24 */
    if (e < 102) return sign; /* below 2^-25: rounds to 0 */
    uint32_t m = (ax & 0x7fffff) | 0x800000, s = (uint32_t)(126 - e), h = m >> s, rem = m & ((1u << s) - 1),
             halfway = 1u << (s - 1);
    if (rem > halfway || (rem == halfway && (h & 1))) h++; /* may carry into the smallest normal: still right */
    return sign | (uint16_t)h;
}

enum { DS_ID, DS_FILE, DS_RA, DS_DEC, DS_RADEC_SRC, DS_STATUS, DS_MESSAGE, DS_SHA, DS_RELEASE, DS_CONC, DS_FRAC, DS_LO, DS_HI,
       DS_ASKED, DS_EMBED, DS_PCA, DS_CL_COUNT, DS_CL_STATUS, DS_CL_LABEL, DS_CL_SCORE, DS_CL_BOX, DS_CL_RA, DS_CL_DEC,
       DS_COUNT };

static const char *const ds_path[DS_COUNT] = {
    "galaxies/id_str",          "galaxies/file",           "galaxies/ra",
    "galaxies/dec",             "galaxies/radec_source",   "galaxies/status",
    "galaxies/message",         "galaxies/file_xxh3",    "galaxies/release",
    "morphology/concentration", "morphology/fraction",
    "morphology/fraction_90pc_lower", "morphology/fraction_90pc_upper", "morphology/proportion_asked",
    "embedding/features",       "embedding/pca",
    "clumps/count",             "clumps/status",           "clumps/label",
    "clumps/score",             "clumps/box",              "clumps/ra",
    "clumps/dec",
};

/* Zoobot's column suffixes (zoobot/shared/load_predictions.py; Euclid's release adds _dirichlet). */
static const struct {
    int ds;
    const char *suffix;
} column_views[] = {{DS_CONC, "_dirichlet"},
                    {DS_FRAC, "_fraction"},
                    {DS_LO, "_90pc-lower"},
                    {DS_HI, "_90pc-upper"},
                    {DS_ASKED, "_proportion-asked"}};

struct io_catalog {
    MPI_Comm comm;
    int rank;
    char *path;
    hid_t file, dxpl;
    hid_t ds[DS_COUNT];
    hid_t t_id, t_file, t_msg, t_half, t_sha, t_rel;
    int64_t n_rows;
    int n_answers, embed_dim, embed_half, pca_dim, clump_max;
    int fd;         /* POSIX descriptor for fsync */
    int complete;   /* reopened catalogue already marked complete */
    int write_errno; /* errno just after the last failed H5Dwrite (0: none, or HDF5 kept none) */
    uint16_t *half; /* conversion buffer for float16 embeddings */
    size_t half_cap;
};

static hid_t str_type(size_t len)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, len);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

/* IEEE binary16 as HDF5 1.10 can describe it (no predefined type): h5py reads it as numpy float16. */
static hid_t half_type(void)
{
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(t, 15, 10, 5, 0, 10);
    H5Tset_size(t, 2);
    H5Tset_ebias(t, 15);
    H5Tset_precision(t, 16);
    return t;
}


static int attr_write_strs(hid_t obj, const char *name, int n, const char *const *values)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hsize_t dim = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &dim, NULL);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 || H5Awrite(a, t, values) < 0 ? -1 : 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return rc;
}

/* Rows per chunk: a multiple of the work unit, about 1 MiB of row data. */
static hsize_t chunk_rows(size_t row_bytes, int unit)
{
    size_t units = (size_t)(1 << 20) / (row_bytes * (size_t)unit);
    if (units < 1) units = 1;
    return (hsize_t)(units * (size_t)unit);
}

/* (n), (n, cols) or (n, cols, depth) */
static hid_t make_dataset3(hid_t file, const char *path, hid_t type, int64_t n, int cols, int depth, int unit,
                           int fill_zero)
{
    hsize_t dims[3] = {(hsize_t)n, (hsize_t)cols, (hsize_t)depth}, maxd[3] = {H5S_UNLIMITED, (hsize_t)cols, (hsize_t)depth};
    int rank = cols > 0 ? (depth > 0 ? 3 : 2) : 1;
    hid_t sp = H5Screate_simple(rank, dims, maxd);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    size_t per_row = (size_t)(cols > 0 ? cols : 1) * (size_t)(depth > 0 ? depth : 1);
    hsize_t chunk[3] = {chunk_rows(H5Tget_size(type) * per_row, unit), (hsize_t)cols, (hsize_t)depth};
    H5Pset_chunk(dcpl, rank, chunk);
    H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY); /* parallel HDF5 requires it; no chunk appears later */
    if (fill_zero) {
        H5Pset_fill_time(dcpl, H5D_FILL_TIME_ALLOC);
    } else {
        /* rows are written before they are read; pending rows (status 0) hold nothing meaningful, and
         * filling tens of GB at creation would cost more than the job */
        H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    }
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t ds = H5Dcreate2(file, path, type, sp, lcpl, dcpl, H5P_DEFAULT);
    H5Pclose(lcpl);
    H5Pclose(dcpl);
    H5Sclose(sp);
    return ds;
}

static hid_t make_dataset(hid_t file, const char *path, hid_t type, int64_t n, int cols, int unit, int fill_zero)
{
    return make_dataset3(file, path, type, n, cols, 0, unit, fill_zero);
}

/* A 1-D virtual dataset /columns/<name> showing column j of a (rows, cols) dataset, unlimited in rows, so
 * h5py and pandas users find Zoobot's column names as datasets. */
static int make_column_view(hid_t file, const char *name, const char *src, hid_t type, int64_t n, int cols, int j)
{
    hsize_t vdim = (hsize_t)n, vmax = H5S_UNLIMITED;
    hid_t vsp = H5Screate_simple(1, &vdim, &vmax);
    hsize_t sdim[2] = {(hsize_t)n, (hsize_t)cols}, smax[2] = {H5S_UNLIMITED, (hsize_t)cols};
    hid_t ssp = H5Screate_simple(2, sdim, smax);
    hsize_t vstart = 0, vcount = H5S_UNLIMITED, one = 1;
    H5Sselect_hyperslab(vsp, H5S_SELECT_SET, &vstart, NULL, &one, &vcount);
    hsize_t sstart[2] = {0, (hsize_t)j}, sstride[2] = {1, 1}, scount[2] = {H5S_UNLIMITED, 1}, sblock[2] = {1, 1};
    H5Sselect_hyperslab(ssp, H5S_SELECT_SET, sstart, sstride, scount, sblock);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    float nanf = NAN;
    H5Pset_fill_value(dcpl, H5T_NATIVE_FLOAT, &nanf);
    int rc = H5Pset_virtual(dcpl, vsp, ".", src, ssp) < 0 ? -1 : 0;
    char path[600];
    snprintf(path, sizeof path, "columns/%s", name);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t ds = rc ? -1 : H5Dcreate2(file, path, type, vsp, lcpl, dcpl, H5P_DEFAULT);
    if (ds < 0) rc = -1;
    else H5Dclose(ds);
    H5Pclose(lcpl);
    H5Pclose(dcpl);
    H5Sclose(ssp);
    H5Sclose(vsp);
    return rc;
}

static int write_slab3(io_catalog *c, int which, hid_t mtype, int64_t row0, int64_t n, int cols, int depth,
                       const void *buf)
{
    if (n <= 0) return 0;
    hid_t fs = H5Dget_space(c->ds[which]);
    hsize_t start[3] = {(hsize_t)row0, 0, 0}, count[3] = {(hsize_t)n, (hsize_t)cols, (hsize_t)depth};
    int rank = cols > 0 ? (depth > 0 ? 3 : 2) : 1;
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t ms = H5Screate_simple(rank, count, NULL);
    errno = 0;
    herr_t e = H5Dwrite(c->ds[which], mtype, ms, fs, c->dxpl, buf);
    if (e < 0) c->write_errno = errno;
    H5Sclose(ms);
    H5Sclose(fs);
    return e < 0 ? -1 : 0;
}

/* HDF5 1.10 crashes at exit (closing again a file whose H5Fclose failed half-way, HDFFV-11052); a process
 * that had to leave a catalogue unclosed must end without HDF5's clean-up: see io_catalog_abandoned. */
static int abandoned_g;

int io_catalog_abandoned(void)
{
    return abandoned_g;
}

/* The file system's own verdict on the catalogue now: fsync on its descriptor answers EROFS once the file
 * system went read-only (an ext4 error, an NFS export switched), even when nothing is dirty. 0: none. */
static int fs_refuses(const io_catalog *c)
{
    return c->fd >= 0 && fsync(c->fd) != 0 && errno != EINVAL ? errno : 0;
}

/* Why a write failed, as a suffix for the message: the file system's verdict first, else the errno the
 * failed write left (when it is one a write gives: HDF5's error stack does not keep it). */
static const char *write_cause(const io_catalog *c, char *buf, size_t len)
{
    int e = fs_refuses(c);
    if (!e) e = c->write_errno;
    if (e == EROFS) snprintf(buf, len, ": the file system became read-only (%s)", strerror(e));
    else if (e == ENOSPC || e == EDQUOT) snprintf(buf, len, ": disk full (%s)", strerror(e));
    else if (e == EIO || e == EFBIG) snprintf(buf, len, ": file system error (%s)", strerror(e));
    else snprintf(buf, len, " (disk full or file system error?)");
    return buf;
}

static int write_slab(io_catalog *c, int which, hid_t mtype, int64_t row0, int64_t n, int cols, const void *buf)
{
    return write_slab3(c, which, mtype, row0, n, cols, 0, buf);
}

static void cat_free(io_catalog *c)
{
    if (!c) return;
    for (int i = 0; i < DS_COUNT; i++)
        if (c->ds[i] > 0) H5Dclose(c->ds[i]);
    if (c->dxpl > 0) H5Pclose(c->dxpl);
    hid_t ts[6] = {c->t_id, c->t_file, c->t_msg, c->t_half, c->t_sha, c->t_rel};
    for (int i = 0; i < 6; i++)
        if (ts[i] > 0) H5Tclose(ts[i]);
    if (c->file > 0) H5Fclose(c->file);
    if (c->fd >= 0) close(c->fd);
    free(c->half);
    free(c->path);
    free(c);
}

/* Every rank ends with rank 0's verdict (and message): collective calls must not diverge. */
static int agree(MPI_Comm comm, int rc, char *err)
{
    int all;
    MPI_Allreduce(&rc, &all, 1, MPI_INT, MPI_MIN, comm);
    if (all == 0) return 0;
    /* the lowest failing rank's message wins */
    int rank, mine, first;
    MPI_Comm_rank(comm, &rank);
    mine = rc ? rank : 1 << 30;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
    MPI_Bcast(err, MC_ERR_LEN, MPI_CHAR, first, comm);
    return -1;
}

static int create_layout(io_catalog *c, const io_catalog_spec *s, const io_catalog_ids *ids, char *err)
{
    hid_t f = c->file;
    int u = s->unit_rows;
    c->ds[DS_ID] = make_dataset(f, ds_path[DS_ID], c->t_id, s->n_rows, 0, u, 0);
    c->ds[DS_FILE] = make_dataset(f, ds_path[DS_FILE], c->t_file, s->n_rows, 0, u, 0);
    c->ds[DS_RA] = make_dataset(f, ds_path[DS_RA], H5T_IEEE_F64LE, s->n_rows, 0, u, 0);
    c->ds[DS_DEC] = make_dataset(f, ds_path[DS_DEC], H5T_IEEE_F64LE, s->n_rows, 0, u, 0);
    c->ds[DS_RADEC_SRC] = make_dataset(f, ds_path[DS_RADEC_SRC], H5T_STD_U8LE, s->n_rows, 0, u, 0);
    c->ds[DS_STATUS] = make_dataset(f, ds_path[DS_STATUS], H5T_STD_U8LE, s->n_rows, 0, u, 1);
    c->ds[DS_MESSAGE] = make_dataset(f, ds_path[DS_MESSAGE], c->t_msg, s->n_rows, 0, u, 0);
    c->ds[DS_SHA] = make_dataset(f, ds_path[DS_SHA], c->t_sha, s->n_rows, 0, u, 0);
    c->ds[DS_RELEASE] = make_dataset(f, ds_path[DS_RELEASE], c->t_rel, s->n_rows, 0, u, 0);
    if (s->n_answers > 0)
        for (int d = DS_CONC; d <= DS_ASKED; d++)
            c->ds[d] = make_dataset(f, ds_path[d], H5T_IEEE_F32LE, s->n_rows, s->n_answers, u, 0);
    if (s->embed_dim > 0)
        c->ds[DS_EMBED] = make_dataset(f, ds_path[DS_EMBED], s->embed_half ? c->t_half : H5T_IEEE_F32LE, s->n_rows,
                                       s->embed_dim, u, 0);
    if (s->pca_dim > 0) c->ds[DS_PCA] = make_dataset(f, ds_path[DS_PCA], H5T_IEEE_F32LE, s->n_rows, s->pca_dim, u, 0);
    if (s->clump_max > 0) {
        const int K = s->clump_max;
        c->ds[DS_CL_COUNT] = make_dataset(f, ds_path[DS_CL_COUNT], H5T_STD_U16LE, s->n_rows, 0, u, 0);
        c->ds[DS_CL_STATUS] = make_dataset(f, ds_path[DS_CL_STATUS], H5T_STD_U8LE, s->n_rows, 0, u, 0);
        c->ds[DS_CL_LABEL] = make_dataset(f, ds_path[DS_CL_LABEL], H5T_STD_U8LE, s->n_rows, K, u, 0);
        c->ds[DS_CL_SCORE] = make_dataset(f, ds_path[DS_CL_SCORE], H5T_IEEE_F32LE, s->n_rows, K, u, 0);
        c->ds[DS_CL_BOX] = make_dataset3(f, ds_path[DS_CL_BOX], H5T_IEEE_F32LE, s->n_rows, K, 4, u, 0);
        c->ds[DS_CL_RA] = make_dataset(f, ds_path[DS_CL_RA], H5T_IEEE_F64LE, s->n_rows, K, u, 0);
        c->ds[DS_CL_DEC] = make_dataset(f, ds_path[DS_CL_DEC], H5T_IEEE_F64LE, s->n_rows, K, u, 0);
    }
    for (int i = 0; i < DS_COUNT; i++)
        if (c->ds[i] < 0) return mc_fail(err, "%s: cannot create dataset %s", c->path, ds_path[i]);

    /* self-description */
    int rc = 0;
    rc |= io_h5_attr_put_str(f, "layout", IO_CAT_LAYOUT);
    for (int i = 0; i < s->n_ident; i++) rc |= io_h5_attr_put_str(f, s->ident[i].key, s->ident[i].value);
    for (int i = 0; i < s->n_info; i++) rc |= io_h5_attr_put_str(f, s->info[i].key, s->info[i].value);
    rc |= io_h5_attr_put_str(c->ds[DS_STATUS], "codes",
                         "0 pending, 1 ok, 2 missing_file, 3 corrupt_file, 4 bad_shape, 5 bad_pixels, "
                         "6 bad_manifest_row");
    rc |= io_h5_attr_put_str(c->ds[DS_RADEC_SRC], "codes", "0 none, 1 manifest, 2 WCS of the cutout");
    rc |= io_h5_attr_put_str(c->ds[DS_SHA], "meaning", "XXH3-128 of the cutout file's bytes (xxhsum -H2), 32 hex digits; empty when unreadable");
    rc |= io_h5_attr_put_str(c->ds[DS_RELEASE], "meaning", "the data release whose job computed this row");
    rc |= io_h5_attr_put_str(c->ds[DS_RA], "units", "deg");
    rc |= io_h5_attr_put_str(c->ds[DS_DEC], "units", "deg");
    if (s->n_answers > 0) {
        hid_t g = H5Gopen2(f, "morphology", H5P_DEFAULT);
        rc |= attr_write_strs(g, "answer_columns", s->n_answers, s->answer_cols);
        H5Gclose(g);
        char name[512], src[128];
        for (size_t v = 0; v < sizeof column_views / sizeof column_views[0] && !rc; v++)
            for (int j = 0; j < s->n_answers && !rc; j++) {
                snprintf(name, sizeof name, "%s%s", s->answer_cols[j], column_views[v].suffix);
                snprintf(src, sizeof src, "/%s", ds_path[column_views[v].ds]);
                rc |= make_column_view(f, name, src, H5T_IEEE_F32LE, s->n_rows, s->n_answers, j);
            }
    }
    if (s->clump_max > 0) {
        hid_t g = H5Gopen2(f, "clumps", H5P_DEFAULT);
        rc |= attr_write_strs(g, "class_names", s->n_clump_classes, s->clump_classes);
        rc |= io_h5_attr_put_str(g, "meaning",
                             "per galaxy row: up to max_per_galaxy detections by decreasing score; count says how many "
                             "slots hold one (the rest: label 0, score and box NaN). box = x1, y1, x2, y2 in pixels of "
                             "the cutout's stored image (x along a row, y along the stored rows, 0 at the first pixel's "
                             "edge); ra, dec = the box centre through the cutout's WCS (NaN without one); label indexes "
                             "class_names (0 = background, unused)");
        char kbuf[32];
        snprintf(kbuf, sizeof kbuf, "%d", s->clump_max);
        rc |= io_h5_attr_put_str(g, "max_per_galaxy", kbuf);
        H5Gclose(g);
        rc |= io_h5_attr_put_str(c->ds[DS_CL_STATUS], "codes",
                             "0 not run (pending, or the galaxy failed before detection), 1 ok, 4 bad_shape, "
                             "5 bad_pixels (the reason is in galaxies/message)");
    }
    if (rc) return mc_fail(err, "%s: cannot write the catalogue's attributes", c->path);

    /* this rank's slice of the manifest columns */
    if (ids && ids->n > 0) {
        char *idb = mc_calloc((size_t)ids->n, (size_t)s->id_len), *fb = mc_calloc((size_t)ids->n, (size_t)s->path_len);
        uint8_t *src = mc_malloc((size_t)ids->n);
        for (int64_t i = 0; i < ids->n; i++) {
            snprintf(idb + i * s->id_len, (size_t)s->id_len, "%s", ids->id_str[i]);
            snprintf(fb + i * s->path_len, (size_t)s->path_len, "%s", ids->file[i]);
            src[i] = isnan(ids->ra[i]) || isnan(ids->dec[i]) ? 0 : 1;
        }
        rc |= write_slab(c, DS_ID, c->t_id, ids->row0, ids->n, 0, idb);
        rc |= write_slab(c, DS_FILE, c->t_file, ids->row0, ids->n, 0, fb);
        rc |= write_slab(c, DS_RA, H5T_NATIVE_DOUBLE, ids->row0, ids->n, 0, ids->ra);
        rc |= write_slab(c, DS_DEC, H5T_NATIVE_DOUBLE, ids->row0, ids->n, 0, ids->dec);
        rc |= write_slab(c, DS_RADEC_SRC, H5T_NATIVE_UINT8, ids->row0, ids->n, 0, src);
        char *rel = mc_calloc((size_t)ids->n, IO_CAT_RELEASE_LEN);
        for (int64_t i = 0; i < ids->n; i++)
            snprintf(rel + i * IO_CAT_RELEASE_LEN, IO_CAT_RELEASE_LEN, "%s", s->release ? s->release : "");
        rc |= write_slab(c, DS_RELEASE, c->t_rel, ids->row0, ids->n, 0, rel);
        free(rel);
        free(idb);
        free(fb);
        free(src);
        if (rc) return mc_fail(err, "%s: cannot write the manifest columns", c->path);
    }
    return 0;
}

static int check_ident(io_catalog *c, const io_catalog_spec *s, char *err)
{
    char have[4096];
    if (io_h5_attr_str(c->file, "layout", have, sizeof have) || strcmp(have, IO_CAT_LAYOUT))
        return mc_fail(err, "%s: exists and is not a morphcat catalogue (layout attribute '%s'); choose another "
                            "output path", c->path, have);
    for (int i = 0; i < s->n_ident; i++) {
        int absent = io_h5_attr_str(c->file, s->ident[i].key, have, sizeof have) != 0;
        /* identities added to the layout later have the value they implied before they existed */
        if (absent && !strcmp(s->ident[i].key, "precision")) {
            snprintf(have, sizeof have, "fp32");
            absent = 0;
        }
        if (absent || strcmp(have, s->ident[i].value))
            return mc_fail(err, "%s: was made by a different job: its %s is '%.200s', this job's is '%.200s' "
                                "(write to a new path, or use morphcat merge / a release rerun)",
                           c->path, s->ident[i].key, have, s->ident[i].value);
    }
    for (int i = 0; i < DS_COUNT; i++) {
        int needed = i <= DS_RELEASE || (i >= DS_CONC && i <= DS_ASKED && s->n_answers > 0) ||
                     (i == DS_EMBED && s->embed_dim > 0) || (i == DS_PCA && s->pca_dim > 0) ||
                     (i >= DS_CL_COUNT && i <= DS_CL_DEC && s->clump_max > 0);
        if (!needed) continue;
        c->ds[i] = H5Dopen2(c->file, ds_path[i], H5P_DEFAULT);
        if (c->ds[i] < 0) return mc_fail(err, "%s: dataset %s is missing", c->path, ds_path[i]);
        hid_t sp = H5Dget_space(c->ds[i]);
        hsize_t dims[2] = {0, 0};
        H5Sget_simple_extent_dims(sp, dims, NULL);
        H5Sclose(sp);
        if ((int64_t)dims[0] != s->n_rows)
            return mc_fail(err, "%s: dataset %s has %llu rows, the manifest %lld", c->path, ds_path[i],
                           (unsigned long long)dims[0], (long long)s->n_rows);
    }
    return 0;
}

int io_catalog_open(MPI_Comm comm, const char *path, const io_catalog_spec *spec, const io_catalog_ids *ids_slice,
                    int *reopened, io_catalog **out, char *err)
{
    *out = NULL;
    *reopened = 0;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* our messages, not HDF5's error stack dumps */
    io_catalog *c = mc_calloc(1, sizeof *c);
    c->comm = comm;
    c->fd = -1;
    MPI_Comm_rank(comm, &c->rank);
    c->path = mc_strdup(path);
    c->n_rows = spec->n_rows;
    c->n_answers = spec->n_answers;
    c->embed_dim = spec->embed_dim;
    c->embed_half = spec->embed_half;
    c->pca_dim = spec->pca_dim;
    c->clump_max = spec->clump_max;
    c->t_id = str_type((size_t)spec->id_len);
    c->t_file = str_type((size_t)spec->path_len);
    c->t_msg = str_type(IO_CAT_MSG_LEN);
    c->t_half = half_type();
    c->t_sha = str_type(IO_CAT_SUM_LEN);
    c->t_rel = str_type(IO_CAT_RELEASE_LEN);
    c->dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(c->dxpl, H5FD_MPIO_INDEPENDENT);

    /* rank 0 decides create or reopen, clearing the remains of an interrupted creation */
    char marker[4200];
    snprintf(marker, sizeof marker, "%s.creating", path);
    int mode = 0, rc = 0; /* 1 create, 2 reopen */
    if (c->rank == 0) {
        struct stat st;
        if (stat(marker, &st) == 0) {
            unlink(path);
            unlink(marker);
        }
        if (stat(path, &st) == 0) {
            mode = 2;
        } else {
            mode = 1;
            int fd = open(marker, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd < 0) rc = mc_fail(err, "%s: cannot create the catalogue here (%s)", path, strerror(errno));
            else {
                fsync(fd);
                close(fd);
            }
        }
    }
    MPI_Bcast(&mode, 1, MPI_INT, 0, comm);
    if (agree(comm, rc, err)) {
        cat_free(c);
        return -1;
    }

    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
    H5Pset_all_coll_metadata_ops(fapl, 1);
    H5Pset_coll_metadata_write(fapl, 1);
    if (mode == 1) {
        c->file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
        if (c->file < 0) rc = mc_fail(err, "%s: cannot create the HDF5 file", path);
        else rc = create_layout(c, spec, ids_slice, err);
        if (!rc && H5Fflush(c->file, H5F_SCOPE_GLOBAL) < 0) rc = mc_fail(err, "%s: cannot flush", path);
    } else {
        /* read-only first: a complete catalogue (no pending status) is only checked, never opened for
         * writing, so rerunning a finished job leaves the file exactly as it was */
        c->file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
        if (c->file < 0)
            rc = mc_fail(err, "%s: exists but cannot be opened as an HDF5 file (not a catalogue, or damaged); "
                              "choose another output path", path);
        else rc = check_ident(c, spec, err);
        int64_t pending = 0;
        if (!rc && c->rank == 0) {
            uint8_t *st = mc_malloc((size_t)(c->n_rows > 0 ? c->n_rows : 1));
            if (io_catalog_read_status(c, st, err)) rc = -1;
            for (int64_t i = 0; !rc && i < c->n_rows; i++) pending += st[i] == MC_ROW_PENDING;
            free(st);
        }
        if (agree(comm, rc, err)) {
            cat_free(c);
            H5Pclose(fapl);
            return -1;
        }
        MPI_Bcast(&pending, 1, MPI_INT64_T, 0, comm);
        c->complete = pending == 0;
        if (!c->complete) {
            for (int i = 0; i < DS_COUNT; i++)
                if (c->ds[i] > 0) {
                    H5Dclose(c->ds[i]);
                    c->ds[i] = 0;
                }
            H5Fclose(c->file);
            c->file = H5Fopen(path, H5F_ACC_RDWR, fapl);
            if (c->file < 0) rc = mc_fail(err, "%s: cannot be opened for writing", path);
            else rc = check_ident(c, spec, err);
        }
    }
    H5Pclose(fapl);
    if (agree(comm, rc, err)) {
        int rank = c->rank;
        cat_free(c);
        if (mode == 1 && rank == 0) { /* we made it: leave nothing half-made behind */
            unlink(path);
            unlink(marker);
        }
        return -1;
    }
    c->fd = open(path, O_RDONLY);
    if (mode == 1) {
        /* the layout is on disk: make it durable, then remove the marker */
        if (c->rank == 0 && c->fd >= 0) fsync(c->fd);
        MPI_Barrier(comm);
        if (c->rank == 0) unlink(marker);
        MPI_Barrier(comm);
    }
    *reopened = mode == 2;
    *out = c;
    return 0;
}

int io_catalog_is_complete(const io_catalog *c)
{
    return c->complete;
}

int io_catalog_write(io_catalog *c, const io_catalog_rows *r, char *err)
{
    int rc = 0;
    c->write_errno = 0;
    if (!rc && r->ra) rc = write_slab(c, DS_RA, H5T_NATIVE_DOUBLE, r->row0, r->n, 0, r->ra);
    if (!rc && r->dec) rc = write_slab(c, DS_DEC, H5T_NATIVE_DOUBLE, r->row0, r->n, 0, r->dec);
    if (!rc && r->radec_source) rc = write_slab(c, DS_RADEC_SRC, H5T_NATIVE_UINT8, r->row0, r->n, 0, r->radec_source);
    if (!rc && r->message) rc = write_slab(c, DS_MESSAGE, c->t_msg, r->row0, r->n, 0, r->message);
    if (!rc && r->file_checksum) rc = write_slab(c, DS_SHA, c->t_sha, r->row0, r->n, 0, r->file_checksum);
    if (c->n_answers > 0) {
        const float *m[5] = {r->conc, r->frac, r->lo90, r->hi90, r->asked};
        for (int i = 0; i < 5; i++)
            if (!rc && m[i]) rc = write_slab(c, DS_CONC + i, H5T_NATIVE_FLOAT, r->row0, r->n, c->n_answers, m[i]);
    }
    if (c->embed_dim > 0 && r->embed) {
        if (c->embed_half) {
            size_t n = (size_t)r->n * c->embed_dim;
            if (n > c->half_cap) {
                c->half = mc_realloc(c->half, n * sizeof(uint16_t));
                c->half_cap = n;
            }
            for (size_t i = 0; i < n; i++) { /* round to nearest even, as numpy's astype(float16) */
                c->half[i] = io_catalog_half(r->embed[i]);
            }
            if (!rc) rc = write_slab(c, DS_EMBED, c->t_half, r->row0, r->n, c->embed_dim, c->half);
        } else {
            if (!rc) rc = write_slab(c, DS_EMBED, H5T_NATIVE_FLOAT, r->row0, r->n, c->embed_dim, r->embed);
        }
    }
    if (!rc && c->pca_dim > 0 && r->pca)
        rc = write_slab(c, DS_PCA, H5T_NATIVE_FLOAT, r->row0, r->n, c->pca_dim, r->pca);
    if (c->clump_max > 0 && r->clump_count) {
        const int K = c->clump_max;
        if (!rc) rc = write_slab(c, DS_CL_COUNT, H5T_NATIVE_UINT16, r->row0, r->n, 0, r->clump_count);
        if (!rc) rc = write_slab(c, DS_CL_STATUS, H5T_NATIVE_UINT8, r->row0, r->n, 0, r->clump_status);
        if (!rc) rc = write_slab(c, DS_CL_LABEL, H5T_NATIVE_UINT8, r->row0, r->n, K, r->clump_label);
        if (!rc) rc = write_slab(c, DS_CL_SCORE, H5T_NATIVE_FLOAT, r->row0, r->n, K, r->clump_score);
        if (!rc) rc = write_slab3(c, DS_CL_BOX, H5T_NATIVE_FLOAT, r->row0, r->n, K, 4, r->clump_box);
        if (!rc) rc = write_slab(c, DS_CL_RA, H5T_NATIVE_DOUBLE, r->row0, r->n, K, r->clump_ra);
        if (!rc) rc = write_slab(c, DS_CL_DEC, H5T_NATIVE_DOUBLE, r->row0, r->n, K, r->clump_dec);
    }
    if (rc) {
        char why[200];
        return mc_fail(err, "%s: writing rows %lld-%lld failed%s", c->path, (long long)r->row0,
                       (long long)(r->row0 + r->n - 1), write_cause(c, why, sizeof why));
    }
    return 0;
}

int io_catalog_sync(io_catalog *c, char *err)
{
    if (c->fd >= 0 && fsync(c->fd) != 0 && errno != EINVAL)
        return mc_fail(err, "%s: fsync failed (%s)", c->path, strerror(errno));
    return 0;
}

int io_catalog_write_status(io_catalog *c, int64_t row0, int n, const uint8_t *status, char *err)
{
    char why[200];
    c->write_errno = 0;
    if (write_slab(c, DS_STATUS, H5T_NATIVE_UINT8, row0, n, 0, status))
        return mc_fail(err, "%s: writing the status of rows %lld-%lld failed%s", c->path, (long long)row0,
                       (long long)(row0 + n - 1), write_cause(c, why, sizeof why));
    return 0;
}

int io_catalog_read_status(io_catalog *c, uint8_t *status, char *err)
{
    if (c->n_rows == 0) return 0;
    if (H5Dread(c->ds[DS_STATUS], H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, c->dxpl, status) < 0)
        return mc_fail(err, "%s: cannot read the status column", c->path);
    return 0;
}

int io_catalog_close(io_catalog *c, char *err)
{
    /* metadata never changes after creation (HDF5 only rewrites the same superblock when a file opened for
     * writing closes), so a job killed while closing leaves a file as sound as one killed while computing.
     * On a file system gone read-only that rewrite fails, and HDF5 1.10 then crashes at exit: such a file is
     * left unclosed, exactly as a killed job leaves it, on every rank alike (H5Fclose is collective). */
    int rc = 0, refuses = !c->complete && fs_refuses(c) == EROFS, any = 0;
    MPI_Allreduce(&refuses, &any, 1, MPI_INT, MPI_MAX, c->comm);
    if (any) {
        abandoned_g = 1;
        rc = mc_fail(err, "%s: the file system is read-only: the catalogue is left as a stopped job leaves it",
                     c->path);
        for (int i = 0; i < DS_COUNT; i++) c->ds[i] = 0;
        c->file = 0;
        cat_free(c);
        return rc;
    }
    for (int i = 0; i < DS_COUNT; i++)
        if (c->ds[i] > 0) {
            H5Dclose(c->ds[i]);
            c->ds[i] = 0;
        }
    if (H5Fclose(c->file) < 0) {
        abandoned_g = 1;
        rc = mc_fail(err, "%s: closing the catalogue failed", c->path);
    }
    c->file = 0;
    if (c->fd >= 0) fsync(c->fd);
    cat_free(c);
    return rc;
}
