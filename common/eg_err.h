/*
 * eg_err.h — the one error enum of ehrgate.
 *
 * The first block maps one-to-one onto the wire error codes of SPEC §7
 * (eg_wire_code()); the second block is for local failures (I/O, database,
 * crypto, usage) which travel on the wire as "internal" if at all.
 * A human-readable detail goes next to the code in a struct eg_error.
 */
#ifndef EG_ERR_H
#define EG_ERR_H

#include <stddef.h>

typedef enum {
    EG_OK = 0,
    /* SPEC §7 wire codes */
    EG_E_PARSE,
    EG_E_SCHEMA,
    EG_E_UNSUPPORTED,
    EG_E_TOO_LARGE,
    EG_E_UNKNOWN_DEVICE,
    EG_E_UNKNOWN_HOSPITAL,
    EG_E_UNKNOWN_PATIENT,
    EG_E_BINDING,
    EG_E_RANGE,
    EG_E_UNIT,
    EG_E_SIGNATURE,
    EG_E_CONFLICT,
    EG_E_REPLAY,
    EG_E_FORBIDDEN,
    EG_E_NOT_FOUND,
    EG_E_RATE_LIMITED,
    EG_E_INTERNAL,
    /* local failures */
    EG_E_NOMEM,
    EG_E_IO,
    EG_E_DB,
    EG_E_DB_FULL,
    EG_E_CRYPTO,
    EG_E_KEY,
    EG_E_USAGE,
    EG_E__COUNT
} eg_err;

/* A code plus a detail that names the field and the reason (SPEC §7). */
struct eg_error {
    eg_err code;
    char detail[256];
};

/* Short human description of code ("malformed JSON", ...). Never NULL. */
const char *eg_strerror(eg_err code);

/* The SPEC §7 wire code ("parse", "range", ...); "internal" for local codes. */
const char *eg_wire_code(eg_err code);

/* Sets e->code and a printf-formatted detail (truncated to fit); returns code.
 * e may be NULL (then only the code is returned). */
eg_err eg_fail(struct eg_error *e, eg_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
