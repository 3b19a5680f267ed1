/* io/synth.c: the synthetic survey behind `morphcat synth`: made-up galaxies rendered as DECaLS-style g,r,z
 * cutouts (nanomaggies, TAN WCS, sky and photon noise), PNG/JPEG composites, a manifest and broken entries.
 * Plausible, not physical: no cosmology, no real PSF, no calibration errors; and it never reads a cutout. */
#include "io/synth.h"

#include <errno.h>
#include <math.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <fitsio.h>
#include <jpeglib.h>
#include <png.h>

/* ---- seeded random numbers -------------------------------------------------------------------------------
 * xoshiro256** seeded through splitmix64 (Vigna's recommended pairing), written here so outputs never depend
 * on libc's rand. Every (seed, row, stream) triple gets its own generator: rendering one row never consumes
 * another row's numbers, and the noise stream is independent of how many numbers the morphology drew. */

enum {
    SYNTH_STREAM_PNG = 1,
    SYNTH_STREAM_PLAIN,
    SYNTH_STREAM_RADEC,
    SYNTH_STREAM_SKY,
    SYNTH_STREAM_MORPH,
    SYNTH_STREAM_NOISE,
    SYNTH_STREAM_BYTES
};

typedef struct synth_rng {
    uint64_t s[4];
    double spare; /* second Box-Muller normal */
    int has_spare;
} synth_rng;

static uint64_t synth_splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void synth_rng_init(synth_rng *r, uint64_t seed, uint64_t index, uint64_t stream)
{
    uint64_t x = seed;
    uint64_t h = synth_splitmix(&x);
    x = h ^ (index * 0xd1b54a32d192ed03ULL);
    h = synth_splitmix(&x);
    x = h ^ (stream * 0x8cb92ba72f3d8dd7ULL);
    for (int i = 0; i < 4; i++) r->s[i] = synth_splitmix(&x);
    r->has_spare = 0;
    r->spare = 0;
}

static inline uint64_t synth_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t synth_next(synth_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = synth_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = synth_rotl(s[3], 45);
    return out;
}

/* Uniform in [0, 1), 53 random bits. */
static double synth_u01(synth_rng *r)
{
    return (double)(synth_next(r) >> 11) * 0x1.0p-53;
}

static double synth_uniform(synth_rng *r, double a, double b)
{
    return a + (b - a) * synth_u01(r);
}

/* Integer in [a, b]. */
static int synth_int(synth_rng *r, int a, int b)
{
    return a + (int)(synth_u01(r) * (double)(b - a + 1));
}

static double synth_normal(synth_rng *r)
{
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    /* Marsaglia's polar form of Box-Muller: no sin/cos, which dominated the noise's cost */
    double u, v, q;
    do {
        u = 2 * synth_u01(r) - 1;
        v = 2 * synth_u01(r) - 1;
        q = u * u + v * v;
    } while (q >= 1 || q == 0);
    double m = sqrt(-2 * log(q) / q);
    r->spare = v * m;
    r->has_spare = 1;
    return u * m;
}

static int synth_poisson(synth_rng *r, double lambda)
{
    double l = exp(-lambda), p = synth_u01(r);
    int k = 0;
    while (p > l && k < 64) {
        p *= synth_u01(r);
        k++;
    }
    return k;
}

/* ---- survey constants --------------------------------------------------------------------------------- */

/* Footprint: a 3 x 2.5 deg patch of Stripe 82 straddling RA = 0, where the Galaxy Zoo DECaLS example cutouts
 * lie (../shared/realdata/decals_grz); it makes the RA wrap part of every test. */
#define SYNTH_RA_LO 358.5
#define SYNTH_RA_SPAN 3.0
#define SYNTH_DEC_LO -1.25
#define SYNTH_DEC_HI 1.25

/* Sky noise, nanomaggies per 0.262" pixel, g r z: the robust sigma of the DECaLS DR5 example cubes is
 * 0.0023-0.0029, 0.0036-0.0049 and 0.011-0.0125. Scaled by pixscale / 0.262 (per-pixel noise grows with the
 * side of the pixel) and by a per-cutout depth factor. */
static const double synth_sky_sigma[3] = {0.0027, 0.0042, 0.0115};
/* Effective counts per nanomaggy for the photon noise of the sources (variance += flux / gain): a few
 * coadded 90 s DECam exposures, so a bright core is visibly noisier than the sky. */
static const double synth_gain[3] = {2500.0, 2000.0, 700.0};
/* Fraction of good FITS rows whose manifest ra, dec are left empty (the job then reads the WCS). */
#define SYNTH_RADEC_EMPTY_FRACTION 0.10

void io_synth_opts_default(io_synth_opts *o)
{
    memset(o, 0, sizeof *o);
    o->n = 2000;
    o->size = 128;
    o->seed = 1;
    o->broken = 12;
    o->png_fraction = 0.05;
    o->plain_fraction = 0.02;
    o->pixscale = 0.262;
    o->quantize = 4.0;
}

/* ---- broken kinds ------------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    int status;
    const char *detail;
} synth_broken_info[IO_SYNTH_BROKEN_COUNT] = {
    [IO_SYNTH_BROKEN_NONE] = {"none", MC_ROW_OK, "a good row"},
    [IO_SYNTH_BROKEN_TRUNCATED_FITS] =
        {"truncated_fits", MC_ROW_CORRUPT,
         "FITS header promises 3 planes; the file ends in the middle of plane 2"},
    [IO_SYNTH_BROKEN_GARBAGE_FITS] = {"garbage_fits", MC_ROW_CORRUPT,
                                      "8640 random bytes named .fits: no FITS header"},
    [IO_SYNTH_BROKEN_MISSING_FILE] = {"missing_file", MC_ROW_MISSING,
                                      "the manifest names a file that does not exist"},
    [IO_SYNTH_BROKEN_EMPTY_FILE] = {"empty_file", MC_ROW_CORRUPT, "0-byte file named .fits"},
    [IO_SYNTH_BROKEN_ZERO_BAND] = {"zero_z_band", MC_ROW_BAD_PIXELS, "g r z cube whose z plane is all 0.0"},
    [IO_SYNTH_BROKEN_NAN_CUBE] = {"nan_cube", MC_ROW_BAD_PIXELS, "g r z cube whose every pixel is NaN"},
    [IO_SYNTH_BROKEN_IMAGE_2D] = {"image_2d", MC_ROW_BAD_SHAPE,
                                  "2-D r-band image where a g r z cube is expected (gz_decals recipe)"},
    [IO_SYNTH_BROKEN_TWO_PLANES] = {"two_planes", MC_ROW_BAD_SHAPE,
                                    "2-plane g r cube: no z band (gz_decals recipe)"},
    [IO_SYNTH_BROKEN_CORRUPT_PNG] =
        {"corrupt_png", MC_ROW_CORRUPT,
         "PNG with valid signature and IHDR but garbage IDAT (zlib stream and CRC)"},
    [IO_SYNTH_BROKEN_TRUNCATED_JPEG] = {"truncated_jpeg", MC_ROW_CORRUPT,
                                        "JPEG cut in the middle of its scan data: no EOI marker"},
    [IO_SYNTH_BROKEN_EMPTY_FILE_LOC] = {"empty_file_loc", MC_ROW_BAD_ROW,
                                        "the manifest row's file_loc is empty"},
    [IO_SYNTH_BROKEN_BAD_RA] = {"bad_ra", MC_ROW_BAD_ROW, "the manifest row's ra is abc (its file is good)"},
};

const char *io_synth_broken_name(int kind)
{
    return kind >= 0 && kind < IO_SYNTH_BROKEN_COUNT ? synth_broken_info[kind].name : "unknown";
}

int io_synth_broken_status(int kind)
{
    return kind >= 0 && kind < IO_SYNTH_BROKEN_COUNT ? synth_broken_info[kind].status : MC_ROW_PENDING;
}

const char *io_synth_broken_detail(int kind)
{
    return kind >= 0 && kind < IO_SYNTH_BROKEN_COUNT ? synth_broken_info[kind].detail : "unknown";
}

/* ---- row planning ------------------------------------------------------------------------------------- */

