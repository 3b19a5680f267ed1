/* tests/unit/test_catalog.c: the parallel-HDF5 catalogue on its own, under 1..N MPI ranks (run plain as a
 * singleton, or by tests/test_catalog.py under mpirun): create, write interleaved units from every rank,
 * reopen and resume, refuse a different job's catalogue and a non-HDF5 file, recover from an interrupted
 * creation. Values are checked by reading back on rank 0; tests/test_catalog.py reads the kept file
 * with h5py. Usage: test_catalog [DIR]  (default: a fresh temporary folder, removed afterwards). */
#include <hdf5.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/catalog.h"

static int failures, rank;

static void check(int ok, const char *what)
{
    if (rank == 0) printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) failures++;
}

#define N 37
#define U 4
#define A 3
#define D 5
#define K 2

static const char *const cols[A] = {"q-one_a", "q-one_b", "q-two_yes"};

static io_catalog_spec spec_for(const char *manifest_sha)
{
    static io_kv ident[2], info[1];
    ident[0] = (io_kv){"manifest_sha256", manifest_sha};
    ident[1] = (io_kv){"model_sha256", "abc123"};
    info[0] = (io_kv){"job_configuration", "batch = 4\nsize = 224\n"};
    io_catalog_spec s = {.n_rows = N,
                         .unit_rows = U,
                         .id_len = 16,
                         .path_len = 32,
                         .n_answers = A,
                         .answer_cols = cols,
                         .embed_dim = D,
                         .embed_half = 1,
                         .pca_dim = K,
                         .release = "dr-test",
                         .n_ident = 2,
                         .n_info = 1,
                         .ident = ident,
                         .info = info};
    return s;
}

static float value(int64_t row, int col, int which)
{
    return (float)(row * 100 + col) + 0.25f * which;
}

/* this rank's manifest slice */
static io_catalog_ids ids_for(int r, int size, char (*idb)[16], char (*fb)[32], const char **ip, const char **fp,
                              double *ra, double *dec)
{
    int64_t s0 = (int64_t)N * r / size, s1 = (int64_t)N * (r + 1) / size;
    for (int64_t i = s0; i < s1; i++) {
        snprintf(idb[i - s0], 16, "gal_%03lld", (long long)i);
        snprintf(fb[i - s0], 32, "cutouts/gal_%03lld.fits", (long long)i);
        ip[i - s0] = idb[i - s0];
        fp[i - s0] = fb[i - s0];
        ra[i - s0] = i % 3 == 0 ? NAN : 150.0 + i * 0.01;
        dec[i - s0] = i % 3 == 0 ? NAN : 2.0 - i * 0.01;
    }
    io_catalog_ids x = {s0, s1 - s0, ip, fp, ra, dec};
    return x;
}

