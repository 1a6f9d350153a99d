// Data-parallel training over c10d, PyTorch's own distributed runtime: a TCPStore rendezvous and a Gloo
// process group. Its own translation unit because c10d's headers are heavy and only this file needs them.
#include "internal.h"
#include <chrono>
#include <cstdlib>
#include <string>

// ProcessGroupGloo.hpp declares its class only under USE_C10D_GLOO, and it needs gloo's headers, which Debian
// ships in libgloo-dev and PyTorch wheels do not: without them this backend reports distributed training as
// unavailable instead of failing to build. Every libtorch for Linux has the Gloo symbols themselves.
#if __has_include(<gloo/context.h>)
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#define MLT_HAVE_GLOO 1
#else
#define MLT_HAVE_GLOO 0
#endif

#if MLT_HAVE_GLOO
struct mlt_process_group_s {
    c10::intrusive_ptr<c10d::Store> store;
    c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
    std::chrono::milliseconds timeout;
};
#else
struct mlt_process_group_s {};
#endif

namespace {

#if MLT_HAVE_GLOO
mlt_process_group_s &group(mlt_process_group g) {
    if (!g) throw std::invalid_argument("null process group handle");
    return *g;
}

// The address Gloo's pairs bind to and advertise: GLOO_SOCKET_IFNAME as in PyTorch, loopback for a group on
// this machine, else the address the host name resolves to (what torch.distributed does by default).
std::shared_ptr<::gloo::transport::Device> gloo_device(const std::string &host) {
    if (const char *ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
        return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
    if (host == "localhost" || host.rfind("127.", 0) == 0) return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
    return c10d::ProcessGroupGloo::createDefaultDevice();
}

// One bucket: the tensors flattened into one contiguous buffer, so a step costs one collective whatever the
// number of parameters.
at::Tensor flatten(const std::vector<at::Tensor> &ts) {
    if (ts.empty()) throw std::invalid_argument("no tensors");
    std::vector<at::Tensor> flat;
    flat.reserve(ts.size());
    for (const auto &t : ts) {
        if (t.scalar_type() != ts[0].scalar_type() || t.device() != ts[0].device())
            throw std::invalid_argument("tensors of one collective must share dtype and device");
        flat.push_back(t.reshape({-1}));
    }
    return torch::cat(flat);
}

void unflatten(const at::Tensor &flat, const std::vector<at::Tensor> &ts) {
    int64_t offset = 0;
    for (const auto &t : ts) {
        const int64_t n = t.numel();
        at::Tensor dst = t;
        dst.copy_(flat.narrow(0, offset, n).view(t.sizes()));
        offset += n;
    }
}
#endif

mlt_status unavailable(char **err) {
    return mlt::fail(err, "this libtorch backend was built without c10d's Gloo process group (gloo's headers, "
                          "Debian's libgloo-dev, were missing when it was built)");
}

} // namespace

extern "C" {

int mlt_distributed_available(void) { return MLT_HAVE_GLOO; }

mlt_status mlt_process_group_new(const char *host, int port, int rank, int world_size, int64_t timeout_ms,
                                 mlt_process_group *out, char **err) {
#if MLT_HAVE_GLOO
    return mlt::guard(err, [&] {
        if (!host || !out) throw std::invalid_argument("null host or output");
        if (world_size < 1) throw std::invalid_argument("world size must be at least 1");
        if (rank < 0 || rank >= world_size) throw std::invalid_argument("rank outside 0..<world size");
        if (port < 1 || port > 65535) throw std::invalid_argument("port outside 1...65535");
        if (timeout_ms < 1) throw std::invalid_argument("timeout must be positive");
        const auto timeout = std::chrono::milliseconds(timeout_ms);
        c10d::TCPStoreOptions opts;
        opts.port = static_cast<std::uint16_t>(port);
        opts.isServer = rank == 0;
        opts.numWorkers = static_cast<std::size_t>(world_size);
        opts.waitWorkers = true;
        opts.timeout = timeout;
        auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
        auto options = c10d::ProcessGroupGloo::Options::create();
        options->timeout = timeout;
        options->devices.push_back(gloo_device(host));
        auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, options);
        *out = new mlt_process_group_s{store, pg, timeout};
    });
#else
    (void)host, (void)port, (void)rank, (void)world_size, (void)timeout_ms, (void)out;
    return unavailable(err);
#endif
}

void mlt_process_group_free(mlt_process_group g) { delete g; }

mlt_status mlt_process_group_allreduce_sum(mlt_process_group g, const mlt_tensor *tensors, size_t count,
                                           char **err) {
#if MLT_HAVE_GLOO
    return mlt::guard(err, [&] {
        auto &grp = group(g);
        at::NoGradGuard no_grad;
        const auto ts = mlt::tensor_list(tensors, count);
        std::vector<at::Tensor> bucket{flatten(ts)};
        c10d::AllreduceOptions opts;
        opts.reduceOp = c10d::ReduceOp::SUM;
        opts.timeout = grp.timeout;
        grp.pg->allreduce(bucket, opts)->wait(grp.timeout);
        unflatten(bucket[0], ts);
    });
#else
    (void)g, (void)tensors, (void)count;
    return unavailable(err);
#endif
}

mlt_status mlt_process_group_broadcast(mlt_process_group g, const mlt_tensor *tensors, size_t count, int root,
                                       char **err) {
#if MLT_HAVE_GLOO
    return mlt::guard(err, [&] {
        auto &grp = group(g);
        if (root < 0 || root >= grp.pg->getSize()) throw std::invalid_argument("root outside 0..<world size");
        at::NoGradGuard no_grad;
        const auto ts = mlt::tensor_list(tensors, count);
        std::vector<at::Tensor> bucket{flatten(ts)};
        c10d::BroadcastOptions opts;
        opts.rootRank = root;
        opts.timeout = grp.timeout;
        grp.pg->broadcast(bucket, opts)->wait(grp.timeout);
        unflatten(bucket[0], ts);
    });
#else
    (void)g, (void)tensors, (void)count, (void)root;
    return unavailable(err);
#endif
}

mlt_status mlt_process_group_barrier(mlt_process_group g, char **err) {
#if MLT_HAVE_GLOO
    return mlt::guard(err, [&] {
        auto &grp = group(g);
        c10d::BarrierOptions opts;
        opts.timeout = grp.timeout;
        grp.pg->barrier(opts)->wait(grp.timeout);
    });
#else
    (void)g;
    return unavailable(err);
#endif
}

mlt_status mlt_process_group_store_set(mlt_process_group g, const char *key, const void *data, size_t nbytes,
                                       char **err) {
#if MLT_HAVE_GLOO
    return mlt::guard(err, [&] {
        auto &grp = group(g);
        if (!key || (nbytes > 0 && !data)) throw std::invalid_argument("null key or data");
        const auto *p = static_cast<const uint8_t *>(data);
        grp.store->set(std::string(key), std::vector<uint8_t>(p, p + nbytes));
    });
#else
    (void)g, (void)key, (void)data, (void)nbytes;
    return unavailable(err);
#endif
}

mlt_status mlt_process_group_store_get(mlt_process_group g, const char *key, char **data, size_t *nbytes,
                                       char **err) {
#if MLT_HAVE_GLOO
    return mlt::guard(err, [&] {
        auto &grp = group(g);
        if (!key || !data || !nbytes) throw std::invalid_argument("null key or output");
        const std::vector<uint8_t> v = grp.store->get(std::string(key));
        char *p = static_cast<char *>(std::malloc(v.empty() ? 1 : v.size()));
        if (!p) throw std::bad_alloc();
        if (!v.empty()) std::memcpy(p, v.data(), v.size());
        *data = p;
        *nbytes = v.size();
    });
#else
    (void)g, (void)key, (void)data, (void)nbytes;
    return unavailable(err);
#endif
}

} // extern "C"
