#ifndef MLT_TORCH_H
#define MLT_TORCH_H
/*
 * Plain C API over libtorch (the C++ frontend), used by the Swift TorchKit target.
 *
 * Two halves share this header. The backend (Sources/CTorchBackend, built as libmonailabel_torch.so by SwiftPM
 * against Debian's libtorch or by scripts/build-torch-backend.sh against any other) implements every function
 * except the mlt_backend_* ones. The loader (Sources/CTorch, plain C, no torch headers) is what the Swift binary
 * links: it implements mlt_backend_* and forwards every other function to the backend it dlopens, so the binary
 * itself never links libtorch and runs against whichever libtorch the backend was built for.
 *
 * Conventions:
 * - One prefix, `mlt_`. Handles are opaque; every creator has a matching `*_free`.
 * - Every entry point that can fail returns an `mlt_status` and, on failure, stores a newly allocated,
 *   NUL-terminated message in `*err` that the caller releases with `mlt_error_free`. No C++ exception
 *   crosses this boundary and there is no thread-local "last error": callers may resume on another thread.
 * - On success `*err` is left untouched and result handles are written to `*out`.
 * - Shapes and lists are pointer + count. Dtype codes are `mlt_dtype`, devices are (`mlt_device_type`, index).
 * - Grad mode (mlt_set_grad_enabled) is per OS thread in libtorch: set and restore it within one
 *   synchronous stretch of code.
 */
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mlt_tensor_s *mlt_tensor;
typedef struct mlt_optimizer_s *mlt_optimizer;
typedef struct mlt_jit_module_s *mlt_jit_module;
typedef struct mlt_process_group_s *mlt_process_group;

/* MLT_OUT_OF_MEMORY: a failure libtorch raised because an allocation failed (CUDA out of memory, the CPU
 * allocator refused, std::bad_alloc); the message says which. The caller may retry with less on the device. */
typedef enum { MLT_OK = 0, MLT_ERROR = 1, MLT_OUT_OF_MEMORY = 2 } mlt_status;

/* Values equal libtorch's c10::ScalarType codes. */
typedef enum {
    MLT_UINT8 = 0, MLT_INT8 = 1, MLT_INT16 = 2, MLT_INT32 = 3, MLT_INT64 = 4,
    MLT_FLOAT16 = 5, MLT_FLOAT32 = 6, MLT_FLOAT64 = 7, MLT_BOOL = 11, MLT_BFLOAT16 = 15
} mlt_dtype;

typedef enum { MLT_CPU = 0, MLT_CUDA = 1 } mlt_device_type;

/* ---- Loader (Sources/CTorch only; the backend does not define these) ---- */
/* Loads the backend once per process: the file named by MONAILABEL_TORCH_BACKEND, else libmonailabel_torch.so
 * in the running executable's directory. Returns NULL on success, else a message (static storage; the same
 * message on every later call). Every other mlt_ function loads the backend on first use and aborts the
 * process with that message when it cannot be loaded, so callers check this first. */
const char *mlt_backend_load(void);
/* The path the backend was loaded from; NULL before a successful mlt_backend_load. */
const char *mlt_backend_path(void);

/* ---- Backend identity ---- */
/* Version of the libtorch this was built against, as major * 100 + minor (113 for 1.13). */
int mlt_version(void);
/* The same as libtorch's TORCH_VERSION string ("1.13.0", "2.13.0"); static storage. */
const char *mlt_version_string(void);
/* The _GLIBCXX_USE_CXX11_ABI value the backend was compiled with (it must equal libtorch's). */
int mlt_cxx11_abi(void);
void mlt_error_free(char *err);
/* Frees a string the shim allocated for the caller (e.g. mlt_jit_named_state names). */
void mlt_string_free(char *s);

/* ---- Global settings ---- */
void mlt_manual_seed(uint64_t seed);
mlt_status mlt_set_num_threads(int n, char **err);
int mlt_get_num_threads(void);
int mlt_cuda_is_available(void);
int mlt_cuda_device_count(void);
/* Sets grad mode for the calling OS thread; returns the previous value. */
int mlt_set_grad_enabled(int enabled);
int mlt_is_grad_enabled(void);

