#include "common/sha256.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static EVP_MD *md;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static pthread_key_t ctx_key;

static void free_ctx(void *c)
{
    EVP_MD_CTX_free(c);
}

static void fetch_md(void)
{
    md = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    if (md == NULL || pthread_key_create(&ctx_key, free_ctx) != 0)
        abort();
}

/* This thread's context (freed when the thread exits). */
static EVP_MD_CTX *thread_ctx(void)
{
    pthread_once(&md_once, fetch_md);
    EVP_MD_CTX *c = pthread_getspecific(ctx_key);
    if (c == NULL) {
        c = EVP_MD_CTX_new();
        if (c == NULL || pthread_setspecific(ctx_key, c) != 0)
            abort();
    }
    return c;
}

void sha256_two(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[32])
{
    EVP_MD_CTX *c = thread_ctx();
    if (EVP_DigestInit_ex2(c, md, NULL) != 1 || EVP_DigestUpdate(c, a, alen) != 1 ||
        (blen && EVP_DigestUpdate(c, b, blen) != 1) || EVP_DigestFinal_ex(c, out, NULL) != 1)
        abort(); /* only on allocation failure inside OpenSSL */
}

void hmac_sha256_key_init(struct hmac_sha256_key *k, const uint8_t *key, size_t len)
{
    uint8_t block[64] = {0};
    if (len > sizeof block) {
        sha256_two(key, len, NULL, 0, block);
        len = 32;
    } else {
        memcpy(block, key, len);
    }
    for (size_t i = 0; i < sizeof block; i++) {
        k->ipad[i] = block[i] ^ 0x36;
        k->opad[i] = block[i] ^ 0x5c;
    }
    OPENSSL_cleanse(block, sizeof block);
}

void hmac_sha256(const struct hmac_sha256_key *k, const void *msg, size_t len, uint8_t out[32])
{
    uint8_t inner[32];
    sha256_two(k->ipad, sizeof k->ipad, msg, len, inner);
    sha256_two(k->opad, sizeof k->opad, inner, sizeof inner, out);
}
