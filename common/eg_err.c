/*
 * eg_err.c — names and wire codes for eg_err, and eg_fail().
 */
#include "eg_err.h"

#include <stdarg.h>
#include <stdio.h>

static const struct {
    const char *wire;
    const char *human;
} err_names[EG_E__COUNT] = {
    [EG_OK] = {"ok", "success"},
    [EG_E_PARSE] = {"parse", "malformed payload"},
    [EG_E_SCHEMA] = {"schema", "payload does not follow the schema"},
    [EG_E_UNSUPPORTED] = {"unsupported", "unsupported content"},
    [EG_E_TOO_LARGE] = {"too_large", "payload too large"},
    [EG_E_UNKNOWN_DEVICE] = {"unknown_device", "device not registered"},
    [EG_E_UNKNOWN_HOSPITAL] = {"unknown_hospital", "hospital not registered"},
    [EG_E_UNKNOWN_PATIENT] = {"unknown_patient", "patient not known"},
    [EG_E_BINDING] = {"binding", "device not bound to that patient"},
    [EG_E_RANGE] = {"range", "value out of range"},
    [EG_E_UNIT] = {"unit", "unknown unit"},
    [EG_E_SIGNATURE] = {"signature", "bad or missing signature"},
    [EG_E_CONFLICT] = {"conflict", "message id reused with other content"},
    [EG_E_REPLAY] = {"replay", "replayed or stale request"},
    [EG_E_FORBIDDEN] = {"forbidden", "not allowed"},
    [EG_E_NOT_FOUND] = {"not_found", "not found"},
    [EG_E_RATE_LIMITED] = {"rate_limited", "rate limited"},
    [EG_E_INTERNAL] = {"internal", "internal error"},
    [EG_E_NOMEM] = {"internal", "out of memory"},
    [EG_E_IO] = {"internal", "I/O error"},
    [EG_E_DB] = {"internal", "database error"},
    [EG_E_DB_FULL] = {"internal", "database or disk full"},
    [EG_E_CRYPTO] = {"internal", "cryptographic failure"},
    [EG_E_KEY] = {"internal", "key error"},
    [EG_E_USAGE] = {"internal", "usage error"},
};

const char *eg_strerror(eg_err code)
{
    if ((int)code < 0 || code >= EG_E__COUNT)
        return "unknown error";
    return err_names[code].human;
}

const char *eg_wire_code(eg_err code)
{
    if ((int)code < 0 || code >= EG_E__COUNT)
        return "internal";
    return err_names[code].wire;
}

eg_err eg_fail(struct eg_error *e, eg_err code, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        e->code = code;
        va_start(ap, fmt);
        vsnprintf(e->detail, sizeof e->detail, fmt, ap);
        va_end(ap);
    }
    return code;
}
