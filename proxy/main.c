/* lookupgate: command line. Runs the proxy, checks a configuration (-t), or prints help. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include "audit/crypto.h"
#include "common/chainpool.h"
#include "common/log.h"
#include "policy/clock.h"
#include "policy/config.h"
#include "policy/policy.h"
#include "proxy/server.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lookupgate -c FILE        run the gateway with this configuration\n"
            "       lookupgate -t -c FILE     check the configuration and policy, exit 0 if valid\n"
            "       lookupgate token [--days N] [--zone ZONE]\n"
            "                                 print a new credential token (once) and the\n"
            "                                 credential object to paste into the policy\n"
            "       lookupgate --help | --version\n");
}

/* lookupgate token: a new random token, printed once, and its policy entry. */
static int cmd_token(int argc, char **argv)
{
    int days = 90;
    const char *zone = "Asia/Ho_Chi_Minh";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--days") == 0 && i + 1 < argc) {
            char *end;
            long d = strtol(argv[++i], &end, 10);
            if (*end || d < 1 || d > 3650) {
                fprintf(stderr, "lookupgate token: --days takes 1 to 3650\n");
                return 2;
            }
            days = (int)d;
        } else if (strcmp(argv[i], "--zone") == 0 && i + 1 < argc) {
            zone = argv[++i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    char err[300], tok[64], hex[65], issued[16], expires[16];
    if (clock_set_zone(zone, err, sizeof err) != 0) {
        fprintf(stderr, "lookupgate token: %s\n", err);
        return 2;
    }
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(issued, sizeof issued, "%Y-%m-%d", &tm);
    tm.tm_mday += days;
    tm.tm_isdst = -1;
    time_t exp = mktime(&tm);
    localtime_r(&exp, &tm);
    strftime(expires, sizeof expires, "%Y-%m-%d", &tm);
    policy_new_token(tok, sizeof tok, hex, sizeof hex);
    printf("token (shown only now; hand it to the account holder over a secure channel):\n"
           "  %s\n"
           "credential for the account's \"credentials\" array in the policy file:\n"
           "  {\"sha256\": \"%s\", \"issued\": \"%s\", \"expires\": \"%s\"}\n",
           tok, hex, issued, expires);
    return 0;
}

int main(int argc, char **argv)
{
    chainpool_install(); /* before any libevent call */
    if (argc >= 2 && strcmp(argv[1], "token") == 0)
        return cmd_token(argc - 1, argv + 1);
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    int test = 0, opt;
    while ((opt = getopt_long(argc, argv, "c:thV", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': path = optarg; break;
        case 't': test = 1; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("lookupgate %s\n", LOOKUPGATE_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (path == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    char err[65536];
    struct lg_config *cfg = config_load(path, err, sizeof err);
    if (cfg == NULL) {
        fputs(err, stderr);
        if (test)
            fprintf(stderr, "lookupgate: configuration %s is invalid\n", path);
        return 1;
    }
    if (test) {
        struct policy *p = policy_load(cfg->policy_path, err, sizeof err);
        if (p == NULL) {
            fputs(err, stderr);
            fprintf(stderr, "lookupgate: policy %s is invalid\n", cfg->policy_path);
            config_free(cfg);
            return 1;
        }
        /* The audit keys: present, private, and outside the audit directory. */
        uint8_t cid[32];
        char kerr[600];
        struct evp_pkey_st *k = audit_load_signing_key(cfg->audit.signing_key, cfg->audit.dir,
                                                       kerr, sizeof kerr);
        if (k == NULL || audit_load_cid_key(cfg->audit.cid_key, cfg->audit.dir, cid, kerr,
                                            sizeof kerr) != 0) {
            fprintf(stderr, "%s: audit.%s: %s\n", path, k ? "cid_key" : "signing_key", kerr);
            fprintf(stderr, "lookupgate: configuration %s is invalid\n", path);
            audit_key_free(k);
            policy_unref(p);
            config_free(cfg);
            return 1;
        }
        audit_key_free(k);
        printf("lookupgate: configuration %s and policy %s (version %s, %zu accounts) are "
               "valid\n", path, cfg->policy_path, p->version, p->naccounts);
        policy_unref(p);
        config_free(cfg);
        return 0;
    }
    if (log_init(cfg->log_level, cfg->log_file) != 0) {
        fprintf(stderr, "lookupgate: cannot open log file %s\n", cfg->log_file);
        config_free(cfg);
        return 1;
    }
    int rc = server_run(cfg);
    chainpool_drain();
    config_free(cfg);
    return rc;
}
