/* The main configuration: one JSON file read with jansson, checked against a table of keys
 * (type, default, bounds). Unknown keys and wrong types are errors that name the file, line,
 * column and key; every error in the file is reported, not just the first. */
#ifndef LG_CONFIG_H
#define LG_CONFIG_H

#include <stddef.h>

struct cfg_tls_server {
    char *cert;              /* PEM certificate chain */
    char *key;               /* PEM private key */
    char *client_ca;         /* CA file for client certificates, or NULL */
    char *client_crl;        /* PEM CRL(s) checked for every client certificate, or NULL */
    int require_client_cert; /* 1: handshake fails without a valid client certificate */
};

struct cfg_listener {
    char *address;             /* "host:port" */
    int tls_enabled;           /* 1 if a "tls" object was given */
    struct cfg_tls_server tls; /* TLS settings when tls_enabled */
};

struct cfg_upstream {
    char *url;                       /* http://host:port or https://host:port */
    int tls;                         /* derived from the URL scheme */
    char *host;                      /* derived: host to connect to */
    int port;                        /* derived: port */
    char *host_header;               /* Host sent upstream (default: URL authority) */
    int tls_verify;                  /* verify the upstream certificate and hostname */
    char *ca_file;                   /* CA bundle for the upstream, NULL: system default */
    char *client_cert;               /* mTLS certificate towards the upstream, or NULL */
    char *client_key;                /* its key */
    char *server_name;               /* name to verify and send as SNI (default: host) */
    int pool_size;                   /* max connections per worker */
    int queue_size;                  /* requests waiting for a pooled connection, per worker */
    int queue_timeout_ms;            /* how long one may wait before 503 */
    int connect_timeout_ms;          /* connect (and TLS handshake) deadline, then 504 */
    int response_timeout_ms;         /* request sent → complete response, then 504 */
    int idle_timeout_ms;             /* idle pooled connections are closed after this */
    int max_requests_per_connection; /* then the pooled connection is retired */
};

struct cfg_limits {
    int head_bytes;               /* whole request head */
    int request_line_bytes;       /* request line; above → 414 */
    int header_count;             /* header fields; above → 431 */
    int body_bytes;               /* decoded request body; above → 413 */
    int chunk_ext_bytes;          /* chunk extensions on one chunk-size line */
    int trailer_bytes;            /* trailer section (discarded) */
    int response_head_bytes;      /* upstream response head; above → 502 */
    int response_header_count;    /* upstream header fields; above → 502 */
    int response_body_bytes;      /* upstream response body buffered; above → 502 */
    int head_timeout_ms;          /* absolute deadline for a request head, then 408 */
    int body_timeout_ms;          /* absolute deadline for a request body, then 408 */
    int idle_timeout_ms;          /* keep-alive idle time (and time to the first byte) */
    int send_timeout_ms;          /* a client that reads nothing for this long is dropped */
    int max_connections;          /* all client connections of the process */
    int max_connections_per_client; /* client connections from one address */
    int requests_per_connection;  /* then the connection is closed after the response */
    int shutdown_timeout_ms;      /* SIGTERM: in-flight requests get this long */
    int auth_failures_per_minute; /* 401s from one address in 60 s before it is throttled; 0: off */
    char **auth_throttle_exempt;  /* addresses never throttled (the TTHC servers), or NULL */
    size_t nauth_throttle_exempt;
};

enum cfg_clock {
    CLOCK_REDIS, /* Redis TIME: one clock for every instance (default) */
    CLOCK_PROXY, /* this process's clock */
    CLOCK_TEST,  /* X-Lookup-Test-Time (UTC ms) when a request carries it: tests only */
};

