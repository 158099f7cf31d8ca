/* The audit log's cryptography, all OpenSSL: hex and base64, SHA-256 (common/sha256.h), Ed25519
 * checkpoint signatures, the citizen-ID key (HMAC-SHA256) and the checks on key files. */
#ifndef LG_AUDIT_CRYPTO_H
#define LG_AUDIT_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "common/sha256.h"

struct evp_pkey_st;

void hex_encode(const uint8_t *b, size_t n, char *out); /* writes 2n chars and a NUL */
int hex_decode(const char *s, size_t slen, uint8_t *out);  /* slen even; 0 or -1 */
/* Standard base64 with padding; returns the length written (out holds 4*ceil(n/3)+1). */
size_t b64_encode(const uint8_t *b, size_t n, char *out);
/* Returns the decoded length, or -1. out holds 3*slen/4 bytes. */
long b64_decode(const char *s, size_t slen, uint8_t *out);

/* Checks that a key file is a regular file readable by its owner only and, when dir is given,
 * not inside dir. 0, or -1 with a message. */
int audit_check_key_file(const char *path, const char *dir, char *err, size_t errlen);

/* Ed25519 keys (PEM files). The private key file is checked as above. NULL with a message. */
struct evp_pkey_st *audit_load_signing_key(const char *path, const char *logdir, char *err,
                                           size_t errlen);
struct evp_pkey_st *audit_load_public_key(const char *path, char *err, size_t errlen);
void audit_key_free(struct evp_pkey_st *k);
/* The public key of a signing key, PEM, in a malloc'd string. */
char *audit_public_pem(struct evp_pkey_st *k);

/* The text a checkpoint signs: "<origin>\n<size>\n<base64 root>\n". */
size_t audit_checkpoint_text(const char *origin, uint64_t size, const uint8_t root[32],
                             char *out, size_t outlen);
/* Signs msg; writes the base64 signature (89 bytes with NUL). 0 or -1. */
int audit_sign(struct evp_pkey_st *k, const char *msg, size_t len, char sig_b64[89]);
/* 1 if sig_b64 is a valid signature of msg by k. */
int audit_verify_sig(struct evp_pkey_st *k, const char *msg, size_t len, const char *sig_b64);

/* Writes a new Ed25519 key pair and a citizen-ID key into dir (files signing.key, signing.pub,
 * cid.key); refuses to overwrite. 0, or -1 with a message. */
int audit_keygen(const char *dir, char *err, size_t errlen);

/* The citizen-ID key: 32 bytes, stored as 64 hex characters. Checked as above. */
#define CID_KEY_BYTES 32
int audit_load_cid_key(const char *path, const char *logdir, uint8_t key[CID_KEY_BYTES],
                       char *err, size_t errlen);
/* The subject token: hex(HMAC-SHA256(key, id)); out holds 65 bytes. */
void audit_cid_token(const uint8_t key[CID_KEY_BYTES], const char *id, size_t len, char out[65]);
/* The same with the key padded once (the request path). */
void audit_cid_token_k(const struct hmac_sha256_key *k, const char *id, size_t len, char out[65]);

#endif
