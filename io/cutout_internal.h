/* io/cutout_internal.h: the pieces io/cutout.c shares with its format readers (io/cutout_fits.c,
 * io/cutout_image.c). Not a public header: other folders include io/cutout.h only. */
#ifndef IO_CUTOUT_INTERNAL_H
#define IO_CUTOUT_INTERNAL_H

#include <stdio.h>

#include "io/cutout.h"

/* Format a message into err and return status, so readers can `return io_cutout_fail(...)`. */
int io_cutout_fail(char *err, int status, const char *fmt, ...) MC_PRINTF(3, 4);

/* Make room for n floats at c->pix (growing only; the buffer is kept for the next file). Returns c->pix. */
float *io_cutout_reserve(io_cutout *c, size_t n);

/* Refuse images whose planes would exceed IO_MAX_PIXELS floats before anything is allocated. */
int io_cutout_check_size(const char *path, const char *what, int64_t w, int64_t h, int64_t nband, char *err);

/* Format readers. f is open at byte 0 and is closed by the caller. */
int io_cutout_png_read(const char *path, FILE *f, io_cutout *c, char *err);
int io_cutout_jpeg_read(const char *path, FILE *f, io_cutout *c, char *err);
/* FITS is opened by CFITSIO itself (it also undoes gzip); magic holds the file's first nmagic bytes and
 * size its length in bytes, used to explain truncation. */
int io_cutout_fits_read(const char *path, const unsigned char *magic, size_t nmagic, int64_t size,
                        const char *hdu, io_cutout *c, char *err);

/* Release the WCS kept in c (io/cutout_fits.c). */
void io_cutout_wcs_free(io_cutout *c);

#endif
