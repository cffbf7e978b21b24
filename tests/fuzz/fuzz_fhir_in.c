/*
 * fuzz_fhir_in.c — libFuzzer target for FHIR R4 hospital input (SPEC §5):
 * strict JSON intake (egjson_parse), then eg_fhir_in_parse, then on
 * success eg_hobs_set_subject on every observation and printing, then
 * eg_hmsg_clear. Checks the parser's promises: all-or-nothing, msg_id
 * bounded, a known category, no subject before the ingest step.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined ... fuzz_fhir_in.c
 *   ./fuzz_fhir_in -dict=... tests/fuzz/corpus/fhir_in
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eg_fhir_in.h"
#include "eg_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* now = 2026-11-24T06:30:00.000Z, as in the unit tests and fixtures */
    static const struct eg_hosp_ctx ctx = {"H1", 0, 1795501800000LL};
    struct eg_hmsg h;
    struct eg_error e = {EG_OK, ""};
    cJSON *root = NULL;
    size_t i;
    eg_err rc;

    memset(&h, 0, sizeof h);
    if (egjson_parse(data, size, &root, &e) != EG_OK)
        return 0;
    rc = eg_fhir_in_parse(root, &ctx, &h, &e);
    if (strnlen(h.msg_id, sizeof h.msg_id) >= sizeof h.msg_id || (h.have_msg_id && !h.msg_id[0]))
        abort();
    if (rc != EG_OK && (h.n != 0 || h.obs != NULL))
        abort(); /* all-or-nothing */
    if (rc == EG_OK && (h.n < 1 || h.n > EG_HOSP_MAX_OBS || !h.have_msg_id))
        abort();
    for (i = 0; rc == EG_OK && i < h.n; i++) {
        struct eg_hobs *ob = &h.obs[i];
        char *txt;

        if (!ob->resource || !ob->category[0] ||
            cJSON_GetObjectItemCaseSensitive(ob->resource, "subject") ||
            cJSON_GetObjectItemCaseSensitive(ob->resource, "id") ||
            (!ob->patient_id[0] && ob->nidents == 0))
            abort();
        if (eg_hobs_set_subject(ob, "P001") != 0)
            continue; /* OOM only */
        txt = egjson_print(ob->resource, NULL);
        free(txt);
    }
    eg_hmsg_clear(&h);
    cJSON_Delete(root);
    return 0;
}
