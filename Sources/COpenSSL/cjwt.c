#include "copenssl_jwt.h"
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <string.h>

EVP_PKEY *copenssl_pkey_from_pem(const char *pem, size_t len, int is_private) {
    if (len > 1 << 20) return NULL;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL) return NULL;
    EVP_PKEY *key = is_private ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)
                               : PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    ERR_clear_error();
    return key;
}

static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *bld) {
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY *key = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (params != NULL && ctx != NULL && EVP_PKEY_fromdata_init(ctx) == 1) {
        if (EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) != 1) key = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    ERR_clear_error();
    return key;
}

EVP_PKEY *copenssl_pkey_rsa(const unsigned char *n, size_t nlen, const unsigned char *e, size_t elen) {
    if (nlen == 0 || nlen > 1024 || elen == 0 || elen > 16) return NULL;
    BIGNUM *bn = BN_bin2bn(n, (int)nlen, NULL), *be = BN_bin2bn(e, (int)elen, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *key = NULL;
    if (bn && be && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) == 1
        && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) == 1) {
        key = from_params("RSA", bld);
    }
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return key;
}

EVP_PKEY *copenssl_pkey_ec_p256(const unsigned char *x, size_t xlen, const unsigned char *y, size_t ylen) {
    if (xlen != 32 || ylen != 32) return NULL;
    unsigned char point[65];
    point[0] = 0x04;
    memcpy(point + 1, x, 32);
    memcpy(point + 33, y, 32);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *key = NULL;
    if (bld && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) == 1
        && OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point) == 1) {
        key = from_params("EC", bld);
    }
    OSSL_PARAM_BLD_free(bld);
    // fromdata checks the encoding; an explicit check rejects points off the curve.
    if (key != NULL) {
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
        int ok = ctx != NULL && EVP_PKEY_public_check(ctx) == 1;
        EVP_PKEY_CTX_free(ctx);
        if (!ok) { EVP_PKEY_free(key); key = NULL; }
    }
    ERR_clear_error();
    return key;
}

EVP_PKEY *copenssl_pkey_generate(int kind) {
    EVP_PKEY *key = NULL;
    if (kind == COPENSSL_KEY_RSA) key = EVP_RSA_gen(2048);
    else if (kind == COPENSSL_KEY_EC_P256) key = EVP_EC_gen("prime256v1");
    ERR_clear_error();
    return key;
}

int copenssl_pkey_kind(EVP_PKEY *key) {
    if (key == NULL) return COPENSSL_KEY_OTHER;
    if (EVP_PKEY_is_a(key, "RSA")) return EVP_PKEY_get_bits(key) >= 2048 ? COPENSSL_KEY_RSA : COPENSSL_KEY_OTHER;
    if (EVP_PKEY_is_a(key, "EC")) {
        char group[64] = {0};
        size_t glen = 0;
        if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &glen) == 1
            && (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0)) {
            return COPENSSL_KEY_EC_P256;
        }
    }
    ERR_clear_error();
    return COPENSSL_KEY_OTHER;
}

void copenssl_pkey_free(EVP_PKEY *key) { EVP_PKEY_free(key); }
void copenssl_free(void *p) { OPENSSL_free(p); }

long copenssl_pkey_to_pem(EVP_PKEY *key, int is_private, char **out) {
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL) return -1;
    int ok = is_private ? PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) : PEM_write_bio_PUBKEY(bio, key);
    long result = -1;
    if (ok == 1) {
        char *data = NULL;
        long n = BIO_get_mem_data(bio, &data);
        *out = OPENSSL_malloc((size_t)n + 1);
        if (*out != NULL) {
            memcpy(*out, data, (size_t)n);
            (*out)[n] = 0;
            result = n;
        }
    }
    BIO_free(bio);
    ERR_clear_error();
    return result;
}

static int bn_param(EVP_PKEY *key, const char *name, unsigned char *out, size_t *outlen, int pad) {
    BIGNUM *bn = NULL;
    if (EVP_PKEY_get_bn_param(key, name, &bn) != 1) return 0;
    int n = pad > 0 ? BN_bn2binpad(bn, out, pad) : BN_bn2bin(bn, out);
    BN_free(bn);
    if (n < 0) return 0;
    *outlen = (size_t)n;
    return 1;
}

