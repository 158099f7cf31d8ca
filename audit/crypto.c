/* Hex, base64, SHA-256, Ed25519 and HMAC for the audit log, and the key files. */
#include "audit/crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

void hex_encode(const uint8_t *b, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * n] = '\0';
}

int hex_decode(const char *s, size_t slen, uint8_t *out)
{
    if (slen % 2)
        return -1;
    for (size_t i = 0; i < slen; i += 2) {
        int hi = hex_digit_value((unsigned char)s[i]), lo = hex_digit_value((unsigned char)s[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

size_t b64_encode(const uint8_t *b, size_t n, char *out)
{
    return (size_t)EVP_EncodeBlock((unsigned char *)out, b, (int)n);
}

long b64_decode(const char *s, size_t slen, uint8_t *out)
{
    if (slen == 0 || slen % 4 || slen > INT_MAX)
        return -1;
    int n = EVP_DecodeBlock(out, (const unsigned char *)s, (int)slen);
    if (n < 0)
        return -1;
    /* EVP_DecodeBlock counts the padding as zero bytes. */
    if (s[slen - 1] == '=')
        n--;
    if (s[slen - 2] == '=')
        n--;
    return n;
}

int audit_check_key_file(const char *path, const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        return -1;
    }
    if (st.st_mode & 077) {
        snprintf(err, errlen, "%s: mode %03o lets others read or change the key; use "
                              "chmod 600", path, (unsigned)(st.st_mode & 0777));
        return -1;
    }
    if (st.st_uid != geteuid() && st.st_uid != 0) {
        snprintf(err, errlen, "%s: owned by uid %u, neither this user nor root", path,
                 (unsigned)st.st_uid);
        return -1;
    }
    if (dir) {
        char rk[PATH_MAX], rd[PATH_MAX];
        if (realpath(path, rk) && realpath(dir, rd)) {
            size_t n = strlen(rd);
            if (strncmp(rk, rd, n) == 0 && (rk[n] == '/' || (n == 1 && rd[0] == '/'))) {
                snprintf(err, errlen, "%s: keys must be kept outside the audit directory %s "
                                      "(whoever copies the log must not get the key)", path, dir);
                return -1;
            }
        }
    }
    return 0;
}

EVP_PKEY *audit_load_signing_key(const char *path, const char *logdir, char *err, size_t errlen)
{
    if (audit_check_key_file(path, logdir, err, errlen) != 0)
        return NULL;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (k == NULL || EVP_PKEY_id(k) != EVP_PKEY_ED25519) {
        snprintf(err, errlen, "%s: not an Ed25519 private key in PEM (make one with "
                              "lookupgate-audit keygen)", path);
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

EVP_PKEY *audit_load_public_key(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    EVP_PKEY *k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (k == NULL || EVP_PKEY_id(k) != EVP_PKEY_ED25519) {
        snprintf(err, errlen, "%s: not an Ed25519 public key in PEM", path);
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

void audit_key_free(EVP_PKEY *k)
{
    EVP_PKEY_free(k);
}

char *audit_public_pem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *out = NULL;
    if (b && PEM_write_bio_PUBKEY(b, k) == 1) {
        long n = BIO_get_mem_data(b, &data);
        out = xstrndup(data, (size_t)n);
    }
    BIO_free(b);
    return out;
}

size_t audit_checkpoint_text(const char *origin, uint64_t size, const uint8_t root[32],
                             char *out, size_t outlen)
{
    char r[48];
    b64_encode(root, 32, r);
    int n = snprintf(out, outlen, "%s\n%llu\n%s\n", origin, (unsigned long long)size, r);
    return n < 0 ? 0 : (size_t)n;
}

int audit_sign(EVP_PKEY *k, const char *msg, size_t len, char sig_b64[89])
{
    uint8_t sig[64];
    size_t slen = sizeof sig;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_DigestSignInit(c, NULL, NULL, NULL, k) == 1 &&
             EVP_DigestSign(c, sig, &slen, (const unsigned char *)msg, len) == 1;
    EVP_MD_CTX_free(c);
    if (!ok || slen != 64)
        return -1;
    b64_encode(sig, 64, sig_b64);
    return 0;
}

int audit_verify_sig(EVP_PKEY *k, const char *msg, size_t len, const char *sig_b64)
{
    uint8_t sig[66];
    size_t sl = strlen(sig_b64);
    if (sl != 88 || b64_decode(sig_b64, sl, sig) != 64)
        return 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_DigestVerifyInit(c, NULL, NULL, NULL, k) == 1 &&
             EVP_DigestVerify(c, sig, 64, (const unsigned char *)msg, len) == 1;
    EVP_MD_CTX_free(c);
    return ok;
}

/* Creates path exclusively with mode and writes text; 0 or -1 with a message. */
static int write_new(const char *path, int mode, const char *text, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s%s", path, strerror(errno),
                 errno == EEXIST ? " (keygen never overwrites a key)" : "");
        return -1;
    }
    size_t n = strlen(text);
    int ok = write(fd, text, n) == (ssize_t)n && fsync(fd) == 0;
    close(fd);
    if (!ok) {
        snprintf(err, errlen, "%s: write failed", path);
        return -1;
    }
    return 0;
}

int audit_keygen(const char *dir, char *err, size_t errlen)
{
    char p1[PATH_MAX], p2[PATH_MAX], p3[PATH_MAX];
    snprintf(p1, sizeof p1, "%s/signing.key", dir);
    snprintf(p2, sizeof p2, "%s/signing.pub", dir);
    snprintf(p3, sizeof p3, "%s/cid.key", dir);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    if (access(p1, F_OK) == 0 || access(p2, F_OK) == 0 || access(p3, F_OK) == 0) {
        snprintf(err, errlen, "%s already holds keys; keygen never overwrites a key", dir);
        return -1;
    }
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (k == NULL) {
        snprintf(err, errlen, "Ed25519 key generation failed");
        return -1;
    }
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    int rc = -1;
    if (b && PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) == 1) {
        long n = BIO_get_mem_data(b, &data);
        char *priv = xstrndup(data, (size_t)n);
        char *pub = audit_public_pem(k);
        uint8_t cid[CID_KEY_BYTES];
        char cidhex[2 * CID_KEY_BYTES + 2];
        if (RAND_bytes(cid, sizeof cid) == 1 && pub) {
            hex_encode(cid, sizeof cid, cidhex);
            strcat(cidhex, "\n");
            rc = write_new(p1, 0600, priv, err, errlen);
            if (rc == 0)
                rc = write_new(p2, 0644, pub, err, errlen);
            if (rc == 0)
                rc = write_new(p3, 0600, cidhex, err, errlen);
        }
        OPENSSL_cleanse(priv, strlen(priv));
        OPENSSL_cleanse(cid, sizeof cid);
        free(priv);
        free(pub);
    }
    BIO_free(b);
    EVP_PKEY_free(k);
    return rc;
}

int audit_load_cid_key(const char *path, const char *logdir, uint8_t key[CID_KEY_BYTES],
                       char *err, size_t errlen)
{
    if (audit_check_key_file(path, logdir, err, errlen) != 0)
        return -1;
    char buf[256];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    int rc = 0;
    if (n != 2 * CID_KEY_BYTES || hex_decode(buf, (size_t)n, key) != 0) {
        snprintf(err, errlen, "%s: expected %d hex characters (make one with lookupgate-audit "
                              "keygen)", path, 2 * CID_KEY_BYTES);
        rc = -1;
    }
    OPENSSL_cleanse(buf, sizeof buf);
    return rc;
}

void audit_cid_token_k(const struct hmac_sha256_key *k, const char *id, size_t len, char out[65])
{
    uint8_t mac[32];
    hmac_sha256(k, id, len, mac);
    hex_encode(mac, 32, out);
}

void audit_cid_token(const uint8_t key[CID_KEY_BYTES], const char *id, size_t len, char out[65])
{
    struct hmac_sha256_key k;
    hmac_sha256_key_init(&k, key, CID_KEY_BYTES);
    audit_cid_token_k(&k, id, len, out);
    OPENSSL_cleanse(&k, sizeof k);
}
