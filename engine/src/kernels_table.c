/* kernels_table.c: this variant's table of kernel functions (one of the
 * variant sources, compiled once per instruction set: kernels_variants.h) */
#include "kernels_impl.h"

#ifndef LS_KV
#error "kernels_table.c is compiled only as a kernel variant (LS_KV=<variant>)"
#endif

#define LS_KV_ENTRY_R(ret, name, params, args) .f_##name = name,
#define LS_KV_ENTRY_V(name, params, args) .f_##name = name,
const ls_kv_table LS_KV_NAME(ls_kv_table) = {
    .path = LS_KV_STR(LS_KV),
    LS_KV_FUNCS(LS_KV_ENTRY_R, LS_KV_ENTRY_V)
};
