#include "copenssl.h"
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

static int passphrase_cb(char *buf, int size, int rwflag, void *userdata) {
    (void)rwflag;
    const char *pw = userdata;
    if (pw == NULL) return 0;
    int n = (int)strlen(pw);
    if (n > size) n = size;
    memcpy(buf, pw, (size_t)n);
    return n;
}

void copenssl_last_error(char *err, size_t errlen) {
    if (err == NULL || errlen == 0) return;
    unsigned long code = ERR_get_error();
    if (code == 0) {
        snprintf(err, errlen, "unknown OpenSSL error");
    } else {
        ERR_error_string_n(code, err, errlen);
    }
    ERR_clear_error();
}

SSL_CTX *copenssl_server_ctx_new(const char *certfile, const char *keyfile, const char *password,
                                 char *err, size_t errlen) {
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) { copenssl_last_error(err, errlen); return NULL; }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_default_passwd_cb(ctx, passphrase_cb);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, (void *)password);
    if (SSL_CTX_use_certificate_chain_file(ctx, certfile) != 1) {
        copenssl_last_error(err, errlen);
        SSL_CTX_free(ctx);
        return NULL;
    }
    int ok = SSL_CTX_use_PrivateKey_file(ctx, keyfile, SSL_FILETYPE_PEM);
    // The password is only needed while the key is decrypted; do not keep a pointer to the caller's string.
    SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
    if (ok != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        copenssl_last_error(err, errlen);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

void copenssl_ctx_free(SSL_CTX *ctx) { SSL_CTX_free(ctx); }

SSL *copenssl_ssl_new(SSL_CTX *ctx, int fd) {
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL) return NULL;
    if (SSL_set_fd(ssl, fd) != 1) { SSL_free(ssl); return NULL; }
    SSL_set_accept_state(ssl);
    return ssl;
}

void copenssl_shutdown(SSL *ssl) {
    // One non-blocking attempt; the caller closes the socket right after.
    if (SSL_is_init_finished(ssl)) SSL_shutdown(ssl);
    ERR_clear_error();
}

void copenssl_ssl_free(SSL *ssl) {
    if (ssl == NULL) return;
    SSL_set_quiet_shutdown(ssl, 1);
    SSL_free(ssl);
    ERR_clear_error();
}

static int status_of(SSL *ssl, int r) {
    switch (SSL_get_error(ssl, r)) {
    case SSL_ERROR_WANT_READ: return COPENSSL_WANT_READ;
    case SSL_ERROR_WANT_WRITE: return COPENSSL_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN: return COPENSSL_CLOSED;
    default: ERR_clear_error(); return COPENSSL_ERROR;
    }
}

int copenssl_accept(SSL *ssl) {
    ERR_clear_error();
    int r = SSL_accept(ssl);
    if (r == 1) return COPENSSL_OK;
    return status_of(ssl, r);
}

int copenssl_read(SSL *ssl, void *buf, int len, int *status) {
    ERR_clear_error();
    int r = SSL_read(ssl, buf, len);
    if (r > 0) { *status = COPENSSL_OK; return r; }
    *status = status_of(ssl, r);
    return 0;
}

int copenssl_write(SSL *ssl, const void *buf, int len, int *status) {
    ERR_clear_error();
    int r = SSL_write(ssl, buf, len);
    if (r > 0) { *status = COPENSSL_OK; return r; }
    *status = status_of(ssl, r);
    return 0;
}

const char *copenssl_version(SSL *ssl) { return SSL_get_version(ssl); }
