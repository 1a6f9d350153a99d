// Math and neural-network functions.
#include "internal.h"
#include <thread>

using mlt::guard;
using mlt::ints;
using mlt::opt;
using mlt::ref;
using mlt::wrap;
namespace F = torch::nn::functional;

namespace {

at::Tensor unary(mlt_unary_op op, const at::Tensor &t) {
    switch (op) {
    case MLT_NEG: return t.neg();
    case MLT_ABS: return t.abs();
    case MLT_EXP: return t.exp();
    case MLT_LOG: return t.log();
    case MLT_SQRT: return t.sqrt();
    case MLT_RSQRT: return t.rsqrt();
    case MLT_SIGMOID: return t.sigmoid();
    case MLT_TANH: return t.tanh();
    case MLT_RELU: return t.relu();
    case MLT_FLOOR: return t.floor();
    case MLT_CEIL: return t.ceil();
    case MLT_ROUND: return t.round();
    case MLT_SIGN: return t.sign();
    case MLT_RECIPROCAL: return t.reciprocal();
    case MLT_LOGICAL_NOT: return t.logical_not();
    case MLT_SQUARE: return t.square();
    case MLT_ISNAN: return t.isnan();
    case MLT_GELU: return at::gelu(t);
    }
    throw std::invalid_argument("unknown unary op " + std::to_string(static_cast<int>(op)));
}

at::Tensor binary(mlt_binary_op op, const at::Tensor &a, const at::Tensor &b) {
    switch (op) {
    case MLT_ADD: return a.add(b);
    case MLT_SUB: return a.sub(b);
    case MLT_MUL: return a.mul(b);
    case MLT_DIV: return a.div(b);
    case MLT_POW: return a.pow(b);
    case MLT_MAXIMUM: return at::maximum(a, b);
    case MLT_MINIMUM: return at::minimum(a, b);
    case MLT_EQ: return a.eq(b);
    case MLT_NE: return a.ne(b);
    case MLT_LT: return a.lt(b);
    case MLT_LE: return a.le(b);
    case MLT_GT: return a.gt(b);
    case MLT_GE: return a.ge(b);
    case MLT_MATMUL: return a.matmul(b);
    case MLT_LOGICAL_AND: return a.logical_and(b);
    case MLT_LOGICAL_OR: return a.logical_or(b);
    case MLT_REMAINDER: return a.remainder(b);
    }
    throw std::invalid_argument("unknown binary op " + std::to_string(static_cast<int>(op)));
}

at::Tensor scalar_tensor_like(double s, const at::Tensor &like) {
    // A 0-dim tensor takes part in type promotion like a Python scalar would.
    return at::scalar_tensor(s, at::TensorOptions().dtype(at::kDouble).device(like.device()));
}

at::Tensor scalar_op(mlt_binary_op op, const at::Tensor &a, double v) {
    auto s = mlt::scalar_for(a, v);
    switch (op) {
    case MLT_ADD: return a.add(s);
    case MLT_SUB: return a.sub(s);
    case MLT_MUL: return a.mul(s);
    case MLT_DIV: return a.div(s);
    case MLT_POW: return a.pow(s);
    case MLT_EQ: return a.eq(s);
    case MLT_NE: return a.ne(s);
    case MLT_LT: return a.lt(s);
    case MLT_LE: return a.le(s);
    case MLT_GT: return a.gt(s);
    case MLT_GE: return a.ge(s);
    case MLT_REMAINDER: return a.remainder(s);
    case MLT_MAXIMUM: return a.clamp_min(s);
    case MLT_MINIMUM: return a.clamp_max(s);
    case MLT_MATMUL:
    case MLT_LOGICAL_AND:
    case MLT_LOGICAL_OR: throw std::invalid_argument("this binary op does not take a scalar operand");
    }
    throw std::invalid_argument("unknown binary op " + std::to_string(static_cast<int>(op)));
}

at::Tensor reverse_scalar_op(mlt_binary_op op, double v, const at::Tensor &a) {
    auto s = mlt::scalar_for(a, v);
    switch (op) {
    case MLT_ADD: return a.add(s);
    case MLT_MUL: return a.mul(s);
    case MLT_SUB: return at::rsub(a, s);
    case MLT_POW: return at::pow(s, a);
    default: return binary(op, scalar_tensor_like(v, a), a);
    }
}

F::InterpolateFuncOptions::mode_t interp_mode(mlt_interp_mode m) {
    switch (m) {
    case MLT_INTERP_NEAREST: return torch::kNearest;
    case MLT_INTERP_LINEAR: return torch::kLinear;
    case MLT_INTERP_BILINEAR: return torch::kBilinear;
    case MLT_INTERP_BICUBIC: return torch::kBicubic;
    case MLT_INTERP_TRILINEAR: return torch::kTrilinear;
    case MLT_INTERP_AREA: return torch::kArea;
    case MLT_INTERP_NEAREST_EXACT: return torch::kNearestExact;
    }
    throw std::invalid_argument("unknown interpolation mode " + std::to_string(static_cast<int>(m)));
}

F::PadFuncOptions::mode_t pad_mode(mlt_pad_mode m) {
    switch (m) {
    case MLT_PAD_CONSTANT: return torch::kConstant;
    case MLT_PAD_REFLECT: return torch::kReflect;
    case MLT_PAD_REPLICATE: return torch::kReplicate;
    case MLT_PAD_CIRCULAR: return torch::kCircular;
    }
    throw std::invalid_argument("unknown pad mode " + std::to_string(static_cast<int>(m)));
}

void check_spatial(size_t n) {
    if (n < 1 || n > 3) throw std::invalid_argument("pooling takes 1 to 3 spatial dims, got " + std::to_string(n));
}

// oneDNN's fused convolution + eltwise kernels (`mkldnn::_convolution_pointwise` and
// `mkldnn::_convolution_transpose_pointwise`, the ops Inductor's CPU freezing emits), looked up in the dispatcher
// at run time: libtorch 2.x registers them, older or mkldnn-less builds may not, and their schemas are internal
// and may change, so an op counts only with exactly the argument names this file passes. Fusing the activation
// into the convolution saves a full pass over the output (write, read, write) per layer.
c10::optional<c10::OperatorHandle> find_pointwise(const char *name, std::initializer_list<const char *> args) {
    if (!at::hasMKLDNN()) return c10::nullopt;
    auto h = c10::Dispatcher::singleton().findSchema({name, ""});
    if (!h || !h->hasKernelForDispatchKey(c10::DispatchKey::CPU)) return c10::nullopt;
    const auto &have = h->schema().arguments();
    if (have.size() != args.size() || h->schema().returns().size() != 1) return c10::nullopt;
    size_t i = 0;
    for (const char *a : args)
        if (have[i++].name() != a) return c10::nullopt;
    return h;
}

const c10::optional<c10::OperatorHandle> &pointwise_op(bool transposed) {
    static const auto conv = find_pointwise(
        "mkldnn::_convolution_pointwise",
        {"X", "W", "B", "padding", "stride", "dilation", "groups", "attr", "scalars", "algorithm"});
    static const auto deconv = find_pointwise(
        "mkldnn::_convolution_transpose_pointwise",
        {"X", "W", "B", "padding", "output_padding", "stride", "dilation", "groups", "attr", "scalars",
         "algorithm"});
    return transposed ? deconv : conv;
}

} // namespace

