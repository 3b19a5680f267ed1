/* io/npy.h: NumPy .npy arrays (format versions 1-3), streamed by rows so a batch file of any size is read
 * one batch at a time. Float32 and float64 in (converted to float32), float32 out. Not here: pickled
 * object arrays, Fortran order, .npz. */
#ifndef IO_NPY_H
#define IO_NPY_H

#include "mc.h"

#define IO_NPY_MAXDIM 8

typedef struct io_npy {
    FILE *f;
    char *path;
    int ndim;
    int64_t shape[IO_NPY_MAXDIM];
    int itemsize;       /* 4 or 8 */
    int64_t row_floats; /* elements per leading-axis row */
    long data_off;      /* byte offset of the data */
} io_npy;

/* Open for reading and check the header. */
int io_npy_open(const char *path, io_npy *a, char *err);
/* Read rows [start, start+count) of the leading axis as float32 into dst. */
int io_npy_read_rows(io_npy *a, int64_t start, int64_t count, float *dst, char *err);
void io_npy_close(io_npy *a);

/* Write a whole float32 array, atomically (temporary file, then rename). */
int io_npy_write(const char *path, const float *data, int ndim, const int64_t *shape, char *err);

#endif
