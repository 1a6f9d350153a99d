// Tensor handles: creation, host data, metadata, views, in-place updates, autograd and global settings.
#include "internal.h"
#include <torch/cuda.h>

using mlt::guard;
using mlt::ref;
using mlt::wrap;

extern "C" {

int mlt_version(void) { return TORCH_VERSION_MAJOR * 100 + TORCH_VERSION_MINOR; }

const char *mlt_version_string(void) { return TORCH_VERSION; }

int mlt_cxx11_abi(void) { return _GLIBCXX_USE_CXX11_ABI; }

void mlt_error_free(char *err) { std::free(err); }

void mlt_string_free(char *s) { std::free(s); }

void mlt_manual_seed(uint64_t seed) { torch::manual_seed(seed); }

mlt_status mlt_set_num_threads(int n, char **err) {
    return guard(err, [&] {
        if (n < 1) throw std::invalid_argument("number of threads must be at least 1, got " + std::to_string(n));
        at::set_num_threads(n);
    });
}

int mlt_get_num_threads(void) { return at::get_num_threads(); }

int mlt_cuda_is_available(void) {
    try {
        return torch::cuda::is_available() ? 1 : 0;
    } catch (...) {
        return 0;
    }
}

int mlt_cuda_device_count(void) {
    try {
        return static_cast<int>(torch::cuda::device_count());
    } catch (...) {
        return 0;
    }
}

int mlt_set_grad_enabled(int enabled) {
    bool previous = at::GradMode::is_enabled();
    at::GradMode::set_enabled(enabled != 0);
    return previous ? 1 : 0;
}

int mlt_is_grad_enabled(void) { return at::GradMode::is_enabled() ? 1 : 0; }

void mlt_tensor_free(mlt_tensor t) { delete t; }

mlt_status mlt_tensor_from_data(const void *data, size_t nbytes, const int64_t *shape, size_t ndim, mlt_dtype dtype,
                                mlt_tensor *out, char **err) {
    return guard(err, [&] {
        auto st = mlt::scalar_type(dtype);
        auto t = at::empty(mlt::ints(shape, ndim), at::TensorOptions().dtype(st));
        size_t expected = static_cast<size_t>(t.numel()) * t.element_size();
        if (expected != nbytes)
            throw std::invalid_argument("buffer holds " + std::to_string(nbytes) + " bytes but shape and dtype need " +
                                        std::to_string(expected));
        if (nbytes > 0) {
            if (!data) throw std::invalid_argument("null data pointer");
            std::memcpy(t.data_ptr(), data, nbytes);
        }
        *out = wrap(std::move(t));
    });
}

mlt_status mlt_tensor_copy_to_host(mlt_tensor h, void *dst, size_t nbytes, char **err) {
    return guard(err, [&] {
        auto t = ref(h).detach().to(at::kCPU).contiguous();
        size_t have = static_cast<size_t>(t.numel()) * t.element_size();
        if (have != nbytes)
            throw std::invalid_argument("tensor holds " + std::to_string(have) + " bytes but the destination has " +
                                        std::to_string(nbytes));
        if (nbytes > 0) {
            if (!dst) throw std::invalid_argument("null destination pointer");
            std::memcpy(dst, t.data_ptr(), nbytes);
        }
    });
}

size_t mlt_tensor_ndim(mlt_tensor t) { return static_cast<size_t>(t->t.dim()); }

void mlt_tensor_sizes(mlt_tensor t, int64_t *sizes) {
    auto s = t->t.sizes();
    for (size_t i = 0; i < s.size(); ++i) sizes[i] = s[i];
}

int64_t mlt_tensor_numel(mlt_tensor t) { return t->t.numel(); }

mlt_dtype mlt_tensor_dtype(mlt_tensor t) { return static_cast<mlt_dtype>(static_cast<int>(t->t.scalar_type())); }

void mlt_tensor_device(mlt_tensor t, mlt_device_type *type, int *index) {
    auto d = t->t.device();
    *type = d.is_cuda() ? MLT_CUDA : MLT_CPU;
    *index = d.has_index() ? d.index() : 0;
}

mlt_status mlt_tensor_item(mlt_tensor t, double *value, char **err) {
    return guard(err, [&] { *value = ref(t).item<double>(); });
}

#define MLT_FACTORY(name, expr)                                                                                      \
    mlt_status name(const int64_t *shape, size_t ndim, mlt_dtype dtype, mlt_device_type dev, int index,             \
                    mlt_tensor *out, char **err) {                                                                   \
        return guard(err, [&] {                                                                                      \
            auto opts = at::TensorOptions().dtype(mlt::scalar_type(dtype)).device(mlt::device(dev, index));          \
            auto sizes = mlt::ints(shape, ndim);                                                                     \
            *out = wrap(expr);                                                                                       \
        });                                                                                                          \
    }
MLT_FACTORY(mlt_zeros, at::zeros(sizes, opts))
MLT_FACTORY(mlt_ones, at::ones(sizes, opts))
MLT_FACTORY(mlt_randn, at::randn(sizes, opts))
MLT_FACTORY(mlt_rand, at::rand(sizes, opts))
#undef MLT_FACTORY

mlt_status mlt_full(const int64_t *shape, size_t ndim, double value, mlt_dtype dtype, mlt_device_type dev, int index,
                    mlt_tensor *out, char **err) {
    return guard(err, [&] {
        auto opts = at::TensorOptions().dtype(mlt::scalar_type(dtype)).device(mlt::device(dev, index));
        *out = wrap(at::full(mlt::ints(shape, ndim), value, opts));
    });
}

mlt_status mlt_arange(double start, double end, double step, mlt_dtype dtype, mlt_device_type dev, int index,
                      mlt_tensor *out, char **err) {
    return guard(err, [&] {
        auto opts = at::TensorOptions().dtype(mlt::scalar_type(dtype)).device(mlt::device(dev, index));
        *out = wrap(at::arange(start, end, step, opts));
    });
}

mlt_status mlt_tensor_clone(mlt_tensor t, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(ref(t).clone()); });
}

