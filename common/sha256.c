/* See sha256.h for why this uses OpenSSL's low-level SHA-256 functions. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "common/sha256.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdalign.h>
#include <string.h>

_Static_assert(sizeof(SHA256_CTX) <= sizeof(struct sha256_state), "SHA256_CTX does not fit");
_Static_assert(alignof(SHA256_CTX) <= alignof(struct sha256_state), "SHA256_CTX alignment");

#define CTX(s) ((SHA256_CTX *)(void *)(s)->opaque)

/* SHA256_Init/_Update/_Final fail only on NULL arguments, which these never pass. */
void sha256_init(struct sha256_state *s)
{
    SHA256_Init(CTX(s));
}

void sha256_update(struct sha256_state *s, const void *data, size_t len)
{
    SHA256_Update(CTX(s), data, len);
}

void sha256_final(struct sha256_state *s, uint8_t out[32])
{
    SHA256_Final(out, CTX(s));
}

void sha256_two(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[32])
{
    struct sha256_state s;
    sha256_init(&s);
    sha256_update(&s, a, alen);
    if (blen)
        sha256_update(&s, b, blen);
    sha256_final(&s, out);
}

void hmac_sha256_key_init(struct hmac_sha256_key *k, const uint8_t *key, size_t len)
{
    uint8_t block[64] = {0}, pad[64];
    if (len > sizeof block)
        sha256_two(key, len, NULL, 0, block);
    else
        memcpy(block, key, len);
    for (size_t i = 0; i < sizeof block; i++)
        pad[i] = block[i] ^ 0x36;
    sha256_init(&k->inner);
    sha256_update(&k->inner, pad, sizeof pad);
    for (size_t i = 0; i < sizeof block; i++)
        pad[i] = block[i] ^ 0x5c;
    sha256_init(&k->outer);
    sha256_update(&k->outer, pad, sizeof pad);
    OPENSSL_cleanse(block, sizeof block);
    OPENSSL_cleanse(pad, sizeof pad);
}

void hmac_sha256(const struct hmac_sha256_key *k, const void *msg, size_t len, uint8_t out[32])
{
    uint8_t inner[32];
    struct sha256_state s = k->inner;
    sha256_update(&s, msg, len);
    sha256_final(&s, inner);
    s = k->outer;
    sha256_update(&s, inner, sizeof inner);
    sha256_final(&s, out);
    OPENSSL_cleanse(&s, sizeof s);
    OPENSSL_cleanse(inner, sizeof inner);
}
