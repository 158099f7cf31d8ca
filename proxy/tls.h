/* OpenSSL 3 contexts: client-facing listeners (TLS 1.2+, ECDHE with AEAD only, no
 * renegotiation, optional required client certificates) and the upstream (certificate and
 * hostname verification, optional client certificate for mTLS to the national link). */
#ifndef LG_TLS_H
#define LG_TLS_H

#include <openssl/ssl.h>
#include <pthread.h>
#include <stddef.h>

#include "policy/config.h"

/* Return a new context, or NULL with a message in err. */
SSL_CTX *tls_server_ctx_new(const struct cfg_tls_server *t, char *err, size_t errlen);
SSL_CTX *tls_client_ctx_new(const struct cfg_upstream *u, char *err, size_t errlen);

/* A new SSL for one upstream connection: SNI and, when verifying, the expected host name. */
SSL *tls_client_ssl_new(SSL_CTX *ctx, const struct cfg_upstream *u);

/* A context that a reload can replace while other threads start connections with it (H16):
 * each new connection takes a reference under the lock, so a replaced context lives until its
 * last connection ends, and connections already up keep what they negotiated. */
struct tls_slot {
    pthread_mutex_t mu;
    SSL_CTX *ctx; /* NULL: plain */
};
void tls_slot_init(struct tls_slot *s, SSL_CTX *ctx);
/* A new reference to the current context (NULL for plain); release it with SSL_CTX_free. */
SSL_CTX *tls_slot_get(struct tls_slot *s);
/* Installs ctx (the slot takes the reference) and drops the slot's reference to the old one. */
void tls_slot_set(struct tls_slot *s, SSL_CTX *ctx);
void tls_slot_destroy(struct tls_slot *s);

/* "sha256:<hex>" of the peer's certificate into out (>= 72 bytes); "" when there is none. */
void tls_peer_fingerprint(SSL *ssl, char *out, size_t outlen);

#endif
