/* tests/unit/test_manifest.c: io/manifest.c's rules, each on a small file written here: RFC 4180 quoting
 * (commas, doubled quotes, newlines inside quotes), CRLF, BOM, column aliases, missing columns, duplicates
 * named by both lines, bad rows with their notes, relative paths, folders (recursive, sorted, hidden files,
 * links), the sha256s; then a 1,000,000-row manifest, timed and printed (no time is asserted). Exit 0 passes.
 */
#include "io/manifest.h"

#include <math.h>
#include <openssl/evp.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/unit.h"

static char dir[256];

static const char *path_of(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static const char *write_file(const char *name, const char *text, size_t n)
{
    const char *p = path_of(name);
    FILE *f = fopen(p, "wb");
    MC_ASSERT(f);
    fwrite(text, 1, n, f);
    fclose(f);
    return p;
}

#define WRITE(name, lit) write_file(name, lit, sizeof(lit) - 1)

static void sha_of(const void *data, size_t n, char *hex)
{
    unsigned char d[32];
    unsigned int dl = 0;
    EVP_Digest(data, n, d, &dl, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

static void touch(const char *rel)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    FILE *f = fopen(p, "wb");
    MC_ASSERT(f);
    fputs("x", f);
    fclose(f);
}

static void test_quoting_crlf_bom(void)
{
    static const char text[] = "\xef\xbb\xbf"
                               "id_str,file_loc,ra,dec,hdu\r\n"
                               "a,/data/a.fits,10.5,-3.25,\r\n"
                               "\"b,with comma\",\"/data/b \"\"quoted\"\".fits\",,,SCI\r\n"
                               "\"c\nnewline\",/data/c.png, 1 , 2 ,\"2\"\r\n"
                               "\r\n"
                               "d,/data/d.fits,nan,NaN,\r\n";
    const char *p = WRITE("quoting.csv", text);
    io_manifest m;
    char err[MC_ERR_LEN] = "";
    int rc = io_manifest_read(p, &m, err);
    CHECK(rc == 0, "quoting: read failed: %s", err);
    if (rc) return;
    CHECK(m.n == 4, "quoting: %lld rows, expected 4 (the blank line is not a row)", (long long)m.n);
    CHECK(!strcmp(m.rows[0].id_str, "a") && !strcmp(m.rows[0].path, "/data/a.fits"), "row a: %s %s",
          m.rows[0].id_str, m.rows[0].path);
    CHECK(m.rows[0].ra == 10.5 && m.rows[0].dec == -3.25 && !m.rows[0].hdu && !m.rows[0].bad,
          "row a: ra/dec/hdu");
    CHECK(!strcmp(m.rows[1].id_str, "b,with comma"), "embedded comma: '%s'", m.rows[1].id_str);
    CHECK(!strcmp(m.rows[1].path, "/data/b \"quoted\".fits"), "doubled quotes: '%s'", m.rows[1].path);
    CHECK(isnan(m.rows[1].ra) && isnan(m.rows[1].dec) && !m.rows[1].bad, "empty ra/dec are no value");
    CHECK(m.rows[1].hdu && !strcmp(m.rows[1].hdu, "SCI"), "hdu SCI");
    CHECK(!strcmp(m.rows[2].id_str, "c\nnewline"), "embedded newline: '%s'", m.rows[2].id_str);
    CHECK(m.rows[2].ra == 1 && m.rows[2].dec == 2 && m.rows[2].hdu && !strcmp(m.rows[2].hdu, "2"),
          "blanks around numbers");
    CHECK(isnan(m.rows[3].ra) && !m.rows[3].bad, "'nan' is no value");
    char hex[65];
    sha_of(text, sizeof text - 1, hex);
    CHECK(!strcmp(m.sha256, hex), "sha256 of the bytes (BOM included): %s vs %s", m.sha256, hex);
    CHECK(m.max_id_len == 12 && m.max_path_len == (int)strlen("/data/b \"quoted\".fits"), "widths %d %d",
          m.max_id_len, m.max_path_len);
    io_manifest_free(&m);
}

static void test_aliases_and_relative(void)
{
    const char *p = WRITE("alias.csv", " ObjID ,  Filename ,extra\n"
                                       "1,cut/one.fits,x\n"
                                       "2,/abs/two.fits,y\n");
    io_manifest m;
    char err[MC_ERR_LEN] = "";
    int rc = io_manifest_read(p, &m, err);
    CHECK(rc == 0, "aliases: %s", err);
    if (rc) return;
    char want[600];
    snprintf(want, sizeof want, "%s/cut/one.fits", dir);
    CHECK(m.n == 2 && !strcmp(m.rows[0].path, want), "relative path resolved against the manifest folder: %s",
          m.rows[0].path);
    CHECK(!strcmp(m.rows[1].path, "/abs/two.fits"), "absolute path kept: %s", m.rows[1].path);
    CHECK(!strcmp(m.rows[0].id_str, "1"), "objid column used as id_str");
    io_manifest_free(&m);
    /* id_str wins over id when both are present */
    p = WRITE("both.csv", "id,id_str,path\nx,y,z.fits\n");
    rc = io_manifest_read(p, &m, err);
    CHECK(rc == 0 && !strcmp(m.rows[0].id_str, "y"), "id_str preferred over id");
    if (!rc) io_manifest_free(&m);
}

static void test_whole_manifest_errors(void)
{
    io_manifest m;
    char err[MC_ERR_LEN] = "";
    const char *p = WRITE("noid.csv", "name,file_loc\nx,y.fits\n");
    CHECK(io_manifest_read(p, &m, err) == -1 && strstr(err, "noid.csv") && strstr(err, "line 1") &&
              strstr(err, "no id_str column") && strstr(err, "name, file_loc"),
          "missing id column: %s", err);
    p = WRITE("nopath.csv", "id_str,ra\nx,1\n");
    CHECK(io_manifest_read(p, &m, err) == -1 && strstr(err, "no path column"), "missing path column: %s",
          err);
    p = WRITE("dup.csv", "id_str,path\n"
                         "a,a.fits\n"
                         "\"b\nb\",b.fits\n"
                         "c,c.fits\n"
                         "a,a2.fits\n");
    CHECK(io_manifest_read(p, &m, err) == -1 && strstr(err, "duplicate id_str 'a' on lines 2 and 6"),
          "duplicate: %s", err);
    p = WRITE("badquote.csv", "id_str,path\na,\"x\"y.fits\nb,c.fits\n");
    CHECK(io_manifest_read(p, &m, err) == -1 && strstr(err, "line 2") && strstr(err, "malformed"),
          "bad quoting: %s", err);
    p = WRITE("open.csv", "id_str,path\na,\"x.fits\n");
    CHECK(io_manifest_read(p, &m, err) == -1 && strstr(err, "unterminated"), "unterminated quote: %s", err);
    p = WRITE("empty.csv", "");
    CHECK(io_manifest_read(p, &m, err) == -1 && strstr(err, "empty manifest"), "empty file: %s", err);
    CHECK(io_manifest_read(path_of("absent.csv"), &m, err) == -1 && strstr(err, "absent.csv") &&
              strstr(err, "No such file"),
          "absent: %s", err);
    p = WRITE("header_only.csv", "id_str,path\n");
    int rc = io_manifest_read(p, &m, err);
    CHECK(rc == 0 && m.n == 0, "header only: a valid empty manifest (%s)", err);
    if (!rc) io_manifest_free(&m);
}

static void test_bad_rows(void)
{
    const char *p = WRITE("badrows.csv", "id_str,path,ra,dec\n"
                                         "ok,a.fits,1,2\n"
                                         "r1,b.fits,abc,2\n"
                                         "r2,c.fits,1,95\n"
                                         "r3,d.fits,1,\n"
                                         "r4,,1,2\n"
                                         ",e.fits,1,2\n"
                                         "r6,f.fits,1\n"
                                         "r7,g.fits,1,2,extra\n"
                                         "r8,h.fits,12.5x,2\n"
                                         "r9,i.fits,inf,2\n");
    io_manifest m;
    char err[MC_ERR_LEN] = "";
    int rc = io_manifest_read(p, &m, err);
    CHECK(rc == 0 && m.n == 10, "bad rows keep their place: rc %d n %lld %s", rc, (long long)m.n, err);
    if (rc) return;
    static const char *const want[] = {NULL,
                                       "bad ra 'abc'",
                                       "bad dec '95'",
                                       "ra given without dec",
                                       "empty path",
                                       "empty id_str",
                                       "3 fields where the header has 4",
                                       "5 fields where the header has 4",
                                       "bad ra '12.5x'",
                                       "bad ra 'inf'"};
    for (int i = 0; i < 10; i++) {
        io_manifest_row *r = &m.rows[i];
        if (!want[i]) {
            CHECK(!r->bad && !r->note && r->ra == 1 && r->dec == 2, "row %d is good", i);
            continue;
        }
        char line[32];
        snprintf(line, sizeof line, "line %d:", i + 2);
        CHECK(r->bad && r->note && strstr(r->note, want[i]) && strstr(r->note, line) &&
                  strstr(r->note, "badrows.csv"),
              "row %d: note '%s' should hold '%s' and '%s'", i, r->note ? r->note : "(none)", want[i], line);
        CHECK(isnan(r->ra) && isnan(r->dec), "bad row %d has no coordinates", i);
    }
    io_manifest_free(&m);
}

static void test_folder(void)
{
    char sub[512];
    snprintf(sub, sizeof sub, "%s/tree", dir);
    mkdir(sub, 0755);
    snprintf(sub, sizeof sub, "%s/tree/b", dir);
    mkdir(sub, 0755);
    snprintf(sub, sizeof sub, "%s/tree/a", dir);
    mkdir(sub, 0755);
    snprintf(sub, sizeof sub, "%s/tree/.hidden", dir);
    mkdir(sub, 0755);
    touch("tree/b/z.fits.fz");
    touch("tree/a/y.PNG");
    touch("tree/a/x.fits.gz");
    touch("tree/top.jpeg");
    touch("tree/c.FIT");
    touch("tree/notes.txt");
    touch("tree/.x.fits");
    touch("tree/.hidden/h.fits");
    touch("tree/a/w.jpg");
    touch("tree/e.fz");
    char target[512], link[512];
    snprintf(target, sizeof target, "%s/tree/a", dir);
    snprintf(link, sizeof link, "%s/tree/loop", dir);
    MC_ASSERT(symlink(target, link) == 0); /* a link to a folder: not followed */
    snprintf(target, sizeof target, "%s/tree/top.jpeg", dir);
    snprintf(link, sizeof link, "%s/tree/linked.png", dir);
    MC_ASSERT(symlink(target, link) == 0); /* a link to a file: listed */
    io_manifest m;
    char err[MC_ERR_LEN] = "";
    snprintf(sub, sizeof sub, "%s/tree/", dir);
    int rc = io_manifest_read(sub, &m, err);
    CHECK(rc == 0, "folder: %s", err);
    if (rc) return;
    static const char *const rel[] = {"a/w.jpg", "a/x.fits.gz", "a/y.PNG",    "b/z.fits.fz",
                                      "c.FIT",   "e.fz",        "linked.png", "top.jpeg"};
    static const char *const ids[] = {"a/w", "a/x", "a/y", "b/z", "c", "e", "linked", "top"};
    CHECK(m.n == 8, "folder: %lld files, expected 8", (long long)m.n);
    char listing[512] = "";
    for (int i = 0; i < 8 && i < m.n; i++) {
        char want[600];
        snprintf(want, sizeof want, "%s/tree/%s", dir, rel[i]);
        CHECK(!strcmp(m.rows[i].path, want), "folder row %d: %s (expected %s)", i, m.rows[i].path, want);
        CHECK(!strcmp(m.rows[i].id_str, ids[i]), "folder row %d id: %s (expected %s)", i, m.rows[i].id_str,
              ids[i]);
        CHECK(isnan(m.rows[i].ra) && !m.rows[i].hdu && !m.rows[i].bad, "folder row %d has no ra, hdu", i);
        strcat(listing, rel[i]);
        strcat(listing, "\n");
    }
    char hex[65];
    sha_of(listing, strlen(listing), hex);
    CHECK(!strcmp(m.sha256, hex), "folder sha256 is of the sorted listing: %s vs %s", m.sha256, hex);
    io_manifest_free(&m);
    touch("tree/a/w.fits");
    snprintf(sub, sizeof sub, "%s/tree", dir);
    CHECK(io_manifest_read(sub, &m, err) == -1 && strstr(err, "duplicate id_str 'a/w'") &&
              strstr(err, "a/w.fits") && strstr(err, "a/w.jpg"),
          "folder duplicate: %s", err);
}

static void test_million(void)
{
    const char *p = path_of("million.csv");
    FILE *f = fopen(p, "wb");
    MC_ASSERT(f);
    fprintf(f, "id_str,file_loc,ra,dec\n");
    for (int i = 0; i < 1000000; i++)
        fprintf(f, "J%07d,cutouts/J%03d/J%07d.fits,%.6f,%.6f\n", i, i / 10000, i, (i % 36000) * 0.01,
                (i % 1800) * 0.1 - 90);
    long bytes = ftell(f);
    fclose(f);
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    io_manifest m;
    char err[MC_ERR_LEN] = "";
    double t0 = mc_now();
    int rc = io_manifest_read(p, &m, err);
    double dt = mc_now() - t0;
    getrusage(RUSAGE_SELF, &ru1);
    CHECK(rc == 0 && m.n == 1000000, "million rows: rc %d n %lld %s", rc, (long long)m.n, err);
    if (rc) return;
    CHECK(!strcmp(m.rows[999999].id_str, "J0999999") && fabs(m.rows[999999].ra - 279.99) < 1e-9 &&
              !m.rows[5].bad,
          "million rows: last row %s %.6f", m.rows[999999].id_str, m.rows[999999].ra);
    printf("manifest timing: 1,000,000 rows (%.1f MB) parsed in %.2f s (%.2f us/row); peak RSS %ld MB "
           "(before reading: %ld MB)\n",
           bytes / 1e6, dt, dt, ru1.ru_maxrss / 1024, ru0.ru_maxrss / 1024);
    io_manifest_free(&m);
    unlink(p);
}

/* ---- io_manifest_scan: the rows, counts and verdicts io_manifest_read gives, in bounded memory ---- */
typedef struct {
    const io_manifest *m;
    int64_t seen, mismatch, last_line;
} scan_cmp;

static int same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

static int compare_row(void *ctx, int64_t index, int64_t line, const io_manifest_row *r)
{
    scan_cmp *c = ctx;
    const io_manifest_row *q = index < c->m->n ? &c->m->rows[index] : NULL;
    int same = q && index == c->seen && line > c->last_line && same_str(q->id_str, r->id_str) &&
               same_str(q->path, r->path) && same_str(q->hdu, r->hdu) && same_str(q->note, r->note) &&
               q->bad == r->bad && ((isnan(q->ra) && isnan(r->ra)) || q->ra == r->ra) &&
               ((isnan(q->dec) && isnan(r->dec)) || q->dec == r->dec);
    c->mismatch += !same;
    c->seen++;
    c->last_line = line;
    return 0;
}

/* scan with the given run size and hash bits against read: same rows, or the same one-line error */
static void scan_matches_read(const char *p, int64_t sort_rows, int hash_bits, const char *what)
{
    io_manifest m;
    char e1[MC_ERR_LEN] = "", e2[MC_ERR_LEN] = "";
    int r1 = io_manifest_read(p, &m, e1);
    io_manifest_info info;
    io_manifest_scan_opts o = {.unique = 1, .sort_rows = sort_rows, .hash_bits = hash_bits};
    scan_cmp c = {.m = &m, .last_line = -1};
    int r2 = io_manifest_scan(p, &o, r1 ? NULL : compare_row, &c, &info, e2);
    CHECK(r1 == r2 && !strcmp(e1, e2), "%s (runs of %lld, %d hash bits): read %d '%s', scan %d '%s'", what,
          (long long)sort_rows, hash_bits, r1, e1, r2, e2);
    if (!r1 && !r2)
        CHECK(c.seen == m.n && !c.mismatch && info.n == m.n && !strcmp(info.sha256, m.sha256) &&
                  info.max_id_len == m.max_id_len && info.max_path_len == m.max_path_len &&
                  !strcmp(info.path, m.path),
              "%s: scan gave %lld rows (%lld differ), n %lld, sha %s; read %lld, %s", what, (long long)c.seen,
              (long long)c.mismatch, (long long)info.n, info.sha256, (long long)m.n, m.sha256);
    if (!r1) io_manifest_free(&m);
}

static void test_scan(void)
{
    scan_matches_read(WRITE("s_quoting.csv", "\xef\xbb\xbfid_str,file_loc,ra,dec,hdu\r\na,/d/a.fits,10.5,-3.25,\r\n"
                                             "\"b,c\",\"rel \"\"q\"\".fits\",,,SCI\r\n\"c\nnl\",c.png, 1 , 2 ,2\r\n"),
                      0, 0, "quoting, CRLF, BOM");
    scan_matches_read(WRITE("s_bad.csv", "id,path,ra,dec\nx1,a.fits,1,2\n,b.fits,1,2\nx3,,1,2\nx4,c,abc,2\n"
                                         "x5,c,1,95\nx6,c,1,\nx7,c,1,2,extra\n\xff\xfeid,c,1,2\n"),
                      0, 0, "bad rows");
    static const char dups[] = "id_str,file_loc\nq,f\na,f\nb,f\na,f\nb,f\na,f\nc,f\n";
    const char *d = WRITE("s_dup.csv", dups);
    const char *u = WRITE("s_unique.csv", "id_str,file_loc\nq,f\na,f\nb,f\nc,f\nd,f\ne,f\nf,f\ng,f\n,f\n,f\n");
    for (int64_t runs = 0; runs <= 3; runs += 3)     /* one run in memory; runs of 3 rows on disk */
        for (int bits = 0; bits <= 1; bits++) {     /* 64 bits; 1 bit: every id collides with half the others */
            scan_matches_read(d, runs, bits, "duplicates");
            scan_matches_read(u, runs, bits, "unique ids, empty ids ignored");
        }
    /* a larger manifest with duplicates planted at random, against read, over run sizes and hash widths */
    unsigned seed = 12345;
    for (int trial = 0; trial < 6; trial++) {
        const char *p = path_of("s_random.csv");
        FILE *f = fopen(p, "wb");
        MC_ASSERT(f);
        fprintf(f, "id_str,file_loc\n");
        int n = 3000, planted = trial % 3; /* 0, 1 or 2 duplicates */
        int at[2], of[2];
        for (int k = 0; k < 2; k++) {
            seed = seed * 1103515245u + 12345u;
            at[k] = 1 + (int)(seed >> 8) % (n - 1);
            seed = seed * 1103515245u + 12345u;
            of[k] = (int)(seed >> 8) % at[k];
        }
        for (int i = 0; i < n; i++) {
            int id = i;
            for (int k = 0; k < planted; k++)
                if (i == at[k]) id = of[k];
            fprintf(f, "G%d,f.fits\n", id);
        }
        fclose(f);
        scan_matches_read(p, 100, trial < 3 ? 0 : 6, "3000 rows, planted duplicates");
    }
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/mctest-manifest-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    MC_ASSERT(mkdtemp(dir));
    test_quoting_crlf_bom();
    test_aliases_and_relative();
    test_whole_manifest_errors();
    test_bad_rows();
    test_folder();
    test_scan();
    test_million();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", dir);
    printf("%d checks, %d failed\n", n_checks, n_failed);
    return n_failed ? 1 : 0;
}
