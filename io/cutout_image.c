/* io/cutout_image.c: PNG (libpng) and JPEG (libjpeg) cutouts decoded to float planes of 0..255, with the
 * libraries' setjmp error handling so a corrupt file is a status, not a crash or a leak. Alpha is dropped,
 * no gamma or colour profile is applied (as PIL loads them); pixels are not judged here. */
#include "io/cutout_internal.h"

#include <jpeglib.h>
#include <jerror.h> /* JWRN_* codes */
#include <png.h>
#include <setjmp.h>

/* Decoded rows are staged in the pixel buffer itself, after the planes, so a file of a size seen before
 * allocates nothing. Returns the staging area. */
static unsigned char *reserve_with_staging(io_cutout *c, size_t nplane_floats, size_t staging_bytes)
{
    size_t extra = (staging_bytes + sizeof(float) - 1) / sizeof(float) + 16;
    float *p = io_cutout_reserve(c, nplane_floats + extra);
    return (unsigned char *)(p + nplane_floats);
}

/* ---------------------------------------------------------------------------------------------- PNG */

typedef struct {
    char msg[200];
} png_ctx;

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_ctx *ctx = (png_ctx *)png_get_error_ptr(png);
    snprintf(ctx->msg, sizeof ctx->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    /* Warnings (an sRGB profile libpng dislikes, a bad ancillary CRC) do not change the pixels. */
    (void)png;
    (void)msg;
}

/* One decoded row (8- or 16-bit samples, nch interleaved channels) into row y of the planes. */
static void png_row_to_planes(const unsigned char *row, int w, int nch, int depth, float *planes,
                              size_t plane, int y)
{
    for (int ch = 0; ch < nch; ch++) {
        float *dst = planes + ch * plane + (size_t)y * w;
        if (depth == 16) {
            const uint16_t *r16 = (const uint16_t *)row; /* host order after png_set_swap */
            /* 16-bit samples scaled to 0..255 (65535 -> 255), keeping their precision: v / 257 rounded once
             * from double, as numpy's; times float(1/257) is an ulp off for some samples (60524 among them) */
            for (int x = 0; x < w; x++) dst[x] = (float)(r16[(size_t)x * nch + ch] / 257.0);
        } else {
            for (int x = 0; x < w; x++) dst[x] = (float)row[(size_t)x * nch + ch];
        }
    }
}

int io_cutout_png_read(const char *path, FILE *f, io_cutout *c, char *err)
{
    png_ctx ctx = {{0}};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_on_error, png_on_warning);
    if (!png) mc_oom(sizeof(png_ctx));
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        mc_oom(sizeof(png_ctx));
    }
    /* Nothing below is modified after setjmp and read after longjmp except through pointers. */
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        return io_cutout_fail(err, MC_ROW_CORRUPT, "%s: corrupt or truncated PNG (libpng: %s)", path,
                              ctx.msg[0] ? ctx.msg : "error");
    }
    png_init_io(png, f);
    png_read_info(png, info);
    png_uint_32 w = 0, h = 0;
    int depth = 0, ctype = 0, interlace = 0;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    int rc = io_cutout_check_size(path, "PNG", (int64_t)w, (int64_t)h, 1, err);
    if (rc != MC_ROW_OK) {
        png_destroy_read_struct(&png, &info, NULL);
        return rc;
    }
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    /* Alpha is dropped, including the alpha palette expansion makes from a tRNS chunk. */
    png_set_strip_alpha(png);
    if (depth == 16) {
        const uint16_t probe = 1;
        if (*(const unsigned char *)&probe == 1) png_set_swap(png); /* PNG is big-endian */
    }
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int nch = png_get_channels(png, info);
    int odepth = png_get_bit_depth(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if ((nch != 1 && nch != 3) || (odepth != 8 && odepth != 16) ||
        rowbytes < (size_t)w * nch * (odepth / 8)) {
        png_destroy_read_struct(&png, &info, NULL);
        return io_cutout_fail(err, MC_ROW_CORRUPT, "%s: unsupported PNG layout (%d channels of %d bits)",
                              path, nch, odepth);
    }
    if ((rc = io_cutout_check_size(path, "PNG", (int64_t)w, (int64_t)h, nch, err)) != MC_ROW_OK) {
        png_destroy_read_struct(&png, &info, NULL);
        return rc;
    }
    size_t plane = (size_t)w * h;
    /* Interlaced images arrive in 7 sparse passes and need every row at once; others one row at a time. */
    size_t staging = passes > 1 ? rowbytes * h : rowbytes;
    unsigned char *stage = reserve_with_staging(c, plane * nch, staging);
    if (passes > 1) {
        memset(stage, 0, staging);
        for (int p = 0; p < passes; p++)
            for (png_uint_32 y = 0; y < h; y++) png_read_row(png, stage + y * rowbytes, NULL);
        for (png_uint_32 y = 0; y < h; y++)
            png_row_to_planes(stage + y * rowbytes, (int)w, nch, odepth, c->pix, plane, (int)y);
    } else {
        for (png_uint_32 y = 0; y < h; y++) {
            png_read_row(png, stage, NULL);
            png_row_to_planes(stage, (int)w, nch, odepth, c->pix, plane, (int)y);
        }
    }
    png_destroy_read_struct(&png, &info, NULL);
    c->w = (int)w;
    c->h = (int)h;
    c->nband = nch;
    return MC_ROW_OK;
}