/* Broken row k of B sits at index floor((2k+1) n / 2B): evenly spread, never at the ends. */
static io_synth_broken synth_broken_at(const io_synth_opts *o, int64_t i)
{
    int64_t b = o->broken < o->n ? o->broken : o->n;
    if (b <= 0) return IO_SYNTH_BROKEN_NONE;
    int64_t k0 = i * b / o->n;
    for (int64_t k = k0 - 1; k <= k0 + 1; k++)
        if (k >= 0 && k < b && (2 * k + 1) * o->n / (2 * b) == i)
            return (io_synth_broken)(1 + k % (IO_SYNTH_BROKEN_COUNT - 1));
    return IO_SYNTH_BROKEN_NONE;
}

/* Stratified random choice of a fraction f of rows: the rows fall into consecutive blocks of about 1/f
 * (block b holds the rows with floor(i f + phase) = b) and each block picks one of its rows at random. So
 * the count is n f give or take one, even a 60-row test survey gets its share of PNGs, and the picks do not
 * line up with the evenly spaced broken rows. */
static int64_t synth_block(int64_t i, double f, double phase)
{
    return (int64_t)floor((double)i * f + phase);
}

static int synth_pick(const io_synth_opts *o, int64_t i, double f, uint64_t stream)
{
    if (f <= 0) return 0;
    if (f >= 1) return 1;
    synth_rng r;
    synth_rng_init(&r, o->seed, UINT64_MAX, stream);
    double phase = synth_u01(&r);
    int64_t b = synth_block(i, f, phase);
    /* the block's first and last rows; the estimate from 1/f is only corrected by exact block tests */
    int64_t lo = (int64_t)ceil(((double)b - phase) / f), hi = (int64_t)ceil(((double)b + 1 - phase) / f) - 1;
    if (lo > i) lo = i;
    if (hi < i) hi = i;
    while (lo < i && synth_block(lo, f, phase) < b) lo++;
    while (lo > 0 && synth_block(lo - 1, f, phase) == b) lo--;
    while (hi > i && synth_block(hi, f, phase) > b) hi--;
    while (synth_block(hi + 1, f, phase) == b) hi++;
    synth_rng_init(&r, o->seed, (uint64_t)b, stream);
    return lo + (int64_t)(synth_u01(&r) * (double)(hi - lo + 1)) == i;
}

void io_synth_row_plan(const io_synth_opts *o, int64_t index, io_synth_row *r)
{
    MC_ASSERT(index >= 0 && index < o->n);
    memset(r, 0, sizeof *r);
    r->index = index;
    snprintf(r->id_str, sizeof r->id_str, "synth_%06lld", (long long)index);

    synth_rng sky;
    synth_rng_init(&sky, o->seed, (uint64_t)index, SYNTH_STREAM_SKY);
    double ra = fmod(SYNTH_RA_LO + SYNTH_RA_SPAN * synth_u01(&sky), 360.0);
    /* uniform on the sphere within the patch */
    double s0 = sin(SYNTH_DEC_LO * M_PI / 180), s1 = sin(SYNTH_DEC_HI * M_PI / 180);
    double dec = asin(synth_uniform(&sky, s0, s1)) * 180 / M_PI;
    /* 1e-8 deg (36 micro-arcsec) steps: "%.8f" in the manifest then equals CRVAL in the header */
    r->ra = fmod(round(ra * 1e8) / 1e8, 360.0);
    r->dec = round(dec * 1e8) / 1e8;

    r->broken = synth_broken_at(o, index);
    const char *ext = ".fits.fz";
    switch (r->broken) {
    case IO_SYNTH_BROKEN_NONE:
        if (synth_pick(o, index, o->png_fraction, SYNTH_STREAM_PNG)) {
            r->fmt = IO_SYNTH_FMT_PNG;
            ext = ".png";
        } else if (synth_pick(o, index, o->plain_fraction, SYNTH_STREAM_PLAIN)) {
            r->fmt = IO_SYNTH_FMT_FITS;
            ext = ".fits";
        } else {
            r->fmt = IO_SYNTH_FMT_FZ;
        }
        /* PNGs carry no WCS, so only FITS rows may leave the position to the header */
        r->radec_empty = r->fmt != IO_SYNTH_FMT_PNG &&
                         synth_pick(o, index, SYNTH_RADEC_EMPTY_FRACTION, SYNTH_STREAM_RADEC);
        break;
    case IO_SYNTH_BROKEN_MISSING_FILE:
    case IO_SYNTH_BROKEN_EMPTY_FILE_LOC:
        r->fmt = IO_SYNTH_FMT_NONE;
        break;
    case IO_SYNTH_BROKEN_BAD_RA:
        r->fmt = IO_SYNTH_FMT_FZ;
        break;
    case IO_SYNTH_BROKEN_CORRUPT_PNG:
        r->fmt = IO_SYNTH_FMT_PNG;
        ext = ".png";
        break;
    case IO_SYNTH_BROKEN_TRUNCATED_JPEG:
        r->fmt = IO_SYNTH_FMT_JPEG;
        ext = ".jpg";
        break;
    default: /* the other failures are all files named .fits */
        r->fmt = IO_SYNTH_FMT_FITS;
        ext = ".fits";
        break;
    }
    if (r->broken != IO_SYNTH_BROKEN_EMPTY_FILE_LOC)
        snprintf(r->file_loc, sizeof r->file_loc, "cutouts/%03lld/%s%s", (long long)(index / 1000), r->id_str,
                 ext);
}

/* ---- rendering -------------------------------------------------------------------------------------------
 * Pixel grid: x is the column, y the row, both 0-based; row 0 is FITS y = 1 (the southern edge), +y is north
 * and +x is west (east left, as the cutout service's CD1_1 < 0). Fluxes are nanomaggies; the three planes of
 * w->img are g, r, z. */

/* Per-band flux of a component from its r flux and colours (AB): f_g = f_r 10^(-0.4 (g-r)),
 * f_z = f_r 10^(0.4 (r-z)). */
static void synth_sed(double flux_r, double gr, double rz, double f[3])
{
    f[0] = flux_r * pow(10.0, -0.4 * gr);
    f[1] = flux_r;
    f[2] = flux_r * pow(10.0, 0.4 * rz);
}

/* b_n with Sersic's I(r) = I_e exp(-b_n ((r/r_e)^(1/n) - 1)) holding half the light inside r_e
 * (Ciotti & Bertin 1999 asymptotic series, good to 1e-4 for n >= 0.5). */
static double synth_sersic_b(double n)
{
    return 2 * n - 1.0 / 3 + 4 / (405 * n) + 46 / (25515 * n * n);
}

/* Add a Sersic profile of total flux f[band] (nanomaggies), half-light radius re (pixels, major axis), axis
 * ratio q and major axis at angle theta (radians from +x toward +y) centred at (x0, y0). Normalised
 * analytically, so a source partly outside the frame keeps its true brightness; pixels within 2 px of the
 * centre are averaged over 4x4 sub-pixels so cuspy or tiny profiles keep their flux. */
