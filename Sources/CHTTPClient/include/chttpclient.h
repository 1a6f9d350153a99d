#ifndef CHTTPCLIENT_H
#define CHTTPCLIENT_H
// Blocking client sockets with timeouts and client-side TLS (OpenSSL), as plain functions: name resolution,
// non-blocking connect with a deadline, SNI and host-name verification are macros or multi-step dances in C.
#include <stddef.h>
#include <openssl/ssl.h>

/// Why a connect failed (`*kind` of chttpc_connect).
enum {
    CHTTPC_OK = 0,
    CHTTPC_RESOLVE = 1,
    CHTTPC_REFUSED = 2,
    CHTTPC_TIMEOUT = 3,
    CHTTPC_UNREACHABLE = 4,
    CHTTPC_OTHER = 5
};

/// I/O status of chttpc_read / chttpc_write / chttpc_tls_*.
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

/// A client context: TLS 1.2 minimum; when `verify` is set, peers are checked against `cafile` (PEM) or the
/// system's default trust store. NULL with `err` on failure.
SSL_CTX *chttpc_tls_ctx_new(int verify, const char *cafile, char *err, size_t errlen);
void chttpc_tls_ctx_free(SSL_CTX *ctx);
/// Runs the handshake on the connected socket `fd`, sending `host` as SNI and (when the context verifies)
/// checking the certificate names `host`. NULL with `err` on failure.
SSL *chttpc_tls_connect(SSL_CTX *ctx, int fd, const char *host, char *err, size_t errlen);
long chttpc_tls_read(SSL *ssl, void *buf, int len, int *status);
long chttpc_tls_write(SSL *ssl, const void *buf, int len, int *status);
void chttpc_tls_free(SSL *ssl);

#endif
