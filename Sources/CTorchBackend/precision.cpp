// Float32 precision settings of CUDA work (mlt_cuda_set_allow_tf32).
#include "internal.h"
#include <ATen/Context.h>

using mlt::guard;

extern "C" {

// ATen's legacy TF32 setters exist in every libtorch from 1.13 to 2.x (2.9+ keeps them beside the newer
// per-backend precision API and maps one onto the other); CPU builds store the flags and never read them.
mlt_status mlt_cuda_set_allow_tf32(int allow, int *previous, char **err) {
    return guard(err, [&] {
        auto &context = at::globalContext();
        bool before = context.allowTF32CuBLAS();
        context.setAllowTF32CuBLAS(allow != 0);
        context.setAllowTF32CuDNN(allow != 0);
        if (previous) *previous = before ? 1 : 0;
    });
}

}