static void synth_add_sersic(float *img, int size, double x0, double y0, double re, double n, double q,
                             double theta, const double f[3])
{
    double b = synth_sersic_b(n);
    double norm = pow(b, 2 * n) / (2 * M_PI * q * re * re * n * tgamma(2 * n));
    double c = cos(theta), s = sin(theta), inv_re2 = 1 / (re * re), inv_q2 = 1 / (q * q), e = 1 / (2 * n);
    double reach = fmax(3.0, 8 * re);
    int xa = (int)fmax(0, floor(x0 - reach)), xb = (int)fmin(size - 1, ceil(x0 + reach));
    int ya = (int)fmax(0, floor(y0 - reach)), yb = (int)fmin(size - 1, ceil(y0 + reach));
    size_t plane = (size_t)size * size;
    for (int y = ya; y <= yb; y++) {
        for (int x = xa; x <= xb; x++) {
            double dx = x - x0, dy = y - y0, v = 0;
            int sub = dx * dx + dy * dy < 4 ? 4 : 1;
            for (int j = 0; j < sub; j++) {
                for (int i = 0; i < sub; i++) {
                    double ddx = dx + (i + 0.5) / sub - 0.5, ddy = dy + (j + 0.5) / sub - 0.5;
                    double u = ddx * c + ddy * s, w = -ddx * s + ddy * c;
                    double r2 = (u * u + w * w * inv_q2) * inv_re2;
                    v += exp(-b * pow(r2, e));
                }
            }
            v *= norm / (sub * sub);
            size_t k = (size_t)y * size + x;
            for (int band = 0; band < 3; band++) img[band * plane + k] += (float)(f[band] * v);
        }
    }
}

/* Add a small round Gaussian knot (sigma pixels) of total flux f, normalised over its whole window even
 * where that window leaves the frame. Below 0.3 px it is a point: bilinear weights on 4 pixels. */
static void synth_add_knot(float *img, int size, double x0, double y0, double sigma, const double f[3])
{
    size_t plane = (size_t)size * size;
    if (sigma < 0.3) {
        int xi = (int)floor(x0), yi = (int)floor(y0);
        double fx = x0 - xi, fy = y0 - yi;
        for (int j = 0; j < 2; j++) {
            for (int i = 0; i < 2; i++) {
                int x = xi + i, y = yi + j;
                if (x < 0 || y < 0 || x >= size || y >= size) continue;
                double wgt = (i ? fx : 1 - fx) * (j ? fy : 1 - fy);
                for (int band = 0; band < 3; band++)
                    img[band * plane + (size_t)y * size + x] += (float)(f[band] * wgt);
            }
        }
        return;
    }
    int reach = (int)ceil(4 * sigma) + 1;
    int xc = (int)floor(x0 + 0.5), yc = (int)floor(y0 + 0.5);
    double inv2s2 = 1 / (2 * sigma * sigma), sum = 0;
    for (int y = yc - reach; y <= yc + reach; y++)
        for (int x = xc - reach; x <= xc + reach; x++)
            sum += exp(-((x - x0) * (x - x0) + (y - y0) * (y - y0)) * inv2s2);
    for (int y = yc - reach; y <= yc + reach; y++) {
        if (y < 0 || y >= size) continue;
        for (int x = xc - reach; x <= xc + reach; x++) {
            if (x < 0 || x >= size) continue;
            double v = exp(-((x - x0) * (x - x0) + (y - y0) * (y - y0)) * inv2s2) / sum;
            for (int band = 0; band < 3; band++)
                img[band * plane + (size_t)y * size + x] += (float)(f[band] * v);
        }
    }
}

/* Add comp (size x size, any scale) normalised to total flux f. Used for shapes with no closed-form
 * integral (arms, bar) that lie inside the frame. */
static void synth_add_map(float *img, int size, const float *comp, const double f[3])
{
    size_t plane = (size_t)size * size;
    double sum = 0;
    for (size_t k = 0; k < plane; k++) sum += comp[k];
    if (!(sum > 0)) return;
    for (int band = 0; band < 3; band++) {
        float a = (float)(f[band] / sum);
        float *p = img + band * plane;
        for (size_t k = 0; k < plane; k++) p[k] += a * comp[k];
    }
}

/* Disk geometry shared by the disk, its arms, bar and clumps: centre, position angle, axis ratio. Disk-plane
 * coordinates (u along the major axis, w deprojected) map to the sky as v = w q. */
typedef struct synth_disk {
    double x0, y0, theta, c, s, q;
} synth_disk;

static void synth_disk_to_sky(const synth_disk *d, double u, double w, double *x, double *y)
{
    double v = w * d->q;
    *x = d->x0 + u * d->c - v * d->s;
    *y = d->y0 + u * d->s + v * d->c;
}

/* Logarithmic spiral arms: the exponential disk (scale re/1.678) modulated by ((1 + cos psi)/2)^sharp with
 * psi = m (phi - phi0) - m hand ln(R / re) / tan(pitch), tapered inside r_in where bulge and bar dominate. */
static void synth_arms_map(float *comp, int size, const synth_disk *d, double re, int m, double pitch,
                           double phi0, int hand, int sharp, double r_in)
{
    double h = 1.2 * re / 1.678, k = hand / tan(pitch), inv_rin2 = 1 / (r_in * r_in);
    for (int y = 0; y < size; y++) {
        for (int x = 0; x < size; x++) {
            double dx = x - d->x0, dy = y - d->y0;
            double u = dx * d->c + dy * d->s, w = (-dx * d->s + dy * d->c) / d->q;
            double R = sqrt(u * u + w * w);
            double v = 0;
            if (R > 0.05) {
                double psi = m * (atan2(w, u) - phi0) - m * k * log(R / re);
                double a = 0.5 * (1 + cos(psi)), mod = a;
                for (int i = 1; i < sharp; i++) mod *= a;
                v = exp(-R / h) * mod * (1 - exp(-R * R * inv_rin2));
            }
            comp[(size_t)y * size + x] = (float)v;
        }
    }
}

/* A Ferrers (n = 2) bar in the disk plane: (1 - (rb/a)^2)^2 inside the bar's ellipse of semi-axes a, a qb,
 * at angle alpha from the disk's major axis; seen through the disk's inclination. */
static void synth_bar_map(float *comp, int size, const synth_disk *d, double a, double qb, double alpha)
{
    double ca = cos(alpha), sa = sin(alpha), inv_a2 = 1 / (a * a), inv_qb2 = 1 / (qb * qb);
    for (int y = 0; y < size; y++) {
        for (int x = 0; x < size; x++) {
            double dx = x - d->x0, dy = y - d->y0;
            double u = dx * d->c + dy * d->s, w = (-dx * d->s + dy * d->c) / d->q;
            double bs = u * ca + w * sa, bt = -u * sa + w * ca;
            double rb2 = (bs * bs + bt * bt * inv_qb2) * inv_a2;
            double t = rb2 < 1 ? 1 - rb2 : 0;
            comp[(size_t)y * size + x] = (float)(t * t);
        }
    }
}

