/* io/preprocess.h: named preprocessing recipes that turn a decoded cutout into the model's input, exactly
 * as written in docs/preprocessing.md and checked against tools/preprocess_ref.py:
 *   gz_decals  g,r,z cubes in nanomaggies: the GZ DECaLS colour mapping (zoobot.md 2.4: scales, asinh,
 *              desaturation, 8-bit), then Zoobot's deterministic inference view;
 *   image      PNG/JPEG 8-bit colour or grey: the inference view;
 *   asinh      generic flux images (any bands): percentile clip and arcsinh stretch per band, then the view.
 * The inference view (galaxy-datasets minimal_view_config): zoom 1.2 about the centre, bilinear resampling
 * (antialiased when shrinking) to the model's square size, values in [0, 1]; 1-channel models take the
 * unweighted channel mean. Not here: decoding files (io/cutout.h), batching (pipeline/). */
#ifndef IO_PREPROCESS_H
#define IO_PREPROCESS_H

#include "io/cutout.h"

typedef enum { PP_AUTO = 0, PP_GZ_DECALS, PP_IMAGE, PP_ASINH } pp_kind;

typedef struct pp_recipe {
    pp_kind kind;
    char bands[3][16]; /* band names (or plane numbers "0".."15") feeding the recipe, in the recipe's order:
                        * gz_decals: g, r, z; asinh: the planes mapped to R, G, B (one name = grey) */
    int nbands;
    double zoom;       /* 1.2 */
    int flip;          /* 1: flip rows (north up for FITS, as later GZ pipelines); default 0, as GZ DECaLS */
    int quantize;      /* 1: round to 8-bit levels where the released images were 8-bit (default 1) */
    double asinh_q, pmin, pmax; /* asinh recipe: arcsinh(q * x), percentiles in % (1, 0, 99.7) */
    double max_blank;  /* a band with more than this fraction of pixels zero or NaN is refused (0.2) */
} pp_recipe;

/* Parse "name[:key=value,...]", e.g. "gz_decals", "gz_decals:bands=g;r;z,flip=1", "asinh:bands=i;r;g,q=1",
 * "image", "auto". Unknown names or keys: -1 with a message. */
int pp_recipe_parse(const char *spec, pp_recipe *r, char *err);
/* One line recording every parameter (stored in the catalogue's attributes). */
void pp_recipe_describe(const pp_recipe *r, char *buf, size_t len);
/* The recipe that applies to this cutout: PNG/JPEG always take the image view (whatever the spec names,
 * since they are rendered already); FITS take the named recipe, or under auto g,r,z cubes gz_decals and
 * anything else asinh. */
pp_kind pp_recipe_resolve(const pp_recipe *r, const io_cutout *c);

/* Scratch memory a recipe needs, reused across calls (no allocation per galaxy after the first). */
typedef struct pp_work {
    float *buf;
    size_t cap;
} pp_work;
void pp_work_free(pp_work *w);

/* Apply r to c, writing chans x size x size float32 in [0, 1] (NCHW for one image; asinh gives [0, asinh(q)]
 * as galaxy-datasets does, docs/preprocessing.md 4.3) to out. Returns
 * MC_ROW_OK, or MC_ROW_BAD_SHAPE / MC_ROW_BAD_PIXELS with one line in err naming the reason (the caller
 * adds the file and the object): missing bands, image smaller than 8 px, NaN/Inf or a band mostly zero. */
int pp_apply(const pp_recipe *r, const io_cutout *c, int chans, int size, pp_work *w, float *out, char *err);

#endif
