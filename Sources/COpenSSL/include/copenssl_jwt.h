#ifndef COPENSSL_JWT_H
#define COPENSSL_JWT_H
// Public-key primitives for JSON Web Tokens (RS256, ES256) and password hashing (scrypt), so that EVP calls
// stay in this shim and Swift sees plain functions over byte buffers.
#include <stddef.h>
#include <openssl/evp.h>

/// Key kinds `copenssl_pkey_kind` reports.
enum {
    COPENSSL_KEY_OTHER = 0,
    COPENSSL_KEY_RSA = 1,   // RSA of at least 2048 bits
    COPENSSL_KEY_EC_P256 = 2
};

/// A key from PEM text (a public key, or a private key when `is_private`); NULL when it does not parse.
EVP_PKEY *copenssl_pkey_from_pem(const char *pem, size_t len, int is_private);
/// An RSA public key from its big-endian modulus and exponent (a JWK's `n` and `e`).
EVP_PKEY *copenssl_pkey_rsa(const unsigned char *n, size_t nlen, const unsigned char *e, size_t elen);
/// A P-256 public key from its 32-byte big-endian coordinates (a JWK's `x` and `y`); NULL when off the curve.
EVP_PKEY *copenssl_pkey_ec_p256(const unsigned char *x, size_t xlen, const unsigned char *y, size_t ylen);
/// A fresh key pair: COPENSSL_KEY_RSA (2048 bits) or COPENSSL_KEY_EC_P256.
EVP_PKEY *copenssl_pkey_generate(int kind);
int copenssl_pkey_kind(EVP_PKEY *key);
void copenssl_pkey_free(EVP_PKEY *key);
/// PEM text of the key (the private key when `is_private`) in a buffer the caller frees with `copenssl_free`.
/// Returns its length, or -1.
long copenssl_pkey_to_pem(EVP_PKEY *key, int is_private, char **out);
/// The public components for a JWK: RSA n and e, or EC x and y (32 bytes each). `a` and `b` hold 1024 bytes.
int copenssl_pkey_components(EVP_PKEY *key, unsigned char *a, size_t *alen, unsigned char *b, size_t *blen);
void copenssl_free(void *p);

/// Verifies a SHA-256 signature: PKCS#1 v1.5 for RSA, the JWS raw r||s form (64 bytes) for P-256.
/// Returns 1 when valid, 0 otherwise.
int copenssl_verify_sha256(EVP_PKEY *key, const unsigned char *data, size_t len, const unsigned char *sig, size_t siglen);
/// Signs with SHA-256 in the same forms; `out` holds 512 bytes. Returns 1 on success.
int copenssl_sign_sha256(EVP_PKEY *key, const unsigned char *data, size_t len, unsigned char *out, size_t *outlen);
/// HMAC-SHA256 of `data` under `key` into 32 bytes of `out`.
int copenssl_hmac_sha256(const unsigned char *key, size_t keylen, const unsigned char *data, size_t len, unsigned char *out);

/// scrypt (RFC 7914) of `password` with `salt` into `outlen` bytes; returns 1 on success.
int copenssl_scrypt(const char *password, size_t pwlen, const unsigned char *salt, size_t saltlen,
                    unsigned long long n, unsigned long long r, unsigned long long p, unsigned char *out, size_t outlen);
/// `len` cryptographically random bytes; returns 1 on success.
int copenssl_random(unsigned char *out, size_t len);
/// Constant-time comparison; returns 1 when equal.
int copenssl_equal(const unsigned char *a, const unsigned char *b, size_t len);

#endif