/* ---- Mixed precision (autocast.cpp) ---- */
/* libtorch's autocast (torch.autocast): inside a scope, convolutions and matrix products on `dev` run in the
 * lower-precision `dtype` (CUDA: MLT_FLOAT16 or MLT_BFLOAT16; CPU: MLT_BFLOAT16) and precision-sensitive ops in
 * float32, per libtorch's own op lists. Like grad mode the state is per OS thread: enter and exit on the thread
 * that runs the forward pass, within one synchronous stretch of code. */
/* 1 when this backend can autocast on `dev` to `dtype`. */
int mlt_autocast_supported(mlt_device_type dev, mlt_dtype dtype);
/* Turns autocast on for `dev` with `dtype` on the calling thread and writes the state it replaced into
 * *prev_enabled and *prev_dtype for mlt_autocast_exit. Fails for a pair mlt_autocast_supported refuses. */
mlt_status mlt_autocast_enter(mlt_device_type dev, mlt_dtype dtype, int *prev_enabled, mlt_dtype *prev_dtype,
                              char **err);
/* Restores what mlt_autocast_enter replaced; closing the outermost scope clears autocast's cache of
 * lower-precision weight copies. */
void mlt_autocast_exit(mlt_device_type dev, int prev_enabled, mlt_dtype prev_dtype);
int mlt_autocast_is_enabled(mlt_device_type dev);

/* ---- Tensor lifetime, data and metadata (tensor.cpp) ---- */
void mlt_tensor_free(mlt_tensor t);
/* Copies `nbytes` from `data` (C order, native little-endian) into a new CPU tensor. */
mlt_status mlt_tensor_from_data(const void *data, size_t nbytes, const int64_t *shape, size_t ndim, mlt_dtype dtype,
                                mlt_tensor *out, char **err);
/* Copies the elements (made contiguous and moved to CPU) into `dst`, which must hold exactly `nbytes`. */
mlt_status mlt_tensor_copy_to_host(mlt_tensor t, void *dst, size_t nbytes, char **err);
size_t mlt_tensor_ndim(mlt_tensor t);
/* Writes mlt_tensor_ndim(t) sizes into `sizes`. */
void mlt_tensor_sizes(mlt_tensor t, int64_t *sizes);
int64_t mlt_tensor_numel(mlt_tensor t);
mlt_dtype mlt_tensor_dtype(mlt_tensor t);
void mlt_tensor_device(mlt_tensor t, mlt_device_type *type, int *index);
mlt_status mlt_tensor_item(mlt_tensor t, double *value, char **err);

mlt_status mlt_zeros(const int64_t *shape, size_t ndim, mlt_dtype dtype, mlt_device_type dev, int index,
                     mlt_tensor *out, char **err);
mlt_status mlt_ones(const int64_t *shape, size_t ndim, mlt_dtype dtype, mlt_device_type dev, int index,
                    mlt_tensor *out, char **err);
mlt_status mlt_full(const int64_t *shape, size_t ndim, double value, mlt_dtype dtype, mlt_device_type dev, int index,
                    mlt_tensor *out, char **err);
/* Standard normal and uniform [0, 1) samples from the global generator (mlt_manual_seed). */
mlt_status mlt_randn(const int64_t *shape, size_t ndim, mlt_dtype dtype, mlt_device_type dev, int index,
                     mlt_tensor *out, char **err);
mlt_status mlt_rand(const int64_t *shape, size_t ndim, mlt_dtype dtype, mlt_device_type dev, int index,
                    mlt_tensor *out, char **err);
mlt_status mlt_arange(double start, double end, double step, mlt_dtype dtype, mlt_device_type dev, int index,
                      mlt_tensor *out, char **err);

