/* science/pca.c: principal components of the catalogue's embeddings, streamed: each rank accumulates the
 * shifted sums n, sum(x - s) and sum((x - s)(x - s)^T) over its rows (OpenBLAS ssyrk per chunk, added into
 * double), the ranks combine them with MPI_Allreduce, and LAPACK's dsyevr gives the top eigenvectors of the
 * covariance (denominator n - 1, as sklearn's PCA). The shift s (the first rows' mean) keeps the covariance
 * free of cancellation when the mean is large against the spread. Not here: reading rows (catalogue.c). */
#include <cblas.h>
#include <errno.h>
#include <hdf5.h>
#include <lapacke.h>
#include <math.h>
#include <sys/stat.h>

#include "io/h5attr.h"
#include "io/npy.h"
#include "science/science.h"

int sci_pca_fit(MPI_Comm comm, sci_cat *const *cats, int n_cats, int k, sci_pca *p, char *err)
{
    memset(p, 0, sizeof *p);
    double t0 = MPI_Wtime();
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    int D = sci_cat_dim(cats[0]);
    for (int i = 1; i < n_cats; i++)
        if (sci_cat_dim(cats[i]) != D)
            return mc_fail(err, "%s: %d-D embeddings, but %s has %d-D: PCA needs one dimension",
                           sci_cat_path(cats[i]), sci_cat_dim(cats[i]), sci_cat_path(cats[0]), D);
    if (k < 1 || k > D)
        return mc_fail(err, "--components %d: must be between 1 and the embedding's %d", k, D);
    /* the shift: mean of the first chunk holding ok rows of the first catalogues (rank 0, broadcast) */
    double *shift = mc_calloc((size_t)D, sizeof(double));
    int rc = 0;
    if (rank == 0) {
        int64_t got = 0;
        for (int i = 0; i < n_cats && !got && !rc; i++) {
            sci_stream s;
            sci_stream_open(&s, cats[i], NULL, 0, 0, -1);
            int r;
            while (!got && (r = sci_stream_next(&s, err)) == 1)
                for (int64_t j = 0; j < s.n; j++, got++)
                    for (int d = 0; d < D; d++) shift[d] += s.x[(size_t)j * D + d];
            if (r < 0) rc = -1;
            sci_stream_close(&s);
        }
        for (int d = 0; d < D && got; d++) shift[d] /= (double)got;
    }
    MPI_Bcast(&rc, 1, MPI_INT, 0, comm);
    if (rc) {
        free(shift);
        if (rank && err) err[0] = 0; /* rank 0 says why */
        return -1;
    }
    MPI_Bcast(shift, D, MPI_DOUBLE, 0, comm);
    float *shiftf = mc_malloc(sizeof(float) * (size_t)D);
    for (int d = 0; d < D; d++) shiftf[d] = (float)shift[d];
    double *S = mc_calloc((size_t)D * D, sizeof(double)), *s1 = mc_calloc((size_t)D, sizeof(double));
    float *C = mc_malloc_aligned(sizeof(float) * (size_t)D * D);
    int64_t n = 0;
    for (int i = 0; i < n_cats && !rc; i++) {
        int64_t N = sci_cat_rows(cats[i]);
        sci_stream s;
        sci_stream_open(&s, cats[i], NULL, 0, N * rank / size, N * (rank + 1) / size);
        int r;
        while ((r = sci_stream_next(&s, err)) == 1) {
            if (!s.n) continue;
            for (int64_t j = 0; j < s.n; j++) {
                float *x = s.x + (size_t)j * D;
                for (int d = 0; d < D; d++) {
                    x[d] -= shiftf[d];
                    s1[d] += x[d];
                }
            }
            cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, D, (int)s.n, 1.0f, s.x, D, 0.0f, C, D);
            for (int a = 0; a < D; a++)
                for (int b = a; b < D; b++) S[(size_t)a * D + b] += C[(size_t)a * D + b];
            n += s.n;
        }
        if (r < 0) rc = -1;
        sci_stream_close(&s);
    }
    free(C);
    int failed = rc != 0, any_fail = 0;
    MPI_Allreduce(&failed, &any_fail, 1, MPI_INT, MPI_MAX, comm);
    if (any_fail) {
        if (!rc && err) err[0] = 0; /* the rank that failed says why */
        free(S);
        free(s1);
        free(shift);
        free(shiftf);
        return -1;
    }
    MPI_Allreduce(MPI_IN_PLACE, &n, 1, MPI_INT64_T, MPI_SUM, comm);
    MPI_Allreduce(MPI_IN_PLACE, s1, D, MPI_DOUBLE, MPI_SUM, comm);
    MPI_Allreduce(MPI_IN_PLACE, S, D * D, MPI_DOUBLE, MPI_SUM, comm);
    if (n < 2 || n <= k) {
        free(S);
        free(s1);
        free(shift);
        free(shiftf);
        mc_fail(err, "%s: %lld ok rows: too few for %d components", sci_cat_path(cats[0]), (long long)n, k);
        if (rank && err) err[0] = 0; /* every rank knows; rank 0 says it */
        return -1;
    }
    for (int d = 0; d < D; d++) s1[d] /= (double)n; /* mean of the shifted rows */
    for (int a = 0; a < D; a++)
        for (int b = a; b < D; b++)
            S[(size_t)a * D + b] = (S[(size_t)a * D + b] - (double)n * s1[a] * s1[b]) / (double)(n - 1);
    double *w = mc_malloc(sizeof(double) * (size_t)D), *z = mc_malloc(sizeof(double) * (size_t)D * k);
    lapack_int found = 0, *isuppz = mc_malloc(sizeof(lapack_int) * 2 * (size_t)D);
    lapack_int info = LAPACKE_dsyevr(LAPACK_ROW_MAJOR, 'V', 'I', 'U', D, S, D, 0, 0, D - k + 1, D, 0.0,
                                     &found, w, z, k, isuppz);
    free(isuppz);
    MC_ASSERT(info == 0 && found == k); /* a symmetric matrix of finite numbers always decomposes */
    p->k = k;
    p->d = D;
    p->n_rows = n;
    p->components = mc_malloc(sizeof(float) * (size_t)k * D);
    p->mean = mc_malloc(sizeof(float) * (size_t)D);
    p->variance = mc_malloc(sizeof(float) * (size_t)k);
    for (int d = 0; d < D; d++) p->mean[d] = (float)(shift[d] + s1[d]);
    for (int j = 0; j < k; j++) {
        int col = k - 1 - j; /* dsyevr: ascending eigenvalues */
        p->variance[j] = (float)(w[col] > 0 ? w[col] : 0);
        /* sign as sklearn's svd_flip(u_based_decision=False) (IncrementalPCA): largest |entry| positive */
        int big = 0;
        for (int d = 1; d < D; d++)
            if (fabs(z[(size_t)d * k + col]) > fabs(z[(size_t)big * k + col])) big = d;
        double sg = z[(size_t)big * k + col] < 0 ? -1.0 : 1.0;
        for (int d = 0; d < D; d++) p->components[(size_t)j * D + d] = (float)(sg * z[(size_t)d * k + col]);
    }
    free(w);
    free(z);
    free(S);
    free(s1);
    free(shift);
    free(shiftf);
    p->fit_seconds = MPI_Wtime() - t0;
    return 0;
}

