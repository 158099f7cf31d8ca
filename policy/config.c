/* Configuration loading: a table of keys per object, checked for type and bounds, with defaults;
 * positions of offending keys come from jsonpos so users see file:line:col. */
#include "policy/config.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "policy/clock.h"
#include "policy/quota.h"

#include "policy/jsoncfg.h"

static const struct cfg_key upstream_keys[] = {
    K_STR(struct cfg_upstream, url, 1),
    K_STR(struct cfg_upstream, host_header, 0),
    K_BOOL(struct cfg_upstream, tls_verify, 1),
    K_STR(struct cfg_upstream, ca_file, 0),
    K_STR(struct cfg_upstream, client_cert, 0),
    K_STR(struct cfg_upstream, client_key, 0),
    K_STR(struct cfg_upstream, server_name, 0),
    K_INT(struct cfg_upstream, pool_size, 1, 10000, 64),
    K_INT(struct cfg_upstream, queue_size, 0, 100000, 1024),
    K_INT(struct cfg_upstream, queue_timeout_ms, 1, 600000, 2000),
    K_INT(struct cfg_upstream, connect_timeout_ms, 1, 600000, 2000),
    K_INT(struct cfg_upstream, response_timeout_ms, 1, 3600000, 10000),
    K_INT(struct cfg_upstream, idle_timeout_ms, 1, 3600000, 30000),
    K_INT(struct cfg_upstream, max_requests_per_connection, 1, 100000000, 1000),
    K_END,
};

static const struct cfg_key limits_keys[] = {
    K_INT(struct cfg_limits, head_bytes, 1024, 65536, 8192),
    K_INT(struct cfg_limits, request_line_bytes, 256, 65536, 4096),
    K_INT(struct cfg_limits, header_count, 1, 1000, 100),
    K_INT(struct cfg_limits, body_bytes, 0, 16777216, 65536),
    K_INT(struct cfg_limits, chunk_ext_bytes, 0, 4096, 256),
    K_INT(struct cfg_limits, trailer_bytes, 0, 65536, 4096),
    K_INT(struct cfg_limits, response_head_bytes, 1024, 65536, 16384),
    K_INT(struct cfg_limits, response_header_count, 1, 1000, 100),
    K_INT(struct cfg_limits, response_body_bytes, 0, 67108864, 1048576),
    K_INT(struct cfg_limits, head_timeout_ms, 1, 600000, 10000),
    K_INT(struct cfg_limits, body_timeout_ms, 1, 600000, 30000),
    K_INT(struct cfg_limits, idle_timeout_ms, 1, 3600000, 15000),
    K_INT(struct cfg_limits, send_timeout_ms, 1, 600000, 30000),
    K_INT(struct cfg_limits, max_connections, 1, 1000000, 10000),
    K_INT(struct cfg_limits, max_connections_per_client, 1, 1000000, 512),
    K_INT(struct cfg_limits, requests_per_connection, 1, 100000000, 10000),
    K_INT(struct cfg_limits, shutdown_timeout_ms, 0, 600000, 10000),
    K_INT(struct cfg_limits, auth_failures_per_minute, 0, 1000000, 60),
    K_END,
};

struct log_section {
    char *level; /* level name */
    char *file;  /* log file or NULL */
};

static const struct cfg_key log_keys[] = {
    K_STR(struct log_section, level, 0),
    K_STR(struct log_section, file, 0),
    K_END,
};

static const struct cfg_key listener_keys[] = {
    K_STR(struct cfg_listener, address, 1),
    K_END,
};

static const struct cfg_key tls_server_keys[] = {
    K_STR(struct cfg_tls_server, cert, 1),
    K_STR(struct cfg_tls_server, key, 1),
    K_STR(struct cfg_tls_server, client_ca, 0),
    K_STR(struct cfg_tls_server, client_crl, 0),
    K_BOOL(struct cfg_tls_server, require_client_cert, 0),
    K_END,
};

int config_split_hostport(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon;
    size_t hl;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (rb == NULL || rb[1] != ':')
            return -1;
        hl = (size_t)(rb - s - 1);
        s++;
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -1;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= hostlen)
        return -1;
    memcpy(host, s, hl);
    host[hl] = '\0';
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || end == colon + 1 || p < 1 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