/* ---- Views, layout, conversion (tensor.cpp) ---- */
mlt_status mlt_tensor_clone(mlt_tensor t, mlt_tensor *out, char **err);
/* A new handle to the same tensor (shared storage and autograd identity). */
mlt_status mlt_tensor_shallow_copy(mlt_tensor t, mlt_tensor *out, char **err);
mlt_status mlt_tensor_contiguous(mlt_tensor t, mlt_tensor *out, char **err);
/* The elements laid out channels-last when `channels_last` is non-zero (4-d: NHWC, 5-d: NDHWC; other ranks fail),
 * else contiguous. */
mlt_status mlt_tensor_contiguous_format(mlt_tensor t, int channels_last, mlt_tensor *out, char **err);
mlt_status mlt_tensor_reshape(mlt_tensor t, const int64_t *shape, size_t ndim, mlt_tensor *out, char **err);
mlt_status mlt_tensor_view(mlt_tensor t, const int64_t *shape, size_t ndim, mlt_tensor *out, char **err);
mlt_status mlt_tensor_permute(mlt_tensor t, const int64_t *dims, size_t ndim, mlt_tensor *out, char **err);
mlt_status mlt_tensor_expand(mlt_tensor t, const int64_t *shape, size_t ndim, mlt_tensor *out, char **err);
mlt_status mlt_tensor_slice(mlt_tensor t, int64_t dim, int64_t start, int64_t end, int64_t step, mlt_tensor *out,
                            char **err);
mlt_status mlt_tensor_narrow(mlt_tensor t, int64_t dim, int64_t start, int64_t length, mlt_tensor *out, char **err);
mlt_status mlt_tensor_squeeze(mlt_tensor t, int64_t dim, mlt_tensor *out, char **err);
mlt_status mlt_tensor_unsqueeze(mlt_tensor t, int64_t dim, mlt_tensor *out, char **err);
mlt_status mlt_tensor_flip(mlt_tensor t, const int64_t *dims, size_t ndim, mlt_tensor *out, char **err);
mlt_status mlt_tensor_to(mlt_tensor t, mlt_dtype dtype, mlt_device_type dev, int index, mlt_tensor *out, char **err);
mlt_status mlt_cat(const mlt_tensor *tensors, size_t count, int64_t dim, mlt_tensor *out, char **err);
mlt_status mlt_stack(const mlt_tensor *tensors, size_t count, int64_t dim, mlt_tensor *out, char **err);

/* ---- In-place (tensor.cpp); autograd refuses these on leaves that require grad unless grad mode is off ---- */
mlt_status mlt_tensor_copy_(mlt_tensor dst, mlt_tensor src, char **err);
mlt_status mlt_tensor_fill_(mlt_tensor t, double value, char **err);
mlt_status mlt_tensor_add_scalar_(mlt_tensor t, double value, char **err);
/* t += other (broadcast to t's shape). */
mlt_status mlt_tensor_add_(mlt_tensor t, mlt_tensor other, char **err);
mlt_status mlt_tensor_uniform_(mlt_tensor t, double low, double high, char **err);
mlt_status mlt_tensor_normal_(mlt_tensor t, double mean, double std, char **err);

/* ---- Autograd (tensor.cpp) ---- */
mlt_status mlt_tensor_set_requires_grad(mlt_tensor t, int requires_grad, char **err);
int mlt_tensor_requires_grad(mlt_tensor t);
/* Backpropagates from `t` (a scalar, or with `grad_output` of t's shape; pass NULL for a scalar). */
mlt_status mlt_tensor_backward(mlt_tensor t, mlt_tensor grad_output, char **err);
/* Writes NULL into *out when no gradient has been accumulated. */
mlt_status mlt_tensor_grad(mlt_tensor t, mlt_tensor *out, char **err);
/* Drops the accumulated gradient (next backward starts from nothing). */
mlt_status mlt_tensor_zero_grad(mlt_tensor t, char **err);
mlt_status mlt_tensor_detach(mlt_tensor t, mlt_tensor *out, char **err);

