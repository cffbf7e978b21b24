/*
 * eg_hl7.h — HL7 v2 ER7 (pipe-and-hat) ORU^R01 input and ACKs (SPEC §5,
 * HL7 v2.5.1 chapter 2 "Control" and chapter 7 "Observation Reporting").
 *
 * A parser of our own: encoding characters from MSH-1/MSH-2 (never assumed),
 * fields, repetitions, components, subcomponents, escape sequences
 * (\F\ \S\ \T\ \R\ \E\ and \Xhh..\), MSH-18 "8859/1" transcoded to UTF-8,
 * segments ending in \r, \n or \r\n. Field numbering follows the standard:
 * MSH-1 is the field separator itself, MSH-2 the encoding characters.
 */
#ifndef EG_HL7_H
#define EG_HL7_H

#include <stddef.h>
#include <stdint.h>

#include "eg_err.h"
#include "eg_hospital.h"

/* Parses an ORU^R01 into normalized observations (struct eg_hmsg; see
 * eg_hospital.h). Message id = MSH-10; h->msg_id is set as soon as MSH-10
 * is readable, also when an error follows. Errors (with a detail naming the
 * segment, field and reason, e.g. "OBX[2]-5: \"abc\" is not numeric for
 * NM"): EG_E_PARSE (no MSH, bad encoding characters, truncated segment),
 * EG_E_UNSUPPORTED (MSH-9 not ORU^R01, or a value type other than
 * NM/SN/ST/TX/FT/CE/CWE), EG_E_SCHEMA (missing OBX-3/OBX-5/times, non-numeric
 * NM, no OBX at all), EG_E_UNIT / EG_E_RANGE (SPEC §4 rules for §4 LOINC
 * codes), EG_E_NOMEM. On error h holds no observations. */
eg_err eg_hl7_parse(const uint8_t *buf, size_t len, const struct eg_hosp_ctx *ctx,
                    struct eg_hmsg *h, struct eg_error *e);

/* Builds an ER7 ACK^R01^ACK answering the message in buf (which may be
 * malformed): the incoming encoding characters when MSH-1/MSH-2 are
 * readable (else |^~\&), sending/receiving application and facility
 * swapped, MSH-7 = now_ms (UTC), MSH-9 ACK^R01^ACK, MSH-10 = control_id,
 * MSH-11/MSH-12 copied (default P / 2.5.1), then MSA|{ack_code}|{MSH-10}
 * and, if text is not NULL, MSA-3 = text escaped with the incoming escape
 * character. Segments end with \r. Returns a malloc'ed NUL-terminated
 * string, or NULL on OOM. ack_code is "AA", "AE" or "AR". */
char *eg_hl7_ack(const uint8_t *buf, size_t len, const char *ack_code, const char *text,
                 int64_t now_ms, const char *control_id);

#endif