static void parse_upstream_url(struct cfg_ctx *c, struct cfg_upstream *u)
{
    const char *rest;
    char host[320];
    if (u->url == NULL)
        return;
    if (strncmp(u->url, "http://", 7) == 0) {
        u->tls = 0;
        rest = u->url + 7;
    } else if (strncmp(u->url, "https://", 8) == 0) {
        u->tls = 1;
        rest = u->url + 8;
    } else {
        cfg_error(c, "upstream.url", "must start with http:// or https://");
        return;
    }
    size_t n = strcspn(rest, "/");
    if (rest[n] == '/' && rest[n + 1] != '\0') {
        cfg_error(c, "upstream.url", "must not have a path (the client's path is forwarded)");
        return;
    }
    char authority[300];
    if (n == 0 || n >= sizeof authority) {
        cfg_error(c, "upstream.url", "has no host");
        return;
    }
    memcpy(authority, rest, n);
    authority[n] = '\0';
    if (strchr(authority, ':') == NULL || authority[n - 1] == ']') {
        snprintf(host, sizeof host, "%s", authority);
        u->port = u->tls ? 443 : 80;
    } else if (config_split_hostport(authority, host, sizeof host, &u->port) != 0) {
        cfg_error(c, "upstream.url", "bad host or port");
        return;
    }
    if (host[0] == '[') {
        memmove(host, host + 1, strlen(host));
        host[strcspn(host, "]")] = '\0';
    }
    u->host = xstrdup(host);
    if (u->host_header == NULL)
        u->host_header = xstrdup(authority);
    if (u->server_name == NULL)
        u->server_name = xstrdup(host);
    if ((u->client_cert == NULL) != (u->client_key == NULL))
        cfg_error(c, "upstream.client_cert", "client_cert and client_key go together");
}

static void load_listeners(struct cfg_ctx *c, json_t *arr, struct lg_config *cfg)
{
    char path[64];
    static const char *const extra[] = {"tls", NULL};
    if (!json_is_array(arr) || json_array_size(arr) == 0 || json_array_size(arr) > 16) {
        cfg_error(c, "listeners", "expected an array of 1 to 16 listener objects");
        return;
    }
    cfg->nlisteners = json_array_size(arr);
    cfg->listeners = xcalloc(cfg->nlisteners, sizeof *cfg->listeners);
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        struct cfg_listener *l = &cfg->listeners[i];
        json_t *o = json_array_get(arr, i);
        snprintf(path, sizeof path, "listeners[%zu]", i);
        if (!json_is_object(o)) {
            cfg_error(c, path, "expected an object, got %s", cfg_type_name(o));
            continue;
        }
        cfg_apply(c, o, path, listener_keys, l, extra);
        char host[256];
        int port;
        if (l->address && config_split_hostport(l->address, host, sizeof host, &port) != 0) {
            snprintf(path, sizeof path, "listeners[%zu].address", i);
            cfg_error(c, path, "expected \"host:port\"");
        }
        json_t *tls = json_object_get(o, "tls");
        if (tls != NULL && !json_is_null(tls)) {
            snprintf(path, sizeof path, "listeners[%zu].tls", i);
            if (!json_is_object(tls)) {
                cfg_error(c, path, "expected an object, got %s", cfg_type_name(tls));
                continue;
            }
            l->tls_enabled = 1;
            cfg_apply(c, tls, path, tls_server_keys, &l->tls, NULL);
            if (l->tls.require_client_cert && l->tls.client_ca == NULL)
                cfg_error(c, path, "require_client_cert needs client_ca");
            if (l->tls.client_crl && l->tls.client_ca == NULL)
                cfg_error(c, path, "client_crl needs client_ca");
        }
    }
}