/* Separable Gaussian blur of one plane (the PSF), reach 3.5 sigma, zero outside the frame. */
static void synth_blur(float *p, float *tmp, int size, double sigma)
{
    int reach = (int)ceil(3.5 * sigma);
    if (reach > 64) reach = 64;
    float k[129];
    double sum = 0;
    for (int i = -reach; i <= reach; i++) sum += (k[i + reach] = (float)exp(-0.5 * i * i / (sigma * sigma)));
    for (int i = 0; i <= 2 * reach; i++) k[i] = (float)(k[i] / sum);
    for (int y = 0; y < size; y++) {
        const float *row = p + (size_t)y * size;
        float *out = tmp + (size_t)y * size;
        for (int x = 0; x < size; x++) {
            int a = x - reach < 0 ? reach - x : 0, b = x + reach >= size ? reach + (size - 1 - x) : 2 * reach;
            float acc = 0;
            for (int i = a; i <= b; i++) acc += k[i] * row[x - reach + i];
            out[x] = acc;
        }
    }
    for (int y = 0; y < size; y++) {
        int a = y - reach < 0 ? reach - y : 0, b = y + reach >= size ? reach + (size - 1 - y) : 2 * reach;
        float *out = p + (size_t)y * size;
        for (int x = 0; x < size; x++) out[x] = 0;
        for (int i = a; i <= b; i++) {
            const float *src = tmp + (size_t)(y - reach + i) * size;
            float ki = k[i];
            for (int x = 0; x < size; x++) out[x] += ki * src[x];
        }
    }
}

void io_synth_work_init(io_synth_work *w, int size)
{
    MC_ASSERT(size > 0);
    size_t plane = (size_t)size * size;
    w->size = size;
    w->img = (float *)mc_malloc_aligned(3 * plane * sizeof(float));
    w->tmp = (float *)mc_malloc_aligned(plane * sizeof(float));
    w->comp = (float *)mc_malloc_aligned(plane * sizeof(float));
}

void io_synth_work_free(io_synth_work *w)
{
    free(w->img);
    free(w->tmp);
    free(w->comp);
    memset(w, 0, sizeof *w);
}

/* Astronomical position angle (degrees east of north, [0, 180)) of a major axis at theta radians from +x
 * toward +y, with +y north and +x west. */
static double synth_pa_deg(double theta)
{
    double pa = atan2(-cos(theta), sin(theta)) * 180 / M_PI;
    pa = fmod(pa, 180.0);
    return pa < 0 ? pa + 180 : pa;
}

static void synth_clump_add(io_synth_truth *t, float *img, int size, double x, double y, double sigma,
                            const double f[3])
{
    synth_add_knot(img, size, x, y, sigma, f);
    if (t->n_clumps >= IO_SYNTH_MAX_CLUMPS) return;
    t->clump_xy[t->n_clumps][0] = x + 1; /* FITS pixel coordinates */
    t->clump_xy[t->n_clumps][1] = y + 1;
    for (int b = 0; b < 3; b++) t->clump_flux[t->n_clumps][b] = f[b];
    t->n_clumps++;
}

