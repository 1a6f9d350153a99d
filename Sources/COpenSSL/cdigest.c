#include "copenssl_digest.h"

EVP_MD_CTX *copenssl_sha256_new(void) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) return NULL;
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int copenssl_digest_update(EVP_MD_CTX *ctx, const void *data, size_t len) {
    return EVP_DigestUpdate(ctx, data, len) == 1;
}

int copenssl_digest_final(EVP_MD_CTX *ctx, unsigned char *out, unsigned int *outlen) {
    return EVP_DigestFinal_ex(ctx, out, outlen) == 1;
}

void copenssl_digest_free(EVP_MD_CTX *ctx) { EVP_MD_CTX_free(ctx); }

int copenssl_md5(const void *data, size_t len, unsigned char *out) {
    unsigned int n = 0;
    return EVP_Digest(data, len, out, &n, EVP_md5(), NULL) == 1 && n == 16;
}
