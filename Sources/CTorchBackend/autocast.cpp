// Mixed precision: libtorch's autocast (torch.autocast) as a scope the caller opens and closes on one thread.
#include "internal.h"
#include <ATen/autocast_mode.h>
#include <torch/cuda.h>

using mlt::guard;

namespace {

// libtorch 2.4 replaced the per-device functions (set_enabled for CUDA, set_cpu_enabled, get/set_autocast_gpu_dtype,
// get/set_autocast_cpu_dtype) with ones taking the device type; later 2.x releases only warn about the old
// names, but they are deprecated, so each version gets its own calls.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
bool is_enabled(at::DeviceType d) { return at::autocast::is_autocast_enabled(d); }
void set_enabled(at::DeviceType d, bool on) { at::autocast::set_autocast_enabled(d, on); }
at::ScalarType get_dtype(at::DeviceType d) { return at::autocast::get_autocast_dtype(d); }
void set_dtype(at::DeviceType d, at::ScalarType t) { at::autocast::set_autocast_dtype(d, t); }
#else
bool is_enabled(at::DeviceType d) {
    return d == at::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
}
void set_enabled(at::DeviceType d, bool on) {
    if (d == at::kCUDA)
        at::autocast::set_enabled(on);
    else
        at::autocast::set_cpu_enabled(on);
}
at::ScalarType get_dtype(at::DeviceType d) {
    return d == at::kCUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
}
void set_dtype(at::DeviceType d, at::ScalarType t) {
    if (d == at::kCUDA)
        at::autocast::set_autocast_gpu_dtype(t);
    else
        at::autocast::set_autocast_cpu_dtype(t);
}
#endif

at::DeviceType device_type(mlt_device_type dev) {
    switch (dev) {
    case MLT_CPU: return at::kCPU;
    case MLT_CUDA: return at::kCUDA;
    }
    throw std::invalid_argument("unknown device type " + std::to_string(static_cast<int>(dev)));
}

mlt_dtype dtype_code(at::ScalarType t) {
    switch (t) {
    case at::kHalf: return MLT_FLOAT16;
    case at::kBFloat16: return MLT_BFLOAT16;
    default: return MLT_FLOAT32;
    }
}

bool supported(mlt_device_type dev, mlt_dtype dtype) {
    switch (dev) {
    // libtorch 1.13's CPU autocast lists bf16 only; fp16 on the CPU is slow where it runs at all.
    case MLT_CPU: return dtype == MLT_BFLOAT16;
    case MLT_CUDA: return (dtype == MLT_FLOAT16 || dtype == MLT_BFLOAT16) && torch::cuda::is_available();
    }
    return false;
}

} // namespace

extern "C" {

int mlt_autocast_supported(mlt_device_type dev, mlt_dtype dtype) {
    try {
        return supported(dev, dtype) ? 1 : 0;
    } catch (...) {
        return 0;
    }
}

mlt_status mlt_autocast_enter(mlt_device_type dev, mlt_dtype dtype, int *prev_enabled, mlt_dtype *prev_dtype,
                              char **err) {
    return guard(err, [&] {
        if (!prev_enabled || !prev_dtype) throw std::invalid_argument("null previous-state pointer");
        auto d = device_type(dev);
        if (!supported(dev, dtype))
            throw std::invalid_argument("autocast to dtype code " + std::to_string(static_cast<int>(dtype)) +
                                        " is not available on " + (dev == MLT_CPU ? "the CPU" : "CUDA") +
                                        " in this backend");
        auto target = mlt::scalar_type(dtype);
        *prev_enabled = is_enabled(d) ? 1 : 0;
        *prev_dtype = dtype_code(get_dtype(d));
        set_dtype(d, target);
        set_enabled(d, true);
        at::autocast::increment_nesting();
    });
}

void mlt_autocast_exit(mlt_device_type dev, int prev_enabled, mlt_dtype prev_dtype) {
    try {
        auto d = device_type(dev);
        // As torch.autocast.__exit__: the cache of lower-precision weight copies lives until the outermost scope
        // closes, so weights updated by an optimizer step are cast afresh next time.
        if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
        set_enabled(d, prev_enabled != 0);
        if (prev_dtype == MLT_FLOAT16 || prev_dtype == MLT_BFLOAT16) set_dtype(d, mlt::scalar_type(prev_dtype));
    } catch (...) {
        // Restoring thread-local flags does not throw for the two known device types; nothing to report.
    }
}

int mlt_autocast_is_enabled(mlt_device_type dev) {
    try {
        return is_enabled(device_type(dev)) ? 1 : 0;
    } catch (...) {
        return 0;
    }
}

} // extern "C"