int sci_pca_write(const char *dir, const sci_pca *p, char *err)
{
    if (mkdir(dir, 0777) && errno != EEXIST)
        return mc_fail(err, "%s: cannot create the folder: %s", dir, strerror(errno));
    char path[4200];
    int64_t shape[2] = {p->k, p->d};
    snprintf(path, sizeof path, "%s/components.npy", dir);
    if (io_npy_write(path, p->components, 2, shape, err)) return -1;
    snprintf(path, sizeof path, "%s/mean.npy", dir);
    if (io_npy_write(path, p->mean, 1, &shape[1], err)) return -1;
    snprintf(path, sizeof path, "%s/explained_variance.npy", dir);
    return io_npy_write(path, p->variance, 1, &shape[0], err);
}

int sci_pca_load(const char *dir, sci_pca *p, char *err)
{
    memset(p, 0, sizeof *p);
    char path[4200];
    io_npy a;
    snprintf(path, sizeof path, "%s/components.npy", dir);
    if (io_npy_open(path, &a, err)) return -1;
    if (a.ndim != 2 || a.shape[0] < 1 || a.shape[1] < 1) {
        io_npy_close(&a);
        return mc_fail(err, "%s: components must be a (K, D) array", path);
    }
    p->k = (int)a.shape[0];
    p->d = (int)a.shape[1];
    p->components = mc_malloc(sizeof(float) * (size_t)p->k * p->d);
    int rc = io_npy_read_rows(&a, 0, p->k, p->components, err);
    io_npy_close(&a);
    if (rc) goto fail;
    snprintf(path, sizeof path, "%s/mean.npy", dir);
    if (io_npy_open(path, &a, err)) goto fail;
    if (a.ndim != 1 || a.shape[0] != p->d) {
        io_npy_close(&a);
        mc_fail(err, "%s: the mean must be (%d,) like the components' rows", path, p->d);
        goto fail;
    }
    p->mean = mc_malloc(sizeof(float) * (size_t)p->d);
    rc = io_npy_read_rows(&a, 0, p->d, p->mean, err);
    io_npy_close(&a);
    if (rc) goto fail;
    p->variance = mc_calloc((size_t)p->k, sizeof(float));
    snprintf(path, sizeof path, "%s/explained_variance.npy", dir);
    if (!io_npy_open(path, &a, err)) { /* optional: only informative */
        if (a.ndim == 1 && a.shape[0] == p->k) io_npy_read_rows(&a, 0, p->k, p->variance, err);
        io_npy_close(&a);
    }
    return 0;
fail:
    sci_pca_free(p);
    return -1;
}