static const struct cfg_key store_keys[] = {
    K_STR(struct cfg_store, backend, 0),
    K_STR(struct cfg_store, address, 0),
    K_STR(struct cfg_store, password_file, 0),
    K_INT(struct cfg_store, db, 0, 15, 0),
    K_STR(struct cfg_store, master_name, 0),
    K_INT(struct cfg_store, connect_timeout_ms, 1, 60000, 250),
    K_INT(struct cfg_store, command_timeout_ms, 1, 60000, 250),
    K_INT(struct cfg_store, max_in_flight, 1, 1000000, 1024),
    K_INT(struct cfg_store, reconnect_min_ms, 1, 60000, 50),
    K_INT(struct cfg_store, reconnect_max_ms, 1, 600000, 2000),
    K_STR(struct cfg_store, on_store_failure, 0),
    K_INT(struct cfg_store, instances, 1, 1000, 1),
    K_STR(struct cfg_store, clock, 0),
    K_STR(struct cfg_store, key_prefix, 0),
    K_STR(struct cfg_store, quota_command, 0),
    K_END,
};

static int pick(const char *v, const char *const *names)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(v, names[i]) == 0)
            return i;
    return -1;
}

static void load_sentinels(struct cfg_ctx *c, json_t *arr, struct cfg_store *s)
{
    char path[64], host[256];
    int port;
    if (!json_is_array(arr) || json_array_size(arr) > 16) {
        cfg_error(c, "store.sentinels", "expected an array of up to 16 \"host:port\" strings");
        return;
    }
    s->nsentinels = json_array_size(arr);
    s->sentinels = xcalloc(s->nsentinels + 1, sizeof *s->sentinels);
    for (size_t i = 0; i < s->nsentinels; i++) {
        json_t *e = json_array_get(arr, i);
        snprintf(path, sizeof path, "store.sentinels[%zu]", i);
        if (!json_is_string(e) ||
            config_split_hostport(json_string_value(e), host, sizeof host, &port) != 0)
            cfg_error(c, path, "expected \"host:port\"");
        s->sentinels[i] = xstrdup(json_is_string(e) ? json_string_value(e) : "");
    }
}

static char *read_secret(struct cfg_ctx *c, const char *path, const char *key)
{
    size_t len;
    char *s = cfg_read_file(path, &len);
    if (s == NULL) {
        cfg_error(c, key, "cannot read %s", path);
        return NULL;
    }
    while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
        s[--len] = '\0';
    return s;
}

