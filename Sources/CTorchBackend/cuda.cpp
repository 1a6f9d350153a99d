// CUDA device memory and cuDNN settings. What needs CUDA's own headers (the caching allocator, the CUDA runtime
// types) compiles only with MLT_WITH_CUDA, which scripts/build-torch-backend.sh defines when it builds against a
// CUDA torch and finds cuda_runtime_api.h; the default SwiftPM build against Debian's CPU-only libtorch has none.
#include "internal.h"
#include <torch/cuda.h>

#if MLT_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#endif

#if MLT_WITH_CUDA
namespace {
using MemGetInfo = decltype(&cudaMemGetInfo);

// The CUDA runtime is libtorch_cuda's dependency, already loaded: looked up rather than linked, so the backend
// needs no link line for libcudart (whose file name carries the CUDA major version) and still loads against a
// torch whose cudart is not exported. The loader opens the backend RTLD_LOCAL, so the runtime is found through
// the backend's own handle (its dependency tree), not only in the global scope.
void *find_cuda_symbol(const char *name) {
    if (void *f = dlsym(RTLD_DEFAULT, name)) return f;
    Dl_info info;
    if (dladdr(reinterpret_cast<void *>(&find_cuda_symbol), &info) == 0 || !info.dli_fname) return nullptr;
    void *self = dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD);
    if (!self) return nullptr;
    void *f = dlsym(self, name);
    dlclose(self);  // drops the reference RTLD_NOLOAD added; the backend stays loaded
    return f;
}

// cuda_runtime_api.h may rename the entry point (CUDA 12's `cudaGetDeviceProperties` is a macro for
// `cudaGetDeviceProperties_v2`, whose struct layout the header describes): the name looked up is the header's.
#define MLT_SYMBOL_NAME(x) MLT_SYMBOL_NAME_(x)
#define MLT_SYMBOL_NAME_(x) #x
using GetDeviceProperties = cudaError_t (*)(cudaDeviceProp *, int);
} // namespace
#endif

extern "C" {

int mlt_cuda_built(void) {
#if MLT_WITH_CUDA
    return 1;
#else
    return 0;
#endif
}

mlt_status mlt_cuda_memory_info(int index, int64_t *free_bytes, int64_t *total_bytes, char **err) {
    return mlt::guard(err, [&] {
        if (!free_bytes || !total_bytes) throw std::invalid_argument("null output pointer");
#if MLT_WITH_CUDA
        if (!torch::cuda::is_available()) throw std::runtime_error("no CUDA device is available");
        if (index < 0 || static_cast<size_t>(index) >= torch::cuda::device_count())
            throw std::invalid_argument("no CUDA device " + std::to_string(index));
        static const MemGetInfo mem_get_info = reinterpret_cast<MemGetInfo>(find_cuda_symbol("cudaMemGetInfo"));
        if (!mem_get_info) throw std::runtime_error("the CUDA runtime's cudaMemGetInfo is not loaded");
        c10::cuda::CUDAGuard device_guard(static_cast<c10::DeviceIndex>(index));
        size_t free_b = 0, total_b = 0;
        cudaError_t rc = mem_get_info(&free_b, &total_b);
        if (rc != cudaSuccess)
            throw std::runtime_error("cudaMemGetInfo failed on cuda:" + std::to_string(index) + " (error " +
                                     std::to_string(static_cast<int>(rc)) + ")");
        *free_bytes = static_cast<int64_t>(free_b);
        *total_bytes = static_cast<int64_t>(total_b);
#else
        (void)index;
        throw std::runtime_error("this libtorch backend was built without CUDA");
#endif
    });
}

mlt_status mlt_cuda_device_name(int index, char **name, char **err) {
    return mlt::guard(err, [&] {
        if (!name) throw std::invalid_argument("null output pointer");
#if MLT_WITH_CUDA
        if (!torch::cuda::is_available()) throw std::runtime_error("no CUDA device is available");
        if (index < 0 || static_cast<size_t>(index) >= torch::cuda::device_count())
            throw std::invalid_argument("no CUDA device " + std::to_string(index));
        static const auto get_properties = reinterpret_cast<GetDeviceProperties>(
            find_cuda_symbol(MLT_SYMBOL_NAME(cudaGetDeviceProperties)));
        if (!get_properties) throw std::runtime_error("the CUDA runtime's cudaGetDeviceProperties is not loaded");
        cudaDeviceProp properties{};
        cudaError_t rc = get_properties(&properties, index);
        if (rc != cudaSuccess)
            throw std::runtime_error("cudaGetDeviceProperties failed on cuda:" + std::to_string(index) + " (error " +
                                     std::to_string(static_cast<int>(rc)) + ")");
        const size_t n = strnlen(properties.name, sizeof(properties.name));
        char *p = static_cast<char *>(std::malloc(n + 1));
        if (!p) throw std::bad_alloc();
        std::memcpy(p, properties.name, n);
        p[n] = 0;
        *name = p;
#else
        (void)index;
        throw std::runtime_error("this libtorch backend was built without CUDA");
#endif
    });
}

void mlt_cuda_empty_cache(void) {
#if MLT_WITH_CUDA
    try {
        // Before CUDA is initialised the allocator holds nothing (and initialising it here would cost a context).
        if (torch::cuda::is_available()) c10::cuda::CUDACachingAllocator::emptyCache();
    } catch (...) {
        // Releasing the cache is an optimisation; a failure leaves the blocks cached for reuse.
    }
#endif
}

int mlt_cuda_set_cudnn_benchmark(int enabled) {
    bool previous = at::globalContext().benchmarkCuDNN();
    at::globalContext().setBenchmarkCuDNN(enabled != 0);
    return previous ? 1 : 0;
}

} // extern "C"
