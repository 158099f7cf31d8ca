/* OpenSSL 3 contexts: client-facing listeners (TLS 1.2+, ECDHE with AEAD only, no
 * renegotiation, optional required client certificates) and the upstream (certificate and
 * hostname verification, optional client certificate for mTLS to the national link). */
#ifndef LG_TLS_H
#define LG_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "policy/config.h"

/* Return a new context, or NULL with a message in err. */
SSL_CTX *tls_server_ctx_new(const struct cfg_tls_server *t, char *err, size_t errlen);
SSL_CTX *tls_client_ctx_new(const struct cfg_upstream *u, char *err, size_t errlen);

/* A new SSL for one upstream connection: SNI and, when verifying, the expected host name. */
SSL *tls_client_ssl_new(SSL_CTX *ctx, const struct cfg_upstream *u);

/* "sha256:<hex>" of the peer's certificate into out (>= 72 bytes); "" when there is none. */
void tls_peer_fingerprint(SSL *ssl, char *out, size_t outlen);

#endif