int sci_pca_check(const sci_pca *p, const char *dir, const sci_cat *c, char *err)
{
    if (p->d != sci_cat_dim(c))
        return mc_fail(err,
                       "%s/components.npy: (%d, %d) components, but %s has %d-D embeddings: mismatched PCA "
                       "dimensions",
                       dir, p->k, p->d, sci_cat_path(c), sci_cat_dim(c));
    return 0;
}

void sci_pca_free(sci_pca *p)
{
    free(p->components);
    free(p->mean);
    free(p->variance);
    memset(p, 0, sizeof *p);
}

void sci_pca_project(const sci_pca *p, const float *x, int64_t n, float *y)
{
    /* y = x C^T - (mean C^T): the centring as one row subtracted after the product */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, p->k, p->d, 1.0f, x, p->d, p->components,
                p->d, 0.0f, y, p->k);
    float mc[4096], *m = p->k <= 4096 ? mc : mc_malloc(sizeof(float) * (size_t)p->k);
    for (int j = 0; j < p->k; j++) {
        double acc = 0;
        for (int d = 0; d < p->d; d++) acc += (double)p->mean[d] * p->components[(size_t)j * p->d + d];
        m[j] = (float)acc;
    }
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < p->k; j++) y[(size_t)i * p->k + j] -= m[j];
    if (m != mc) free(m);
}

