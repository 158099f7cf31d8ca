/* TLS context setup. */
#include "proxy/tls.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <string.h>

#include "audit/crypto.h"
#include <stdio.h>

/* TLS 1.2 suites: forward secrecy (ECDHE) with AEAD only. TLS 1.3 suites are all AEAD. */
static const char tls12_ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

static SSL_CTX *ctx_fail(SSL_CTX *ctx, char *err, size_t errlen, const char *what,
                         const char *file)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    snprintf(err, errlen, "%s%s%s: %s", what, file ? " " : "", file ? file : "", buf);
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

static int common_setup(SSL_CTX *ctx)
{
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION))
        return -1;
    if (!SSL_CTX_set_cipher_list(ctx, tls12_ciphers))
        return -1;
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return 0;
}

SSL_CTX *tls_server_ctx_new(const struct cfg_tls_server *t, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL || common_setup(ctx) != 0)
        return ctx_fail(ctx, err, errlen, "TLS setup failed", NULL);
    if (SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1)
        return ctx_fail(ctx, err, errlen, "cannot load certificate", t->cert);
    if (SSL_CTX_use_PrivateKey_file(ctx, t->key, SSL_FILETYPE_PEM) != 1)
        return ctx_fail(ctx, err, errlen, "cannot load private key", t->key);
    if (SSL_CTX_check_private_key(ctx) != 1)
        return ctx_fail(ctx, err, errlen, "key does not match certificate", t->key);
    if (t->client_ca) {
        if (SSL_CTX_load_verify_locations(ctx, t->client_ca, NULL) != 1)
            return ctx_fail(ctx, err, errlen, "cannot load client CA", t->client_ca);
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->client_ca);
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
        int mode = SSL_VERIFY_PEER;
        if (t->require_client_cert)
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, mode, NULL);
        /* Client certificates must be meant for client authentication. */
        X509_VERIFY_PARAM_set_purpose(SSL_CTX_get0_param(ctx), X509_PURPOSE_SSL_CLIENT);
    }
    if (t->client_crl) {
        /* Every certificate of the client's chain is checked against the CRLs; a CA without a
         * CRL in the file fails the handshake (fail closed: a missing CRL is not "revoked
         * nothing"). */
        X509_STORE *store = SSL_CTX_get_cert_store(ctx);
        X509_LOOKUP *lk = X509_STORE_add_lookup(store, X509_LOOKUP_file());
        if (lk == NULL || X509_load_crl_file(lk, t->client_crl, X509_FILETYPE_PEM) < 1)
            return ctx_fail(ctx, err, errlen, "cannot load client CRL", t->client_crl);
        X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    }
    return ctx;
}

SSL_CTX *tls_client_ctx_new(const struct cfg_upstream *u, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL || common_setup(ctx) != 0)
        return ctx_fail(ctx, err, errlen, "TLS setup failed", NULL);
    if (u->ca_file) {
        if (SSL_CTX_load_verify_locations(ctx, u->ca_file, NULL) != 1)
            return ctx_fail(ctx, err, errlen, "cannot load upstream CA", u->ca_file);
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        return ctx_fail(ctx, err, errlen, "cannot load the system CA store", NULL);
    }
    SSL_CTX_set_verify(ctx, u->tls_verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (u->client_cert) {
        if (SSL_CTX_use_certificate_chain_file(ctx, u->client_cert) != 1)
            return ctx_fail(ctx, err, errlen, "cannot load client certificate", u->client_cert);
        if (SSL_CTX_use_PrivateKey_file(ctx, u->client_key, SSL_FILETYPE_PEM) != 1)
            return ctx_fail(ctx, err, errlen, "cannot load client key", u->client_key);
    }
    return ctx;
}

SSL *tls_client_ssl_new(SSL_CTX *ctx, const struct cfg_upstream *u)
{
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL)
        return NULL;
    SSL_set_tlsext_host_name(ssl, u->server_name);
    if (u->tls_verify && SSL_set1_host(ssl, u->server_name) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

void tls_peer_fingerprint(SSL *ssl, char *out, size_t outlen)
{
    X509 *cert = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
    unsigned char md[32];
    unsigned n = 0;
    out[0] = '\0';
    if (outlen >= 72 && cert && X509_digest(cert, EVP_sha256(), md, &n) == 1 && n == 32) {
        memcpy(out, "sha256:", 7);
        hex_encode(md, 32, out + 7);
    }
}

void tls_slot_init(struct tls_slot *s, SSL_CTX *ctx)
{
    pthread_mutex_init(&s->mu, NULL);
    s->ctx = ctx;
}

SSL_CTX *tls_slot_get(struct tls_slot *s)
{
    pthread_mutex_lock(&s->mu);
    SSL_CTX *ctx = s->ctx;
    if (ctx)
        SSL_CTX_up_ref(ctx);
    pthread_mutex_unlock(&s->mu);
    return ctx;
}

void tls_slot_set(struct tls_slot *s, SSL_CTX *ctx)
{
    pthread_mutex_lock(&s->mu);
    SSL_CTX *old = s->ctx;
    s->ctx = ctx;
    pthread_mutex_unlock(&s->mu);
    SSL_CTX_free(old);
}

void tls_slot_destroy(struct tls_slot *s)
{
    SSL_CTX_free(s->ctx);
    s->ctx = NULL;
    pthread_mutex_destroy(&s->mu);
}