static int write_units(io_catalog *c, int size, int parity_only, char *err)
{
    int64_t nu = (N + U - 1) / U;
    for (int64_t u = rank; u < nu; u += size) {
        if (parity_only >= 0 && u % 2 != parity_only) continue;
        int64_t r0 = u * U;
        int n = (int)(N - r0 < U ? N - r0 : U);
        float conc[U * A], frac[U * A], lo[U * A], hi[U * A], asked[U * A], emb[U * D], pca[U * K];
        char msg[U][IO_CAT_MSG_LEN];
        uint8_t st[U], src[U];
        double ra[U], dec[U];
        for (int i = 0; i < n; i++) {
            int64_t row = r0 + i;
            for (int a = 0; a < A; a++) {
                conc[i * A + a] = value(row, a, 0);
                frac[i * A + a] = value(row, a, 1);
                lo[i * A + a] = value(row, a, 2);
                hi[i * A + a] = value(row, a, 3);
                asked[i * A + a] = value(row, a, 4);
            }
            for (int d = 0; d < D; d++) emb[i * D + d] = (float)(row % 7) + 0.5f * d;
            for (int k = 0; k < K; k++) pca[i * K + k] = value(row, k, 5);
            st[i] = row % 11 == 5 ? MC_ROW_CORRUPT : MC_ROW_OK;
            snprintf(msg[i], IO_CAT_MSG_LEN, "%s", st[i] == MC_ROW_OK ? "" : "gal: truncated");
            ra[i] = 10.0 + row;
            dec[i] = -5.0 - row;
            src[i] = 2;
        }
        char sum[U][IO_CAT_SUM_LEN];
        for (int i = 0; i < n; i++) snprintf(sum[i], IO_CAT_SUM_LEN, "%032lld", (long long)(r0 + i));
        io_catalog_rows rows = {.row0 = r0,
                                .n = n,
                                .ra = ra,
                                .dec = dec,
                                .radec_source = src,
                                .message = &msg[0][0],
                                .file_checksum = &sum[0][0],
                                .conc = conc,
                                .frac = frac,
                                .lo90 = lo,
                                .hi90 = hi,
                                .asked = asked,
                                .embed = emb,
                                .pca = pca};
        if (io_catalog_write(c, &rows, err) || io_catalog_sync(c, err) || io_catalog_write_status(c, r0, n, st, err))
            return -1;
    }
    return 0;
}

static int open_fresh(const char *path, const char *sha, int size, io_catalog **c, int *reopened, char *err)
{
    static char idb[N][16], fb[N][32];
    static const char *ip[N], *fp[N];
    static double ra[N], dec[N];
    io_catalog_spec s = spec_for(sha);
    io_catalog_ids ids = ids_for(rank, size, idb, fb, ip, fp, ra, dec);
    return io_catalog_open(MPI_COMM_WORLD, path, &s, &ids, reopened, c, err);
}

/* io_catalog_half against the compiler's _Float16 conversion (GCC; the embedding's float16 storage): every
 * sign, exponent and top mantissa bits, with the low bits that decide rounding (halfway, just past, all ones) in
 * every position a normal or subnormal half rounds at. Checked on all 2^32 floats once; this keeps it quick. */
