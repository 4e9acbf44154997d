/* kernels_variants.h: the kernels are compiled once per instruction-set
 * variant and one is chosen at run time (kernels_dispatch.c).
 *
 * The variant sources (kernels.c, kernels_q.c, kernels_k.c, kernels_vec.c,
 * kernels_attn.c, kernels_table.c) are built several times, each time with
 * LS_KV=<variant> and that variant's -m flags (engine/CMakeLists.txt):
 *   portable  no SIMD beyond the architecture's baseline (the scalar code)
 *   avx2      AVX2 + FMA + F16C: the baseline fast path
 *   avxvnni   avx2 + the VEX-coded AVX-VNNI (vpdpbusd on 256 bits)
 *   avx512    avx2 + AVX-512 F/BW/DQ/VL + VNNI + BF16
 * In a variant build every function below is renamed <name>__<variant>
 * (so the objects link side by side) and the variant's ls_kv_table__<variant>
 * lists them; kernels_dispatch.c defines the plain names as calls through
 * the table chosen for this CPU. Every variant computes llama.cpp's
 * arithmetic in the same order, so all of them give the same bits
 * (tests/test_kernels_dispatch.c checks each pair this CPU can run).
 *
 * A function added to a variant source and called from outside the variant
 * goes in LS_KV_FUNCS and gets a rename line; one used only inside the
 * variant gets only the rename line. Forgetting either is a link error
 * (duplicate or undefined symbol), never a silent wrong path. */
#ifndef LS_KERNELS_VARIANTS_H
#define LS_KERNELS_VARIANTS_H

#ifdef LS_KV
#define LS_KV_CAT2(a, b) a##__##b
#define LS_KV_CAT(a, b) LS_KV_CAT2(a, b)
#define LS_KV_NAME(f) LS_KV_CAT(f, LS_KV)
#define LS_KV_STR2(v) #v
#define LS_KV_STR(v) LS_KV_STR2(v)

/* the functions of LS_KV_FUNCS */
#define ls_weight_row_bytes LS_KV_NAME(ls_weight_row_bytes)
#define ls_weight_get_row LS_KV_NAME(ls_weight_get_row)
#define ls_matmul LS_KV_NAME(ls_matmul)
#define ls_matmul_ex LS_KV_NAME(ls_matmul_ex)
#define ls_matmul_multirow LS_KV_NAME(ls_matmul_multirow)
#define ls_matmul_sgemm LS_KV_NAME(ls_matmul_sgemm)
#define ls_matmul_sgemm_min_n LS_KV_NAME(ls_matmul_sgemm_min_n)
#define ls_quantize_row_q8_0 LS_KV_NAME(ls_quantize_row_q8_0)
#define ls_quantize_row_q8_1 LS_KV_NAME(ls_quantize_row_q8_1)
#define ls_rmsnorm LS_KV_NAME(ls_rmsnorm)
#define ls_softmax LS_KV_NAME(ls_softmax)
#define ls_swiglu LS_KV_NAME(ls_swiglu)
#define ls_dot_f32 LS_KV_NAME(ls_dot_f32)
#define ls_axpy_f32 LS_KV_NAME(ls_axpy_f32)
#define ls_f32_to_f16_row LS_KV_NAME(ls_f32_to_f16_row)
#define ls_f16_to_f32_row LS_KV_NAME(ls_f16_to_f32_row)
#define ls_dot_f16_f32 LS_KV_NAME(ls_dot_f16_f32)
#define ls_axpy_f16 LS_KV_NAME(ls_axpy_f16)
#define ls_attn_worker LS_KV_NAME(ls_attn_worker)
#define ls_k_qact_bytes LS_KV_NAME(ls_k_qact_bytes)
#define ls_k_qact_init LS_KV_NAME(ls_k_qact_init)
#define ls_k_quant_row_q8k LS_KV_NAME(ls_k_quant_row_q8k)
#define ls_k_dequant_row LS_KV_NAME(ls_k_dequant_row)
#define ls_k_kq_rows_model LS_KV_NAME(ls_k_kq_rows_model)
/* used only inside a variant */
#define ls_k_quant_row LS_KV_NAME(ls_k_quant_row)
#define ls_k_q_aux_bytes LS_KV_NAME(ls_k_q_aux_bytes)
#define ls_k_q_rows LS_KV_NAME(ls_k_q_rows)
#define ls_k_kq_rows LS_KV_NAME(ls_k_kq_rows)
#endif