extern "C" {

mlt_status mlt_unary(mlt_unary_op op, mlt_tensor t, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(unary(op, ref(t))); });
}

mlt_status mlt_binary(mlt_binary_op op, mlt_tensor a, mlt_tensor b, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(binary(op, ref(a), ref(b))); });
}

mlt_status mlt_binary_scalar(mlt_binary_op op, mlt_tensor a, double scalar, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(scalar_op(op, ref(a), scalar)); });
}

mlt_status mlt_scalar_binary(mlt_binary_op op, double scalar, mlt_tensor a, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(reverse_scalar_op(op, scalar, ref(a))); });
}

mlt_status mlt_reduce(mlt_reduce_op op, mlt_tensor t, const int64_t *dims, size_t ndims, int keepdim, mlt_tensor *out,
                      char **err) {
    return guard(err, [&] {
        const auto &x = ref(t);
        auto d = ints(dims, ndims);
        bool k = keepdim != 0;
        at::Tensor r;
        switch (op) {
        case MLT_SUM: r = ndims == 0 && !k ? x.sum() : x.sum(ndims == 0 ? at::IntArrayRef{} : d, k); break;
        case MLT_MEAN: r = ndims == 0 && !k ? x.mean() : x.mean(ndims == 0 ? at::IntArrayRef{} : d, k); break;
        case MLT_AMAX: r = x.amax(d, k); break;
        case MLT_AMIN: r = x.amin(d, k); break;
        case MLT_PROD:
            if (ndims == 0) {
                r = x.prod();
            } else if (ndims == 1) {
                r = x.prod(d[0], k);
            } else {
                throw std::invalid_argument("prod reduces over one dim or all dims");
            }
            break;
        default: throw std::invalid_argument("unknown reduce op " + std::to_string(static_cast<int>(op)));
        }
        *out = wrap(std::move(r));
    });
}

