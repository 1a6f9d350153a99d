#include "copenssl_client.h"
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

static void client_error(char *err, size_t errlen, const char *what) {
    unsigned long code = ERR_get_error();
    if (code == 0) {
        snprintf(err, errlen, "%s", what);
    } else {
        char buf[256];
        ERR_error_string_n(code, buf, sizeof buf);
        snprintf(err, errlen, "%s: %s", what, buf);
    }
    ERR_clear_error();
}

SSL_CTX *copenssl_client_ctx_new(int verify, const char *cafile, char *err, size_t errlen) {
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) { client_error(err, errlen, "cannot create a TLS context"); return NULL; }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_AUTO_RETRY);
    if (verify) {
        int ok = cafile != NULL ? SSL_CTX_load_verify_locations(ctx, cafile, NULL) : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            client_error(err, errlen, "cannot load the trusted certificates");
            SSL_CTX_free(ctx);
            return NULL;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    return ctx;
}

void copenssl_client_ctx_free(SSL_CTX *ctx) { SSL_CTX_free(ctx); }

SSL *copenssl_client_connect(SSL_CTX *ctx, int fd, const char *host, char *err, size_t errlen) {
    ERR_clear_error();
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL) { client_error(err, errlen, "cannot create a TLS connection"); return NULL; }
    SSL_set_fd(ssl, fd);
    unsigned char ip[16];
    int is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    if (!is_ip) SSL_set_tlsext_host_name(ssl, host);
    if (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) {
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        if (is_ip) X509_VERIFY_PARAM_set1_ip_asc(param, host);
        else SSL_set1_host(ssl, host);
    }
    int r = SSL_connect(ssl);
    if (r != 1) {
        long v = SSL_get_verify_result(ssl);
        if (v != X509_V_OK) {
            snprintf(err, errlen, "certificate verification failed: %s", X509_verify_cert_error_string(v));
            ERR_clear_error();
        } else {
            client_error(err, errlen, "TLS handshake failed");
        }
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

static int tls_status(SSL *ssl, int r) {
    int e = SSL_get_error(ssl, r);
    ERR_clear_error();
    switch (e) {
    case SSL_ERROR_ZERO_RETURN: return COPENSSL_IO_CLOSED;
    case SSL_ERROR_WANT_READ: case SSL_ERROR_WANT_WRITE: return COPENSSL_IO_TIMEOUT;
    case SSL_ERROR_SYSCALL:
        if (errno == EAGAIN || errno == EWOULDBLOCK) return COPENSSL_IO_TIMEOUT;
        return COPENSSL_IO_CLOSED;
    default: return COPENSSL_IO_ERROR;
    }
}

long copenssl_client_read(SSL *ssl, void *buf, int len, int *status) {
    ERR_clear_error();
    int r = SSL_read(ssl, buf, len);
    if (r > 0) { *status = COPENSSL_IO_OK; return r; }
    *status = tls_status(ssl, r);
    return 0;
}

long copenssl_client_write(SSL *ssl, const void *buf, int len, int *status) {
    ERR_clear_error();
    int r = SSL_write(ssl, buf, len);
    if (r > 0) { *status = COPENSSL_IO_OK; return r; }
    *status = tls_status(ssl, r);
    return 0;
}

void copenssl_client_free(SSL *ssl) {
    if (ssl == NULL) return;
    SSL_shutdown(ssl);
    SSL_free(ssl);
    ERR_clear_error();
}
