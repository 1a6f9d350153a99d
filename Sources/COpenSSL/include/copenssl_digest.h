#ifndef COPENSSL_DIGEST_H
#define COPENSSL_DIGEST_H
// Message digests as plain functions, so that EVP calls stay in this shim.
#include <stddef.h>
#include <openssl/evp.h>

/// A streaming SHA-256; NULL when OpenSSL cannot allocate it. Free with copenssl_digest_free.
EVP_MD_CTX *copenssl_sha256_new(void);
/// Adds `len` bytes; returns 1 on success.
int copenssl_digest_update(EVP_MD_CTX *ctx, const void *data, size_t len);
/// Writes the digest (at most EVP_MAX_MD_SIZE bytes) into `out` and its length into `*outlen`; returns 1 on success.
int copenssl_digest_final(EVP_MD_CTX *ctx, unsigned char *out, unsigned int *outlen);
void copenssl_digest_free(EVP_MD_CTX *ctx);
/// MD5 of `len` bytes into 16 bytes of `out`; returns 1 on success.
int copenssl_md5(const void *data, size_t len, unsigned char *out);

#endif