mlt_status mlt_argmax(mlt_tensor t, int64_t dim, int keepdim, int flatten, mlt_tensor *out, char **err) {
    return guard(err, [&] {
        *out = wrap(flatten ? ref(t).argmax() : ref(t).argmax(dim, keepdim != 0));
    });
}

mlt_status mlt_clamp(mlt_tensor t, int has_min, double min, int has_max, double max, mlt_tensor *out, char **err) {
    return guard(err, [&] {
        c10::optional<at::Scalar> lo = has_min ? c10::optional<at::Scalar>(min) : c10::nullopt;
        c10::optional<at::Scalar> hi = has_max ? c10::optional<at::Scalar>(max) : c10::nullopt;
        *out = wrap(ref(t).clamp(lo, hi));
    });
}

mlt_status mlt_where(mlt_tensor cond, mlt_tensor a, mlt_tensor b, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(at::where(ref(cond), ref(a), ref(b))); });
}

mlt_status mlt_softmax(mlt_tensor t, int64_t dim, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(ref(t).softmax(dim)); });
}

mlt_status mlt_log_softmax(mlt_tensor t, int64_t dim, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(ref(t).log_softmax(dim)); });
}

mlt_status mlt_one_hot(mlt_tensor t, int64_t num_classes, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(at::one_hot(ref(t), num_classes)); });
}

mlt_status mlt_index_select(mlt_tensor t, int64_t dim, mlt_tensor index, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(at::index_select(ref(t), dim, ref(index))); });
}

mlt_status mlt_convolution(mlt_tensor input, mlt_tensor weight, mlt_tensor bias, const int64_t *stride,
                           const int64_t *padding, const int64_t *dilation, const int64_t *output_padding,
                           size_t nspatial, int transposed, int64_t groups, mlt_tensor *out, char **err) {
    return guard(err, [&] {
        const auto &w = ref(weight);
        if (static_cast<size_t>(w.dim()) != nspatial + 2)
            throw std::invalid_argument("convolution weight has " + std::to_string(w.dim()) + " dims but " +
                                        std::to_string(nspatial) + " spatial parameters were given");
        std::vector<int64_t> zeros(nspatial, 0);
        auto op = output_padding ? ints(output_padding, nspatial) : at::IntArrayRef(zeros);
        const auto &x = ref(input);
        auto b = opt(bias);
        auto s = ints(stride, nspatial), p = ints(padding, nspatial), d = ints(dilation, nspatial);
        // The named ops rather than at::convolution, which they call: autocast's CPU op list has conv1d-3d and
        // conv_transpose1d-3d but not `convolution`, so mixed precision would leave every convolution in fp32.
        if (transposed == 0) {
            switch (nspatial) {
            case 1: *out = wrap(at::conv1d(x, w, b, s, p, d, groups)); return;
            case 2: *out = wrap(at::conv2d(x, w, b, s, p, d, groups)); return;
            case 3: *out = wrap(at::conv3d(x, w, b, s, p, d, groups)); return;
            }
        } else {
            switch (nspatial) {
            case 1: *out = wrap(at::conv_transpose1d(x, w, b, s, p, op, groups, d)); return;
            case 2: *out = wrap(at::conv_transpose2d(x, w, b, s, p, op, groups, d)); return;
            case 3: *out = wrap(at::conv_transpose3d(x, w, b, s, p, op, groups, d)); return;
            }
        }
        *out = wrap(at::convolution(x, w, b, s, p, d, transposed != 0, op, groups));
    });
}