static void load_store(struct cfg_ctx *c, json_t *o, struct cfg_store *s)
{
    static const char *const extra[] = {"sentinels", NULL};
    static const char *const backends[] = {"redis", "memory", NULL};
    static const char *const failures[] = {"deny", "local", NULL};
    static const char *const clocks[] = {"redis", "proxy", "test", NULL};
    static const char *const commands[] = {"auto", "script", NULL};
    char host[256];
    cfg_apply(c, o, "store", store_keys, s, extra);
    if (s->backend == NULL)
        s->backend = xstrdup("redis");
    if (s->on_store_failure == NULL)
        s->on_store_failure = xstrdup("deny");
    if (s->clock == NULL)
        s->clock = xstrdup("redis");
    if (s->key_prefix == NULL)
        s->key_prefix = xstrdup("lg");
    if (s->quota_command == NULL)
        s->quota_command = xstrdup("auto");
    if (s->address == NULL)
        s->address = xstrdup("127.0.0.1:6379");
    int v;
    if ((v = pick(s->backend, backends)) < 0)
        cfg_error(c, "store.backend", "expected \"redis\" or \"memory\"");
    s->memory = v == 1;
    if ((v = pick(s->on_store_failure, failures)) < 0)
        cfg_error(c, "store.on_store_failure", "expected \"deny\" or \"local\"");
    s->fail_local = v == 1;
    if ((v = pick(s->clock, clocks)) < 0)
        cfg_error(c, "store.clock", "expected \"redis\", \"proxy\" or \"test\"");
    s->clock_kind = v < 0 ? CLOCK_REDIS : v;
    if ((v = pick(s->quota_command, commands)) < 0)
        cfg_error(c, "store.quota_command", "expected \"auto\" or \"script\"");
    s->quota_module = v == 0;
    if (s->memory && s->clock_kind == CLOCK_REDIS)
        s->clock_kind = CLOCK_PROXY; /* the memory backend has only this process's clock */
    if (strncmp(s->address, "unix:", 5) == 0) {
        /* a Unix socket: host holds its path, port is 0 */
        const char *path = s->address + 5;
        if (path[0] != '/')
            cfg_error(c, "store.address", "a Unix socket needs an absolute path (\"unix:/...\")");
        else if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
            cfg_error(c, "store.address", "the socket path is longer than %zu bytes",
                      sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
        else
            s->host = xstrdup(path);
        s->port = 0;
    } else if (config_split_hostport(s->address, host, sizeof host, &s->port) != 0) {
        cfg_error(c, "store.address", "expected \"host:port\" or \"unix:/path/to/redis.sock\"");
    } else {
        s->host = xstrdup(host);
    }
    for (const char *p = s->key_prefix; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-')) {
            cfg_error(c, "store.key_prefix", "use lower-case letters, digits, '_' and '-'");
            break;
        }
    if (strlen(s->key_prefix) > QUOTA_PREFIX_MAX)
        cfg_error(c, "store.key_prefix", "at most %d characters", QUOTA_PREFIX_MAX);
    json_t *sent = json_object_get(o, "sentinels");
    if (sent && !json_is_null(sent))
        load_sentinels(c, sent, s);
    if (s->nsentinels > 0 && s->master_name == NULL)
        cfg_error(c, "store.master_name", "is required with sentinels");
    if (s->reconnect_min_ms > s->reconnect_max_ms)
        cfg_error(c, "store.reconnect_min_ms", "must not exceed reconnect_max_ms");
    if (s->password_file)
        s->password = read_secret(c, s->password_file, "store.password_file");
}

/* A path from the config: relative paths are taken from the config file's directory. */
static char *config_relative(const struct cfg_ctx *c, const char *p)
{
    const char *slash = strrchr(c->file, '/');
    if (p[0] == '/' || slash == NULL)
        return xstrdup(p);
    size_t dl = (size_t)(slash - c->file) + 1;
    char *out = xmalloc(dl + strlen(p) + 1);
    memcpy(out, c->file, dl);
    strcpy(out + dl, p);
    return out;
}

static const struct cfg_key audit_keys[] = {
    K_STR(struct cfg_audit, dir, 1),
    K_STR(struct cfg_audit, signing_key, 1),
    K_STR(struct cfg_audit, cid_key, 1),
    K_INT(struct cfg_audit, group_commit_us, 0, 100000, 200),
    K_INT(struct cfg_audit, segment_mb, 1, 65536, 64),
    K_INT(struct cfg_audit, zero_ahead_kb, 0, 65536, 1024),
    K_INT(struct cfg_audit, checkpoint_records, 1, 1000000, 1000),
    K_INT(struct cfg_audit, checkpoint_ms, 10, 60000, 1000),
    K_INT(struct cfg_audit, heartbeat_ms, 1000, 3600000, 60000),
    K_INT(struct cfg_audit, queue_records, 16, 10000000, 65536),
    K_INT(struct cfg_audit, min_free_mb, 0, 1048576, 64),
    K_END,
};

static void load_audit(struct cfg_ctx *c, json_t *v, struct cfg_audit *a)
{
    if (v == NULL) {
        cfg_error(c, "audit", "is required: every lookup is recorded (dir, signing_key and "
                              "cid_key; make keys with lookupgate-audit keygen)");
        return;
    }
    if (!json_is_object(v)) {
        cfg_error(c, "audit", "expected an object, got %s", cfg_type_name(v));
        return;
    }
    cfg_apply(c, v, "audit", audit_keys, a, NULL);
    char **paths[] = {&a->dir, &a->signing_key, &a->cid_key};
    for (size_t i = 0; i < 3; i++)
        if (*paths[i]) {
            char *rel = config_relative(c, *paths[i]);
            free(*paths[i]);
            *paths[i] = rel;
        }
}

static const struct cfg_key admin_keys[] = {
    K_STR(struct cfg_admin, address, 0),
    K_INT(struct cfg_admin, status_refresh_s, 1, 3600, 10),
    K_END,
};

static const struct cfg_key admin_token_keys[] = {
    K_STR(struct cfg_admin_token, name, 1),
    K_STR(struct cfg_admin_token, sha256, 1),
    K_END,
};

static int name_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-' || *s == '@'))
            return 0;
    return 1;
}