mlt_status mlt_tensor_shallow_copy(mlt_tensor t, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(ref(t)); });
}

mlt_status mlt_tensor_contiguous(mlt_tensor t, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(ref(t).contiguous()); });
}

mlt_status mlt_tensor_contiguous_format(mlt_tensor t, int channels_last, mlt_tensor *out, char **err) {
    return guard(err, [&] {
        const at::Tensor &x = ref(t);
        auto format = !channels_last ? at::MemoryFormat::Contiguous
                      : x.dim() == 5 ? at::MemoryFormat::ChannelsLast3d
                                     : at::MemoryFormat::ChannelsLast;
        *out = wrap(x.contiguous(format));
    });
}

mlt_status mlt_tensor_reshape(mlt_tensor t, const int64_t *shape, size_t ndim, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(ref(t).reshape(mlt::ints(shape, ndim))); });
}

mlt_status mlt_tensor_view(mlt_tensor t, const int64_t *shape, size_t ndim, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(ref(t).view(mlt::ints(shape, ndim))); });
}

mlt_status mlt_tensor_permute(mlt_tensor t, const int64_t *dims, size_t ndim, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(ref(t).permute(mlt::ints(dims, ndim))); });
}

mlt_status mlt_tensor_expand(mlt_tensor t, const int64_t *shape, size_t ndim, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(ref(t).expand(mlt::ints(shape, ndim))); });
}

mlt_status mlt_tensor_slice(mlt_tensor t, int64_t dim, int64_t start, int64_t end, int64_t step, mlt_tensor *out,
                            char **err) {
    return guard(err, [&] { *out = wrap(ref(t).slice(dim, start, end, step)); });
}

mlt_status mlt_tensor_narrow(mlt_tensor t, int64_t dim, int64_t start, int64_t length, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(ref(t).narrow(dim, start, length)); });
}

mlt_status mlt_tensor_squeeze(mlt_tensor t, int64_t dim, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(ref(t).squeeze(dim)); });
}

mlt_status mlt_tensor_unsqueeze(mlt_tensor t, int64_t dim, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(ref(t).unsqueeze(dim)); });
}

mlt_status mlt_tensor_flip(mlt_tensor t, const int64_t *dims, size_t ndim, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(ref(t).flip(mlt::ints(dims, ndim))); });
}

mlt_status mlt_tensor_to(mlt_tensor t, mlt_dtype dtype, mlt_device_type dev, int index, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(ref(t).to(mlt::device(dev, index), mlt::scalar_type(dtype))); });
}

mlt_status mlt_cat(const mlt_tensor *tensors, size_t count, int64_t dim, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(at::cat(mlt::tensor_list(tensors, count), dim)); });
}

mlt_status mlt_stack(const mlt_tensor *tensors, size_t count, int64_t dim, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(at::stack(mlt::tensor_list(tensors, count), dim)); });
}

mlt_status mlt_tensor_copy_(mlt_tensor dst, mlt_tensor src, char **err) {
    return guard(err, [&] {
        auto &d = ref(dst);
        const auto &s = ref(src);
        if (d.sizes() != s.sizes())
            throw std::invalid_argument("copy_: destination shape " + c10::str(d.sizes()) +
                                        " differs from source shape " + c10::str(s.sizes()));
        dst->t.copy_(s);
    });
}

mlt_status mlt_tensor_fill_(mlt_tensor t, double value, char **err) {
    return guard(err, [&] {
        ref(t);
        t->t.fill_(mlt::scalar_for(t->t, value));
    });
}

mlt_status mlt_tensor_add_(mlt_tensor t, mlt_tensor other, char **err) {
    return guard(err, [&] {
        ref(t);
        t->t.add_(ref(other));
    });
}

mlt_status mlt_tensor_add_scalar_(mlt_tensor t, double value, char **err) {
    return guard(err, [&] {
        ref(t);
        t->t.add_(mlt::scalar_for(t->t, value));
    });
}

mlt_status mlt_tensor_uniform_(mlt_tensor t, double low, double high, char **err) {
    return guard(err, [&] {
        ref(t);
        t->t.uniform_(low, high);
    });
}

mlt_status mlt_tensor_normal_(mlt_tensor t, double mean, double std, char **err) {
    return guard(err, [&] {
        ref(t);
        t->t.normal_(mean, std);
    });
}

mlt_status mlt_tensor_set_requires_grad(mlt_tensor t, int requires_grad, char **err) {
    return guard(err, [&] {
        ref(t);
        t->t.set_requires_grad(requires_grad != 0);
    });
}

int mlt_tensor_requires_grad(mlt_tensor t) { return t->t.requires_grad() ? 1 : 0; }

mlt_status mlt_tensor_backward(mlt_tensor t, mlt_tensor grad_output, char **err) {
    return guard(err, [&] {
        if (grad_output)
            ref(t).backward(grad_output->t);
        else
            ref(t).backward();
    });
}

mlt_status mlt_tensor_grad(mlt_tensor t, mlt_tensor *out, char **err) {
    return guard(err, [&] {
        const auto &g = ref(t).grad();
        *out = g.defined() ? wrap(g) : nullptr;
    });
}

mlt_status mlt_tensor_zero_grad(mlt_tensor t, char **err) {
    return guard(err, [&] {
        ref(t);
        t->t.mutable_grad().reset();
    });
}

mlt_status mlt_tensor_detach(mlt_tensor t, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(ref(t).detach()); });
}

} // extern "C"
