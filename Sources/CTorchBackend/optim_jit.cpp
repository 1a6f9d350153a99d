// Optimizers holding their state, and TorchScript modules.
#include "internal.h"
#include <torch/script.h>

using mlt::guard;
using mlt::ref;
using mlt::wrap;

struct mlt_optimizer_s {
    std::unique_ptr<torch::optim::Optimizer> opt;
};

struct mlt_jit_module_s {
    torch::jit::Module module;
};

namespace {

void flatten_output(const c10::IValue &v, std::vector<at::Tensor> &out) {
    if (v.isTensor()) {
        out.push_back(v.toTensor());
    } else if (v.isTuple()) {
        for (const auto &e : v.toTupleRef().elements()) flatten_output(e, out);
    } else if (v.isList()) {
        for (const auto &e : v.toListRef()) flatten_output(e, out);
    } else {
        throw std::invalid_argument("TorchScript forward returned " + v.tagKind() +
                                    ", expected a tensor or a tuple/list of tensors");
    }
}

} // namespace

extern "C" {

mlt_status mlt_adam_new(const mlt_tensor *params, size_t count, double lr, double beta1, double beta2, double eps,
                        double weight_decay, int amsgrad, mlt_optimizer *out, char **err) {
    return guard(err, [&] {
        auto o = torch::optim::AdamOptions(lr).betas({beta1, beta2}).eps(eps).weight_decay(weight_decay).amsgrad(
            amsgrad != 0);
        *out = new mlt_optimizer_s{std::make_unique<torch::optim::Adam>(mlt::tensor_list(params, count), o)};
    });
}

mlt_status mlt_adamw_new(const mlt_tensor *params, size_t count, double lr, double beta1, double beta2, double eps,
                         double weight_decay, int amsgrad, mlt_optimizer *out, char **err) {
    return guard(err, [&] {
        auto o = torch::optim::AdamWOptions(lr).betas({beta1, beta2}).eps(eps).weight_decay(weight_decay).amsgrad(
            amsgrad != 0);
        *out = new mlt_optimizer_s{std::make_unique<torch::optim::AdamW>(mlt::tensor_list(params, count), o)};
    });
}

mlt_status mlt_sgd_new(const mlt_tensor *params, size_t count, double lr, double momentum, double dampening,
                       double weight_decay, int nesterov, mlt_optimizer *out, char **err) {
    return guard(err, [&] {
        auto o = torch::optim::SGDOptions(lr).momentum(momentum).dampening(dampening).weight_decay(weight_decay)
                     .nesterov(nesterov != 0);
        *out = new mlt_optimizer_s{std::make_unique<torch::optim::SGD>(mlt::tensor_list(params, count), o)};
    });
}

void mlt_optimizer_free(mlt_optimizer o) { delete o; }

mlt_status mlt_optimizer_step(mlt_optimizer o, char **err) {
    return guard(err, [&] { o->opt->step(); });
}

mlt_status mlt_optimizer_zero_grad(mlt_optimizer o, char **err) {
    return guard(err, [&] { o->opt->zero_grad(); });
}

mlt_status mlt_optimizer_set_lr(mlt_optimizer o, double lr, char **err) {
    return guard(err, [&] {
        for (auto &g : o->opt->param_groups()) g.options().set_lr(lr);
    });
}

double mlt_optimizer_get_lr(mlt_optimizer o) {
    auto &groups = o->opt->param_groups();
    return groups.empty() ? 0.0 : groups.front().options().get_lr();
}

mlt_status mlt_jit_load(const char *path, mlt_device_type dev, int index, mlt_jit_module *out, char **err) {
    return guard(err, [&] {
        if (!path) throw std::invalid_argument("null path");
        *out = new mlt_jit_module_s{torch::jit::load(std::string(path), mlt::device(dev, index))};
    });
}

void mlt_jit_module_free(mlt_jit_module m) { delete m; }

mlt_status mlt_jit_forward(mlt_jit_module m, const mlt_tensor *inputs, size_t ninputs, mlt_tensor *outputs,
                           size_t cap, size_t *count, char **err) {
    return guard(err, [&] {
        std::vector<c10::IValue> args;
        for (auto &t : mlt::tensor_list(inputs, ninputs)) args.emplace_back(t);
        std::vector<at::Tensor> result;
        flatten_output(m->module.forward(std::move(args)), result);
        if (result.size() > cap)
            throw std::invalid_argument("TorchScript forward returned " + std::to_string(result.size()) +
                                        " tensors, more than the " + std::to_string(cap) + " expected");
        // Wrap all before publishing any, so a failure leaves no half-filled output array to leak.
        std::vector<std::unique_ptr<mlt_tensor_s>> owned;
        for (auto &t : result) owned.emplace_back(new mlt_tensor_s{t});
        for (size_t i = 0; i < owned.size(); ++i) outputs[i] = owned[i].release();
        *count = result.size();
    });
}

mlt_status mlt_jit_set_training(mlt_jit_module m, int training, char **err) {
    return guard(err, [&] { m->module.train(training != 0); });
}

mlt_status mlt_jit_to(mlt_jit_module m, mlt_device_type dev, int index, char **err) {
    return guard(err, [&] { m->module.to(mlt::device(dev, index)); });
}

mlt_status mlt_jit_named_state(mlt_jit_module m, char **names, mlt_tensor *tensors, size_t cap, size_t *count,
                               char **err) {
    return guard(err, [&] {
        std::vector<std::pair<std::string, at::Tensor>> entries;
        for (const auto &p : m->module.named_parameters(/*recurse=*/true)) entries.emplace_back(p.name, p.value);
        for (const auto &b : m->module.named_buffers(/*recurse=*/true)) entries.emplace_back(b.name, b.value);
        *count = entries.size();
        if (cap == 0) return;
        if (entries.size() > cap)
            throw std::invalid_argument("module has " + std::to_string(entries.size()) + " state tensors, room for " +
                                        std::to_string(cap));
        std::vector<std::unique_ptr<mlt_tensor_s>> owned;
        std::vector<char *> dup;
        try {
            for (auto &e : entries) {
                owned.emplace_back(new mlt_tensor_s{e.second.detach()});
                char *n = mlt::dup_message(e.first);
                if (!n) throw std::bad_alloc();
                dup.push_back(n);
            }
        } catch (...) {
            for (char *n : dup) std::free(n);
            throw;
        }
        for (size_t i = 0; i < entries.size(); ++i) {
            names[i] = dup[i];
            tensors[i] = owned[i].release();
        }
    });
}

} // extern "C"
