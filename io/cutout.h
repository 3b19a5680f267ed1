/* io/cutout.h: one cutout file decoded to float planes. FITS through CFITSIO (g,r,z cubes, HSC 5-band
 * cubes, 2-D images, multi-extension files, BITPIX 8/16/32/64/-32/-64 with BSCALE/BZERO, tile-compressed
 * and gzipped files), PNG through libpng, JPEG through libjpeg; and the centre's RA/Dec from the FITS WCS
 * through wcslib. It knows no recipes (io/preprocess.h) and no catalogue. */
#ifndef IO_CUTOUT_H
#define IO_CUTOUT_H

#include "mc.h"

#define IO_MAX_BANDS 16
/* Largest cutout decoded, in floats over all planes (512 MiB). Larger images are refused (MC_ROW_BAD_SHAPE)
 * from their header, before anything is allocated, so a corrupt header cannot exhaust memory. */
#define IO_MAX_PIXELS ((int64_t)1 << 27)

typedef enum { IO_KIND_FITS, IO_KIND_PNG, IO_KIND_JPEG } io_kind;

typedef struct io_cutout {
    io_kind kind;
    int nband, h, w; /* nband planes of h rows x w columns */
    float *pix;      /* nband * h * w floats, plane-major. Row 0 is the first row stored in the file: FITS's
                      * bottom row (y = 1), a PNG's or JPEG's top row. PNG/JPEG values are 0..255 (8-bit;
                      * 16-bit PNGs scaled to 0..255), grey images have 1 plane, alpha is dropped. */
    size_t cap;      /* floats allocated at pix; the buffer is reused by the next read into this cutout */
    char band[IO_MAX_BANDS][16]; /* band name per plane from the header (BAND0.., BANDS, FILTER), else "" */
    int has_wcs;     /* a celestial WCS was found and evaluated */
    double ra, dec;  /* world coordinates (deg) of the image centre, pixel ((w+1)/2, (h+1)/2) in FITS terms */
    int hdu;         /* 1-based HDU number read (FITS) */
    struct io_wcs *wcs; /* the celestial WCS, for positions other than the centre; NULL without one */
    char extname[72];
    unsigned char *file; /* the last file read whole (FITS files, and any file checksummed), reused by the next */
    size_t file_cap;     /* bytes allocated at file */
    /* a tile-compressed image's working memory (a tile's bytes, its codes, its values), reused by the next
     * file: allocated per file, blocks this size come from mmap and cost a page fault per 4 KB each time */
    struct io_cutout_scratch {
        void *mem[3];
        size_t cap[3];
    } scratch;
} io_cutout;

typedef struct io_read_opts {
    const char *hdu; /* EXTNAME (or "EXTNAME,EXTVER") or 1-based HDU number to read; NULL or "": the first
                      * HDU holding an image. Ignored for PNG and JPEG. */
} io_read_opts;

/* Decode path into c, reusing c's pixel buffer. Returns MC_ROW_OK, or a per-galaxy failure status
 * (MC_ROW_MISSING, MC_ROW_CORRUPT, MC_ROW_BAD_SHAPE) with one line in err naming the file and the reason
 * (e.g. "cutouts/x.fits: truncated: header promises 3x256x256 pixels, file ends after 2 planes").
 * Never crashes on malformed files. Thread-safe: one io_cutout per thread (CFITSIO is built reentrant). */
int io_cutout_read(const char *path, const io_read_opts *opts, io_cutout *c, char *err);
/* io_cutout_read that also gives the file's io_file_checksum (sum[0] = 0 when it cannot be read) from the same
 * read of its bytes. Both read a regular FITS file of at most IO_FILE_WHOLE bytes (any such file, with sum) once,
 * into memory kept in c, and check its headers and take float32 pixels from there (CFITSIO still opens it
 * from disk: its memory driver reports reads past the end otherwise); the kernel's two copies of a 256 px
 * float32 cube, for the checksum and again for the pixels, were 0.27 ms of the catalogue job's loader (perf).
 * Larger files, devices and read errors: the checksum first, then the reading as before. */
#define IO_FILE_WHOLE ((int64_t)64 << 20)
int io_cutout_read_sum(const char *path, const io_read_opts *opts, io_cutout *c, char sum[33], char *err);
void io_cutout_free(io_cutout *c);

/* A cutout's celestial WCS (wcslib underneath). World coordinates (deg) of a point given in FITS pixel
 * coordinates of the planes (x along a row, y along the stored rows, 1-based: the first stored pixel's
 * centre is (1, 1)); -1 off the sky. */
typedef struct io_wcs io_wcs;
int io_wcs_pix2sky(const io_wcs *w, double x, double y, double *ra, double *dec);
/* Take the WCS out of the cutout (it survives the next read); NULL when there is none. */
io_wcs *io_cutout_take_wcs(io_cutout *c);
void io_wcs_free(io_wcs *w);

/* Content checksum of a file: XXH3-128 of its bytes as 32 lowercase hex digits, the form `xxhsum -H2`
 * and Python's xxhash.xxh3_128_hexdigest print. Chosen over sha256 for speed: it runs at memory speed
 * (sha256 cost ~0.5 ms per 3x256x256 float cube, 5% of an EfficientNet-B0 forward pass), and detecting
 * a changed cutout between data releases needs no cryptographic strength. -1 with a message when the
 * file cannot be read. */
int io_file_checksum(const char *path, char hex[33], char *err);

#endif
