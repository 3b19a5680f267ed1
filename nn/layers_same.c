/* nn/layers_same.c: TF 'SAME' padding (see nn/layers_same.h). Matches timm 0.9.10 layers/padding.py
 * get_same_padding / pad_same. Not here: the convolution arithmetic (nn/layers.c). */
#include "nn/layers_same.h"

#include "nn/kernels_attn.h"

void nn_same_pads(int in, int k, int stride, int *before, int *after)
{
    int out = (in + stride - 1) / stride;
    int total = (out - 1) * stride + k - in;
    if (total < 0) total = 0;
    *before = total / 2;
    *after = total - total / 2;
}

nn_tensor nn_same_input(nn_ctx *ctx, nn_tensor x, int k, int stride, int *pad)
{
    int t, b, l, r;
    nn_same_pads(x.h, k, stride, &t, &b);
    nn_same_pads(x.w, k, stride, &l, &r);
    if (t == b && l == r && t == l) {
        *pad = t;
        return x;
    }
    *pad = 0;
    nn_tensor y = nn_tensor_new(ctx, x.n, x.h + t + b, x.w + l + r, x.c);
    if (!ctx->measure)
        for (int i = 0; i < x.n; i++)
            nn_pad_nhwc(x.d + (size_t)i * x.h * x.w * x.c, x.h, x.w, x.c, t, l, b, r,
                        y.d + (size_t)i * y.h * y.w * y.c);
    return y;
}

void nn_same_input_release(nn_ctx *ctx, nn_tensor padded, nn_tensor x)
{
    if (padded.d != x.d) nn_tensor_release(ctx, padded);
}

nn_tensor nn_conv_forward_same(nn_ctx *ctx, const nn_conv *cv, nn_tensor x, const nn_tensor *res)
{
    nn_conv c = *cv;
    nn_tensor xp = nn_same_input(ctx, x, cv->k, cv->stride, &c.pad);
    nn_tensor y = nn_conv_forward(ctx, &c, xp, res);
    /* the padded copy is released after y was placed: y may not reuse its memory while the conv reads it */
    nn_same_input_release(ctx, xp, x);
    return y;
}
