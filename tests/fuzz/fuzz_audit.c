/* The audit line reader of lookupgate-audit: a segment file of arbitrary bytes verified like
 * an inspector's copy (with and without --live). It must give a verdict, never crash; a
 * verdict of "ok" needs checkpoints signed by the key, which the fuzzer cannot forge. */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/crypto.h"
#include "audit/segment.h"
#include "audit/verify.h"
#include "tests/fuzz/fuzz.h"

static char dir[256], keys[300];
static EVP_PKEY *pub;

/* Leaves nothing behind in /dev/shm. */
static void cleanup(void)
{
    static const char *const files[] = {"signing.key", "signing.pub", "cid.key"};
    char path[400];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", keys, files[i]);
        unlink(path);
    }
    rmdir(keys);
    snprintf(path, sizeof path, "%s/fz-20260101-000000000000.jsonl", dir);
    unlink(path);
    rmdir(dir);
    EVP_PKEY_free(pub);
}

static void setup(void)
{
    char err[600], path[400];
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/lg-fuzz-audit-%d", base, (int)getpid());
    snprintf(keys, sizeof keys, "%s/lg-fuzz-keys-%d", base, (int)getpid());
    mkdir(dir, 0700);
    if (access(keys, F_OK) != 0 && audit_keygen(keys, err, sizeof err) != 0) {
        fprintf(stderr, "keygen: %s\n", err);
        abort();
    }
    snprintf(path, sizeof path, "%s/signing.pub", keys);
    pub = audit_load_public_key(path, err, sizeof err);
    FUZZ_CHECK(pub != NULL);
    atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[400], err[600];
    if (pub == NULL)
        setup();
    snprintf(path, sizeof path, "%s/fz-20260101-000000000000.jsonl", dir);
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    struct seg_file *segs = NULL;
    long n = seg_list(dir, "fz", &segs, err, sizeof err);
    FUZZ_CHECK(n == 1);
    for (int live = 0; live < 2; live++) {
        struct verify_opts o = {.pubs = &pub, .npubs = 1, .live = live};
        struct verify_result r;
        memset(&r, 0, sizeof r);
        audit_verify(segs, n, &o, &r);
        FUZZ_CHECK(r.ok || r.error[0] != '\0');
    }
    seg_list_free(segs, n);
    unlink(path);
    return 0;
}
