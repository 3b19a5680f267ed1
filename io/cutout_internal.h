/* io/cutout_internal.h: the pieces io/cutout.c shares with its format readers (io/cutout_fits.c,
 * io/cutout_image.c). Not a public header: other folders include io/cutout.h only. */
#ifndef IO_CUTOUT_INTERNAL_H
#define IO_CUTOUT_INTERNAL_H

#include <fitsio.h>
#include <stdio.h>

#include "io/cutout.h"

/* Format a message into err and return status, so readers can `return io_cutout_fail(...)`. */
int io_cutout_fail(char *err, int status, const char *fmt, ...) MC_PRINTF(3, 4);

/* Make room for n floats at c->pix (growing only; the buffer is kept for the next file). Returns c->pix. */
float *io_cutout_reserve(io_cutout *c, size_t n);
/* Working memory k (0-2) of c, at least bytes long and kept for the next file (growing only; contents not
 * kept when it grows). */
void *io_cutout_scratch(io_cutout *c, int k, size_t bytes);

/* Refuse images whose planes would exceed IO_MAX_PIXELS floats before anything is allocated. */
int io_cutout_check_size(const char *path, const char *what, int64_t w, int64_t h, int64_t nband, char *err);

/* Format readers. f is open at byte 0 and is closed by the caller. */
int io_cutout_png_read(const char *path, FILE *f, io_cutout *c, char *err);
int io_cutout_jpeg_read(const char *path, FILE *f, io_cutout *c, char *err);
/* FITS is opened by CFITSIO once io/cutout_fits_hdr.c has checked its headers (a gzipped file is inflated into
 * memory first); magic holds the file's first nmagic bytes and size its length in bytes; file, when not NULL, all
 * of its bytes (read by io_cutout_read_sum; a gzipped file is still inflated from path). */
int io_cutout_fits_read(const char *path, const unsigned char *magic, size_t nmagic, int64_t size,
                        const unsigned char *file, const char *hdu, io_cutout *c, char *err);

/* io/cutout_fits_hdr.c: morphcat's strict reading of header cards before CFITSIO and WCSLIB see them. A FITS
 * image's bytes: a file (fp, open) or memory (mem), size bytes long. */
typedef struct {
    FILE *fp;
    const unsigned char *mem;
    int64_t size;
} io_fits_bytes;
/* Walks every header CFITSIO can reach in b (from the first, SIMPLE, through the XTENSIONs the data sizes lead
 * to): 0 when each card CFITSIO interprets on entering an HDU is well formed and of its type, and no
 * tile-compression divisor is below 1; else 1 and why (the HDU, the card, the reason). */
int io_fits_headers_check(const io_fits_bytes *b, char *why, size_t len);
/* The primary (unlettered) WCS cards of hdr (nkeys cards of 80 characters, as fits_convert_hdr2str gives them),
 * each value checked and written again as a clean card, after NAXIS = naxis and before END: the only header
 * WCSLIB sees. Returns the cards (free()) and their number in *ncards; NULL when a WCS card is malformed, with
 * its 1-based number in *bad_card and why. */
char *io_fits_wcs_cards(const char *hdr, int nkeys, int naxis, int *ncards, int *bad_card, char *why, size_t len);

#define FITS_MAXDIM 9 /* axes a FITS image may have */

/* io/cutout_fits_rice.c: the tiles of the tile-compressed image HDU f is on (naxis axes of naxes pixels),
 * checked before CFITSIO decodes any (sizes, descriptors, heap bounds, each RICE_1 tile's code within its
 * bytes) and, when they are RICE_1-coded quantised floats and plain_values (no BSCALE/BZERO other than 1 and
 * 0), decoded into pix (the whole image, FITS order) with *decoded = 1. 0, or 1 and why for a corrupt HDU.
 * Its working memory is c's (io_cutout_scratch). */
int io_fits_tiles_read(fitsfile *f, int naxis, const LONGLONG *naxes, int plain_values, io_cutout *c, float *pix,
                       int *decoded, char *why, size_t len);

/* Release the WCS kept in c (io/cutout_fits.c). */
void io_cutout_wcs_free(io_cutout *c);

#endif
