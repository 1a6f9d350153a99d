#ifndef COPENSSL_H
#define COPENSSL_H
// A small C surface over OpenSSL for a non-blocking TLS server: macros (SSL_CTX_set_min_proto_version)
// and the passphrase callback are handled here so Swift sees plain functions.
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>

/// Status values of the I/O helpers.
enum {
    COPENSSL_OK = 0,
    COPENSSL_WANT_READ = 1,
    COPENSSL_WANT_WRITE = 2,
    COPENSSL_CLOSED = 3,
    COPENSSL_ERROR = 4
};

/// A server context: TLS 1.2 minimum, certificate chain and private key loaded (the key decrypted with
/// `password` when it is not NULL). On failure returns NULL and writes OpenSSL's reason into `err`.
SSL_CTX *copenssl_server_ctx_new(const char *certfile, const char *keyfile, const char *password,
                                 char *err, size_t errlen);
void copenssl_ctx_free(SSL_CTX *ctx);

/// A server-side connection over the non-blocking socket `fd`.
SSL *copenssl_ssl_new(SSL_CTX *ctx, int fd);
/// Sends close_notify (one non-blocking attempt) when the handshake had completed.
void copenssl_shutdown(SSL *ssl);
/// Frees the connection without further I/O.
void copenssl_ssl_free(SSL *ssl);

/// Advances the handshake. Returns a COPENSSL_* status.
int copenssl_accept(SSL *ssl);
/// Reads up to `len` bytes. Returns the count (> 0), or 0 with `*status` set.
int copenssl_read(SSL *ssl, void *buf, int len, int *status);
/// Writes up to `len` bytes (partial writes enabled). Returns the count (> 0), or 0 with `*status` set.
int copenssl_write(SSL *ssl, const void *buf, int len, int *status);
/// The negotiated protocol name, e.g. "TLSv1.3".
const char *copenssl_version(SSL *ssl);
/// Writes and clears the thread's OpenSSL error queue into `err`.
void copenssl_last_error(char *err, size_t errlen);

#endif