void io_synth_galaxy_render(const io_synth_opts *o, int64_t index, io_synth_work *w, io_synth_truth *t)
{
    const int S = o->size;
    MC_ASSERT(w->size == S && o->pixscale > 0);
    const size_t plane = (size_t)S * S;
    float *img = w->img;
    memset(img, 0, 3 * plane * sizeof(float));
    memset(t, 0, sizeof *t);
    synth_rng g;
    synth_rng_init(&g, o->seed, (uint64_t)index, SYNTH_STREAM_MORPH);
    const double pxs = o->pixscale, cx = (S - 1) / 2.0, cy = (S - 1) / 2.0;
    double main_flux[3] = {0, 0, 0}, f[3];

    /* observing conditions: seeing worse in g than in z, as DECam; depth varies between cutouts */
    double fwhm_g = synth_uniform(&g, 1.2, 1.7), depth = synth_uniform(&g, 0.8, 1.25);
    const double fwhm_ratio[3] = {1.0, 0.92, 0.85};
    for (int b = 0; b < 3; b++) {
        t->psf_fwhm_arcsec[b] = fwhm_g * fwhm_ratio[b];
        t->sky_sigma[b] = synth_sky_sigma[b] * depth * pxs / 0.262;
    }

    /* the main galaxy: r < 17.7 like the GZ DECaLS selection; sizes are fractions of the frame because Galaxy
     * Zoo frames each cutout to its galaxy */
    double mag_r = synth_uniform(&g, 14.5, 17.7), F = pow(10.0, (22.5 - mag_r) / 2.5);
    double theta = synth_uniform(&g, 0, M_PI), cosi = synth_u01(&g);
    synth_disk d = {cx,         cy,         theta,
                    cos(theta), sin(theta), sqrt(cosi * cosi + 0.12 * 0.12 * (1 - cosi * cosi))};
    double re_d = S * synth_uniform(&g, 0.055, 0.15), re_main = re_d;
    double cls = synth_u01(&g);

    if (cls < 0.28) {
        /* elliptical: one red spheroid */
        t->morph = "elliptical";
        double re = S * synth_uniform(&g, 0.04, 0.12), n = synth_uniform(&g, 2.5, 5),
               q = synth_uniform(&g, 0.5, 1);
        synth_sed(F, synth_uniform(&g, 0.72, 0.92), synth_uniform(&g, 0.38, 0.52), f);
        synth_add_sersic(img, S, cx, cy, re, n, q, theta, f);
        for (int b = 0; b < 3; b++) main_flux[b] += f[b];
        t->bulge_frac = 1;
        t->axis_ratio = q;
        re_main = re;
    } else {
        int lenticular = cls < 0.45, clumpy = cls >= 0.90;
        t->morph = lenticular ? "lenticular" : clumpy ? "clumpy" : "spiral";
        double bt = lenticular ? synth_uniform(&g, 0.35, 0.7)
                    : clumpy   ? synth_uniform(&g, 0, 0.05)
                               : synth_uniform(&g, 0.03, 0.35);
        int bar = !lenticular && !clumpy && synth_u01(&g) < 0.35;
        double ua = synth_u01(&g);
        int arms = lenticular || clumpy ? 0 : ua < 0.6 ? 2 : ua < 0.85 ? 3 : 4;
        double fbar = bar ? synth_uniform(&g, 0.06, 0.15) : 0;
        int nclump = clumpy ? synth_int(&g, 6, 14) : arms && synth_u01(&g) < 0.5 ? synth_int(&g, 2, 8) : 0;
        double fclump[IO_SYNTH_MAX_CLUMPS], fcl = 0;
        for (int i = 0; i < nclump; i++)
            fcl += fclump[i] = clumpy ? synth_uniform(&g, 0.015, 0.035) : synth_uniform(&g, 0.008, 0.025);
        double fdisk = 1 - bt - fbar - fcl;
        double farm = arms ? synth_uniform(&g, 0.25, 0.5) : 0;
        t->bulge_frac = bt > 0.005 ? bt : 0; /* below that no bulge is drawn */
        t->axis_ratio = d.q;
        t->bar = bar;
        t->arms = arms;
        if (bar) t->morph = "barred_spiral";

        /* bulge: redder, rounder than the disk, never flatter */
        if (bt > 0.005) {
            double re_b = re_d * synth_uniform(&g, 0.15, 0.35), n_b = synth_uniform(&g, 1.5, 4);
            double q_b = fmax(d.q, synth_uniform(&g, 0.7, 1));
            synth_sed(F * bt, synth_uniform(&g, 0.72, 0.92), synth_uniform(&g, 0.38, 0.52), f);
            synth_add_sersic(img, S, cx, cy, re_b, n_b, q_b, theta, f);
            for (int b = 0; b < 3; b++) main_flux[b] += f[b];
        }
        /* smooth exponential disk; a clumpy galaxy's disk is young and blue */
        double gr = clumpy ? synth_uniform(&g, 0.25, 0.45) : synth_uniform(&g, 0.45, 0.7);
        double rz = clumpy ? synth_uniform(&g, 0.1, 0.3) : synth_uniform(&g, 0.25, 0.42);
        synth_sed(F * fdisk * (1 - farm), gr, rz, f);
        synth_add_sersic(img, S, cx, cy, re_d, 1.0, d.q, theta, f);
        for (int b = 0; b < 3; b++) main_flux[b] += f[b];

        double bar_len = re_d * synth_uniform(&g, 0.6, 1.2);
        if (bar) {
            synth_bar_map(w->comp, S, &d, bar_len, synth_uniform(&g, 0.25, 0.4), synth_uniform(&g, 0, M_PI));
            synth_sed(F * fbar, synth_uniform(&g, 0.65, 0.85), synth_uniform(&g, 0.35, 0.48), f);
            synth_add_map(img, S, w->comp, f);
            for (int b = 0; b < 3; b++) main_flux[b] += f[b];
        }
        double pitch = synth_uniform(&g, 10, 30) * M_PI / 180, phi0 = synth_uniform(&g, 0, 2 * M_PI);
        int hand = synth_u01(&g) < 0.5 ? -1 : 1;
        if (arms) {
            double r_in = bar ? bar_len : re_d * synth_uniform(&g, 0.3, 0.6);
            synth_arms_map(w->comp, S, &d, re_d, arms, pitch, phi0, hand, synth_int(&g, 2, 6), r_in);
            synth_sed(F * fdisk * farm, synth_uniform(&g, 0.2, 0.45), synth_uniform(&g, 0.1, 0.28), f);
            synth_add_map(img, S, w->comp, f);
            for (int b = 0; b < 3; b++) main_flux[b] += f[b];
        }
        /* star-forming clumps: compact blue knots, on the arms of a spiral, anywhere in a clumpy disk */
        for (int i = 0; i < nclump; i++) {
            double R, phi;
            if (arms) {
                R = re_d * synth_uniform(&g, 0.5, 2.2);
                phi = phi0 + 2 * M_PI * synth_int(&g, 0, arms - 1) / arms +
                      hand * log(R / re_d) / tan(pitch) + 0.08 * synth_normal(&g);
            } else {
                /* surface density exp(-R/h) puts R ~ Gamma(2, h) */
                R = fmin(-(re_d / 1.678) * (log(1 - synth_u01(&g)) + log(1 - synth_u01(&g))), 2.5 * re_d);
                phi = synth_uniform(&g, 0, 2 * M_PI);
            }
            double x, y;
            synth_disk_to_sky(&d, R * cos(phi), R * sin(phi), &x, &y);
            synth_sed(F * fclump[i], synth_uniform(&g, -0.1, 0.25), synth_uniform(&g, -0.2, 0.1), f);
            synth_clump_add(t, img, S, x, y, synth_uniform(&g, 0.4, 1.0), f);
            for (int b = 0; b < 3; b++) main_flux[b] += f[b];
        }
    }
    for (int b = 0; b < 3; b++) t->mag[b] = 22.5 - 2.5 * log10(main_flux[b]);
    t->re_arcsec = re_main * pxs;
    t->pa_deg = synth_pa_deg(theta);

    /* a companion; close ones are mergers with tidal tails */
    if (synth_u01(&g) < 0.15) {
        t->companion = 1;
        t->merger = synth_u01(&g) < 0.45;
        double dist = S * (t->merger ? synth_uniform(&g, 0.10, 0.2) : synth_uniform(&g, 0.2, 0.4));
        double ang = synth_uniform(&g, 0, 2 * M_PI);
        double x = cx + dist * cos(ang), y = cy + dist * sin(ang);
        double mag = mag_r + (t->merger ? synth_uniform(&g, 0.3, 1.5) : synth_uniform(&g, 0.8, 3.0));
        double fc = pow(10.0, (22.5 - mag) / 2.5);
        if (synth_u01(&g) < 0.5) {
            synth_sed(fc, synth_uniform(&g, 0.72, 0.92), synth_uniform(&g, 0.38, 0.52), f);
            synth_add_sersic(img, S, x, y, re_main * synth_uniform(&g, 0.3, 0.6), synth_uniform(&g, 2, 4),
                             synth_uniform(&g, 0.6, 1), synth_uniform(&g, 0, M_PI), f);
        } else {
            synth_sed(fc, synth_uniform(&g, 0.45, 0.7), synth_uniform(&g, 0.25, 0.42), f);
            synth_add_sersic(img, S, x, y, re_main * synth_uniform(&g, 0.3, 0.7), 1.0,
                             synth_uniform(&g, 0.3, 1), synth_uniform(&g, 0, M_PI), f);
        }
        if (t->merger) {
            int ntail = synth_u01(&g) < 0.5 ? 1 : 2;
            for (int k = 0; k < ntail; k++) {
                /* an arc of diffuse knots sweeping out from the main galaxy, the first away from the
                 * companion */
                double a0 = ang + (k == 0 ? M_PI : 0) + 0.5 * synth_normal(&g);
                double sweep = (synth_u01(&g) < 0.5 ? -1 : 1) * synth_uniform(&g, 0.8, 1.8);
                double r0 = 0.8 * re_main, r1 = fmin(3.0 * re_main, 0.48 * S),
                       ftail = F * synth_uniform(&g, 0.03, 0.08);
                double sigma = synth_uniform(&g, 1.5, 3.0), wsum = 0;
                for (int i = 0; i < 32; i++) wsum += exp(-i / 16.0);
                synth_sed(ftail, synth_uniform(&g, 0.45, 0.7), synth_uniform(&g, 0.25, 0.42), f);
                for (int i = 0; i < 32; i++) {
                    double s = i / 31.0, r = r0 + (r1 - r0) * s, a = a0 + sweep * s,
                           wf = exp(-i / 16.0) / wsum;
                    double fk[3] = {f[0] * wf, f[1] * wf, f[2] * wf};
                    synth_add_knot(img, S, cx + r * cos(a), cy + r * sin(a), sigma, fk);
                }
            }
        }
    }

    /* background galaxies: about 2.5 per 33.5" x 33.5" frame (r < 23.5), kept off the target's centre */
    t->n_field = synth_poisson(&g, 2.5 * (S * pxs / 33.5) * (S * pxs / 33.5));
    for (int i = 0; i < t->n_field; i++) {
        double x, y;
        int tries = 0;
        do {
            x = synth_uniform(&g, -0.5, S - 0.5);
            y = synth_uniform(&g, -0.5, S - 0.5);
        } while (hypot(x - cx, y - cy) < 0.1 * S && ++tries < 8);
        double fl = pow(10.0, (22.5 - synth_uniform(&g, 19.5, 23.5)) / 2.5);
        synth_sed(fl, synth_uniform(&g, 0.4, 1.6), synth_uniform(&g, 0.3, 1.0), f);
        double n = synth_u01(&g) < 0.5 ? 1.0 : synth_uniform(&g, 2, 4);
        synth_add_sersic(img, S, x, y, synth_uniform(&g, 0.2, 1.2) / pxs, n, synth_uniform(&g, 0.3, 1),
                         synth_uniform(&g, 0, M_PI), f);
    }
    /* a star or two: points (the PSF below gives them their shape), colours along the stellar locus */
    double us = synth_u01(&g);
    t->n_stars = us < 0.6 ? 0 : us < 0.9 ? 1 : 2;
    for (int i = 0; i < t->n_stars; i++) {
        double x, y;
        int tries = 0;
        do {
            x = synth_uniform(&g, 0, S - 1);
            y = synth_uniform(&g, 0, S - 1);
        } while (hypot(x - cx, y - cy) < 0.15 * S && ++tries < 8);
        double gr = synth_uniform(&g, 0.3, 1.4);
        synth_sed(pow(10.0, (22.5 - synth_uniform(&g, 15.5, 21.5)) / 2.5), gr,
                  0.1 + 0.6 * (gr - 0.3) + synth_uniform(&g, -0.1, 0.1), f);
        synth_add_knot(img, S, x, y, 0, f);
    }

    /* PSF (a Gaussian of the band's FWHM), then sky noise plus Gaussian-approximated photon noise */
    synth_rng nz;
    synth_rng_init(&nz, o->seed, (uint64_t)index, SYNTH_STREAM_NOISE);
    for (int b = 0; b < 3; b++) {
        float *p = img + b * plane;
        synth_blur(p, w->tmp, S, t->psf_fwhm_arcsec[b] / 2.354820045 / pxs);
        double s2 = t->sky_sigma[b] * t->sky_sigma[b], inv_gain = 1 / synth_gain[b];
        for (size_t k = 0; k < plane; k++) {
            double v = p[k];
            p[k] = (float)(v + sqrt(s2 + (v > 0 ? v * inv_gain : 0)) * synth_normal(&nz));
        }
    }
}