/* --------------------------------------------------------------------------------------------- JPEG */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
    char warn[JMSG_LENGTH_MAX]; /* first warning that means the scan data is damaged */
} jpeg_ctx;

static void jpeg_on_error(j_common_ptr cinfo)
{
    jpeg_ctx *ctx = (jpeg_ctx *)cinfo->err;
    cinfo->err->format_message(cinfo, ctx->msg);
    longjmp(ctx->jb, 1);
}

static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    if (level >= 0) return; /* trace messages */
    jpeg_ctx *ctx = (jpeg_ctx *)cinfo->err;
    int code = cinfo->err->msg_code;
    /* Warnings after which libjpeg goes on with invented pixels (grey fill, resync): the image is not what
     * was stored, so the file is refused as PIL refuses a truncated JPEG. Harmless ones (extraneous bytes
     * before a marker, unknown JFIF version or Adobe transform) are ignored. */
    if (!ctx->warn[0] && (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER || code == JWRN_HUFF_BAD_CODE ||
                          code == JWRN_ARITH_BAD_CODE || code == JWRN_MUST_RESYNC ||
                          code == JWRN_NOT_SEQUENTIAL || code == JWRN_BOGUS_PROGRESSION))
        cinfo->err->format_message(cinfo, ctx->warn);
    cinfo->err->num_warnings++;
}

static void jpeg_on_output(j_common_ptr cinfo)
{
    (void)cinfo; /* never print */
}

static const char *jpeg_space_name(J_COLOR_SPACE s)
{
    switch (s) {
    case JCS_CMYK:
        return "CMYK";
    case JCS_YCCK:
        return "YCCK";
    default:
        return "unknown";
    }
}

int io_cutout_jpeg_read(const char *path, FILE *f, io_cutout *c, char *err)
{
    struct jpeg_decompress_struct cinfo;
    jpeg_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    cinfo.err = jpeg_std_error(&ctx.pub);
    ctx.pub.error_exit = jpeg_on_error;
    ctx.pub.emit_message = jpeg_on_message;
    ctx.pub.output_message = jpeg_on_output;
    jpeg_create_decompress(&cinfo);
    if (setjmp(ctx.jb)) {
        jpeg_destroy_decompress(&cinfo);
        return io_cutout_fail(err, MC_ROW_CORRUPT, "%s: corrupt or truncated JPEG (libjpeg: %s)", path,
                              ctx.msg);
    }
    jpeg_stdio_src(&cinfo, f);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        jpeg_destroy_decompress(&cinfo);
        return io_cutout_fail(err, MC_ROW_CORRUPT,
                              "%s: %s JPEG is not supported (only grey and RGB; convert it to RGB)", path,
                              jpeg_space_name(cinfo.jpeg_color_space));
    }
    /* Same decoder settings as PIL's defaults (islow DCT, fancy upsampling), so pixels match PIL's. */
    cinfo.out_color_space = cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    int rc = io_cutout_check_size(path, "JPEG", (int64_t)cinfo.image_width, (int64_t)cinfo.image_height,
                                  cinfo.num_components == 1 ? 1 : 3, err);
    if (rc != MC_ROW_OK) {
        jpeg_destroy_decompress(&cinfo);
        return rc;
    }
    jpeg_start_decompress(&cinfo);
    int w = (int)cinfo.output_width, h = (int)cinfo.output_height, nch = cinfo.output_components;
    if (nch != 1 && nch != 3) {
        jpeg_destroy_decompress(&cinfo);
        return io_cutout_fail(err, MC_ROW_CORRUPT, "%s: unsupported JPEG with %d components", path, nch);
    }
    size_t plane = (size_t)w * h;
    unsigned char *row = reserve_with_staging(c, plane * nch, (size_t)w * nch);
    while (cinfo.output_scanline < cinfo.output_height) {
        int y = (int)cinfo.output_scanline;
        JSAMPROW rp = row;
        if (jpeg_read_scanlines(&cinfo, &rp, 1) != 1) break;
        for (int ch = 0; ch < nch; ch++) {
            float *dst = c->pix + ch * plane + (size_t)y * w;
            for (int x = 0; x < w; x++) dst[x] = (float)row[(size_t)x * nch + ch];
        }
    }
    int short_read = cinfo.output_scanline < cinfo.output_height;
    /* Stop without reading to EOI: trailing bytes after the last scan do not matter. */
    jpeg_destroy_decompress(&cinfo);
    if (ctx.warn[0] || short_read)
        return io_cutout_fail(err, MC_ROW_CORRUPT, "%s: corrupt or truncated JPEG data (libjpeg: %s)", path,
                              ctx.warn[0] ? ctx.warn : "scanlines missing");
    c->w = w;
    c->h = h;
    c->nband = nch;
    return MC_ROW_OK;
}