static void load_admin_tokens(struct cfg_ctx *c, json_t *arr, struct cfg_admin *a)
{
    char path[64];
    if (!json_is_array(arr) || json_array_size(arr) > 256) {
        cfg_error(c, "admin.tokens", "expected an array of up to 256 {\"name\", \"sha256\"} "
                                     "objects");
        return;
    }
    a->ntokens = json_array_size(arr);
    a->tokens = xcalloc(a->ntokens + 1, sizeof *a->tokens);
    for (size_t i = 0; i < a->ntokens; i++) {
        struct cfg_admin_token *t = &a->tokens[i];
        json_t *o = json_array_get(arr, i);
        snprintf(path, sizeof path, "admin.tokens[%zu]", i);
        if (!json_is_object(o)) {
            cfg_error(c, path, "expected an object, got %s", cfg_type_name(o));
            continue;
        }
        cfg_apply(c, o, path, admin_token_keys, t, NULL);
        if (t->name && !name_ok(t->name, 64)) {
            snprintf(path, sizeof path, "admin.tokens[%zu].name", i);
            cfg_error(c, path, "use 1 to 64 letters, digits, '.', '_', '-' and '@'");
        }
        int ok = t->sha256 && strlen(t->sha256) == 64;
        for (int k = 0; ok && k < 32; k++) {
            int hi = hex_digit_value((unsigned char)t->sha256[2 * k]);
            int lo = hex_digit_value((unsigned char)t->sha256[2 * k + 1]);
            ok = hi >= 0 && lo >= 0;
            if (ok) /* never shift a -1 (found by fuzz_config under UBSan) */
                t->digest[k] = (unsigned char)(hi << 4 | lo);
        }
        if (t->sha256 && !ok) {
            snprintf(path, sizeof path, "admin.tokens[%zu].sha256", i);
            cfg_error(c, path, "expected 64 hex digits (the SHA-256 of the token; make one with "
                               "lookupgate token)");
        }
        for (size_t k = 0; k < i && t->name; k++)
            if (a->tokens[k].name && strcmp(a->tokens[k].name, t->name) == 0) {
                snprintf(path, sizeof path, "admin.tokens[%zu].name", i);
                cfg_error(c, path, "duplicate admin name \"%s\"", t->name);
            }
    }
}

static void load_admin(struct cfg_ctx *c, json_t *v, struct cfg_admin *a)
{
    static const char *const extra[] = {"tokens", "tls", NULL};
    char host[256];
    int port;
    if (v && !json_is_object(v)) {
        cfg_error(c, "admin", "expected an object, got %s", cfg_type_name(v));
        return;
    }
    json_t *empty = json_object();
    cfg_apply(c, v ? v : empty, "admin", admin_keys, a, extra);
    json_decref(empty);
    if (a->address == NULL)
        a->address = xstrdup("127.0.0.1:9090");
    if (a->address[0] && config_split_hostport(a->address, host, sizeof host, &port) != 0)
        cfg_error(c, "admin.address", "expected \"host:port\", or \"\" for no admin listener");
    json_t *t = v ? json_object_get(v, "tokens") : NULL;
    if (t && !json_is_null(t))
        load_admin_tokens(c, t, a);
    json_t *tls = v ? json_object_get(v, "tls") : NULL;
    if (tls && !json_is_null(tls)) {
        if (!json_is_object(tls)) {
            cfg_error(c, "admin.tls", "expected an object, got %s", cfg_type_name(tls));
            return;
        }
        a->tls_enabled = 1;
        cfg_apply(c, tls, "admin.tls", tls_server_keys, &a->tls, NULL);
        if (a->tls.require_client_cert && a->tls.client_ca == NULL)
            cfg_error(c, "admin.tls", "require_client_cert needs client_ca");
        if (a->tls.client_crl && a->tls.client_ca == NULL)
            cfg_error(c, "admin.tls", "client_crl needs client_ca");
    }
}

/* The default instance name: the host name, reduced to [A-Za-z0-9._-]. */
static char *default_instance(void)
{
    char h[256] = "";
    if (gethostname(h, sizeof h - 1) != 0 || h[0] == '\0')
        snprintf(h, sizeof h, "lookupgate");
    h[63] = '\0';
    for (char *p = h; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-'))
            *p = '_';
    return xstrdup(h[0] == '.' ? "lookupgate" : h);
}

static int instance_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || s[0] == '.')
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

