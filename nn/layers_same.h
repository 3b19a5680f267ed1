/* nn/layers_same.h: TensorFlow 'SAME' padding for the convolutions of the TF-ported networks (timm's
 * Conv2dSame / pad_same: total pad max((ceil(in/s)-1)*s + k - in, 0), the odd pixel after, i.e. bottom and
 * right). Symmetric cases run the ordinary convolution; asymmetric ones pad a copy first. Internal to nn/. */
#ifndef NN_LAYERS_SAME_H
#define NN_LAYERS_SAME_H

#include "nn/engine.h"

/* Pads of a 'same' convolution along one axis. */
void nn_same_pads(int in, int k, int stride, int *before, int *after);

/* The input a 'same' k x k stride-s convolution should read, with the symmetric pad to give it: x itself
 * (pad set) when the pads are equal, else a zero-padded copy in ctx (pad 0), which the caller releases
 * with nn_same_input_release. */
nn_tensor nn_same_input(nn_ctx *ctx, nn_tensor x, int k, int stride, int *pad);
void nn_same_input_release(nn_ctx *ctx, nn_tensor padded, nn_tensor x);

/* nn_conv_forward with 'same' padding (cv->pad is ignored). */
nn_tensor nn_conv_forward_same(nn_ctx *ctx, const nn_conv *cv, nn_tensor x, const nn_tensor *res);

#endif
