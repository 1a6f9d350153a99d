#ifndef CHTTPCLIENT_H
#define CHTTPCLIENT_H
// Blocking client sockets with timeouts, as plain functions: name resolution and a non-blocking connect with a
// deadline are multi-step dances in C. TLS over these sockets is in COpenSSL (copenssl_client.h).
#include <stddef.h>

/// Why a connect failed (`*kind` of chttpc_connect).
enum {
    CHTTPC_OK = 0,
    CHTTPC_RESOLVE = 1,
    CHTTPC_REFUSED = 2,
    CHTTPC_TIMEOUT = 3,
    CHTTPC_UNREACHABLE = 4,
    CHTTPC_OTHER = 5
};

/// I/O status of chttpc_read / chttpc_write.
enum {
    CHTTPC_IO_OK = 0,
    CHTTPC_IO_CLOSED = 1,
    CHTTPC_IO_TIMEOUT = 2,
    CHTTPC_IO_ERROR = 3
};

/// Resolves `host` and connects to `port` within `timeout_ms`, trying each address. Returns a blocking,
/// close-on-exec socket whose reads and writes time out after `io_timeout_ms`, or -1 with `*kind` and `err` set.
int chttpc_connect(const char *host, int port, int timeout_ms, int io_timeout_ms, int *kind, char *err, size_t errlen);
/// Changes the read/write timeout of a connected socket.
void chttpc_set_io_timeout(int fd, int io_timeout_ms);
/// recv(); returns the count, or 0 with `*status` set (closed, timeout, error).
long chttpc_read(int fd, void *buf, size_t len, int *status);
/// send() with MSG_NOSIGNAL; returns the count, or 0 with `*status` set.
long chttpc_write(int fd, const void *buf, size_t len, int *status);
void chttpc_close(int fd);

#endif