/* ---- Elementwise and reductions (ops.cpp) ---- */
typedef enum {
    MLT_NEG, MLT_ABS, MLT_EXP, MLT_LOG, MLT_SQRT, MLT_RSQRT, MLT_SIGMOID, MLT_TANH, MLT_RELU, MLT_FLOOR, MLT_CEIL,
    MLT_ROUND, MLT_SIGN, MLT_RECIPROCAL, MLT_LOGICAL_NOT, MLT_SQUARE, MLT_ISNAN,
    /* Exact (erf) GELU, torch.nn.GELU's default; appended so earlier codes keep their values. */
    MLT_GELU
} mlt_unary_op;
typedef enum {
    MLT_ADD, MLT_SUB, MLT_MUL, MLT_DIV, MLT_POW, MLT_MAXIMUM, MLT_MINIMUM, MLT_EQ, MLT_NE, MLT_LT, MLT_LE, MLT_GT,
    MLT_GE, MLT_MATMUL, MLT_LOGICAL_AND, MLT_LOGICAL_OR, MLT_REMAINDER
} mlt_binary_op;
typedef enum { MLT_SUM, MLT_MEAN, MLT_AMAX, MLT_AMIN, MLT_PROD } mlt_reduce_op;

mlt_status mlt_unary(mlt_unary_op op, mlt_tensor t, mlt_tensor *out, char **err);
/* Broadcasting binary op; MLT_MATMUL is the matrix product. */
mlt_status mlt_binary(mlt_binary_op op, mlt_tensor a, mlt_tensor b, mlt_tensor *out, char **err);
/* `a op scalar` (MLT_MATMUL is refused). */
mlt_status mlt_binary_scalar(mlt_binary_op op, mlt_tensor a, double scalar, mlt_tensor *out, char **err);
/* `scalar op a`, for the non-commutative ops (e.g. 1 - x, 2 / x). */
mlt_status mlt_scalar_binary(mlt_binary_op op, double scalar, mlt_tensor a, mlt_tensor *out, char **err);
/* Reduces over `dims` (all dims when ndims == 0). */
mlt_status mlt_reduce(mlt_reduce_op op, mlt_tensor t, const int64_t *dims, size_t ndims, int keepdim, mlt_tensor *out,
                      char **err);
/* Index of the maximum along `dim`; over the flattened tensor when `flatten` is non-zero. */
mlt_status mlt_argmax(mlt_tensor t, int64_t dim, int keepdim, int flatten, mlt_tensor *out, char **err);
/* Clamps to [min, max]; a bound is ignored when its has_* flag is zero. */
mlt_status mlt_clamp(mlt_tensor t, int has_min, double min, int has_max, double max, mlt_tensor *out, char **err);
mlt_status mlt_where(mlt_tensor cond, mlt_tensor a, mlt_tensor b, mlt_tensor *out, char **err);
mlt_status mlt_softmax(mlt_tensor t, int64_t dim, mlt_tensor *out, char **err);
mlt_status mlt_log_softmax(mlt_tensor t, int64_t dim, mlt_tensor *out, char **err);
/* Appends a trailing class dim of size num_classes (int64 result), as torch.nn.functional.one_hot. */
mlt_status mlt_one_hot(mlt_tensor t, int64_t num_classes, mlt_tensor *out, char **err);
/* The entries of `t` along `dim` at the (int64, 1-D) `index` positions, as torch.index_select (differentiable in t). */
mlt_status mlt_index_select(mlt_tensor t, int64_t dim, mlt_tensor index, mlt_tensor *out, char **err);

/* ---- Neural network functions (ops.cpp) ---- */
/* N-d convolution (N from weight's rank - 2); transposed when `transposed` is non-zero. bias may be NULL.
 * stride/padding/dilation/output_padding each hold `nspatial` values. */
mlt_status mlt_convolution(mlt_tensor input, mlt_tensor weight, mlt_tensor bias, const int64_t *stride,
                           const int64_t *padding, const int64_t *dilation, const int64_t *output_padding,
                           size_t nspatial, int transposed, int64_t groups, mlt_tensor *out, char **err);
