/* Kernels: they trust their pointers, so a bad tensor crashes here, far from the bug. */
#include "ggml_like.h"

void ggml_vec_dot_f32(int n, float *s, const float *x, const float *y) {
  float sum = 0.0f;
  for (int i = 0; i < n; i++) sum += x[i] * y[i];
  *s = sum;
}

void ggml_vec_add_f32(int n, float *z, const float *x, const float *y) {
  for (int i = 0; i < n; i++) z[i] = x[i] + y[i];
}

void ggml_vec_scale_f32(int n, float *y, float v) {
  for (int i = 0; i < n; i++) y[i] *= v;
}

void ggml_compute_forward_mul_mat(const struct ggml_tensor *a, const struct ggml_tensor *b,
                                  struct ggml_tensor *dst) {
  for (int row = 0; row < a->ne1; row++)
    for (int col = 0; col < b->ne1; col++)
      ggml_vec_dot_f32(a->ne0, &dst->data[row * dst->ne0 + col], a->data + row * a->ne0,
                       b->data + col * b->ne0);
}