/* "policy": the policy file; a relative path is taken from the config file's directory. */
static void load_policy_ref(struct cfg_ctx *c, json_t *v, struct lg_config *cfg)
{
    if (v == NULL) {
        cfg_error(c, "policy", "is required (the policy file with operations, roles and "
                               "accounts)");
        return;
    }
    if (!json_is_string(v) || json_string_length(v) == 0) {
        cfg_error(c, "policy", "expected a file name, got %s", cfg_type_name(v));
        return;
    }
    cfg->policy_path = config_relative(c, json_string_value(v));
}

/* limits.auth_throttle_exempt: numeric IPv4 or IPv6 addresses. */
static void load_exempt(struct cfg_ctx *c, json_t *arr, struct cfg_limits *l)
{
    char path[64];
    unsigned char buf[16];
    if (arr == NULL || json_is_null(arr))
        return;
    if (!json_is_array(arr) || json_array_size(arr) > 256) {
        cfg_error(c, "limits.auth_throttle_exempt", "expected an array of up to 256 addresses");
        return;
    }
    l->nauth_throttle_exempt = json_array_size(arr);
    l->auth_throttle_exempt = xcalloc(l->nauth_throttle_exempt + 1, sizeof(char *));
    for (size_t i = 0; i < l->nauth_throttle_exempt; i++) {
        json_t *e = json_array_get(arr, i);
        const char *a = json_is_string(e) ? json_string_value(e) : "";
        snprintf(path, sizeof path, "limits.auth_throttle_exempt[%zu]", i);
        char canon[INET6_ADDRSTRLEN] = "";
        if (inet_pton(AF_INET, a, buf) == 1)
            inet_ntop(AF_INET, buf, canon, sizeof canon);
        else if (inet_pton(AF_INET6, a, buf) == 1)
            inet_ntop(AF_INET6, buf, canon, sizeof canon);
        else
            cfg_error(c, path, "expected a numeric IPv4 or IPv6 address");
        l->auth_throttle_exempt[i] = xstrdup(canon); /* as the proxy prints addresses */
    }
}

static void load_root(struct cfg_ctx *c, json_t *root, struct lg_config *cfg)
{
    static const struct cfg_key root_keys[] = {
        K_INT(struct lg_config, workers, 0, 256, 0),
        K_STR(struct lg_config, time_zone, 0),
        K_STR(struct lg_config, instance, 0),
        K_END,
    };
    static const char *const root_extra[] = {"log",   "listeners", "upstream", "limits", "policy",
                                             "store", "audit",     "admin",    NULL};
    struct log_section ls = {0};
    cfg_apply(c, root, "", root_keys, cfg, root_extra);

    json_t *v = json_object_get(root, "log");
    if (v && !json_is_object(v))
        cfg_error(c, "log", "expected an object, got %s", cfg_type_name(v));
    else if (v)
        cfg_apply(c, v, "log", log_keys, &ls, NULL);
    cfg->log_level = LOG_LVL_INFO;
    if (ls.level && (cfg->log_level = log_level_parse(ls.level)) < 0) {
        cfg_error(c, "log.level", "expected one of error, warn, info, debug");
        cfg->log_level = LOG_LVL_INFO;
    }
    free(ls.level);
    cfg->log_file = ls.file;

    v = json_object_get(root, "listeners");
    if (v == NULL)
        cfg_error(c, "listeners", "is required");
    else
        load_listeners(c, v, cfg);

    v = json_object_get(root, "upstream");
    if (v == NULL || !json_is_object(v)) {
        cfg_error(c, "upstream", v ? "expected an object" : "is required");
    } else {
        cfg_apply(c, v, "upstream", upstream_keys, &cfg->upstream, NULL);
        parse_upstream_url(c, &cfg->upstream);
    }

    v = json_object_get(root, "limits");
    if (v && !json_is_object(v))
        cfg_error(c, "limits", "expected an object, got %s", cfg_type_name(v));
    json_t *empty = json_object();
    static const char *const limits_extra[] = {"auth_throttle_exempt", NULL};
    cfg_apply(c, v && json_is_object(v) ? v : empty, "limits", limits_keys, &cfg->limits,
              limits_extra);
    load_exempt(c, v && json_is_object(v) ? json_object_get(v, "auth_throttle_exempt") : NULL,
                &cfg->limits);
    json_decref(empty);
    if (cfg->limits.head_bytes > 0 && cfg->limits.request_line_bytes > cfg->limits.head_bytes)
        cfg_error(c, "limits.request_line_bytes", "must not exceed limits.head_bytes");

    load_policy_ref(c, json_object_get(root, "policy"), cfg);
    if (cfg->time_zone == NULL)
        cfg->time_zone = xstrdup("Asia/Ho_Chi_Minh");
    char zerr[300];
    if (clock_set_zone(cfg->time_zone, zerr, sizeof zerr) != 0)
        cfg_error(c, "time_zone", "%s", zerr);
    v = json_object_get(root, "store");
    if (v && !json_is_object(v))
        cfg_error(c, "store", "expected an object, got %s", cfg_type_name(v));
    json_t *empty2 = json_object();
    load_store(c, v && json_is_object(v) ? v : empty2, &cfg->store);
    json_decref(empty2);

    load_audit(c, json_object_get(root, "audit"), &cfg->audit);
    load_admin(c, json_object_get(root, "admin"), &cfg->admin);
    if (cfg->instance == NULL)
        cfg->instance = default_instance();
    else if (!instance_ok(cfg->instance))
        cfg_error(c, "instance", "use 1 to 63 letters, digits, '.', '_' and '-' (it names the "
                                 "audit log's segments)");

    if (cfg->workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->workers = n > 0 ? (int)(n > 64 ? 64 : n) : 1;
    }
}