static int half_mismatches(void)
{
    static const uint32_t low[] = {0,      1,      0x0fff, 0x1000, 0x1001, 0x1fff, 0x2000, 0x2001, 0x3000, 0x4000,
                                   0x4001, 0x6000, 0x7fff, 0x8000, 0x8001, 0xa000, 0xc000, 0xe000, 0xffff};
    int bad = 0;
    for (uint32_t top = 0; top < 0x10000; top++)
        for (size_t k = 0; k < sizeof low / sizeof low[0]; k++) {
            uint32_t x = top << 16 | low[k];
            float f;
            memcpy(&f, &x, 4);
            _Float16 h = (_Float16)f;
            uint16_t want;
            memcpy(&want, &h, 2);
            if (io_catalog_half(f) != want && bad++ < 5)
                printf("  %08x: io_catalog_half %04x, _Float16 %04x\n", x, io_catalog_half(f), want);
        }
    return bad;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (rank == 0) check(half_mismatches() == 0, "float16 embeddings round as _Float16 does (io_catalog_half)");
    char dir[512], path[600], err[MC_ERR_LEN];
    int keep = argc > 1;
    if (keep) snprintf(dir, sizeof dir, "%s", argv[1]);
    else {
        snprintf(dir, sizeof dir, "/tmp/test_catalog.%d", (int)getpid());
        MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);
    }
    if (rank == 0) mkdir(dir, 0755);
    MPI_Barrier(MPI_COMM_WORLD);
    snprintf(path, sizeof path, "%s/cat.h5", dir);
    if (rank == 0) unlink(path);
    MPI_Barrier(MPI_COMM_WORLD);

    io_catalog *c = NULL;
    int reopened = -1;
    int rc = open_fresh(path, "sha-one", size, &c, &reopened, err);
    check(rc == 0 && reopened == 0, "create a new catalogue collectively");
    if (rc) {
        if (rank == 0) printf("  %s\n", err);
        MPI_Finalize();
        return 1;
    }
    /* first session: only even units, then stopped (the odd units stay pending) */
    check(write_units(c, size, 0, err) == 0, "every rank writes its even units independently");
    check(io_catalog_close(c, err) == 0, "close collectively");

    /* resume: reopen, read the statuses, write the rest */
    rc = open_fresh(path, "sha-one", size, &c, &reopened, err);
    check(rc == 0 && reopened == 1 && !io_catalog_is_complete(c), "reopen the same job's catalogue");
    uint8_t st[N];
    memset(st, 0xff, sizeof st);
    int rs = rank == 0 ? io_catalog_read_status(c, st, err) : 0;
    int pending_ok = 1;
    for (int64_t i = 0; rank == 0 && i < N; i++) {
        int even_unit = (i / U) % 2 == 0;
        pending_ok &= even_unit ? st[i] != MC_ROW_PENDING : st[i] == MC_ROW_PENDING;
    }
    check(rs == 0 && pending_ok, "status column: even units done, odd units pending");
    /* rank 0 reads the column before any rank resumes: without this, rank 1 (which reads nothing) wrote its odd
     * units first about once in 30 runs, and the check above saw them done */
    MPI_Barrier(MPI_COMM_WORLD);
    check(write_units(c, size, 1, err) == 0, "resume writes the odd units");
    check(io_catalog_close(c, err) == 0, "close after the last unit");

    rc = open_fresh(path, "sha-one", size, &c, &reopened, err);
    check(rc == 0 && io_catalog_is_complete(c), "a catalogue without pending rows reopens as complete");
    if (rank == 0 && rc == 0) {
        io_catalog_read_status(c, st, err);
        int all = 1;
        for (int i = 0; i < N; i++) all &= st[i] == (i % 11 == 5 ? MC_ROW_CORRUPT : MC_ROW_OK);
        check(all, "every row has its status exactly as written");
    }
    if (rc == 0) io_catalog_close(c, err);

    /* a different job's catalogue is refused, on every rank, with one message */
    rc = open_fresh(path, "sha-two", size, &c, &reopened, err);
    check(rc != 0 && strstr(err, "manifest_sha256") && strstr(err, "sha-two"), "a different manifest is refused");
    if (rank == 0) printf("     (%s)\n", err);

    /* a file that is not HDF5 */
    char other[700];
    snprintf(other, sizeof other, "%s/not_hdf5.h5", dir);
    if (rank == 0) {
        FILE *f = fopen(other, "w");
        fputs("hello\n", f);
        fclose(f);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    rc = open_fresh(other, "sha-one", size, &c, &reopened, err);
    check(rc != 0 && strstr(err, "not_hdf5.h5"), "a non-HDF5 file at the output path is refused, not overwritten");
    struct stat sb;
    check(stat(other, &sb) == 0 && sb.st_size == 6, "... and left as it was");

    /* an interrupted creation (marker left behind, file garbage) is made again */
    char marker[720];
    snprintf(marker, sizeof marker, "%s.creating", other);
    if (rank == 0) {
        FILE *f = fopen(marker, "w");
        fclose(f);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    rc = open_fresh(other, "sha-one", size, &c, &reopened, err);
    check(rc == 0 && reopened == 0 && stat(marker, &sb) != 0, "a leftover of an interrupted creation is recreated");
    if (rc == 0) io_catalog_close(c, err);

    /* an unwritable folder */
    rc = open_fresh("/proc/no/such/dir/cat.h5", "sha-one", size, &c, &reopened, err);
    check(rc != 0 && strstr(err, "/proc/no/such/dir/cat.h5"), "an unwritable output is one clear error");

    if (!keep && rank == 0) {
        unlink(path);
        unlink(other);
        rmdir(dir);
    }
    if (rank == 0) printf("%d failed\n", failures);
    MPI_Finalize();
    return failures ? 1 : 0;
}