int copenssl_pkey_components(EVP_PKEY *key, unsigned char *a, size_t *alen, unsigned char *b, size_t *blen) {
    int ok = 0;
    switch (copenssl_pkey_kind(key)) {
    case COPENSSL_KEY_RSA:
        ok = EVP_PKEY_get_bits(key) <= 8192 && bn_param(key, OSSL_PKEY_PARAM_RSA_N, a, alen, 0)
            && bn_param(key, OSSL_PKEY_PARAM_RSA_E, b, blen, 0);
        break;
    case COPENSSL_KEY_EC_P256:
        ok = bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, a, alen, 32) && bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, b, blen, 32);
        break;
    }
    ERR_clear_error();
    return ok;
}

int copenssl_verify_sha256(EVP_PKEY *key, const unsigned char *data, size_t len, const unsigned char *sig, size_t siglen) {
    int kind = copenssl_pkey_kind(key);
    unsigned char der[80];
    const unsigned char *s = sig;
    size_t slen = siglen;
    if (kind == COPENSSL_KEY_EC_P256) {
        // JWS carries r||s; OpenSSL verifies DER.
        if (siglen != 64) return 0;
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, 32, NULL), *t = BN_bin2bn(sig + 32, 32, NULL);
        if (es == NULL || r == NULL || t == NULL || ECDSA_SIG_set0(es, r, t) != 1) {
            ECDSA_SIG_free(es); BN_free(r); BN_free(t);
            return 0;
        }
        unsigned char *p = der;
        int n = i2d_ECDSA_SIG(es, NULL);
        if (n <= 0 || (size_t)n > sizeof der) { ECDSA_SIG_free(es); return 0; }
        n = i2d_ECDSA_SIG(es, &p);
        ECDSA_SIG_free(es);
        s = der;
        slen = (size_t)n;
    } else if (kind != COPENSSL_KEY_RSA) {
        return 0;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md != NULL && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1
        && EVP_DigestVerify(md, s, slen, data, len) == 1;
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    return ok ? 1 : 0;
}

int copenssl_sign_sha256(EVP_PKEY *key, const unsigned char *data, size_t len, unsigned char *out, size_t *outlen) {
    int kind = copenssl_pkey_kind(key);
    if (kind == COPENSSL_KEY_OTHER) return 0;
    unsigned char sig[1100];
    size_t siglen = sizeof sig;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md != NULL && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1
        && EVP_DigestSign(md, NULL, &siglen, data, len) == 1 && siglen <= sizeof sig
        && EVP_DigestSign(md, sig, &siglen, data, len) == 1;
    EVP_MD_CTX_free(md);
    if (ok && kind == COPENSSL_KEY_EC_P256) {
        const unsigned char *p = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)siglen);
        ok = es != NULL && BN_bn2binpad(ECDSA_SIG_get0_r(es), out, 32) == 32
            && BN_bn2binpad(ECDSA_SIG_get0_s(es), out + 32, 32) == 32;
        ECDSA_SIG_free(es);
        *outlen = 64;
    } else if (ok) {
        if (siglen > 512) ok = 0;
        else { memcpy(out, sig, siglen); *outlen = siglen; }
    }
    ERR_clear_error();
    return ok ? 1 : 0;
}

int copenssl_hmac_sha256(const unsigned char *key, size_t keylen, const unsigned char *data, size_t len, unsigned char *out) {
    unsigned int n = 0;
    return HMAC(EVP_sha256(), key, (int)keylen, data, len, out, &n) != NULL && n == 32;
}

int copenssl_scrypt(const char *password, size_t pwlen, const unsigned char *salt, size_t saltlen,
                    unsigned long long n, unsigned long long r, unsigned long long p, unsigned char *out, size_t outlen) {
    // maxmem: 128 * r * N * p plus slack; the caller's parameters are fixed and small.
    int ok = EVP_PBE_scrypt(password, pwlen, salt, saltlen, n, r, p, 256ULL * 1024 * 1024, out, outlen);
    ERR_clear_error();
    return ok == 1;
}

int copenssl_random(unsigned char *out, size_t len) { return RAND_bytes(out, (int)len) == 1; }

int copenssl_equal(const unsigned char *a, const unsigned char *b, size_t len) { return CRYPTO_memcmp(a, b, len) == 0; }
