/* SHA-256 and HMAC-SHA-256 on the request path and in the audit writer, without allocations or
 * locks. OpenSSL 3.0's EVP interface looks the algorithm up again (a lock, a name copy) on every
 * SHA256(), HMAC() or EVP_DigestInit_ex(EVP_sha256()), and even with a fetched digest and a
 * reused context EVP_DigestInit_ex2 frees and allocates the provider's context on every init
 * (about 10 allocations a lookup, counted with bench/run.sh --allocs). The low-level SHA256_Init,
 * _Update and _Final (deprecated in 3.0, present in every 3.x) run the same assembly as the
 * provider, with the SHA extensions where the CPU has them, on a state kept here: on the stack
 * or in its owner's struct. */
#ifndef LG_SHA256_H
#define LG_SHA256_H

#include <stddef.h>
#include <stdint.h>

/* A running SHA-256 (OpenSSL's SHA256_CTX, which sha256.c checks fits). Copying it copies the
 * hash so far. */
struct sha256_state {
    uint64_t opaque[14];
};
void sha256_init(struct sha256_state *s);
void sha256_update(struct sha256_state *s, const void *data, size_t len);
void sha256_final(struct sha256_state *s, uint8_t out[32]);

/* SHA-256 of a || b (b may be NULL with blen 0). */
void sha256_two(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[32]);

/* An HMAC-SHA-256 key: the states after the padded key's block (keys of any length), so that a
 * MAC of a short message is two compressions, not four. As secret as the key. */
struct hmac_sha256_key {
    struct sha256_state inner;
    struct sha256_state outer;
};
void hmac_sha256_key_init(struct hmac_sha256_key *k, const uint8_t *key, size_t len);
void hmac_sha256(const struct hmac_sha256_key *k, const void *msg, size_t len, uint8_t out[32]);

#endif