/* weight, bias, running_mean, running_var may be NULL. In training the running stats are updated in place. */
mlt_status mlt_batch_norm(mlt_tensor input, mlt_tensor weight, mlt_tensor bias, mlt_tensor running_mean,
                          mlt_tensor running_var, int training, double momentum, double eps, mlt_tensor *out,
                          char **err);
mlt_status mlt_instance_norm(mlt_tensor input, mlt_tensor weight, mlt_tensor bias, mlt_tensor running_mean,
                             mlt_tensor running_var, int use_input_stats, double momentum, double eps,
                             mlt_tensor *out, char **err);
mlt_status mlt_group_norm(mlt_tensor input, int64_t num_groups, mlt_tensor weight, mlt_tensor bias, double eps,
                          mlt_tensor *out, char **err);
mlt_status mlt_layer_norm(mlt_tensor input, const int64_t *normalized_shape, size_t ndim, mlt_tensor weight,
                          mlt_tensor bias, double eps, mlt_tensor *out, char **err);
mlt_status mlt_leaky_relu(mlt_tensor t, double slope, mlt_tensor *out, char **err);
/* leaky_relu in place. */
mlt_status mlt_leaky_relu_(mlt_tensor t, double slope, char **err);
/* Non-zero when this libtorch has oneDNN's fused convolution + eltwise op (transposed or not) for float32 CPU
 * tensors (libtorch 2.x builds with mkldnn). */
int mlt_convolution_leaky_relu_available(int transposed);
/* leaky_relu(convolution(...), slope) as one oneDNN primitive; arguments as mlt_convolution (output_padding only
 * for transposed), float32 CPU tensors only, and only where mlt_convolution_leaky_relu_available. No autograd. */
mlt_status mlt_convolution_leaky_relu(mlt_tensor input, mlt_tensor weight, mlt_tensor bias, const int64_t *stride,
                                      const int64_t *padding, const int64_t *dilation, const int64_t *output_padding,
                                      size_t nspatial, int transposed, int64_t groups, double slope,
                                      mlt_tensor *out, char **err);
/* A 2-d or 3-d convolution (stride 1, dilation 1, one group; `padding` holds `nspatial` values) computed by the
 * shim's own loops rather than oneDNN, for float32 CPU tensors with at most MLT_SMALL_CONV_CHANNELS input and
 * output channels, where oneDNN pads both to blocks of 8 or 16 channels and runs several times slower. The output
 * is contiguous. bias may be NULL. No autograd: inputs that require grad are refused. */
#define MLT_SMALL_CONV_CHANNELS 4
mlt_status mlt_convolution_small(mlt_tensor input, mlt_tensor weight, mlt_tensor bias, const int64_t *padding,
                                 size_t nspatial, mlt_tensor *out, char **err);
mlt_status mlt_prelu(mlt_tensor t, mlt_tensor weight, mlt_tensor *out, char **err);
mlt_status mlt_elu(mlt_tensor t, double alpha, mlt_tensor *out, char **err);
/* Channel-wise (whole feature maps, as nn.Dropout2d/3d) when `channelwise` is non-zero. */
mlt_status mlt_dropout(mlt_tensor t, double p, int training, int channelwise, mlt_tensor *out, char **err);
/* bias may be NULL. */
mlt_status mlt_linear(mlt_tensor input, mlt_tensor weight, mlt_tensor bias, mlt_tensor *out, char **err);

typedef enum {
    MLT_INTERP_NEAREST, MLT_INTERP_LINEAR, MLT_INTERP_BILINEAR, MLT_INTERP_BICUBIC, MLT_INTERP_TRILINEAR,
    MLT_INTERP_AREA, MLT_INTERP_NEAREST_EXACT
} mlt_interp_mode;
/* Exactly one of `size` or `scale` must be non-NULL, with `nspatial` values.
 * align_corners: -1 leaves it unset (required for nearest/area), 0 false, 1 true. */
