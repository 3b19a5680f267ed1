/* tests/unit/test_preprocess.c: what the reference comparison cannot see from outside: the float32 asinh and
 * sin in io/preprocess.c against double precision, the 8-bit levels k / 255, recipe specs (parse, describe
 * round trip, errors), the blank-pixel limit at its boundary, no allocation per galaxy once buffers are sized
 * (pp_work and the cutout pixel buffer), and two threads decoding and preprocessing at once giving the
 * single-thread result. Prints the per-cutout recipe time for a 3x256x256 cube. Exit 0 passes. */
#include "io/cutout.h"
#include "io/preprocess.h"

#include <fitsio.h>
#include <math.h>
#include <pthread.h>
#include <unistd.h>

float pp_test_asinhf(float x);
float pp_test_sinf(float y);
float pp_test_level(float k);

#include "tests/unit/unit.h"

/* |a - b| in units of the float32 spacing at b */
static double ulps(float a, double b)
{
    float fb = (float)b;
    double ulp = fabs((double)nextafterf(fb, INFINITY) - (double)fb);
    return fabs((double)a - b) / ulp;
}

static void test_math(void)
{
    double worst = 0, worst_x = 0;
    for (double e = -30; e <= 30; e += 0.0007) {
        double x = pow(10.0, e);
        for (int s = -1; s <= 1; s += 2) {
            float xf = (float)(s * x);
            double u = ulps(pp_test_asinhf(xf), asinh((double)xf));
            if (u > worst) worst = u, worst_x = xf;
        }
    }
    CHECK(worst <= 3.0, "asinh within 3 ulps from 1e-30 to 1e30: worst %.2f ulps at %g", worst, worst_x);
    CHECK(pp_test_asinhf(0.0f) == 0.0f && pp_test_asinhf(3e38f) > 89.0f, "asinh(0) = 0, asinh(3e38) = %g",
          pp_test_asinhf(3e38f));
    double sworst = 0, sabs = 0;
    for (int i = 0; i <= 100000; i++) {
        float y = (float)(M_PI / 2 * i / 100000.0);
        double ref = sin((double)y);
        double u = ulps(pp_test_sinf(y), ref);
        sworst = u > sworst ? u : sworst;
        sabs = fmax(sabs, fabs(pp_test_sinf(y) - ref));
    }
    CHECK(sworst <= 3.0, "sin on [0, pi/2] within 3 ulps: worst %.2f (abs %.2g)", sworst, sabs);
    int lbad = 0;
    for (int k = 0; k <= 255; k++) {
        volatile float kf = (float)k, q = kf / 255.0f; /* the float32 division the levels replace */
        lbad += pp_test_level(kf) != q;
    }
    CHECK(lbad == 0, "the 256 8-bit levels k / 255 bit for bit without the division: %d differ", lbad);
}

static void test_specs(void)
{
    static const char *const good[] = {"auto",
                                       "",
                                       "gz_decals",
                                       "gz_decals:bands=g;r;z,flip=1",
                                       "image:quantize=0,zoom=1",
                                       "asinh:bands=i;r;g,q=1",
                                       "asinh:bands=3,pmin=1,pmax=99.5,max_blank=0.5",
                                       "auto:q=2,flip=1"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        pp_recipe r, r2;
        char err[MC_ERR_LEN] = "", d1[512], d2[512];
        int rc = pp_recipe_parse(good[i], &r, err);
        CHECK(rc == 0, "spec '%s' parses: %s", good[i], err);
        if (rc) continue;
        pp_recipe_describe(&r, d1, sizeof d1);
        rc = pp_recipe_parse(d1, &r2, err);
        pp_recipe_describe(&r2, d2, sizeof d2);
        CHECK(rc == 0 && !strcmp(d1, d2) && !memcmp(&r, &r2, sizeof r),
              "describe round trip '%s' -> '%s' -> '%s'", good[i], d1, d2);
    }
    pp_recipe r;
    char err[MC_ERR_LEN];
    pp_recipe_parse("gz_decals", &r, err);
    char d[512];
    pp_recipe_describe(&r, d, sizeof d);
    CHECK(!strcmp(d, "gz_decals:bands=g;r;z,zoom=1.2,flip=0,quantize=1,max_blank=0.2"),
          "gz_decals describes as '%s'", d);
    CHECK(r.zoom == 1.2 && r.quantize == 1 && r.flip == 0 && r.max_blank == 0.2 && r.nbands == 3,
          "gz_decals defaults");
    pp_recipe_parse("asinh", &r, err);
    CHECK(r.asinh_q == 1.0 && r.pmin == 0.0 && r.pmax == 99.7, "asinh defaults 1, 0, 99.7");
    static const char *const bad[] = {
        "gzdecals",       "gz_decals:bands=g;r", "asinh:bands=a;b",       "image:q=1",
        "image:zoom=0.9", "image:flip=2",        "asinh:pmin=60,pmax=50", "image:foo=1",
        "image:zoom",     "asinh:quantize=1",    "image:bands=;",         "image:max_blank=1.5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        CHECK(pp_recipe_parse(bad[i], &r, err) == -1 && err[0], "spec '%s' is refused (%s)", bad[i], err);
    }
}

