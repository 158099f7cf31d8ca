/* lookupgate: command line. Runs the proxy, checks a configuration (-t), or prints help. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "policy/config.h"
#include "proxy/server.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lookupgate -c FILE        run the gateway with this configuration\n"
            "       lookupgate -t -c FILE     check the configuration and exit (0: valid)\n"
            "       lookupgate --help | --version\n");
}

int main(int argc, char **argv)
{
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
    char err[8192];
    struct lg_config *cfg = config_load(path, err, sizeof err);
    if (cfg == NULL) {
        fputs(err, stderr);
        if (test)
            fprintf(stderr, "lookupgate: configuration %s is invalid\n", path);
        return 1;
    }
    if (test) {
        printf("lookupgate: configuration %s is valid\n", path);
        config_free(cfg);
        return 0;
    }
    if (log_init(cfg->log_level, cfg->log_file) != 0) {
        fprintf(stderr, "lookupgate: cannot open log file %s\n", cfg->log_file);
        config_free(cfg);
        return 1;
    }
    int rc = server_run(cfg);
    config_free(cfg);
    return rc;
}
