/*
 * main.c — `ehrgate`, the gateway daemon: flags, signals, run.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "eg_config.h"
#include "eg_gateway.h"
#include "eg_log.h"
#include "eg_version.h"

static volatile sig_atomic_t stop_flag, reload_flag;

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        reload_flag = 1;
    else
        stop_flag = 1;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ehrgate [-c FILE] [options]\n\n"
            "Health-data gateway: takes device telemetry over MQTT, commits it as FHIR R4\n"
            "entries to SQLite (encrypted), and answers each message with a receipt.\n"
            "Stops cleanly on SIGINT/SIGTERM; SIGHUP re-reads db_max_bytes from the -c file.\n"
            "Exit codes: 0 clean stop, 2 bad options or keys, 1 other fatal errors.\n\n");
    eg_config_print_help(out, EG_CFG_GATEWAY);
    fprintf(out, "  --version                      print the version\n"
                 "  -h, --help                     this help\n");
}

int main(int argc, char **argv)
{
    struct eg_config cfg;
    struct eg_error e = {0};
    char *rest[256];
    int nrest = 0, code;
    struct sigaction sa;

    if (argc > 256) {
        fprintf(stderr, "ehrgate: too many arguments\n");
        return 2;
    }
    if (eg_config_init(&cfg) != EG_OK) {
        fprintf(stderr, "ehrgate: out of memory\n");
        return 1;
    }
    if (eg_config_parse_args(&cfg, EG_CFG_GATEWAY, argc, argv, rest, &nrest, &e) != EG_OK) {
        fprintf(stderr, "ehrgate: %s\n", e.detail);
        eg_config_free(&cfg);
        return 2;
    }
    for (int i = 0; i < nrest; i++) {
        if (strcmp(rest[i], "-h") == 0 || strcmp(rest[i], "--help") == 0) {
            usage(stdout);
            eg_config_free(&cfg);
            return 0;
        }
        if (strcmp(rest[i], "--version") == 0) {
            printf("ehrgate %s\n", eg_version());
            eg_config_free(&cfg);
            return 0;
        }
        fprintf(stderr, "ehrgate: unknown argument \"%s\" (see --help)\n", rest[i]);
        eg_config_free(&cfg);
        return 2;
    }
    if (eg_config_validate(&cfg, &e) != EG_OK) {
        fprintf(stderr, "ehrgate: %s\n", e.detail);
        eg_config_free(&cfg);
        return 2;
    }
    eg_log_set_level((enum eg_log_level)eg_log_level_parse(cfg.log_level));

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    code = eg_gateway_run(&cfg, &stop_flag, &reload_flag);
    eg_config_free(&cfg);
    return code;
}
