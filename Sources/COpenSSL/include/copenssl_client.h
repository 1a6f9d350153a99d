#ifndef COPENSSL_CLIENT_H
#define COPENSSL_CLIENT_H
// Client-side TLS over a connected blocking socket (whose timeouts the caller set): SNI and host-name
// verification are macros or multi-step dances in C.
#include <stddef.h>
#include <openssl/ssl.h>

/// I/O status of copenssl_client_read / copenssl_client_write.
enum {
    COPENSSL_IO_OK = 0,
    COPENSSL_IO_CLOSED = 1,
    COPENSSL_IO_TIMEOUT = 2,
    COPENSSL_IO_ERROR = 3
};

/// A client context: TLS 1.2 minimum; when `verify` is set, peers are checked against `cafile` (PEM) or the
/// system's default trust store. NULL with `err` on failure.
SSL_CTX *copenssl_client_ctx_new(int verify, const char *cafile, char *err, size_t errlen);
void copenssl_client_ctx_free(SSL_CTX *ctx);
/// Runs the handshake on the connected socket `fd`, sending `host` as SNI and (when the context verifies)
/// checking the certificate names `host`. NULL with `err` on failure.
SSL *copenssl_client_connect(SSL_CTX *ctx, int fd, const char *host, char *err, size_t errlen);
long copenssl_client_read(SSL *ssl, void *buf, int len, int *status);
long copenssl_client_write(SSL *ssl, const void *buf, int len, int *status);
void copenssl_client_free(SSL *ssl);

#endif