/* ---- file writers ------------------------------------------------------------------------------------- */

static int synth_mkdirs(const char *path, char *err)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0) return 0;
    if (n >= sizeof buf) return mc_fail(err, "%s: path too long", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return mc_fail(err, "%s: cannot create folder: %s", buf, strerror(errno));
            buf[i] = c;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return mc_fail(err, "%s: not a folder", path);
    return 0;
}

static int synth_bytes_write(const char *path, const void *data, size_t n, char *err)
{
    FILE *fp = fopen(path, "wb");
    if (!fp) return mc_fail(err, "%s: cannot create: %s", path, strerror(errno));
    size_t put = n ? fwrite(data, 1, n, fp) : 0;
    int bad = put != n || ferror(fp);
    if (fclose(fp) != 0) bad = 1;
    if (bad) return mc_fail(err, "%s: write failed: %s", path, strerror(errno));
    return 0;
}

static int synth_fits_status(int status, const char *path, char *err)
{
    char text[FLEN_STATUS] = "";
    fits_get_errstatus(status, text);
    fits_clear_errmsg();
    return mc_fail(err, "%s: cannot write FITS: CFITSIO status %d: %s", path, status, text);
}

/* Write nplane planes (g, r, z order, any of them) as the cutout service does: BITPIX -32, planes in
 * NAXIS3, BANDS/BANDn, TAN WCS with CRVAL at the galaxy and CRPIX at the centre pixel ((size+1)/2), CD for
 * pixscale with north up and east left. quantize > 0 writes a tile-compressed image instead (RICE_1, one
 * tile per plane so each band's noise is estimated over the whole plane, subtractive dithering with a
 * fixed seed so the bytes are reproducible). data_start, when given, receives the data's byte offset. */
static int synth_fits_write(const char *path, const float *pix, int size, int naxis, const char *bands,
                            const io_synth_opts *o, const io_synth_row *r, const io_synth_truth *t,
                            double quantize, int dither_seed, long long *data_start, char *err)
{
    int st = 0, nplane = (int)strlen(bands);
    MC_ASSERT(nplane >= 1 && nplane <= 3 && (naxis == 3 || nplane == 1));
    if (unlink(path) != 0 && errno != ENOENT)
        return mc_fail(err, "%s: cannot replace: %s", path, strerror(errno));
    fitsfile *f = NULL;
    /* the disk-file variant: an output folder with '[' or '(' in its name is not parsed as CFITSIO syntax */
    fits_create_diskfile(&f, path, &st);
    if (st) return synth_fits_status(st, path, err);
    if (quantize > 0) {
        long tile[3] = {size, size, 1};
        fits_set_compression_type(f, RICE_1, &st);
        fits_set_tile_dim(f, naxis, tile, &st);
        fits_set_quantize_level(f, (float)quantize, &st);
        fits_set_quantize_method(f, SUBTRACTIVE_DITHER_1, &st);
        fits_set_dither_seed(f, dither_seed, &st);
    }
    long naxes[3] = {size, size, nplane};
    fits_create_img(f, FLOAT_IMG, naxis, naxes, &st);
    double deg = o->pixscale / 3600, crpix = (size + 1) / 2.0, imsize = size;
    fits_write_key_str(f, "SURVEY", "synthetic", "morphcat synth: DECaLS-like, not real data", &st);
    fits_write_key_str(f, "VERSION", MC_VERSION, "morphcat version that wrote it", &st);
    fits_write_key_str(f, "IMAGETYP", "image", NULL, &st);
    fits_write_key_str(f, "BANDS", bands, NULL, &st);
    for (int b = 0; b < nplane; b++) {
        char key[16], val[2] = {bands[b], 0};
        snprintf(key, sizeof key, "BAND%d", b);
        fits_write_key_str(f, key, val, NULL, &st);
    }
    fits_write_key_str(f, "BUNIT", "nanomaggy", "AB zero point 22.5 mag", &st);
    fits_write_key_str(f, "CTYPE1", "RA---TAN", "TANgent plane", &st);
    fits_write_key_str(f, "CTYPE2", "DEC--TAN", "TANgent plane", &st);
    fits_write_key_dbl(f, "CRVAL1", r->ra, -15, "Reference RA", &st);
    fits_write_key_dbl(f, "CRVAL2", r->dec, -15, "Reference Dec", &st);
    fits_write_key_dbl(f, "CRPIX1", crpix, -15, "Reference x", &st);
    fits_write_key_dbl(f, "CRPIX2", crpix, -15, "Reference y", &st);
    fits_write_key_dbl(f, "CD1_1", -deg, -15, "CD matrix", &st);
    fits_write_key_dbl(f, "CD1_2", 0.0, -15, "CD matrix", &st);
    fits_write_key_dbl(f, "CD2_1", 0.0, -15, "CD matrix", &st);
    fits_write_key_dbl(f, "CD2_2", deg, -15, "CD matrix", &st);
    fits_write_key_dbl(f, "IMAGEW", imsize, -15, "Image width", &st);
    fits_write_key_dbl(f, "IMAGEH", imsize, -15, "Image height", &st);
    fits_write_key_str(f, "OBJID", r->id_str, "manifest id_str", &st);
    fits_write_key_str(f, "MCMORPH", t->morph, "synth truth: morphology class", &st);
    fits_write_key_fixdbl(f, "MCMAG_R", t->mag[1], 4, "synth truth: r AB mag of the main galaxy", &st);
    fits_write_key_lng(f, "MCCLUMPS", t->n_clumps, "synth truth: star-forming clumps (clumps.csv)", &st);
    fits_write_img(f, TFLOAT, 1, (LONGLONG)size * size * nplane, (void *)pix, &st);
    if (data_start && !st) {
        LONGLONG hs = 0, ds = 0, de = 0;
        fits_get_hduaddrll(f, &hs, &ds, &de, &st);
        *data_start = (long long)ds;
    }
    int cst = 0;
    fits_close_file(f, &cst);
    if (st || cst) return synth_fits_status(st ? st : cst, path, err);
    return 0;
}

/* The colour composite of a g,r,z cube: z -> R, r -> G, g -> B, each divided by the Galaxy Zoo DECaLS scale
 * (0.019, 0.014, 0.008 nanomaggies), then asinh, mapped from asinh(-0.5)..asinh(300) to 0..255 (zoobot.md
 * 2.4 without the desaturation step). Row 0 of the image is FITS row 1, unflipped, as the released GZ DECaLS
 * images are. */
static void synth_rgb(const float *img, int size, uint8_t *rgb)
{
    const double scale[3] = {0.019, 0.014, 0.008}; /* for R, G, B */
    const int plane_of[3] = {2, 1, 0};
    double mn = asinh(-0.5), mx = asinh(300.0);
    size_t plane = (size_t)size * size;
    for (size_t k = 0; k < plane; k++) {
        for (int c = 0; c < 3; c++) {
            double v = (asinh(img[plane_of[c] * plane + k] / scale[c]) - mn) / (mx - mn);
            v = v < 0 ? 0 : v > 1 ? 1 : v;
            rgb[3 * k + c] = (uint8_t)(v * 255.0);
        }
    }
}