int sci_pca_apply(sci_cat *c, const sci_pca *p, const char *pca_dir, const char *out, int64_t *n_out,
                  char *err)
{
    int64_t n_ok;
    if (sci_cat_count_ok(c, &n_ok, err)) return -1;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return mc_fail(err, "%s: cannot be created", tmp);
    int rc = 0;
    rc |= io_h5_attr_put_str(f, "layout", "morphcat-catalogue-1");
    rc |= io_h5_attr_put_str(f, "content",
                             "pca projection: embedding/features = (features - mean) @ components.T");
    rc |= io_h5_attr_put_str(f, "projected_from", sci_cat_path(c));
    rc |= io_h5_attr_put_str(f, "pca", pca_dir);
    rc |= io_h5_attr_put_str(f, "embedding_dtype", "float32");
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hsize_t dims[2] = {(hsize_t)n_ok, (hsize_t)p->k}, cd[2];
    hid_t tid = H5Tcopy(H5T_C_S1);
    H5Tset_size(tid, sci_cat_id_width(c) - 1 > 0 ? sci_cat_id_width(c) - 1 : 1);
    H5Tset_strpad(tid, H5T_STR_NULLPAD);
    H5Tset_cset(tid, H5T_CSET_UTF8);
    hid_t dsp1 = H5Screate_simple(1, dims, NULL), dsp2 = H5Screate_simple(2, dims, NULL);
    hid_t dc1 = H5Pcreate(H5P_DATASET_CREATE), dc2 = H5Pcreate(H5P_DATASET_CREATE);
    cd[0] = n_ok > 0 ? (hsize_t)(n_ok < 65536 ? n_ok : 65536) : 1;
    cd[1] = (hsize_t)p->k;
    if (n_ok > 0) {
        H5Pset_chunk(dc1, 1, cd);
        H5Pset_chunk(dc2, 2, cd);
    }
    hid_t d_id = H5Dcreate2(f, "galaxies/id_str", tid, dsp1, lcpl, dc1, H5P_DEFAULT);
    hid_t d_st = H5Dcreate2(f, "galaxies/status", H5T_STD_U8LE, dsp1, lcpl, dc1, H5P_DEFAULT);
    hid_t d_x = H5Dcreate2(f, "embedding/features", H5T_IEEE_F32LE, dsp2, lcpl, dc2, H5P_DEFAULT);
    rc |= d_id < 0 || d_st < 0 || d_x < 0;
    hid_t mid = H5Tcopy(H5T_C_S1);
    H5Tset_size(mid, sci_cat_id_width(c));
    H5Tset_strpad(mid, H5T_STR_NULLTERM);
    H5Tset_cset(mid, H5T_CSET_UTF8);
    sci_stream s;
    sci_stream_open(&s, c, p, 1, 0, -1);
    uint8_t *ones = mc_malloc((size_t)s.chunk);
    memset(ones, MC_ROW_OK, (size_t)s.chunk);
    int64_t at = 0;
    int r = 0;
    while (!rc && (r = sci_stream_next(&s, err)) == 1) {
        if (!s.n) continue;
        hsize_t start[2] = {(hsize_t)at, 0}, cnt[2] = {(hsize_t)s.n, (hsize_t)p->k};
        hid_t ms1 = H5Screate_simple(1, cnt, NULL), ms2 = H5Screate_simple(2, cnt, NULL);
        H5Sselect_hyperslab(dsp1, H5S_SELECT_SET, start, NULL, cnt, NULL);
        H5Sselect_hyperslab(dsp2, H5S_SELECT_SET, start, NULL, cnt, NULL);
        rc |= H5Dwrite(d_id, mid, ms1, dsp1, H5P_DEFAULT, s.ids) < 0;
        rc |= H5Dwrite(d_st, H5T_NATIVE_UINT8, ms1, dsp1, H5P_DEFAULT, ones) < 0;
        rc |= H5Dwrite(d_x, H5T_NATIVE_FLOAT, ms2, dsp2, H5P_DEFAULT, s.x) < 0;
        H5Sclose(ms1);
        H5Sclose(ms2);
        at += s.n;
    }
    if (r < 0)
        rc = -1;
    else if (rc)
        mc_fail(err, "%s: cannot write the projection (disk full?)", tmp);
    sci_stream_close(&s);
    free(ones);
    hid_t ids[] = {d_id, d_st, d_x};
    for (int i = 0; i < 3; i++)
        if (ids[i] >= 0) H5Dclose(ids[i]);
    H5Sclose(dsp1);
    H5Sclose(dsp2);
    H5Pclose(dc1);
    H5Pclose(dc2);
    H5Pclose(lcpl);
    H5Tclose(tid);
    H5Tclose(mid);
    if (H5Fclose(f) < 0 && !rc) rc = mc_fail(err, "%s: cannot be closed (disk full?)", tmp);
    if (!rc && rename(tmp, out))
        rc = mc_fail(err, "%s: cannot be renamed to %s: %s", tmp, out, strerror(errno));
    if (rc) remove(tmp);
    *n_out = at;
    return rc ? -1 : 0;
}