mlt_status mlt_interpolate(mlt_tensor t, const int64_t *size, const double *scale, size_t nspatial,
                           mlt_interp_mode mode, int align_corners, mlt_tensor *out, char **err);
/* mode: 0 bilinear, 1 nearest, 2 bicubic; padding: 0 zeros, 1 border, 2 reflection (as torch's grid_sampler). */
mlt_status mlt_grid_sample(mlt_tensor input, mlt_tensor grid, int mode, int padding_mode, int align_corners,
                           mlt_tensor *out, char **err);
/* 1-3 spatial dims. */
mlt_status mlt_max_pool(mlt_tensor t, const int64_t *kernel, const int64_t *stride, const int64_t *padding,
                        const int64_t *dilation, size_t nspatial, int ceil_mode, mlt_tensor *out, char **err);
mlt_status mlt_avg_pool(mlt_tensor t, const int64_t *kernel, const int64_t *stride, const int64_t *padding,
                        size_t nspatial, int ceil_mode, int count_include_pad, mlt_tensor *out, char **err);
mlt_status mlt_adaptive_avg_pool(mlt_tensor t, const int64_t *output_size, size_t nspatial, mlt_tensor *out,
                                 char **err);

typedef enum { MLT_PAD_CONSTANT, MLT_PAD_REFLECT, MLT_PAD_REPLICATE, MLT_PAD_CIRCULAR } mlt_pad_mode;
/* `pad` as torch.nn.functional.pad: (last-dim left, last-dim right, second-to-last left, ...). */
mlt_status mlt_pad(mlt_tensor t, const int64_t *pad, size_t npad, mlt_pad_mode mode, double value, mlt_tensor *out,
                   char **err);

/* ---- Optimizers (optim_jit.cpp) ---- */
/* The optimizer keeps references to the parameter tensors: in-place updates are seen by their other handles. */
mlt_status mlt_adam_new(const mlt_tensor *params, size_t count, double lr, double beta1, double beta2, double eps,
                        double weight_decay, int amsgrad, mlt_optimizer *out, char **err);
mlt_status mlt_adamw_new(const mlt_tensor *params, size_t count, double lr, double beta1, double beta2, double eps,
                         double weight_decay, int amsgrad, mlt_optimizer *out, char **err);
mlt_status mlt_sgd_new(const mlt_tensor *params, size_t count, double lr, double momentum, double dampening,
                       double weight_decay, int nesterov, mlt_optimizer *out, char **err);
void mlt_optimizer_free(mlt_optimizer o);
mlt_status mlt_optimizer_step(mlt_optimizer o, char **err);
mlt_status mlt_optimizer_zero_grad(mlt_optimizer o, char **err);
mlt_status mlt_optimizer_set_lr(mlt_optimizer o, double lr, char **err);
double mlt_optimizer_get_lr(mlt_optimizer o);

/* ---- TorchScript (optim_jit.cpp) ---- */
mlt_status mlt_jit_load(const char *path, mlt_device_type dev, int index, mlt_jit_module *out, char **err);
void mlt_jit_module_free(mlt_jit_module m);
/* Calls forward. Tensor, tuple and list outputs are flattened into `outputs` (capacity `cap`); `*count`
 * receives the number of tensors. Fails if the output is not made of tensors or does not fit. */
mlt_status mlt_jit_forward(mlt_jit_module m, const mlt_tensor *inputs, size_t ninputs, mlt_tensor *outputs,
                           size_t cap, size_t *count, char **err);
mlt_status mlt_jit_set_training(mlt_jit_module m, int training, char **err);
mlt_status mlt_jit_to(mlt_jit_module m, mlt_device_type dev, int index, char **err);
/* Parameters then buffers of the module tree with their dotted names (as in the scripted module's
 * state_dict). With `cap` 0 only `*count` is written. Each name is freed with mlt_string_free and each
 * tensor with mlt_tensor_free; nothing is written to `names`/`tensors` when it fails. */
mlt_status mlt_jit_named_state(mlt_jit_module m, char **names, mlt_tensor *tensors, size_t cap, size_t *count,
                               char **err);

