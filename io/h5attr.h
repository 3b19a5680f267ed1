/* io/h5attr.h: reading a string attribute of an HDF5 object, fixed or variable length: the catalogue
 * (io/catalog.c) and the tools that read catalogues (jobs/) share it. */
#ifndef IO_H5ATTR_H
#define IO_H5ATTR_H

#include <hdf5.h>
#include <stddef.h>

/* The attribute's text into buf (truncated to len); -1 (buf empty) when absent or not a string. */
int io_h5_attr_str(hid_t obj, const char *name, char *buf, size_t len);

/* Write (replacing) a variable-length UTF-8 string attribute; 0 or -1. */
int io_h5_attr_put_str(hid_t obj, const char *name, const char *value);

#endif
