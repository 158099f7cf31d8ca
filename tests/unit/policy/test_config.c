/* Unit tests for policy/config.c and policy/jsonpos.c: the example config loads, and errors
 * name file, line, column and key. */
#include <stdlib.h>
#include <unistd.h>

#include "../check.h"
#include "policy/config.h"
#include "policy/jsonpos.h"

/* A minimal valid config with the given store section (JSON object text), written to a
 * temporary file; returns its path. */
static char *write_config(const char *store)
{
    char text[1024];
    snprintf(text, sizeof text,
             "{\"listeners\": [{\"address\": \"127.0.0.1:8080\"}],\n"
             " \"upstream\": {\"url\": \"http://127.0.0.1:9000\"},\n"
             " \"store\": %s,\n"
             " \"policy\": \"policy.json\",\n"
             " \"audit\": {\"dir\": \"a\", \"signing_key\": \"s\", \"cid_key\": \"c\"}}\n",
             store);
    return check_write_tmp(text);
}

static void test_example(void)
{
    char path[4096], err[4096];
    const char *src = getenv("LG_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/deploy/lookupgate.example.json", src ? src : ".");
    struct lg_config *cfg = config_load(path, err, sizeof err);
    if (cfg == NULL)
        fprintf(stderr, "%s", err);
    CHECK(cfg != NULL);
    if (cfg) {
        CHECK_INT(cfg->nlisteners, 1);
        CHECK_INT(cfg->upstream.port, 9000);
        CHECK(strcmp(cfg->upstream.host, "127.0.0.1") == 0);
        CHECK_INT(cfg->limits.head_bytes, 8192);
        CHECK_INT(cfg->store.quota_module, 1); /* "auto" unless said otherwise */
        CHECK_INT(cfg->audit.group_commit_us, 200);
    }
    config_free(cfg);

    /* the defaults of what a config leaves out */
    char *p = write_config("{}");
    cfg = config_load(p, err, sizeof err);
    if (cfg == NULL)
        fprintf(stderr, "%s", err);
    CHECK(cfg != NULL);
    if (cfg) {
        CHECK_INT(cfg->audit.group_commit_us, 200);
        CHECK_INT(cfg->audit.segment_mb, 64);
        CHECK_INT(cfg->audit.queue_records, 65536);
    }
    config_free(cfg);
    unlink(p);

    /* Redis on a Unix socket: the path in host, port 0 */
    p = write_config("{\"address\": \"unix:/run/redis/redis-server.sock\"}");
    cfg = config_load(p, err, sizeof err);
    if (cfg == NULL)
        fprintf(stderr, "%s", err);
    CHECK(cfg != NULL);
    if (cfg) {
        CHECK(strcmp(cfg->store.host, "/run/redis/redis-server.sock") == 0);
        CHECK_INT(cfg->store.port, 0);
    }
    config_free(cfg);
    unlink(p);
}

/* A config whose store.address is addr must be refused with message. */
static void check_store_address_error(const char *addr, const char *message)
{
    char store[300], err[4096];
    snprintf(store, sizeof store, "{\"address\": \"%s\"}", addr);
    char *p = write_config(store);
    CHECK(config_load(p, err, sizeof err) == NULL);
    char want[300];
    snprintf(want, sizeof want, "key \"store.address\": %s", message);
    CHECK(strstr(err, want) != NULL);
    if (strstr(err, want) == NULL)
        fprintf(stderr, "%s: errors were:\n%s", addr, err);
    unlink(p);
}

static void test_store_address_errors(void)
{
    check_store_address_error("unix:redis.sock",
                              "a Unix socket needs an absolute path (\"unix:/...\")");
    char longpath[200] = "unix:/";
    memset(longpath + 6, 'x', 120);
    longpath[126] = '\0';
    check_store_address_error(longpath, "the socket path is longer than 107 bytes");
    check_store_address_error("redis.local",
                              "expected \"host:port\" or \"unix:/path/to/redis.sock\"");
}

