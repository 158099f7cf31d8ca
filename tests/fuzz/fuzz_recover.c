/* The audit writer's recovery at start: the instance's last segment is arbitrary bytes (a power
 * cut, a disk fault, a hand edit), and audit_open must either refuse to start with a message
 * or recover and start. When it starts, nothing of the file is lost: the bytes it kept in the
 * segment followed by the bytes it moved aside (".torn-*") are the file as it was, less only
 * the zero-filled space at its end. The writer then stops cleanly. */
#include <dirent.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit.h"
#include "audit/crypto.h"
#include "common/log.h"
#include "tests/fuzz/fuzz.h"

#define SEGMENT "fz-20260101-000000000000.jsonl"

static char dir[256], keys[300];
static EVP_PKEY *key;

static void empty_dir(const char *d)
{
    DIR *dh = opendir(d);
    if (dh == NULL)
        return;
    struct dirent *e;
    char path[600];
    while ((e = readdir(dh)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", d, e->d_name);
        unlink(path);
    }
    closedir(dh);
}

/* Leaves nothing behind in /dev/shm. */
static void cleanup(void)
{
    empty_dir(dir);
    rmdir(dir);
    empty_dir(keys);
    rmdir(keys);
    EVP_PKEY_free(key);
}

static void setup(void)
{
    char err[600], path[400];
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/lg-fuzz-recover-%d", base, (int)getpid());
    snprintf(keys, sizeof keys, "%s/lg-fuzz-recover-keys-%d", base, (int)getpid());
    mkdir(dir, 0700);
    mkdir(keys, 0700);
    if (audit_keygen(keys, err, sizeof err) != 0) {
        fprintf(stderr, "keygen: %s\n", err);
        abort();
    }
    snprintf(path, sizeof path, "%s/signing.key", keys);
    key = audit_load_signing_key(path, dir, err, sizeof err);
    FUZZ_CHECK(key != NULL);
    log_init(LOG_LVL_ERROR, NULL); /* the recovery's warnings are expected here */
    atexit(cleanup);
}

/* Appends the whole file at path to *buf (of *len bytes, room for cap). */
static void append_file(const char *path, uint8_t **buf, size_t *len, size_t *cap)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return;
    uint8_t chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (*len + n > *cap) {
            *cap = (*len + n) * 2;
            *buf = realloc(*buf, *cap);
            FUZZ_CHECK(*buf != NULL);
        }
        memcpy(*buf + *len, chunk, n);
        *len += n;
    }
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[600], err[600];
    if (key == NULL)
        setup();
    empty_dir(dir);
    snprintf(path, sizeof path, "%s/%s", dir, SEGMENT);
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);

    FUZZ_CHECK(EVP_PKEY_up_ref(key) == 1); /* the writer takes ownership of its key */
    struct audit_opts o = {.dir = dir, .instance = "fz", .key = key, .group_commit_us = 0,
                           .segment_bytes = 1 << 20, .zero_ahead_bytes = 0,
                           .checkpoint_records = 1000, .checkpoint_ms = 60000,
                           .heartbeat_ms = 60000, .queue_records = 100, .min_free_bytes = 0};
    err[0] = '\0';
    struct audit *a = audit_open(&o, err, sizeof err);
    if (a == NULL) {
        EVP_PKEY_free(key);
        FUZZ_CHECK(err[0] != '\0'); /* a refusal to start says why */
        return 0;
    }

    /* What the recovery kept, then what it moved aside. */
    uint8_t *got = NULL;
    size_t len = 0, cap = 0;
    append_file(path, &got, &len, &cap);
    DIR *dh = opendir(dir);
    FUZZ_CHECK(dh != NULL);
    struct dirent *e;
    int torn = 0;
    while ((e = readdir(dh)) != NULL) {
        if (strncmp(e->d_name, SEGMENT ".torn-", sizeof SEGMENT + 5) == 0) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            append_file(path, &got, &len, &cap);
            torn++;
        }
    }
    closedir(dh);
    FUZZ_CHECK(torn <= 1);
    size_t want = size;
    while (want > 0 && data[want - 1] == '\0')
        want--;
    FUZZ_CHECK(len == want && (want == 0 || memcmp(got, data, want) == 0));
    free(got);

    audit_close(a, NULL, 0);
    return 0;
}