int mlt_convolution_leaky_relu_available(int transposed) {
    try {
        return pointwise_op(transposed != 0).has_value() ? 1 : 0;
    } catch (...) {
        return 0;
    }
}

mlt_status mlt_convolution_leaky_relu(mlt_tensor input, mlt_tensor weight, mlt_tensor bias, const int64_t *stride,
                                      const int64_t *padding, const int64_t *dilation, const int64_t *output_padding,
                                      size_t nspatial, int transposed, int64_t groups, double slope,
                                      mlt_tensor *out, char **err) {
    return guard(err, [&] {
        const auto &op = pointwise_op(transposed != 0);
        if (!op) throw std::runtime_error("this libtorch has no fused oneDNN convolution");
        const auto &x = ref(input), &w = ref(weight);
        if (!x.device().is_cpu() || x.scalar_type() != at::kFloat || w.scalar_type() != at::kFloat ||
            static_cast<size_t>(w.dim()) != nspatial + 2 || x.dim() != w.dim())
            throw std::invalid_argument("the fused convolution takes float32 CPU tensors of matching rank");
        auto vec = [&](const int64_t *v) { return std::vector<int64_t>(v, v + nspatial); };
        std::vector<c10::IValue> stack;
        stack.reserve(11);
        stack.emplace_back(x);
        stack.emplace_back(w);
        stack.emplace_back(bias ? c10::IValue(ref(bias)) : c10::IValue());
        stack.emplace_back(vec(padding));
        if (transposed != 0)
            stack.emplace_back(output_padding ? vec(output_padding) : std::vector<int64_t>(nspatial, 0));
        stack.emplace_back(vec(stride));
        stack.emplace_back(vec(dilation));
        stack.emplace_back(groups);
        stack.emplace_back(std::string("leaky_relu"));
        c10::List<c10::optional<at::Scalar>> scalars;
        scalars.push_back(at::Scalar(slope));
        stack.emplace_back(std::move(scalars));
        stack.emplace_back(c10::IValue());
        op->callBoxed(&stack);
        *out = wrap(stack.at(0).toTensor());
    });
}

namespace {

// The row loops of small_conv_planes are written for the compiler to vectorize, once per instruction set
// (target_clones picks the clone at load time); GCC, which scripts/build-torch-backend.sh builds with at -O2,
// vectorizes only with tree-vectorize on.
#if defined(__x86_64__) && defined(__clang__)
#define MLT_VECTOR_LOOPS __attribute__((target_clones("avx512f", "avx2", "default")))
#elif defined(__x86_64__) && defined(__GNUC__)
#define MLT_VECTOR_LOOPS __attribute__((target_clones("avx512f", "avx2", "default"), optimize("tree-vectorize")))
#elif defined(__GNUC__) && !defined(__clang__)
#define MLT_VECTOR_LOOPS __attribute__((optimize("tree-vectorize")))
#else
#define MLT_VECTOR_LOOPS
#endif

// Geometry of one small convolution: input [C, D, H, W], weight [O, C, KD, KH, KW], output [O, OD, OH, OW].
struct SmallConv {
    int64_t C, O, D, H, W, KD, KH, KW, pd, ph, pw, OD, OH, OW;
};

// Output planes [od0, od1) of every output channel of one sample: each output row starts at the bias and takes
// weight * input row for every input channel and kernel tap, the row loop running over the output columns whose
// input column exists (the rest read the zero padding).
MLT_VECTOR_LOOPS
void small_conv_planes(const SmallConv &g, const float *x, const float *w, const float *b, float *y, int64_t od0,
                       int64_t od1) {
    const int64_t plane = g.OH * g.OW;
    for (int64_t od = od0; od < od1; ++od) {
        for (int64_t oc = 0; oc < g.O; ++oc) {
            float *yp = y + (oc * g.OD + od) * plane;
            const float init = b ? b[oc] : 0.f;
            for (int64_t i = 0; i < plane; ++i) yp[i] = init;
            for (int64_t ic = 0; ic < g.C; ++ic) {
                for (int64_t kd = 0; kd < g.KD; ++kd) {
                    const int64_t id = od - g.pd + kd;
                    if (id < 0 || id >= g.D) continue;
                    const float *xp = x + (ic * g.D + id) * g.H * g.W;
                    const float *wk = w + ((oc * g.C + ic) * g.KD + kd) * g.KH * g.KW;
                    for (int64_t kh = 0; kh < g.KH; ++kh) {
                        for (int64_t oh = 0; oh < g.OH; ++oh) {
                            const int64_t ih = oh - g.ph + kh;
                            if (ih < 0 || ih >= g.H) continue;
                            float *yr = yp + oh * g.OW;
                            for (int64_t kw = 0; kw < g.KW; ++kw) {
                                const float wv = wk[kh * g.KW + kw];
                                const int64_t shift = kw - g.pw;
                                const int64_t lo = std::max<int64_t>(0, -shift);
                                const int64_t hi = std::min<int64_t>(g.OW, g.W - shift);
                                const float *xr = xp + ih * g.W;
                                for (int64_t ow = lo; ow < hi; ++ow) yr[ow] += wv * xr[ow + shift];
                            }
                        }
                    }
                }
            }
        }
    }
}

} // namespace