typedef struct synth_buf {
    uint8_t *p;
    size_t n, cap;
} synth_buf;

static void synth_buf_put(synth_buf *b, const void *data, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 4096;
        b->p = (uint8_t *)mc_realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

/* Encoding a well-formed image into memory cannot fail for a user's reason: libpng and libjpeg errors
 * here are broken invariants. */
static void synth_png_error(png_structp png, png_const_charp msg)
{
    (void)png;
    mc_abort_at(__FILE__, __LINE__, msg);
}

static void synth_png_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static void synth_png_put(png_structp png, png_bytep data, size_t n)
{
    synth_buf_put((synth_buf *)png_get_io_ptr(png), data, n);
}

static void synth_png_flush(png_structp png)
{
    (void)png;
}

static void synth_png_encode(const uint8_t *rgb, int size, synth_buf *out)
{
    png_structp png =
        png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, synth_png_error, synth_png_warning);
    MC_ASSERT(png);
    png_infop info = png_create_info_struct(png);
    MC_ASSERT(info);
    png_set_write_fn(png, out, synth_png_put, synth_png_flush);
    png_set_IHDR(png, info, (png_uint_32)size, (png_uint_32)size, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < size; y++) png_write_row(png, (png_const_bytep)(rgb + (size_t)3 * size * y));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
}

static void synth_jpeg_error(j_common_ptr c)
{
    char msg[JMSG_LENGTH_MAX];
    c->err->format_message(c, msg);
    mc_abort_at(__FILE__, __LINE__, msg);
}

static void synth_jpeg_encode(const uint8_t *rgb, int size, synth_buf *out)
{
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    unsigned char *mem = NULL;
    unsigned long len = 0;
    ci.err = jpeg_std_error(&jerr);
    jerr.error_exit = synth_jpeg_error;
    jpeg_create_compress(&ci);
    jpeg_mem_dest(&ci, &mem, &len);
    ci.image_width = (JDIMENSION)size;
    ci.image_height = (JDIMENSION)size;
    ci.input_components = 3;
    ci.in_color_space = JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, 90, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)3 * size * ci.next_scanline);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    synth_buf_put(out, mem, len);
    jpeg_destroy_compress(&ci);
    free(mem);
}

static uint32_t synth_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Overwrite the first IDAT chunk's payload with seeded garbage led by 0x00 (zlib compression method 0 does
 * not exist), leaving its CRC stale: both libpng and PIL refuse it, while signature and IHDR still look
 * fine. */
static void synth_png_corrupt(synth_buf *b, synth_rng *r)
{
    size_t at = 8;
    while (at + 12 <= b->n) {
        uint32_t len = synth_be32(b->p + at);
        if (!memcmp(b->p + at + 4, "IDAT", 4) && len >= 2 && at + 8 + len <= b->n) {
            uint8_t *d = b->p + at + 8;
            for (uint32_t i = 0; i < len; i++) d[i] = (uint8_t)synth_next(r);
            d[0] = 0x00;
            return;
        }
        at += 12 + (size_t)len;
    }
    MC_ASSERT(!"PNG without IDAT");
}

/* Offset of the first start-of-scan marker (FF DA) in a JPEG. */
static size_t synth_jpeg_sos(const synth_buf *b)
{
    for (size_t i = 2; i + 1 < b->n; i++)
        if (b->p[i] == 0xff && b->p[i + 1] == 0xda) return i;
    MC_ASSERT(!"JPEG without SOS");
    return 0;
}

static int64_t synth_file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
}

/* Write the file of one row, if it has one; *bytes receives its size. */
static int synth_row_emit(const io_synth_opts *o, const io_synth_row *r, io_synth_work *w,
                          const io_synth_truth *t, char *path, size_t path_len, int64_t *bytes, char *err)
{
    const int S = o->size;
    const size_t plane = (size_t)S * S;
    *bytes = 0;
    path[0] = '\0';
    if (!r->file_loc[0]) return 0;
    if ((size_t)snprintf(path, path_len, "%s/%s", o->out_dir, r->file_loc) >= path_len)
        return mc_fail(err, "%s/%s: path too long", o->out_dir, r->file_loc);
    {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        if (synth_mkdirs(dir, err)) return -1;
    }
    synth_rng br;
    synth_rng_init(&br, o->seed, (uint64_t)r->index, SYNTH_STREAM_BYTES);
    int dither = 1 + (int)(synth_next(&br) % 10000); /* CFITSIO wants 1..10000; 0 would mean "the clock" */
    int rc = 0;
    switch (r->broken) {
    case IO_SYNTH_BROKEN_NONE:
    case IO_SYNTH_BROKEN_BAD_RA:
    case IO_SYNTH_BROKEN_CORRUPT_PNG:
    case IO_SYNTH_BROKEN_TRUNCATED_JPEG:
        if (r->fmt == IO_SYNTH_FMT_FZ || r->fmt == IO_SYNTH_FMT_FITS) {
            rc = synth_fits_write(path, w->img, S, 3, "grz", o, r, t,
                                  r->fmt == IO_SYNTH_FMT_FZ ? o->quantize : 0, dither, NULL, err);
        } else {
            uint8_t *rgb = (uint8_t *)mc_malloc(3 * plane);
            synth_buf b = {0};
            synth_rgb(w->img, S, rgb);
            if (r->fmt == IO_SYNTH_FMT_PNG) {
                synth_png_encode(rgb, S, &b);
                if (r->broken == IO_SYNTH_BROKEN_CORRUPT_PNG) synth_png_corrupt(&b, &br);
            } else {
                synth_jpeg_encode(rgb, S, &b);
                size_t sos = synth_jpeg_sos(&b);
                b.n = sos + (b.n - sos) / 2; /* half the scan data, no EOI */
            }
            rc = synth_bytes_write(path, b.p, b.n, err);
            free(b.p);
            free(rgb);
        }
        break;
    case IO_SYNTH_BROKEN_TRUNCATED_FITS: {
        long long ds = 0;
        rc = synth_fits_write(path, w->img, S, 3, "grz", o, r, t, 0, dither, &ds, err);
        /* 1.5 planes of data: not a whole FITS block, not a whole plane */
        if (!rc && truncate(path, (off_t)(ds + (long long)(plane * 3 / 2) * 4 + 1)) != 0)
            rc = mc_fail(err, "%s: cannot truncate: %s", path, strerror(errno));
        break;
    }
    case IO_SYNTH_BROKEN_GARBAGE_FITS: {
        uint8_t junk[3 * 2880];
        for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)synth_next(&br);
        junk[0] = 0x00; /* never "SIMPLE" */
        rc = synth_bytes_write(path, junk, sizeof junk, err);
        break;
    }
    case IO_SYNTH_BROKEN_MISSING_FILE:
        /* a stale file from an earlier run would make this row good */
        if (unlink(path) != 0 && errno != ENOENT)
            rc = mc_fail(err, "%s: cannot remove: %s", path, strerror(errno));
        path[0] = '\0';
        break;
    case IO_SYNTH_BROKEN_EMPTY_FILE:
        rc = synth_bytes_write(path, "", 0, err);
        break;
    case IO_SYNTH_BROKEN_ZERO_BAND:
        memset(w->img + 2 * plane, 0, plane * sizeof(float));
        rc = synth_fits_write(path, w->img, S, 3, "grz", o, r, t, 0, dither, NULL, err);
        break;
    case IO_SYNTH_BROKEN_NAN_CUBE:
        for (size_t k = 0; k < 3 * plane; k++) w->img[k] = NAN;
        rc = synth_fits_write(path, w->img, S, 3, "grz", o, r, t, 0, dither, NULL, err);
        break;
    case IO_SYNTH_BROKEN_IMAGE_2D:
        rc = synth_fits_write(path, w->img + plane, S, 2, "r", o, r, t, 0, dither, NULL, err);
        break;
    case IO_SYNTH_BROKEN_TWO_PLANES:
        rc = synth_fits_write(path, w->img, S, 3, "gr", o, r, t, 0, dither, NULL, err);
        break;
    default:
        MC_ASSERT(!"unhandled broken kind");
    }
    if (!rc && path[0]) *bytes = synth_file_size(path);
    return rc;
}

