/* jobs/catread.c: serial, read-only access to a morphcat catalogue for status, merge and reruns. Opens with
 * HDF5 file locking off, so it works while `morphcat run` has the file open for writing (the job never
 * changes metadata after creation, so what is read is consistent; a status read mid-commit is at worst a
 * little behind). Not here: writing catalogues (io/catalog.c, jobs/merge.c). */
#include <hdf5.h>

#include "io/h5attr.h"
#include "jobs/jobs.h"

struct jobs_cat {
    hid_t file;
    char *path;
    int64_t n_rows;
};

int jobs_cat_open(const char *path, jobs_cat **out, char *err)
{
    *out = NULL;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_file_locking(fapl, 0, 1); /* beside a running job: no lock to take or to fail on */
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (f < 0) return mc_fail(err, "%s: cannot be opened as an HDF5 file (missing, not HDF5, or damaged)", path);
    jobs_cat *c = mc_calloc(1, sizeof *c);
    c->file = f;
    c->path = mc_strdup(path);
    char layout[128];
    if (jobs_cat_attr(c, "layout", layout, sizeof layout) || strcmp(layout, IO_CAT_LAYOUT)) {
        jobs_cat_close(c);
        return mc_fail(err, "%s: not a morphcat catalogue (layout attribute '%s', expected '%s')", path, layout,
                       IO_CAT_LAYOUT);
    }
    hid_t ds = H5Dopen2(f, "galaxies/status", H5P_DEFAULT);
    if (ds < 0) {
        jobs_cat_close(c);
        return mc_fail(err, "%s: has no galaxies/status dataset", path);
    }
    hid_t sp = H5Dget_space(ds);
    hsize_t dims[1] = {0};
    H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    H5Dclose(ds);
    c->n_rows = (int64_t)dims[0];
    *out = c;
    return 0;
}

void jobs_cat_close(jobs_cat *c)
{
    if (!c) return;
    if (c->file >= 0) H5Fclose(c->file);
    free(c->path);
    free(c);
}

int64_t jobs_cat_rows(const jobs_cat *c)
{
    return c->n_rows;
}

const char *jobs_cat_path(const jobs_cat *c)
{
    return c->path;
}

int jobs_cat_attr(const jobs_cat *c, const char *name, char *buf, size_t len)
{
    return io_h5_attr_str(c->file, name, buf, len);
}

int jobs_cat_read_status(const jobs_cat *c, uint8_t *status, char *err)
{
    if (c->n_rows == 0) return 0;
    hid_t ds = H5Dopen2(c->file, "galaxies/status", H5P_DEFAULT);
    int rc = ds < 0 || H5Dread(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, status) < 0;
    if (ds >= 0) H5Dclose(ds);
    return rc ? mc_fail(err, "%s: cannot read galaxies/status", c->path) : 0;
}

int jobs_cat_read_strings(const jobs_cat *c, const char *dataset, char **buf, size_t *width, char *err)
{
    *buf = NULL;
    *width = 0;
    hid_t ds = H5Dopen2(c->file, dataset, H5P_DEFAULT);
    if (ds < 0) return mc_fail(err, "%s: has no %s dataset", c->path, dataset);
    hid_t ft = H5Dget_type(ds);
    int rc = 0;
    if (H5Tget_class(ft) != H5T_STRING || H5Tis_variable_str(ft) > 0) {
        rc = mc_fail(err, "%s: %s is not a fixed-width string column", c->path, dataset);
    } else {
        /* one byte wider than stored, so every string is NUL-terminated whatever its padding */
        size_t w = H5Tget_size(ft) + 1;
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, w);
        H5Tset_strpad(mt, H5T_STR_NULLTERM);
        H5Tset_cset(mt, H5Tget_cset(ft)); /* HDF5 does not convert between ASCII and UTF-8 */
        *buf = mc_calloc((size_t)(c->n_rows > 0 ? c->n_rows : 1), w);
        if (c->n_rows > 0 && H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, *buf) < 0) {
            rc = mc_fail(err, "%s: cannot read %s", c->path, dataset);
            free(*buf);
            *buf = NULL;
        }
        *width = w;
        H5Tclose(mt);
    }
    H5Tclose(ft);
    H5Dclose(ds);
    return rc;
}