mlt_status mlt_convolution_small(mlt_tensor input, mlt_tensor weight, mlt_tensor bias, const int64_t *padding,
                                 size_t nspatial, mlt_tensor *out, char **err) {
    return guard(err, [&] {
        const auto &xin = ref(input), &win = ref(weight);
        if (nspatial != 2 && nspatial != 3)
            throw std::invalid_argument("the small convolution is 2-d or 3-d, not " + std::to_string(nspatial) + "-d");
        const auto rank = static_cast<int64_t>(nspatial) + 2;
        if (xin.dim() != rank || win.dim() != rank)
            throw std::invalid_argument("the small convolution's input and weight must have " + std::to_string(rank) +
                                        " dims");
        if (!xin.device().is_cpu() || !win.device().is_cpu() || xin.scalar_type() != at::kFloat ||
            win.scalar_type() != at::kFloat)
            throw std::invalid_argument("the small convolution takes float32 CPU tensors");
        auto b = opt(bias);
        if (b && (!b->device().is_cpu() || b->scalar_type() != at::kFloat || b->dim() != 1 ||
                  b->size(0) != win.size(0)))
            throw std::invalid_argument("the small convolution's bias must be float32 on the CPU, one per output channel");
        if ((at::GradMode::is_enabled() && (xin.requires_grad() || win.requires_grad() || (b && b->requires_grad()))))
            throw std::invalid_argument("the small convolution has no autograd");
        if (win.size(1) != xin.size(1))
            throw std::invalid_argument("the small convolution's weight takes " + std::to_string(win.size(1)) +
                                        " input channels, the input has " + std::to_string(xin.size(1)));
        if (win.size(0) > MLT_SMALL_CONV_CHANNELS || win.size(1) > MLT_SMALL_CONV_CHANNELS)
            throw std::invalid_argument("the small convolution takes at most " +
                                        std::to_string(MLT_SMALL_CONV_CHANNELS) + " channels in and out");
        // 2-d runs as 3-d with one plane.
        auto x = (nspatial == 2 ? xin.unsqueeze(2) : xin).contiguous();
        auto w = (nspatial == 2 ? win.unsqueeze(2) : win).contiguous();
        auto bc = b ? b->contiguous() : at::Tensor();
        const int64_t p0 = nspatial == 3 ? padding[0] : 0;
        const int64_t p1 = padding[nspatial - 2], p2 = padding[nspatial - 1];
        if (p0 < 0 || p1 < 0 || p2 < 0) throw std::invalid_argument("the small convolution's padding must be >= 0");
        SmallConv g{x.size(1), w.size(0), x.size(2), x.size(3), x.size(4), w.size(2), w.size(3), w.size(4),
                    p0, p1, p2, 0, 0, 0};
        g.OD = g.D + 2 * g.pd - g.KD + 1;
        g.OH = g.H + 2 * g.ph - g.KH + 1;
        g.OW = g.W + 2 * g.pw - g.KW + 1;
        if (g.OD <= 0 || g.OH <= 0 || g.OW <= 0)
            throw std::invalid_argument("the small convolution's kernel is larger than its padded input");
        const int64_t n = x.size(0);
        auto y = at::empty({n, g.O, g.OD, g.OH, g.OW}, x.options());
        const float *xp = x.data_ptr<float>(), *wp = w.data_ptr<float>();
        const float *bp = bc.defined() ? bc.data_ptr<float>() : nullptr;
        float *yp = y.data_ptr<float>();
        const int64_t in_sample = g.C * g.D * g.H * g.W, out_sample = g.O * g.OD * g.OH * g.OW;
        // The samples' output planes split into one contiguous run per thread (planes write disjoint rows), on
        // threads of our own: at::parallel_for is a header template whose OpenMP pragma only takes effect in a
        // translation unit built with -fopenmp, which this one is not (clang's OpenMP runtime is not the libgomp
        // that libtorch links), so it ran on one thread.
        auto run = [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end;) {
                const int64_t s = i / g.OD, od0 = i % g.OD, od1 = std::min(g.OD, od0 + (end - i));
                small_conv_planes(g, xp + s * in_sample, wp, bp, yp + s * out_sample, od0, od1);
                i += od1 - od0;
            }
        };
        const int64_t planes = n * g.OD;
        const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), planes));
        std::vector<std::thread> helpers;
        int64_t started = 1;
        try {
            helpers.reserve(static_cast<size_t>(threads - 1));
            for (; started < threads; ++started)
                helpers.emplace_back(run, planes * started / threads, planes * (started + 1) / threads);
        } catch (const std::exception &) {
            // No thread to be had (or no memory for one): this thread takes the runs not handed out.
        }
        run(0, planes / threads);
        if (started < threads) run(planes * started / threads, planes);
        for (auto &h : helpers) h.join();
        *out = wrap(nspatial == 2 ? y.squeeze(2) : y);
    });
}