/* X-macro over the functions every variant defines and the rest of the
 * engine calls: R(return type, name, (params), (args)) for functions that
 * return a value, V(name, (params), (args)) for void ones */
#define LS_KV_FUNCS(R, V)                                                                                      \
    R(size_t, ls_weight_row_bytes, (const ls_weight *w), (w))                                                  \
    V(ls_weight_get_row, (const ls_weight *w, int64_t r, float *out), (w, r, out))                             \
    V(ls_matmul, (ls_pool * pool, const ls_weight *w, const float *x, int64_t n, float *y), (pool, w, x, n, y)) \
    V(ls_matmul_ex, (ls_pool * pool, const ls_weight *w, const float *x, int64_t n, float *y, unsigned flags),  \
      (pool, w, x, n, y, flags))                                                                               \
    V(ls_matmul_multirow, (ls_pool * pool, const ls_weight *w, const float *x, int64_t n, float *y),           \
      (pool, w, x, n, y))                                                                                      \
    V(ls_matmul_sgemm, (ls_pool * pool, const ls_weight *w, const float *x, int64_t n, float *y),              \
      (pool, w, x, n, y))                                                                                      \
    R(int64_t, ls_matmul_sgemm_min_n, (ls_type t), (t))                                                        \
    V(ls_quantize_row_q8_0, (const float *x, int64_t n, void *dst), (x, n, dst))                               \
    V(ls_quantize_row_q8_1, (const float *x, int64_t n, void *dst), (x, n, dst))                               \
    V(ls_rmsnorm, (float *out, const float *x, const float *g, int64_t n, float eps), (out, x, g, n, eps))     \
    V(ls_softmax, (float *x, int64_t n), (x, n))                                                               \
    V(ls_swiglu, (float *out, const float *gate, const float *up, int64_t n), (out, gate, up, n))              \
    R(float, ls_dot_f32, (const float *a, const float *b, int64_t n), (a, b, n))                               \
    V(ls_axpy_f32, (float *y, float a, const float *x, int64_t n), (y, a, x, n))                               \
    V(ls_f32_to_f16_row, (uint16_t * dst, const float *src, int64_t n), (dst, src, n))                         \
    V(ls_f16_to_f32_row, (float *dst, const uint16_t *src, int64_t n), (dst, src, n))                          \
    R(float, ls_dot_f16_f32, (const uint16_t *a, const float *b, int64_t n), (a, b, n))                        \
    V(ls_axpy_f16, (float *y, float a, const uint16_t *x, int64_t n), (y, a, x, n))                            \
    V(ls_attn_worker, (void *arg, int ith, int nth), (arg, ith, nth))                                          \
    R(size_t, ls_k_qact_bytes, (ls_type wt, int64_t n, int64_t cols), (wt, n, cols))                           \
    V(ls_k_qact_init, (ls_type wt, const float *x, int64_t n, int64_t cols, void *buf, ls_k_qact *a),          \
      (wt, x, n, cols, buf, a))                                                                                \
    V(ls_k_quant_row_q8k, (const float *x, int64_t cols, int8_t *q, float *d, int16_t *bsums),                 \
      (x, cols, q, d, bsums))                                                                                  \
    V(ls_k_dequant_row, (ls_type t, const uint8_t *src, int64_t cols, float *dst), (t, src, cols, dst))        \
    V(ls_k_kq_rows_model, (const ls_weight *w, const ls_k_qact *a, int64_t r0, int64_t r1, float *y),          \
      (w, a, r0, r1, y))

#endif
