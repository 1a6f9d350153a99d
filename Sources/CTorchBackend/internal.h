// Shared by the shim's translation units: handle layouts and the exception-to-status boundary.
#pragma once
#include "mlt_backend.h"
#include <torch/torch.h>
#include <ATen/autocast_mode.h>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

struct mlt_tensor_s {
    at::Tensor t;
};

namespace mlt {

inline char *dup_message(const std::string &s) {
    char *p = static_cast<char *>(std::malloc(s.size() + 1));
    if (p) std::memcpy(p, s.c_str(), s.size() + 1);
    return p;
}

inline mlt_status fail(char **err, const std::string &msg) {
    if (err) *err = dup_message(msg.empty() ? std::string("unknown libtorch error") : msg);
    return MLT_ERROR;
}

// Whether a libtorch message reports a failed allocation. Not every one arrives as c10::OutOfMemoryError: the
// CPU allocator raises a plain c10::Error ("DefaultCPUAllocator: can't allocate memory" in 1.13, "not enough
// memory" later), cuDNN and cuBLAS report *_STATUS_ALLOC_FAILED, a raw CUDA call "out of memory", and the
// TorchScript interpreter re-raises any of them inside its own message.
inline bool is_oom_message(const std::string &m) {
    std::string l(m);
    for (auto &c : l) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return l.find("out of memory") != std::string::npos || l.find("can't allocate memory") != std::string::npos ||
           l.find("not enough memory") != std::string::npos || l.find("status_alloc_failed") != std::string::npos;
}

inline mlt_status fail_oom(char **err, const std::string &msg) {
    fail(err, msg);
    return MLT_OUT_OF_MEMORY;
}

// Runs `body` and turns every C++ exception into MLT_ERROR plus a message, or MLT_OUT_OF_MEMORY when an
// allocation failed (the caller may retry with less on the device); c10 errors prefer the message without the
// C++ backtrace, but that is empty for some (TorchScript load), hence the fallback to what().
template <typename F> mlt_status guard(char **err, F &&body) {
    try {
        body();
        return MLT_OK;
    } catch (const c10::OutOfMemoryError &e) {
        std::string m = e.what_without_backtrace();
        return fail_oom(err, m.empty() ? std::string(e.what()) : m);
    } catch (const c10::Error &e) {
        std::string m = e.what_without_backtrace();
        if (m.empty()) m = e.what();
        return is_oom_message(m) ? fail_oom(err, m) : fail(err, m);
    } catch (const std::bad_alloc &e) {
        return fail_oom(err, std::string("out of memory (") + e.what() + ")");
    } catch (const std::exception &e) {
        if (is_oom_message(e.what())) return fail_oom(err, e.what());
        return fail(err, e.what());
    } catch (...) {
        return fail(err, "non-standard C++ exception from libtorch");
    }
}

inline mlt_tensor wrap(at::Tensor t) { return new mlt_tensor_s{std::move(t)}; }

inline const at::Tensor &ref(mlt_tensor h) {
    if (!h) throw std::invalid_argument("null tensor handle");
    return h->t;
}

inline c10::optional<at::Tensor> opt(mlt_tensor h) {
    if (!h) return c10::nullopt;
    return h->t;
}

inline at::IntArrayRef ints(const int64_t *p, size_t n) {
    if (n > 0 && !p) throw std::invalid_argument("null array with non-zero length");
    return at::IntArrayRef(p, n);
}

inline at::ScalarType scalar_type(mlt_dtype d) {
    switch (d) {
    case MLT_UINT8: return at::kByte;
    case MLT_INT8: return at::kChar;
    case MLT_INT16: return at::kShort;
    case MLT_INT32: return at::kInt;
    case MLT_INT64: return at::kLong;
    case MLT_FLOAT16: return at::kHalf;
    case MLT_FLOAT32: return at::kFloat;
    case MLT_FLOAT64: return at::kDouble;
    case MLT_BOOL: return at::kBool;
    case MLT_BFLOAT16: return at::kBFloat16;
    }
    throw std::invalid_argument("unknown dtype code " + std::to_string(static_cast<int>(d)));
}

inline at::Device device(mlt_device_type type, int index) {
    switch (type) {
    case MLT_CPU: return at::Device(at::kCPU);
    case MLT_CUDA: return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
    }
    throw std::invalid_argument("unknown device type " + std::to_string(static_cast<int>(type)));
}

// The C API passes scalars as double; for integer tensors a whole value becomes an integer scalar, so
// `int_tensor + 1` stays integral as in Python and in-place integer updates are allowed.
inline at::Scalar scalar_for(const at::Tensor &t, double v) {
    if (at::isIntegralType(t.scalar_type(), /*includeBool=*/false) && std::floor(v) == v &&
        std::fabs(v) < 9.0e18)
        return at::Scalar(static_cast<int64_t>(v));
    return at::Scalar(v);
}

// The input group_norm and layer_norm should see. libtorch 1.13's CPU kernels want the input in the affine
// parameters' dtype and its CPU autocast passes both ops by, so a bf16 activation fails there: under autocast it
// is normalised in float32 (CUDA autocast's policy for these ops). 2.x's kernels take the mix themselves.
inline at::Tensor autocast_norm_input(const at::Tensor &x) {
#if TORCH_VERSION_MAJOR < 2
    if (x.scalar_type() == at::kBFloat16 && at::autocast::is_cpu_enabled()) return x.to(at::kFloat);
#endif
    return x;
}

inline std::vector<at::Tensor> tensor_list(const mlt_tensor *hs, size_t n) {
    if (n > 0 && !hs) throw std::invalid_argument("null tensor list with non-zero length");
    std::vector<at::Tensor> v;
    v.reserve(n);
    for (size_t i = 0; i < n; ++i) v.push_back(ref(hs[i]));
    return v;
}

} // namespace mlt