mlt_status mlt_batch_norm(mlt_tensor input, mlt_tensor weight, mlt_tensor bias, mlt_tensor running_mean,
                          mlt_tensor running_var, int training, double momentum, double eps, mlt_tensor *out,
                          char **err) {
    return guard(err, [&] {
        *out = wrap(at::batch_norm(ref(input), opt(weight), opt(bias), opt(running_mean), opt(running_var),
                                   training != 0, momentum, eps, at::globalContext().userEnabledCuDNN()));
    });
}

mlt_status mlt_instance_norm(mlt_tensor input, mlt_tensor weight, mlt_tensor bias, mlt_tensor running_mean,
                             mlt_tensor running_var, int use_input_stats, double momentum, double eps,
                             mlt_tensor *out, char **err) {
    return guard(err, [&] {
        *out = wrap(at::instance_norm(ref(input), opt(weight), opt(bias), opt(running_mean), opt(running_var),
                                      use_input_stats != 0, momentum, eps, at::globalContext().userEnabledCuDNN()));
    });
}

mlt_status mlt_group_norm(mlt_tensor input, int64_t num_groups, mlt_tensor weight, mlt_tensor bias, double eps,
                          mlt_tensor *out, char **err) {
    return guard(err, [&] {
        *out = wrap(at::group_norm(mlt::autocast_norm_input(ref(input)), num_groups, opt(weight), opt(bias), eps, at::globalContext().userEnabledCuDNN()));
    });
}

mlt_status mlt_layer_norm(mlt_tensor input, const int64_t *normalized_shape, size_t ndim, mlt_tensor weight,
                          mlt_tensor bias, double eps, mlt_tensor *out, char **err) {
    return guard(err, [&] {
        *out = wrap(at::layer_norm(mlt::autocast_norm_input(ref(input)), ints(normalized_shape, ndim), opt(weight), opt(bias), eps,
                                   at::globalContext().userEnabledCuDNN()));
    });
}

mlt_status mlt_leaky_relu(mlt_tensor t, double slope, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(at::leaky_relu(ref(t), slope)); });
}

mlt_status mlt_leaky_relu_(mlt_tensor t, double slope, char **err) {
    return guard(err, [&] {
        ref(t);
        at::leaky_relu_(t->t, slope);
    });
}

mlt_status mlt_prelu(mlt_tensor t, mlt_tensor weight, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(at::prelu(ref(t), ref(weight))); });
}

mlt_status mlt_elu(mlt_tensor t, double alpha, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(at::elu(ref(t), alpha)); });
}

