/* io/manifest.h: the list of cutouts a job covers: a CSV file with a header (id_str, a path column, optional
 * ra, dec and hdu), or a folder of cutout files. Rows keep manifest order, which is the catalogue's row
 * order. Not here: reading the cutouts themselves (io/cutout.h). */
#ifndef IO_MANIFEST_H
#define IO_MANIFEST_H

#include "mc.h"

typedef struct io_manifest_row {
    char *id_str; /* unique within the manifest */
    char *path;   /* as given, resolved against the manifest's folder when relative */
    double ra, dec; /* degrees; NAN when the manifest has no value (then the WCS gives them) */
    char *hdu;    /* per-row HDU (EXTNAME or number), or NULL */
    int bad;      /* nonzero: the row itself is unusable; reason in note */
    char *note;   /* message for a bad row, else NULL */
} io_manifest_row;

typedef struct io_manifest {
    char *path;
    int64_t n;
    io_manifest_row *rows;
    char sha256[65]; /* of the manifest file's bytes, or of the sorted listing for a folder */
    int max_id_len, max_path_len; /* longest id_str and path, bytes (catalogue string widths) */
    char *strings; /* internal: one arena holding path and every row's strings; io_manifest_free releases it */
} io_manifest;

/* Read a manifest. CSV: RFC 4180 (quoted fields, embedded commas/newlines; LF or CRLF; a UTF-8 BOM is
 * skipped) through libcsv; the header names the columns (case-insensitive, first match wins): id_str
 * (required; also accepted: id, objid), the path (file_loc, path, file, filename, location), optional ra,
 * dec, hdu. An empty ra/dec (or "nan") means no value. A folder: every *.fits, *.fit, *.fits.gz, *.fits.fz,
 * *.fz, *.png, *.jpg, *.jpeg under it (recursively; extensions in any case; names starting with '.' and
 * symbolic links to folders are skipped), sorted by path (bytes); id_str = path relative to the folder
 * without the extension; the sha256 is of the sorted relative paths, each followed by a newline.
 * Whole-manifest problems (unreadable, no id_str or path column, malformed quoting, duplicate id_str)
 * return -1 with one line naming the file, the line(s) and the reason; a bad single row (empty id_str or
 * path, a field count unlike the header's, ra/dec that is not a number of degrees in range or only one of
 * the two) gets bad = 1 and a note, and the job records it as that galaxy's failure. A non-empty
 * `morphcat_bad_row` column marks a row bad with that text as its note: manifests written by morphcat plan
 * and rerun (jobs/) carry a source manifest's bad rows that way, with their original reason. */
int io_manifest_read(const char *path, io_manifest *m, char *err);
void io_manifest_free(io_manifest *m);

/* Streaming: what io_manifest_read would give, one row at a time, in memory that does not grow with the
 * rows (CSV; a folder's listing is sorted whole, so a folder is read with io_manifest_read first). fn gets
 * each row as io_manifest_read would store it (strings valid only during the call), its index and the CSV
 * line it starts on (0 for folders); a nonzero return stops the scan. fn may be NULL (count and check). */
typedef int (*io_manifest_row_fn)(void *ctx, int64_t index, int64_t line, const io_manifest_row *r);

typedef struct io_manifest_scan_opts {
    int unique;        /* also refuse duplicate id_str as io_manifest_read does, with the same message, in
                          bounded memory (hashes sorted in runs in $TMPDIR, 16 bytes a row on disk); fn sees
                          the rows before the verdict */
    int64_t sort_rows; /* rows per sorted run (0: 262144, 4 MiB); tests use few */
    int hash_bits;     /* bits of the id hash kept (0: 64); tests use few, to force collisions */
} io_manifest_scan_opts;

typedef struct io_manifest_info {
    char path[4096]; /* as io_manifest_read names it (a folder without trailing '/') */
    int64_t n;
    char sha256[65];
    int max_id_len, max_path_len;
} io_manifest_info;

/* o may be NULL (no duplicate check). Errors: as io_manifest_read's, one line; -1. */
int io_manifest_scan(const char *path, const io_manifest_scan_opts *o, io_manifest_row_fn fn, void *ctx,
                     io_manifest_info *info, char *err);

#endif
