/* A C library in the style of ggml: generic math kernels called from many places. */
#ifndef GGML_LIKE_H
#define GGML_LIKE_H
#ifdef __cplusplus
extern "C" {
#endif

struct ggml_tensor {
  int ne0, ne1;  /* columns, rows */
  float *data;
};

void ggml_vec_dot_f32(int n, float *s, const float *x, const float *y);
void ggml_vec_add_f32(int n, float *z, const float *x, const float *y);
void ggml_vec_scale_f32(int n, float *y, float v);
void ggml_compute_forward_mul_mat(const struct ggml_tensor *a, const struct ggml_tensor *b,
                                  struct ggml_tensor *dst);

#ifdef __cplusplus
}
#endif
#endif
