/* report/draw.c: the few drawing conventions the figures share: the font (DejaVu Sans through cairo's text
 * API and fontconfig), class and series colours, PNG output through cairo. Cairo does all the rasterising:
 * nothing here draws a line or a glyph by hand. */
#include <errno.h>

#include "report/report_internal.h"

void rpt_font(cairo_t *cr, double px, int bold)
{
    cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, px);
}

void rpt_class_colour(int k, double rgb[3])
{
    /* clump: yellow, odd clump: magenta (bright on the dark sky of a cutout), then cyan, orange, green */
    static const double pal[5][3] = {
        {1, 0.9, 0.1}, {1, 0.2, 0.9}, {0.2, 0.9, 1}, {1, 0.55, 0.1}, {0.3, 1, 0.3}};
    int i = k >= 1 ? (k - 1) % 5 : 4;
    memcpy(rgb, pal[i], sizeof pal[i]);
}

void rpt_series_colour(int i, double rgb[3])
{
    /* Okabe-Ito: distinguishable with the common colour-vision deficiencies */
    static const double pal[8][3] = {{0.000, 0.447, 0.698}, {0.835, 0.369, 0.000}, {0.000, 0.620, 0.451},
                                     {0.800, 0.475, 0.655}, {0.902, 0.624, 0.000}, {0.337, 0.706, 0.914},
                                     {0.941, 0.894, 0.259}, {0.0, 0.0, 0.0}};
    memcpy(rgb, pal[i % 8], sizeof pal[0]);
}

int rpt_png_write(cairo_surface_t *s, const char *path, char *err)
{
    cairo_surface_flush(s);
    cairo_status_t st = cairo_surface_write_to_png(s, path);
    if (st != CAIRO_STATUS_SUCCESS)
        return mc_fail(err, "%s: cannot write the PNG: %s", path,
                       st == CAIRO_STATUS_WRITE_ERROR ? strerror(errno ? errno : EIO)
                                                      : cairo_status_to_string(st));
    return 0;
}
