/*
 * fuzz_hl7.c — libFuzzer target for HL7 v2 ORU^R01 input (SPEC §5):
 * eg_hl7_parse, then (on success) eg_hobs_set_subject and printing of every
 * Observation, then eg_hl7_ack for the same bytes, then eg_hmsg_clear.
 * Checks the promises of eg_hl7.h / eg_hospital.h: all-or-nothing, msg_id
 * bounded, a known category, identifiers present, no subject or id before
 * the ingest step, a detail that is printable UTF-8, and an ACK that is
 * always two \r-terminated segments of valid UTF-8.
 *
 *   tests/fuzz/CMakeLists.txt builds it (clang, EHRGATE_FUZZ=ON);
 *   ./fuzz_hl7 -max_total_time=60 corpus-work tests/fuzz/corpus/hl7
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eg_hl7.h"
#include "eg_hospital.h"
#include "eg_json.h"
#include "fuzz_util.h"

#define NOW_MS 1795501800000LL /* 2026-11-24T06:30:00.000Z, as in the unit tests */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_msg(const struct eg_hmsg *h, eg_err rc, const struct eg_error *e)
{
    size_t i, n;

    if (strnlen(h->msg_id, sizeof h->msg_id) >= sizeof h->msg_id ||
        (h->have_msg_id && !h->msg_id[0]) || (!h->have_msg_id && h->msg_id[0]))
        abort();
    if (rc != EG_OK) {
        if (h->n != 0 || h->obs != NULL)
            abort(); /* all-or-nothing */
        n = strnlen(e->detail, sizeof e->detail);
        if (n == 0 || n >= sizeof e->detail || !fuzz_utf8_ok((const unsigned char *)e->detail, n))
            abort();
        for (i = 0; i < n; i++)
            if ((unsigned char)e->detail[i] < 0x20 || e->detail[i] == 0x7F)
                abort();
        return;
    }
    if (h->n < 1 || h->n > EG_HOSP_MAX_OBS || !h->have_msg_id)
        abort();
    for (i = 0; i < h->n; i++) {
        const struct eg_hobs *ob = &h->obs[i];

        if (!ob->resource || !ob->category[0] || ob->patient_id[0] || ob->nidents < 1 ||
            ob->nidents > EG_HOSP_MAX_IDENTS ||
            cJSON_GetObjectItemCaseSensitive(ob->resource, "subject") ||
            cJSON_GetObjectItemCaseSensitive(ob->resource, "id") ||
            !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(ob->resource, "effectiveDateTime")))
            abort();
        if (strcmp(ob->category, "vital-signs") != 0 && strcmp(ob->category, "laboratory") != 0)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the second parse covers the hospital's own UTC offset */
    static const struct eg_hosp_ctx ctx0 = {"H1", 0, NOW_MS}, ctx1 = {"H1", 345, NOW_MS};
    struct eg_hmsg h;
    struct eg_error e = {EG_OK, ""};
    size_t i, len;
    char *ack, *txt;
    eg_err rc;
    int crs = 0;

    rc = eg_hl7_parse(data, size, &ctx0, &h, &e);
    check_msg(&h, rc, &e);
    for (i = 0; rc == EG_OK && i < h.n; i++) {
        if (eg_hobs_set_subject(&h.obs[i], "P001") != 0)
            continue; /* OOM only */
        txt = egjson_print(h.obs[i].resource, &len);
        if (txt && !fuzz_utf8_ok((const unsigned char *)txt, len))
            abort();
        free(txt);
    }

    ack = eg_hl7_ack(data, size, rc == EG_OK ? "AA" : "AE", rc == EG_OK ? NULL : e.detail, NOW_MS,
                     "CTL-1");
    if (!ack)
        abort();
    len = strlen(ack);
    for (i = 0; i < len; i++)
        crs += ack[i] == '\r';
    if (len < 8 || memcmp(ack, "MSH", 3) != 0 || ack[len - 1] != '\r' || crs != 2 ||
        !strstr(ack, "\rMSA") || !fuzz_utf8_ok((const unsigned char *)ack, len) || strchr(ack, '\n'))
        abort();
    free(ack);
    eg_hmsg_clear(&h);

    rc = eg_hl7_parse(data, size, &ctx1, &h, &e);
    check_msg(&h, rc, &e);
    eg_hmsg_clear(&h);
    return 0;
}
