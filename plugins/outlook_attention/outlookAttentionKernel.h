/*
 * Fused outlook-attention core (scale + softmax + weighted unfold + fold) for VOLO.
 * Plain CUDA launcher: no TensorRT types. See README.md for layouts and semantics.
 */
#ifndef VOLO_OUTLOOK_ATTENTION_KERNEL_H
#define VOLO_OUTLOOK_ATTENTION_KERNEL_H

#include <cuda_runtime_api.h>

#if defined(_WIN32)
#define VOLO_OUTLOOK_API __declspec(dllexport)
#else
#define VOLO_OUTLOOK_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* dtype values of volo_outlook_attention. */
#define VOLO_OUTLOOK_DTYPE_FP32 0
#define VOLO_OUTLOOK_DTYPE_FP16 1

/*
 * out[b, y, x, c] = sum over windows (i, j) covering (y, x) of
 *     sum over (ei, ej) of softmax(scale * attn[b, i, j, head, (di, dj), :])[(ei, ej)]
 *                          * v[b, i*stride + ei - padding, j*stride + ej - padding, c]
 * with di = y + padding - i*stride, dj = x + padding - j*stride in [0, k), head = c / (C / num_heads),
 * v = 0 outside the image.
 *
 * v, out: (batch, height, width, channels); attn: (batch, attn_h, attn_w, num_heads * k^4), all
 * contiguous, same dtype. attn_h must be ceil(height / stride), attn_w ceil(width / stride).
 * out must not alias v or attn. Asynchronous on `stream`.
 *
 * Returns cudaErrorInvalidValue for bad arguments (null pointers, non-positive sizes, channels not
 * divisible by num_heads, wrong attn_h/attn_w, negative padding, non-finite scale, sizes whose
 * element count overflows), else the launch status (cudaGetLastError after launch).
 */
VOLO_OUTLOOK_API cudaError_t volo_outlook_attention(void const* v, void const* attn, void* out, int dtype, int batch,
    int height, int width, int channels, int attn_h, int attn_w, int kernel_size, int padding, int stride,
    int num_heads, float scale, cudaStream_t stream);

/* Version of the kernel library: major * 10000 + minor * 100 + patch. */
VOLO_OUTLOOK_API int volo_outlook_kernel_version(void);

#ifdef __cplusplus
}
#endif

#endif /* VOLO_OUTLOOK_ATTENTION_KERNEL_H */