static void synth_opts_check(const io_synth_opts *o)
{
    MC_ASSERT(o->out_dir && o->out_dir[0]);
    MC_ASSERT(o->n >= 1 && o->size >= 8 && o->pixscale > 0 && o->quantize >= 0);
    MC_ASSERT(o->broken >= 0 && o->png_fraction >= 0 && o->png_fraction <= 1);
    MC_ASSERT(o->plain_fraction >= 0 && o->plain_fraction <= 1);
}

int io_synth_row_write(const io_synth_opts *o, int64_t index, char *path_out, size_t path_len, char *err)
{
    synth_opts_check(o);
    if (index < 0 || index >= o->n)
        return mc_fail(err, "row %lld is outside 0..%lld", (long long)index, (long long)(o->n - 1));
    io_synth_row r;
    io_synth_truth t;
    io_synth_work w;
    int64_t bytes = 0;
    io_synth_row_plan(o, index, &r);
    io_synth_work_init(&w, o->size);
    io_synth_galaxy_render(o, index, &w, &t);
    int rc = synth_row_emit(o, &r, &w, &t, path_out, path_len, &bytes, err);
    io_synth_work_free(&w);
    return rc;
}

/* The table files are written beside their final names and renamed at the end, so an interrupted run
 * never leaves a manifest that lists files not yet written. */
enum { SYNTH_T_MANIFEST, SYNTH_T_BROKEN, SYNTH_T_TRUTH, SYNTH_T_CLUMPS, SYNTH_T_COUNT };
static const char *const synth_table_name[SYNTH_T_COUNT] = {"manifest.csv", "broken.csv", "truth.csv",
                                                            "clumps.csv"};

int io_synth_survey_write(const io_synth_opts *o, io_synth_summary *s, char *err)
{
    synth_opts_check(o);
    double t0 = mc_now();
    memset(s, 0, sizeof *s);
    char cut[4096], fin[SYNTH_T_COUNT][4096], tmp[SYNTH_T_COUNT][4096 + 8];
    snprintf(cut, sizeof cut, "%s/cutouts", o->out_dir);
    if (synth_mkdirs(cut, err)) return -1;
    FILE *fp[SYNTH_T_COUNT] = {0};
    int rc = 0;
    for (int k = 0; k < SYNTH_T_COUNT && !rc; k++) {
        snprintf(fin[k], sizeof fin[k], "%s/%s", o->out_dir, synth_table_name[k]);
        snprintf(tmp[k], sizeof tmp[k], "%s.tmp", fin[k]);
        if (!(fp[k] = fopen(tmp[k], "w")))
            rc = mc_fail(err, "%s: cannot create: %s", tmp[k], strerror(errno));
    }
    if (!rc) {
        fprintf(fp[SYNTH_T_MANIFEST], "id_str,file_loc,ra,dec\n");
        fprintf(fp[SYNTH_T_BROKEN], "id_str,file_loc,failure,expected_status,detail\n");
        fprintf(fp[SYNTH_T_TRUTH],
                "id_str,morph,mag_g,mag_r,mag_z,re_arcsec,bulge_frac,axis_ratio,pa_deg,arms,bar,"
                "clumps,companion,merger,field_sources,stars,psf_fwhm_r_arcsec,sky_sigma_r\n");
        fprintf(fp[SYNTH_T_CLUMPS], "id_str,x,y,flux_g,flux_r,flux_z\n");
    }
    io_synth_work w;
    io_synth_work_init(&w, o->size);
    char path[4096 + 128];
    for (int64_t i = 0; i < o->n && !rc; i++) {
        io_synth_row r;
        io_synth_truth t;
        int64_t bytes = 0;
        io_synth_row_plan(o, i, &r);
        io_synth_galaxy_render(o, i, &w, &t);
        if ((rc = synth_row_emit(o, &r, &w, &t, path, sizeof path, &bytes, err))) break;
        s->rows++;
        s->bytes += bytes;
        if (r.broken)
            s->broken++;
        else if (r.fmt == IO_SYNTH_FMT_FZ)
            s->fz++;
        else if (r.fmt == IO_SYNTH_FMT_FITS)
            s->fits++;
        else if (r.fmt == IO_SYNTH_FMT_PNG)
            s->png++;
        s->radec_empty += r.radec_empty;

        FILE *m = fp[SYNTH_T_MANIFEST];
        if (r.radec_empty)
            fprintf(m, "%s,%s,,\n", r.id_str, r.file_loc);
        else if (r.broken == IO_SYNTH_BROKEN_BAD_RA)
            fprintf(m, "%s,%s,abc,%.8f\n", r.id_str, r.file_loc, r.dec);
        else
            fprintf(m, "%s,%s,%.8f,%.8f\n", r.id_str, r.file_loc, r.ra, r.dec);
        if (r.broken)
            fprintf(fp[SYNTH_T_BROKEN], "%s,%s,%s,%s,\"%s\"\n", r.id_str, r.file_loc,
                    io_synth_broken_name(r.broken), mc_row_status_name(io_synth_broken_status(r.broken)),
                    io_synth_broken_detail(r.broken));
        fprintf(fp[SYNTH_T_TRUTH],
                "%s,%s,%.4f,%.4f,%.4f,%.3f,%.4f,%.4f,%.2f,%d,%d,%d,%d,%d,%d,%d,%.3f,%.5f\n", r.id_str,
                t.morph, t.mag[0], t.mag[1], t.mag[2], t.re_arcsec, t.bulge_frac, t.axis_ratio, t.pa_deg,
                t.arms, t.bar, t.n_clumps, t.companion, t.merger, t.n_field, t.n_stars, t.psf_fwhm_arcsec[1],
                t.sky_sigma[1]);
        for (int c = 0; c < t.n_clumps; c++)
            fprintf(fp[SYNTH_T_CLUMPS], "%s,%.3f,%.3f,%.4f,%.4f,%.4f\n", r.id_str, t.clump_xy[c][0],
                    t.clump_xy[c][1], t.clump_flux[c][0], t.clump_flux[c][1], t.clump_flux[c][2]);
    }
    io_synth_work_free(&w);
    for (int k = 0; k < SYNTH_T_COUNT; k++) {
        if (!fp[k]) continue;
        int bad = ferror(fp[k]);
        if (fclose(fp[k]) != 0) bad = 1;
        if (bad && !rc) rc = mc_fail(err, "%s: write failed: %s", tmp[k], strerror(errno));
    }
    for (int k = 0; k < SYNTH_T_COUNT; k++) {
        if (rc) {
            unlink(tmp[k]);
        } else if (rename(tmp[k], fin[k]) != 0) {
            rc = mc_fail(err, "%s: cannot rename to %s: %s", tmp[k], fin[k], strerror(errno));
        } else {
            s->bytes += synth_file_size(fin[k]);
        }
    }
    s->seconds = mc_now() - t0;
    return rc;
}