static void test_errors(void)
{
    char err[4096];
    const char *text = "{\n"
                       "  \"listeners\": [{\"address\": \"127.0.0.1:8080\"}],\n"
                       "  \"upstream\": {\n"
                       "    \"url\": \"http://127.0.0.1:9000\",\n"
                       "    \"pool_sise\": 4,\n"
                       "    \"connect_timeout_ms\": \"2s\"\n"
                       "  },\n"
                       "  \"limits\": {\"head_bytes\": 10}\n"
                       "}\n";
    char *p = check_write_tmp(text);
    struct lg_config *cfg = config_load(p, err, sizeof err);
    CHECK(cfg == NULL);
    char want[256];
    snprintf(want, sizeof want, "%s:5:5: key \"upstream.pool_sise\": unknown key", p);
    CHECK(strstr(err, want) != NULL);
    snprintf(want, sizeof want, "%s:6:5: key \"upstream.connect_timeout_ms\": expected an integer",
             p);
    CHECK(strstr(err, want) != NULL);
    snprintf(want, sizeof want, "%s:8:14: key \"limits.head_bytes\": 10 is out of range", p);
    CHECK(strstr(err, want) != NULL);
    if (cfg == NULL && check_failures)
        fprintf(stderr, "errors were:\n%s", err);
    unlink(p);

    p = check_write_tmp("{\"listeners\": [}\n");
    CHECK(config_load(p, err, sizeof err) == NULL);
    CHECK(strstr(err, ":1:") != NULL);
    unlink(p);

    /* the quota command is "auto" or "script" */
    p = check_write_tmp("{\"listeners\": [{\"address\": \"127.0.0.1:8080\"}],\n"
                        " \"upstream\": {\"url\": \"http://127.0.0.1:9000\"},\n"
                        " \"store\": {\"quota_command\": \"lua\"}}\n");
    CHECK(config_load(p, err, sizeof err) == NULL);
    CHECK(strstr(err, "key \"store.quota_command\": expected \"auto\" or \"script\"") != NULL);
    unlink(p);

    /* a key prefix long enough to cut the store's keys is refused */
    p = check_write_tmp("{\"listeners\": [{\"address\": \"127.0.0.1:8080\"}],\n"
                        " \"upstream\": {\"url\": \"http://127.0.0.1:9000\"},\n"
                        " \"store\": {\"key_prefix\": \"abcdefghij0123456789x\"}}\n");
    CHECK(config_load(p, err, sizeof err) == NULL);
    CHECK(strstr(err, "key \"store.key_prefix\": at most 20 characters") != NULL);
    unlink(p);
    p = check_write_tmp("{\"listeners\": [{\"address\": \"127.0.0.1:8080\"}],\n"
                        " \"upstream\": {\"url\": \"http://127.0.0.1:9000\"},\n"
                        " \"store\": {\"key_prefix\": \"abcdefghij0123456789\"}}\n");
    /* (refused only for the missing policy and audit sections) */
    CHECK(config_load(p, err, sizeof err) == NULL);
    CHECK(strstr(err, "key \"policy\": is required") != NULL);
    CHECK(strstr(err, "key_prefix") == NULL);
    unlink(p);

    p = check_write_tmp("{\"upstream\": {\"url\": \"ftp://x\"}}");
    CHECK(config_load(p, err, sizeof err) == NULL);
    CHECK(strstr(err, "key \"listeners\": is required") != NULL);
    CHECK(strstr(err, "key \"upstream.url\": must start with http://") != NULL);
    unlink(p);
}

static void test_jsonpos(void)
{
    const char *t = "{\"a\": {\"b\": [1, {\"c\": 2}]},\n \"d\": \"x\"}";
    int line, col;
    CHECK_INT(jsonpos_find(t, strlen(t), "a.b[1].c", &line, &col), 0);
    CHECK_INT(line, 1);
    CHECK_INT(col, 18);
    CHECK_INT(jsonpos_find(t, strlen(t), "d", &line, &col), 0);
    CHECK_INT(line, 2);
    CHECK_INT(col, 2);
    CHECK_INT(jsonpos_find(t, strlen(t), "a.zz", &line, &col), -1);
}

int main(void)
{
    test_example();
    test_errors();
    test_store_address_errors();
    test_jsonpos();
    return check_done("test_config");
}