/* ---- CUDA memory and cuDNN (cuda.cpp) ---- */
/* 1 when the backend was compiled with CUDA's headers (MLT_WITH_CUDA, set by scripts/build-torch-backend.sh for a
 * CUDA torch), which mlt_cuda_memory_info and mlt_cuda_empty_cache need; else 0 (they then fail / do nothing). */
int mlt_cuda_built(void);
/* Free and total bytes of GPU `index` as the driver reports them: other processes' use counts, and so does what
 * this process's caching allocator holds (even unused). Fails on a backend without CUDA or for a bad index. */
mlt_status mlt_cuda_memory_info(int index, int64_t *free_bytes, int64_t *total_bytes, char **err);
/* GPU `index`'s product name (torch.cuda.get_device_name), NUL-terminated, freed by the caller with
 * mlt_string_free. Fails on a backend without CUDA or for a bad index. */
mlt_status mlt_cuda_device_name(int index, char **name, char **err);
/* Hands the CUDA caching allocator's unused blocks back to the driver (torch.cuda.empty_cache()); nothing
 * without CUDA. */
void mlt_cuda_empty_cache(void);
/* Sets cuDNN's autotuner (torch.backends.cudnn.benchmark) for the process; returns the previous value. Harmless
 * on a backend without CUDA (cuDNN is then never used). */
int mlt_cuda_set_cudnn_benchmark(int enabled);

/* ---- Data-parallel training: c10d, PyTorch's distributed runtime (distributed.cpp) ---- */
/* 1 when the backend was built with c10d's Gloo process group (it needs gloo's headers at build time; the
 * symbols are libtorch's own), else 0 and every mlt_process_group_* call fails saying so. */
int mlt_distributed_available(void);
/* Joins a Gloo process group of `world_size` ranks through a c10d TCPStore at host:port: rank 0 hosts the
 * store (listening on every address of `port`), the others connect to `host`. Returns once all ranks have
 * joined, or fails after `timeout_ms`, which is also the limit of every later collective. */
mlt_status mlt_process_group_new(const char *host, int port, int rank, int world_size, int64_t timeout_ms,
                                 mlt_process_group *out, char **err);
void mlt_process_group_free(mlt_process_group g);
/* Sums the tensors element-wise across ranks, in place, as one collective: they are flattened into one
 * buffer (a single bucket), reduced and copied back. Every rank passes tensors of the same shapes and order. */
mlt_status mlt_process_group_allreduce_sum(mlt_process_group g, const mlt_tensor *tensors, size_t count,
                                           char **err);
/* Overwrites the tensors on every rank with `root`'s, in place (one collective for all of them). */
mlt_status mlt_process_group_broadcast(mlt_process_group g, const mlt_tensor *tensors, size_t count, int root,
                                       char **err);
mlt_status mlt_process_group_barrier(mlt_process_group g, char **err);
/* The group's store: `set` publishes bytes under a key for every rank; `get` waits (up to the group's
 * timeout) for the key and returns a copy the caller frees with mlt_string_free (not NUL-terminated). */
mlt_status mlt_process_group_store_set(mlt_process_group g, const char *key, const void *data, size_t nbytes,
                                       char **err);
mlt_status mlt_process_group_store_get(mlt_process_group g, const char *key, char **data, size_t *nbytes,
                                       char **err);


/* ---- Numerics of CUDA float32 work (precision.cpp): the self-test compares CUDA against the CPU ---- */
/* Allows (1) or forbids (0) TF32 in CUDA float32 matmuls (cuBLAS) and convolutions (cuDNN); with TF32 off,
 * CUDA results agree with the CPU's to float32 rounding. Writes whether cuBLAS TF32 was allowed before to
 * `*previous` (may be NULL). The flags live in ATen's global context, which CPU-only builds have too: there the
 * call only records the setting, and it is safe without a GPU. */
mlt_status mlt_cuda_set_allow_tf32(int allow, int *previous, char **err);

#ifdef __cplusplus
}
#endif
#endif