static void fill_cube(io_cutout *c, int nb, int h, int w)
{
    c->kind = IO_KIND_FITS;
    c->nband = nb;
    c->h = h;
    c->w = w;
    size_t n = (size_t)nb * h * w;
    if (c->cap < n) {
        free(c->pix);
        c->pix = mc_malloc_aligned(n * sizeof(float));
        c->cap = n;
    }
    for (int b = 0; b < nb; b++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                double r = hypot(x - w / 2.0 + 0.3, (y - h / 2.0) * 1.3);
                c->pix[((size_t)b * h + y) * w + x] =
                    (float)((0.3 + 0.4 * b) * exp(-r / 10.0) + 0.002 * sin(x * 7.1 + y * 3.3));
            }
    static const char *const names[] = {"g", "r", "z", "i", "y"};
    for (int b = 0; b < nb; b++) snprintf(c->band[b], sizeof c->band[b], "%s", b < 5 ? names[b] : "");
}

static void test_blank_limit_and_reuse(void)
{
    io_cutout c = {0};
    fill_cube(&c, 3, 50, 40); /* 2000 pixels per band */
    pp_recipe r;
    char err[MC_ERR_LEN];
    pp_recipe_parse("gz_decals", &r, err);
    pp_work w = {0};
    float *out = mc_malloc(3 * 224 * 224 * sizeof(float));
    for (int i = 0; i < 400; i++) c.pix[2 * 2000 + i] = NAN; /* exactly 20% of z blank: allowed */
    CHECK(pp_apply(&r, &c, 3, 224, &w, out, err) == MC_ROW_OK,
          "20%% blank passes (not more than max_blank): %s", err);
    int finite = 1;
    for (int i = 0; i < 3 * 224 * 224; i++) finite &= isfinite(out[i]) && out[i] >= 0 && out[i] <= 1;
    CHECK(finite, "blanks became 0, output finite in [0, 1]");
    c.pix[2 * 2000 + 400] = 0.0f; /* one more (a zero) */
    int st = pp_apply(&r, &c, 3, 224, &w, out, err);
    CHECK(st == MC_ROW_BAD_PIXELS && strstr(err, "band z") && strstr(err, "20.1%"),
          "20.05%% blank refused: %d %s", st, err);
    c.pix[2 * 2000 + 400] = INFINITY;
    st = pp_apply(&r, &c, 3, 224, &w, out, err);
    CHECK(st == MC_ROW_BAD_PIXELS, "Inf counts as blank");
    fill_cube(&c, 3, 50, 40);
    /* steady state: same-size cutouts reuse pp_work exactly */
    pp_apply(&r, &c, 3, 224, &w, out, err);
    float *buf = w.buf;
    size_t cap = w.cap;
    for (int i = 0; i < 20; i++) pp_apply(&r, &c, i % 2 ? 1 : 3, 224, &w, out, err);
    CHECK(w.buf == buf && w.cap == cap, "pp_work not reallocated across 20 galaxies of one size");
    fill_cube(&c, 3, 30, 30);
    pp_apply(&r, &c, 3, 224, &w, out, err);
    CHECK(w.buf == buf && w.cap == cap, "a smaller cutout reuses pp_work too");
    io_cutout small = {0};
    fill_cube(&small, 3, 7, 30);
    CHECK(pp_apply(&r, &small, 3, 224, &w, out, err) == MC_ROW_BAD_SHAPE && strstr(err, "8 px"),
          "7 px refused: %s", err);
    io_cutout_free(&small);
    io_cutout_free(&c);
    pp_work_free(&w);
    free(out);
}

static const char *write_fits(const char *path, int nb, int h, int w, int seed)
{
    fitsfile *f = NULL;
    int st = 0;
    char name[600];
    snprintf(name, sizeof name, "!%s", path);
    long naxes[3] = {w, h, nb};
    fits_create_file(&f, name, &st);
    fits_create_img(f, FLOAT_IMG, 3, naxes, &st);
    fits_update_key(f, TSTRING, "BAND0", "g", NULL, &st);
    fits_update_key(f, TSTRING, "BAND1", "r", NULL, &st);
    fits_update_key(f, TSTRING, "BAND2", "z", NULL, &st);
    io_cutout c = {0};
    fill_cube(&c, nb, h, w);
    for (size_t i = 0; i < (size_t)nb * h * w; i++) c.pix[i] *= 1.0f + 0.1f * (float)seed;
    fits_write_img(f, TFLOAT, 1, (LONGLONG)nb * h * w, c.pix, &st);
    fits_close_file(f, &st);
    io_cutout_free(&c);
    MC_ASSERT(st == 0);
    return path;
}

