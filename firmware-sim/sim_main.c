/*
 * sim_main.c — ehrgate-sim: subcommand dispatch.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_log.h"
#include "sim.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ehrgate-sim COMMAND [options]   (COMMAND --help for its options)\n\n"
            "Simulated parties of an ehrgate deployment, talking MQTT v5 to the broker:\n"
            "  devices     a fleet of medical devices publishing telemetry, with offline\n"
            "              buffering, resends until receipted, and fault injection\n"
            "  hospitals   hospital systems publishing lab and vitals results as FHIR Bundles\n"
            "              and HL7 v2 ORU^R01, reading receipts and ACKs\n"
            "  patient     a patient's companion app: signed consent grants and revocations,\n"
            "              and requests (consents, audit, records, erase); prints the replies\n"
            "  register    registers a fleet (patients with keys and MRNs, devices, hospitals)\n"
            "              through the signed admin API\n"
            "  authority   a grantee's feed subscriber that checks every record's inclusion\n"
            "              proof and the block signatures, and fills feed gaps with since\n\n"
            "%s",
            sim_common_help);
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : NULL;
    int verbose = 0;
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--verbose") == 0)
            verbose = 1;
    eg_log_set_level(verbose ? (getenv("EHRGATE_SIM_DEBUG") ? EG_LOG_DEBUG : EG_LOG_INFO) : EG_LOG_WARN);
    if (!cmd || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(cmd ? stdout : stderr);
        return cmd ? 0 : 2;
    }
    if (strcmp(cmd, "devices") == 0)
        return sim_cmd_devices(argc - 1, argv + 1);
    if (strcmp(cmd, "hospitals") == 0)
        return sim_cmd_hospitals(argc - 1, argv + 1);
    if (strcmp(cmd, "patient") == 0)
        return sim_cmd_patient(argc - 1, argv + 1);
    if (strcmp(cmd, "register") == 0)
        return sim_cmd_register(argc - 1, argv + 1);
    if (strcmp(cmd, "authority") == 0)
        return sim_cmd_authority(argc - 1, argv + 1);
    fprintf(stderr, "ehrgate-sim: unknown command \"%s\" (try --help)\n", cmd);
    return 2;
}
