/* io/synth.h: a synthetic survey for the demo and the tests: DECaLS-style g,r,z cutouts of made-up galaxies
 * (FITS with a TAN WCS, in nanomaggies), a manifest, a few PNG composites and a set of deliberately broken
 * entries. Deterministic: every row is seeded from (seed, row index) alone, so any one file can be rebuilt
 * by itself. It is not a physical simulation and reads nothing; decoding cutouts lives in io/cutout.h. */
#ifndef IO_SYNTH_H
#define IO_SYNTH_H

#include "mc.h"

#define IO_SYNTH_MAX_CLUMPS 16

typedef struct io_synth_opts {
    const char *out_dir; /* DIR: receives DIR/cutouts/..., manifest.csv, broken.csv, truth.csv, clumps.csv */
    int64_t n;           /* manifest rows, broken ones included (2000) */
    int size;            /* cutout side, pixels (128) */
    uint64_t seed;       /* survey seed (1) */
    int64_t broken;      /* broken rows, spread evenly through the manifest (12: one of each kind) */
    double png_fraction; /* rows rendered as PNG colour composites instead of FITS (0.05) */
    double plain_fraction; /* good FITS rows written uncompressed, like the cutout service's files (0.02) */
    double pixscale;       /* arcsec per pixel (0.262, DECam) */
    double quantize; /* tile compression: quantisation step = sky sigma / quantize (4, fpack's default) */
} io_synth_opts;

void io_synth_opts_default(io_synth_opts *o);

/* What a row is written as. */
typedef enum {
    IO_SYNTH_FMT_NONE = 0, /* no file (a missing file or an empty file_loc) */
    IO_SYNTH_FMT_FZ,       /* tile-compressed FITS (RICE_1, float quantisation), .fits.fz */
    IO_SYNTH_FMT_FITS,     /* plain FITS, .fits */
    IO_SYNTH_FMT_PNG,      /* 8-bit RGB colour composite, .png */
    IO_SYNTH_FMT_JPEG,     /* 8-bit RGB colour composite, .jpg (broken rows only) */
} io_synth_fmt;

/* The deliberate failures, in the order they are handed out (broken row k gets kind k % 12). */
typedef enum {
    IO_SYNTH_BROKEN_NONE = 0,
    IO_SYNTH_BROKEN_TRUNCATED_FITS, /* header promises 3 planes, the file ends in the middle of the second */
    IO_SYNTH_BROKEN_GARBAGE_FITS,   /* random bytes named .fits */
    IO_SYNTH_BROKEN_MISSING_FILE,   /* the row names a file that does not exist */
    IO_SYNTH_BROKEN_EMPTY_FILE,     /* 0 bytes, named .fits */
    IO_SYNTH_BROKEN_ZERO_BAND,      /* a g,r,z cube whose z plane is all zeros */
    IO_SYNTH_BROKEN_NAN_CUBE,       /* a g,r,z cube of NaN */
    IO_SYNTH_BROKEN_IMAGE_2D,       /* a 2-D r-band image where a g,r,z cube is expected */
    IO_SYNTH_BROKEN_TWO_PLANES,     /* a g,r cube: z missing */
    IO_SYNTH_BROKEN_CORRUPT_PNG,    /* valid PNG signature and IHDR, garbage IDAT (bad zlib stream and CRC) */
    IO_SYNTH_BROKEN_TRUNCATED_JPEG, /* a JPEG cut in the middle of its scan data */
    IO_SYNTH_BROKEN_EMPTY_FILE_LOC, /* the manifest row's file_loc is empty */
    IO_SYNTH_BROKEN_BAD_RA,         /* the manifest row's ra is "abc" (its file is good) */
    IO_SYNTH_BROKEN_COUNT
} io_synth_broken;

const char *io_synth_broken_name(int kind);
/* The catalogue status (mc_row_status) the failure is meant to produce. IMAGE_2D and TWO_PLANES are bad
 * shapes for the gz_decals recipe; a generic recipe (asinh) may accept them as 1- or 2-band images. */
int io_synth_broken_status(int kind);
/* One sentence on what is wrong with the file or the row. */
const char *io_synth_broken_detail(int kind);

/* One manifest row, as planned from (seed, index) without rendering anything. */
typedef struct io_synth_row {
    int64_t index;
    char id_str[32];   /* synth_000123 */
    char file_loc[96]; /* relative to out_dir: cutouts/000/synth_000123.fits.fz; "" for an empty file_loc */
    double ra, dec;    /* degrees, ICRS, quantised to 1e-8 deg so the manifest and CRVAL agree exactly */
    int radec_empty;   /* the manifest leaves ra and dec empty: the job must use the WCS */
    io_synth_fmt fmt;
    io_synth_broken broken;
} io_synth_row;

void io_synth_row_plan(const io_synth_opts *o, int64_t index, io_synth_row *r);

/* What was drawn for one galaxy: the answer key for tests and for a clump detector. */
typedef struct io_synth_truth {
    const char *morph; /* elliptical, lenticular, spiral, barred_spiral, clumpy */
    double mag[3];     /* AB magnitudes g, r, z of the main galaxy (all its components) */
    double re_arcsec;  /* half-light radius of the disk (of the spheroid for ellipticals) */
    double bulge_frac; /* r-band bulge (spheroid) flux / main galaxy flux */
    double axis_ratio; /* of the disk (of the spheroid for ellipticals) */
    double pa_deg;     /* position angle of the major axis, degrees east of north, [0, 180) */
    int arms;          /* spiral arms, 0 or 2-4 */
    int bar, companion, merger;
    int n_field, n_stars; /* background galaxies and stars in the frame */
    double psf_fwhm_arcsec[3];
    double sky_sigma[3]; /* nanomaggies per pixel */
    int n_clumps;
    double clump_xy[IO_SYNTH_MAX_CLUMPS][2];   /* FITS pixel coordinates (1-based, x right, y up = north) */
    double clump_flux[IO_SYNTH_MAX_CLUMPS][3]; /* nanomaggies g, r, z */
} io_synth_truth;

/* Scratch memory for rendering, sized once for one cutout side and reused for every galaxy. */
typedef struct io_synth_work {
    int size;
    float *img;  /* 3 * size * size: g, r, z planes, row 0 = FITS y = 1 */
    float *tmp;  /* size * size */
    float *comp; /* size * size */
} io_synth_work;

void io_synth_work_init(io_synth_work *w, int size);
void io_synth_work_free(io_synth_work *w);

/* Render row `index`'s galaxy (with PSF and noise) into w->img, in nanomaggies per pixel; fills t. Depends
 * only on o->seed, o->size, o->pixscale and index. */
void io_synth_galaxy_render(const io_synth_opts *o, int64_t index, io_synth_work *w, io_synth_truth *t);

typedef struct io_synth_summary {
    int64_t rows, fz, fits, png, broken, radec_empty;
    int64_t bytes; /* written under out_dir */
    double seconds;
} io_synth_summary;

/* Write the whole survey. Whole-run failures (cannot create a folder or a file) return -1 with a message. */
int io_synth_survey_write(const io_synth_opts *o, io_synth_summary *s, char *err);

/* Write only row `index`'s file (byte-identical to the survey's), creating its folder; path_out receives
 * the path written ("" when the row has no file). Returns 0 or -1 with a message. */
int io_synth_row_write(const io_synth_opts *o, int64_t index, char *path_out, size_t path_len, char *err);

#endif