typedef struct {
    const char *paths[4];
    float *out[4];
    int rounds;
    int fail;
} job;

static void *run_job(void *arg)
{
    job *j = (job *)arg;
    io_cutout c = {0};
    pp_work w = {0};
    pp_recipe r;
    char err[MC_ERR_LEN];
    pp_recipe_parse("auto", &r, err);
    for (int k = 0; k < j->rounds; k++)
        for (int i = 0; i < 4; i++) {
            if (io_cutout_read(j->paths[i], NULL, &c, err) != MC_ROW_OK ||
                pp_apply(&r, &c, 3, 224, &w, j->out[i], err) != MC_ROW_OK)
                j->fail = 1;
        }
    io_cutout_free(&c);
    pp_work_free(&w);
    return NULL;
}

static void test_threads_and_cutout_reuse(const char *dir)
{
    char p[4][600];
    job ref = {.rounds = 1}, j1 = {.rounds = 15}, j2 = {.rounds = 15};
    size_t n = 3 * 224 * 224;
    for (int i = 0; i < 4; i++) {
        snprintf(p[i], sizeof p[i], "%s/cube%d.fits", dir, i);
        write_fits(p[i], 3, 64 + 8 * i, 60 + 4 * i, i);
        ref.paths[i] = j1.paths[i] = j2.paths[i] = p[i];
        ref.out[i] = mc_malloc(n * sizeof(float));
        j1.out[i] = mc_malloc(n * sizeof(float));
        j2.out[i] = mc_malloc(n * sizeof(float));
    }
    run_job(&ref);
    pthread_t t1, t2;
    pthread_create(&t1, NULL, run_job, &j1);
    pthread_create(&t2, NULL, run_job, &j2);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    int same = !ref.fail && !j1.fail && !j2.fail;
    for (int i = 0; i < 4; i++)
        same &= !memcmp(ref.out[i], j1.out[i], n * sizeof(float)) &&
                !memcmp(ref.out[i], j2.out[i], n * sizeof(float));
    CHECK(same, "two threads decoding and preprocessing at once give the single-thread tensors");
    /* the cutout's pixel buffer: allocated for the largest file, then reused */
    io_cutout c = {0};
    char err[MC_ERR_LEN];
    io_cutout_read(p[3], NULL, &c, err);
    float *pix = c.pix;
    size_t cap = c.cap;
    for (int k = 0; k < 10; k++)
        for (int i = 0; i < 4; i++) io_cutout_read(p[i], NULL, &c, err);
    CHECK(c.pix == pix && c.cap == cap,
          "io_cutout keeps one pixel buffer across files no larger than the first");
    int st = io_cutout_read("/nonexistent/x.fits", NULL, &c, err);
    CHECK(st == MC_ROW_MISSING && c.pix == pix && c.nband == 0,
          "a failed read keeps the buffer and clears the shape");
    io_cutout_free(&c);
    for (int i = 0; i < 4; i++) {
        free(ref.out[i]);
        free(j1.out[i]);
        free(j2.out[i]);
        unlink(p[i]);
    }
}

static void time_recipe(void)
{
    io_cutout c = {0};
    fill_cube(&c, 3, 256, 256);
    pp_recipe r;
    char err[MC_ERR_LEN];
    pp_recipe_parse("gz_decals", &r, err);
    pp_work w = {0};
    float *out = mc_malloc(3 * 224 * 224 * sizeof(float));
    pp_apply(&r, &c, 3, 224, &w, out, err);
    int reps = 200;
    double t0 = mc_now();
    for (int i = 0; i < reps; i++) pp_apply(&r, &c, 3, 224, &w, out, err);
    double dt = (mc_now() - t0) / reps;
    printf("recipe timing: gz_decals 3x256x256 -> 3x224x224 in %.3f ms per cutout (mean of %d)\n", 1e3 * dt,
           reps);
    pp_recipe_parse("asinh", &r, err);
    t0 = mc_now();
    for (int i = 0; i < reps; i++) pp_apply(&r, &c, 3, 224, &w, out, err);
    dt = (mc_now() - t0) / reps;
    printf("recipe timing: asinh 3x256x256 -> 3x224x224 in %.3f ms per cutout (mean of %d)\n", 1e3 * dt,
           reps);
    io_cutout_free(&c);
    pp_work_free(&w);
    free(out);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    char dir[300];
    snprintf(dir, sizeof dir, "%s/mctest-pp-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    MC_ASSERT(mkdtemp(dir));
    test_math();
    test_specs();
    test_blank_limit_and_reuse();
    test_threads_and_cutout_reuse(dir);
    time_recipe();
    rmdir(dir);
    printf("%d checks, %d failed\n", n_checks, n_failed);
    return n_failed ? 1 : 0;
}