struct lg_config *config_load(const char *path, char *errbuf, size_t errlen)
{
    struct cfg_ctx c = {.file = path, .err = errbuf, .errlen = errlen};
    errbuf[0] = '\0';
    json_t *root = cfg_load_json(&c, path);
    if (root == NULL) {
        free(c.text);
        return NULL;
    }
    struct lg_config *cfg = xcalloc(1, sizeof *cfg);
    cfg->path = xstrdup(path);
    if (!json_is_object(root))
        cfg_error(&c, "", "the configuration must be a JSON object");
    else
        load_root(&c, root, cfg);
    json_decref(root);
    free(c.text);
    if (c.nerrors > 0) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

static void free_tls_server(struct cfg_tls_server *t)
{
    free(t->cert);
    free(t->key);
    free(t->client_ca);
    free(t->client_crl);
}

void config_free(struct lg_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        free(cfg->listeners[i].address);
        free_tls_server(&cfg->listeners[i].tls);
    }
    free(cfg->listeners);
    struct cfg_upstream *u = &cfg->upstream;
    free(u->url);
    free(u->host);
    free(u->host_header);
    free(u->ca_file);
    free(u->client_cert);
    free(u->client_key);
    free(u->server_name);
    free(cfg->log_file);
    free(cfg->path);
    free(cfg->policy_path);
    free(cfg->time_zone);
    struct cfg_store *s = &cfg->store;
    free(s->backend);
    free(s->address);
    free(s->host);
    free(s->password_file);
    free(s->password);
    for (size_t i = 0; i < s->nsentinels; i++)
        free(s->sentinels[i]);
    free(s->sentinels);
    free(s->master_name);
    free(s->on_store_failure);
    free(s->clock);
    free(s->key_prefix);
    free(s->quota_command);
    free(cfg->instance);
    free(cfg->audit.dir);
    free(cfg->audit.signing_key);
    free(cfg->audit.cid_key);
    for (size_t i = 0; i < cfg->limits.nauth_throttle_exempt; i++)
        free(cfg->limits.auth_throttle_exempt[i]);
    free(cfg->limits.auth_throttle_exempt);
    free(cfg->admin.address);
    for (size_t i = 0; i < cfg->admin.ntokens; i++) {
        free(cfg->admin.tokens[i].name);
        free(cfg->admin.tokens[i].sha256);
    }
    free(cfg->admin.tokens);
    free_tls_server(&cfg->admin.tls);
    free(cfg);
}