mlt_status mlt_dropout(mlt_tensor t, double p, int training, int channelwise, mlt_tensor *out, char **err) {
    return guard(err, [&] {
        if (p < 0.0 || p > 1.0) throw std::invalid_argument("dropout probability must be in [0, 1]");
        *out = wrap(channelwise ? at::feature_dropout(ref(t), p, training != 0) : at::dropout(ref(t), p, training != 0));
    });
}

mlt_status mlt_linear(mlt_tensor input, mlt_tensor weight, mlt_tensor bias, mlt_tensor *out, char **err) {
    return guard(err, [&] { *out = wrap(at::linear(ref(input), ref(weight), opt(bias))); });
}

mlt_status mlt_interpolate(mlt_tensor t, const int64_t *size, const double *scale, size_t nspatial,
                           mlt_interp_mode mode, int align_corners, mlt_tensor *out, char **err) {
    return guard(err, [&] {
        if ((size == nullptr) == (scale == nullptr))
            throw std::invalid_argument("interpolate takes exactly one of size or scale");
        auto o = F::InterpolateFuncOptions().mode(interp_mode(mode));
        if (size) o = o.size(std::vector<int64_t>(size, size + nspatial));
        if (scale) o = o.scale_factor(std::vector<double>(scale, scale + nspatial));
        if (align_corners >= 0) o = o.align_corners(align_corners != 0);
        *out = wrap(F::interpolate(ref(t), o));
    });
}

mlt_status mlt_grid_sample(mlt_tensor input, mlt_tensor grid, int mode, int padding_mode, int align_corners,
                           mlt_tensor *out, char **err) {
    return guard(err, [&] {
        *out = wrap(at::grid_sampler(ref(input), ref(grid), mode, padding_mode, align_corners != 0));
    });
}

mlt_status mlt_max_pool(mlt_tensor t, const int64_t *kernel, const int64_t *stride, const int64_t *padding,
                        const int64_t *dilation, size_t nspatial, int ceil_mode, mlt_tensor *out, char **err) {
    return guard(err, [&] {
        check_spatial(nspatial);
        auto k = ints(kernel, nspatial), s = ints(stride, nspatial), p = ints(padding, nspatial),
             d = ints(dilation, nspatial);
        bool c = ceil_mode != 0;
        const auto &x = ref(t);
        *out = wrap(nspatial == 1   ? at::max_pool1d(x, k, s, p, d, c)
                    : nspatial == 2 ? at::max_pool2d(x, k, s, p, d, c)
                                    : at::max_pool3d(x, k, s, p, d, c));
    });
}

mlt_status mlt_avg_pool(mlt_tensor t, const int64_t *kernel, const int64_t *stride, const int64_t *padding,
                        size_t nspatial, int ceil_mode, int count_include_pad, mlt_tensor *out, char **err) {
    return guard(err, [&] {
        check_spatial(nspatial);
        auto k = ints(kernel, nspatial), s = ints(stride, nspatial), p = ints(padding, nspatial);
        bool c = ceil_mode != 0, inc = count_include_pad != 0;
        const auto &x = ref(t);
        *out = wrap(nspatial == 1   ? at::avg_pool1d(x, k, s, p, c, inc)
                    : nspatial == 2 ? at::avg_pool2d(x, k, s, p, c, inc)
                                    : at::avg_pool3d(x, k, s, p, c, inc));
    });
}

mlt_status mlt_adaptive_avg_pool(mlt_tensor t, const int64_t *output_size, size_t nspatial, mlt_tensor *out,
                                 char **err) {
    return guard(err, [&] {
        check_spatial(nspatial);
        auto o = ints(output_size, nspatial);
        const auto &x = ref(t);
        *out = wrap(nspatial == 1   ? at::adaptive_avg_pool1d(x, o)
                    : nspatial == 2 ? at::adaptive_avg_pool2d(x, o)
                                    : at::adaptive_avg_pool3d(x, o));
    });
}

mlt_status mlt_pad(mlt_tensor t, const int64_t *pad, size_t npad, mlt_pad_mode mode, double value, mlt_tensor *out,
                   char **err) {
    return guard(err, [&] {
        auto o = F::PadFuncOptions(std::vector<int64_t>(pad, pad + npad)).mode(pad_mode(mode)).value(value);
        *out = wrap(F::pad(ref(t), o));
    });
}

} // extern "C"