struct cfg_store {
    char *backend;              /* "redis" or "memory" */
    int memory;                 /* derived: backend is "memory" */
    char *address;              /* Redis "host:port" or "unix:PATH" (ignored when sentinels
                                 * are given) */
    char *host;                 /* derived: the host, or the socket's path */
    int port;                   /* derived: 0 for a Unix socket ("unix:PATH") */
    char *password_file;        /* file holding the Redis password, or NULL */
    char *password;             /* derived: its content */
    int db;                     /* SELECT index */
    char **sentinels;           /* Sentinel "host:port" list, or NULL */
    size_t nsentinels;
    char *master_name;          /* Sentinel master name */
    int connect_timeout_ms;     /* connect + AUTH + ROLE, then the attempt is abandoned */
    int command_timeout_ms;     /* one quota decision, then it fails per on_store_failure */
    int max_in_flight;          /* commands outstanding per worker; beyond: fail fast */
    int reconnect_min_ms;       /* back-off between connection attempts, doubling ... */
    int reconnect_max_ms;       /* ... up to this, with jitter */
    char *on_store_failure;     /* "deny" or "local" */
    int fail_local;             /* derived: on_store_failure is "local" */
    int instances;              /* instances sharing the store (local budget = limit / this) */
    char *clock;                /* "redis", "proxy" or "test" */
    int clock_kind;             /* derived: enum cfg_clock */
    char *key_prefix;           /* prefix of every key */
    char *quota_command;        /* "auto" (the lookupgate Redis module's command when the
                                 * server has it, else the script) or "script" */
    int quota_module;           /* derived: quota_command is "auto" */
};

/* The audit log. There is deliberately no setting that turns it off. */
struct cfg_audit {
    char *dir;                  /* the audit directory (relative: to the config's directory) */
    char *signing_key;          /* Ed25519 private key (PEM), outside dir, mode 600 */
    char *cid_key;              /* citizen-ID HMAC key (64 hex), outside dir, mode 600 */
    int group_commit_us;        /* group commit window */
    int segment_mb;             /* rotate at this size (and at local midnight) */
    int zero_ahead_kb;          /* zero-filled space kept ahead of the records; 0: appends */
    int checkpoint_records;     /* sign a checkpoint after this many records ... */
    int checkpoint_ms;          /* ... or after this long */
    int heartbeat_ms;           /* a heartbeat record this often */
    int queue_records;          /* records held in memory before lookups are refused */
    int min_free_mb;            /* free space floor on the audit file system */
};

/* An operator allowed on the admin listener: a name (in audit records) and the SHA-256 of the
 * bearer token (never the token itself). */
struct cfg_admin_token {
    char *name;
    char *sha256;                 /* hex, as written */
    unsigned char digest[32];     /* derived */
};

/* The admin listener: health, readiness, metrics, the status page and /admin/v1/. */
struct cfg_admin {
    char *address;                /* "host:port" (default 127.0.0.1:9090); "" : no listener */
    struct cfg_admin_token *tokens;
    size_t ntokens;
    int tls_enabled;              /* 1 if a "tls" object was given */
    struct cfg_tls_server tls;
    int status_refresh_s;         /* the status page reloads itself this often */
};

struct lg_config {
    char *path;                     /* file the config was read from */
    int workers;                    /* event loop threads (0 in the file: one per core) */
    int log_level;                  /* enum log_level */
    char *log_file;                 /* NULL: stderr */
    struct cfg_listener *listeners; /* client listeners */
    size_t nlisteners;
    struct cfg_upstream upstream;
    struct cfg_limits limits;
    char *policy_path;              /* policy file (relative paths: to the config's directory) */
    char *time_zone;                /* IANA zone for local days and role hours */
    struct cfg_store store;
    char *instance;                 /* this instance's name in the audit log (default: host) */
    struct cfg_audit audit;
    struct cfg_admin admin;
};

/* Reads and validates path. On success returns a config; on failure returns NULL and writes one
 * line per error ("file:line:col: key \"k\": message") into errbuf (NUL-terminated). */
struct lg_config *config_load(const char *path, char *errbuf, size_t errlen);
void config_free(struct lg_config *cfg);

/* Splits "host:port" (or "[v6]:port"); returns 0 and fills host/port, or -1. */
int config_split_hostport(const char *s, char *host, size_t hostlen, int *port);

#endif
