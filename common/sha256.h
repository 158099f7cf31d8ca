/* SHA-256 and HMAC-SHA-256 on the request path. OpenSSL 3 looks the algorithm up again (a
 * lock, a name copy, allocations) on every SHA256(), HMAC() or EVP_DigestInit_ex(EVP_sha256())
 * call: about 20,000 instructions for a 12-byte HMAC. Here the digest is fetched once and each
 * thread reuses one context, so a hash costs its compressions. */
#ifndef LG_SHA256_H
#define LG_SHA256_H

#include <stddef.h>
#include <stdint.h>

/* SHA-256 of a || b (b may be NULL with blen 0). */
void sha256_two(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[32]);

/* An HMAC-SHA-256 key, padded once (keys of up to 64 bytes). */
struct hmac_sha256_key {
    uint8_t ipad[64];
    uint8_t opad[64];
};
void hmac_sha256_key_init(struct hmac_sha256_key *k, const uint8_t *key, size_t len);
void hmac_sha256(const struct hmac_sha256_key *k, const void *msg, size_t len, uint8_t out[32]);

#endif
