/*
 * eg_hl7.c — HL7 v2 ER7 ORU^R01 input and ACKs (SPEC §5, §13).
 *
 * A parser of our own, following HL7 v2.5.1 chapter 2 (Control) for the
 * encoding rules and chapter 7 (Observation Reporting) for ORU^R01:
 *
 *   - the message starts with MSH; MSH-1 (the 4th byte) is the field
 *     separator and MSH-2 the encoding characters: component, repetition,
 *     escape, subcomponent, and optionally (HL7 v2.7) the truncation
 *     character. They must be printable, non-alphanumeric and distinct
 *     (HL7 v2.5.1 chapter 2, message delimiters), else EG_E_PARSE;
 *   - segments end in \r, also \n or \r\n; empty lines are skipped;
 *   - fields, repetitions, components and subcomponents are split on the raw
 *     delimiters first, then the escape sequences of chapter 2 ("Use of
 *     escape sequences in text fields") are decoded in each value:
 *     \F\ \S\ \T\ \R\ \E\ (and \P\ with a truncation character),
 *     \Xhh..\ (bytes, interpreted in the message character set), \H\ \N\
 *     (highlighting: dropped), the formatting commands of FT (\.br\,
 *     \.sp\ and \.ce\ become a line break; \.fi\ \.nf\ \.in\ \.ti\ \.sk\ are
 *     dropped). Any other escape (\Z..\, \C..\, \M..\, unknown) is
 *     EG_E_PARSE, as is an unterminated one;
 *   - MSH-18 "8859/1" is transcoded from ISO 8859-1 to UTF-8; empty,
 *     "ASCII" and "UNICODE UTF-8" mean UTF-8 and the payload must be valid
 *     UTF-8; any other character set is EG_E_UNSUPPORTED. NUL is refused.
 *
 * Each OBX becomes one FHIR R4 Observation, shaped like the device path's
 * (devices/eg_telemetry.c): a SPEC §4 LOINC code gets exactly §4's codings,
 * category, units (converted, rounded) and ranges through eg_readings.h.
 * Details name the segment by its position among segments of its kind,
 * counted from 1 ("OBX[3]" is the message's third OBX), and the field by
 * its HL7 number ("OBX[3]-5"); the Observation identifier's index is the
 * 0-based OBX position (OBX[3] -> index 2).
 *
 * Choices SPEC leaves open (docs/protocol.md lists them): values of §4
 * codes are rounded to 2 decimals as on the device path, other NM/SN
 * values keep the sender's digits; a unit is UCUM when it is a §4 spelling
 * or a plausible UCUM code (read_unit); SN comparators, ranges and ratios
 * become Quantity.comparator, valueRange and valueRatio; ST/TX/FT
 * repetitions are lines; YYYYMM and YYYY become FHIR partial dates; OBX-8
 * becomes interpretation; unused segments and fields are ignored.
 */
#include "eg_hl7.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_json.h"
#include "eg_readings.h"
#include "eg_telemetry.h"
#include "eg_time.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define HOSP_URN "urn:ehrgate:hospital:"
#define SNOMED_SYSTEM "http://snomed.info/sct"
#define INTERP_SYSTEM "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
#define HOSP_ID_MAX 64    /* SPEC §2 */
#define NUM_DIGITS_MAX 30 /* digits of an NM value we keep exactly */
#define UCUM_MAX 64       /* longest unit code we call plausible UCUM */
#define UCUM_DEPTH_MAX 8  /* nesting of parentheses in a UCUM code */
#define QB 96             /* buffer for a quoted value in a detail */

/* ---------------------------------------------------------------- spans */

/* A slice of the payload (not NUL-terminated). */
struct span {
    const uint8_t *p;
    size_t n;
};

/* The delimiters of one message (MSH-1, MSH-2). */
struct enc {
    uint8_t fs, cs, rs, esc, ss, tc;
    int nchars; /* 4, or 5 with the truncation character */
};

enum charset { CS_UTF8 = 0, CS_LATIN1 };

static const struct enc default_enc = {'|', '^', '~', '\\', '&', 0, 4};

/* Piece idx (0-based) of s split at sep. Returns 1 if present, else 0 with
 * *out empty. */
static int piece(struct span s, uint8_t sep, int idx, struct span *out)
{
    size_t i, start = 0;
    int k = 0;

    for (i = 0;; i++) {
        if (i == s.n || s.p[i] == sep) {
            if (k == idx) {
                out->p = s.p + start;
                out->n = i - start;
                return 1;
            }
            if (i == s.n)
                break;
            k++;
            start = i + 1;
        }
    }
    out->p = s.p + s.n;
    out->n = 0;
    return 0;
}

/* Number of pieces of s split at sep (an empty span has one). */
static int npieces(struct span s, uint8_t sep)
{
    int k = 1;
    size_t i;

    for (i = 0; i < s.n; i++)
        if (s.p[i] == sep)
            k++;
    return k;
}

/* Walks the pieces of a span in order, in linear time. */
struct pieces {
    struct span s;
    size_t pos;
    int done;
};

static void pieces_init(struct pieces *it, struct span s)
{
    it->s = s;
    it->pos = 0;
    it->done = 0;
}

/* The next piece split at sep; returns 0 after the last one. */
static int pieces_next(struct pieces *it, uint8_t sep, struct span *out)
{
    size_t i;

    if (it->done)
        return 0;
    for (i = it->pos; i < it->s.n && it->s.p[i] != sep; i++)
        ;
    out->p = it->s.p + it->pos;
    out->n = i - it->pos;
    if (i == it->s.n)
        it->done = 1;
    else
        it->pos = i + 1;
    return 1;
}

static int span_has(struct span s, uint8_t c)
{
    return s.n > 0 && memchr(s.p, c, s.n) != NULL;
}

static int span_eq(struct span s, const char *lit)
{
    size_t n = strlen(lit);

    return s.n == n && memcmp(s.p, lit, n) == 0;
}

/* Field k (HL7 numbering) of segment seg. For MSH, MSH-1 is the field
 * separator itself and MSH-2 the encoding characters (HL7 v2.5.1, MSH). */
static int seg_field(struct span seg, const struct enc *enc, int is_msh, int k, struct span *out)
{
    if (is_msh && k == 1) {
        out->p = seg.p + 3;
        out->n = 1;
        return 1;
    }
    return piece(seg, enc->fs, is_msh ? k - 1 : k, out);
}

/* Repetition rep, component comp, subcomponent sub (all from 1) of a field. */
static struct span sub_span(struct span f, const struct enc *enc, int rep, int comp, int sub)
{
    struct span r, c, s;

    piece(f, enc->rs, rep - 1, &r);
    piece(r, enc->cs, comp - 1, &c);
    piece(c, enc->ss, sub - 1, &s);
    return s;
}

/* Next segment from *pos: segments end in \r, \n or \r\n; empty lines are
 * skipped. Returns 1 and the segment, or 0 at the end. */
static int next_seg(const uint8_t *buf, size_t len, size_t *pos, struct span *seg)
{
    size_t i = *pos, s;

    while (i < len && (buf[i] == '\r' || buf[i] == '\n'))
        i++;
    if (i >= len) {
        *pos = i;
        return 0;
    }
    s = i;
    while (i < len && buf[i] != '\r' && buf[i] != '\n')
        i++;
    seg->p = buf + s;
    seg->n = i - s;
    *pos = i;
    return 1;
}

static int is_alnum(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* A delimiter must be printable ASCII, not a space, not alphanumeric. */
static int delim_ok(uint8_t c)
{
    return c > 0x20 && c < 0x7F && !is_alnum(c);
}

/* Reads MSH-1 and MSH-2 at the start of buf (HL7 v2.5.1 MSH-1, MSH-2;
 * v2.7 adds the truncation character as a fifth). Returns 0, or -1 with a
 * reason in why. */
static int read_enc(const uint8_t *buf, size_t len, struct enc *enc, char *why, size_t whyn)
{
    uint8_t ch[6];
    size_t i, j, n = 0;

    if (!buf || len < 3 || memcmp(buf, "MSH", 3) != 0) {
        snprintf(why, whyn, "payload: does not start with an MSH segment");
        return -1;
    }
    if (len < 4 || buf[3] == '\r' || buf[3] == '\n') {
        snprintf(why, whyn, "MSH-1: missing (truncated MSH)");
        return -1;
    }
    if (!delim_ok(buf[3])) {
        snprintf(why, whyn,
                 "MSH-1: field separator 0x%02X is not a printable non-alphanumeric character",
                 buf[3]);
        return -1;
    }
    ch[0] = buf[3];
    for (i = 4; i < len && buf[i] != buf[3] && buf[i] != '\r' && buf[i] != '\n'; i++) {
        if (n == 5) {
            n++;
            break;
        }
        ch[1 + n++] = buf[i];
    }
    if (n != 4 && n != 5) {
        snprintf(why, whyn,
                 "MSH-2: encoding characters must be 4 (or 5 with a truncation character), "
                 "got %s%zu",
                 n > 5 ? "more than " : "", n > 5 ? (size_t)5 : n);
        return -1;
    }
    for (i = 1; i <= n; i++) {
        if (!delim_ok(ch[i])) {
            snprintf(why, whyn,
                     "MSH-2: encoding character 0x%02X is not a printable "
                     "non-alphanumeric character",
                     ch[i]);
            return -1;
        }
        for (j = 0; j < i; j++)
            if (ch[j] == ch[i]) {
                snprintf(why, whyn, "MSH-2: delimiter '%c' is used twice", ch[i]);
                return -1;
            }
    }
    enc->fs = ch[0];
    enc->cs = ch[1];
    enc->rs = ch[2];
    enc->esc = ch[3];
    enc->ss = ch[4];
    enc->tc = n == 5 ? ch[5] : 0;
    enc->nchars = (int)n;
    return 0;
}

/* MSH-18, repetition 1 (HL7 v2.5.1 table 0211). Returns 0 and sets *cs, or
 * -1 if the character set is not supported. */
static int read_charset(struct span msh, const struct enc *enc, enum charset *cs, struct span *name)
{
    struct span f;

    seg_field(msh, enc, 1, 18, &f);
    *name = sub_span(f, enc, 1, 1, 1);
    if (name->n == 0 || span_eq(*name, "ASCII") || span_eq(*name, "UNICODE UTF-8")) {
        *cs = CS_UTF8;
        return 0;
    }
    if (span_eq(*name, "8859/1")) {
        *cs = CS_LATIN1;
        return 0;
    }
    return -1;
}

/* Length of the well-formed UTF-8 sequence at s[0..n) (no overlongs, no
 * surrogates, <= U+10FFFF), or 0. */
static size_t utf8_seq(const uint8_t *s, size_t n)
{
    uint8_t c = s[0], lo = 0x80, hi = 0xBF;
    size_t len, i;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4;
    else
        return 0;
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

/* ------------------------------------------------------------ the parser */

/* A decoded string kept until the end of the parse. */
struct blk {
    struct blk *next;
    char data[];
};

struct hp {
    const uint8_t *buf;
    size_t len;
    struct enc enc;
    enum charset cs;
    const struct eg_hosp_ctx *ctx;
    struct eg_error *e;
    struct blk *mem;
    char msg_id[EG_HOSP_MSGID_MAX];
};

static char *hp_alloc(struct hp *p, size_t n)
{
    struct blk *b = malloc(sizeof *b + n);

    if (!b)
        return NULL;
    b->next = p->mem;
    p->mem = b;
    return b->data;
}

static void hp_free(struct hp *p)
{
    while (p->mem) {
        struct blk *b = p->mem;

        p->mem = b->next;
        free(b);
    }
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* True if s[0..n) is name followed only by an optional signed number (the
 * argument of a formatting command of the FT data type, HL7 v2.5.1). */
static int fmt_cmd(const uint8_t *s, size_t n, const char *name)
{
    size_t k = strlen(name), i;

    if (n < k || memcmp(s, name, k) != 0)
        return 0;
    i = k;
    while (i < n && s[i] == ' ')
        i++;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    return i == n;
}

/* Interprets the escape sequence s[0..n) (between the escape characters),
 * appending to out[*o]. Returns 0, or -1 if it is not supported. */
static int unescape_one(const struct enc *enc, const uint8_t *s, size_t n, uint8_t *out, size_t *o)
{
    size_t i;

    if (n == 1) {
        switch (s[0]) {
        case 'F':
            out[(*o)++] = enc->fs;
            return 0;
        case 'S':
            out[(*o)++] = enc->cs;
            return 0;
        case 'T':
            out[(*o)++] = enc->ss;
            return 0;
        case 'R':
            out[(*o)++] = enc->rs;
            return 0;
        case 'E':
            out[(*o)++] = enc->esc;
            return 0;
        case 'P':
            if (enc->nchars < 5)
                return -1;
            out[(*o)++] = enc->tc;
            return 0;
        case 'H': /* start highlighting */
        case 'N': /* normal text */
            return 0;
        default:
            return -1;
        }
    }
    if (s[0] == 'X') {
        if (n < 3 || (n - 1) % 2 != 0)
            return -1;
        for (i = 1; i < n; i += 2) {
            int hv = hexval(s[i]), lv = hexval(s[i + 1]);

            if (hv < 0 || lv < 0)
                return -1;
            out[(*o)++] = (uint8_t)(hv * 16 + lv);
        }
        return 0;
    }
    if (s[0] == '.') {
        if ((n == 3 && memcmp(s, ".br", 3) == 0) || fmt_cmd(s, n, ".sp") ||
            (n == 3 && memcmp(s, ".ce", 3) == 0)) {
            out[(*o)++] = '\n';
            return 0;
        }
        if ((n == 3 && (memcmp(s, ".fi", 3) == 0 || memcmp(s, ".nf", 3) == 0)) ||
            fmt_cmd(s, n, ".in") || fmt_cmd(s, n, ".ti") || fmt_cmd(s, n, ".sk"))
            return 0;
    }
    return -1;
}

/* Quotes raw payload bytes for a detail: printable ASCII as it is, any
 * other byte as '?' (the bytes may be in no known character set yet), cut
 * like eg_detail_str(). */
static const char *raw_quote(const uint8_t *s, size_t n, char *qb, size_t qn)
{
    char tmp[48];
    size_t k = n < sizeof tmp - 1 ? n : sizeof tmp - 1, i;

    for (i = 0; i < k; i++)
        tmp[i] = s[i] >= 0x20 && s[i] < 0x7F ? (char)s[i] : '?';
    tmp[k] = '\0';
    return eg_detail_str(qb, qn, tmp);
}

/* Decodes a raw value (escape sequences, then the message character set)
 * into a NUL-terminated UTF-8 string kept in p's arena. Raw delimiters in
 * raw are kept as they are. label names the field in details. */
static eg_err decode(struct hp *p, struct span raw, const char *label, char **out)
{
    uint8_t *tmp;
    char *res;
    size_t i = 0, o = 0, j, k;

    tmp = (uint8_t *)hp_alloc(p, raw.n + 1);
    if (!tmp)
        return eg_fail(p->e, EG_E_NOMEM, "%s: out of memory", label);
    while (i < raw.n) {
        if (raw.p[i] != p->enc.esc) {
            tmp[o++] = raw.p[i++];
            continue;
        }
        for (j = i + 1; j < raw.n && raw.p[j] != p->enc.esc; j++)
            ;
        /* details name the place, never the field's bytes: they may be PHI */
        if (j >= raw.n)
            return eg_fail(p->e, EG_E_PARSE, "%s: unterminated escape sequence at offset %zu",
                           label, i);
        if (j == i + 1 || unescape_one(&p->enc, raw.p + i + 1, j - i - 1, tmp, &o) != 0)
            return eg_fail(p->e, EG_E_PARSE,
                           "%s: unsupported escape sequence (%zu bytes) at offset %zu", label,
                           j + 1 - i, i);
        i = j + 1;
    }
    if (p->cs == CS_LATIN1) {
        res = hp_alloc(p, 2 * o + 1);
        if (!res)
            return eg_fail(p->e, EG_E_NOMEM, "%s: out of memory", label);
        for (i = 0, k = 0; i < o; i++) {
            if (tmp[i] == 0)
                return eg_fail(p->e, EG_E_PARSE, "%s: NUL character", label);
            if (tmp[i] < 0x80) {
                res[k++] = (char)tmp[i];
            } else {
                res[k++] = (char)(0xC0 | (tmp[i] >> 6));
                res[k++] = (char)(0x80 | (tmp[i] & 0x3F));
            }
        }
        res[k] = '\0';
    } else {
        for (i = 0; i < o; i += k) {
            if (tmp[i] == 0)
                return eg_fail(p->e, EG_E_PARSE, "%s: NUL character", label);
            k = utf8_seq(tmp + i, o - i);
            if (k == 0)
                return eg_fail(p->e, EG_E_PARSE, "%s: invalid UTF-8 after decoding escapes", label);
        }
        tmp[o] = '\0';
        res = (char *)tmp;
    }
    *out = res;
    return EG_OK;
}

/* Decodes repetition 1, component comp, subcomponent 1 of field f. */
static eg_err decode_comp(struct hp *p, struct span f, int comp, const char *label, char **out)
{
    return decode(p, sub_span(f, &p->enc, 1, comp, 1), label, out);
}

/* ------------------------------------------------------------ numbers */

/* HL7 v2.5.1 data type NM: optional sign, digits, an optional decimal
 * point; no exponent; surrounding spaces are ignored. Writes the value as
 * the JSON number text that keeps the sender's precision ("+007.50" ->
 * "7.50", ".5" -> "0.5", "-0" -> "0") into out and its value into *v.
 * Returns 0, -1 if not numeric, -2 if longer than NUM_DIGITS_MAX digits. */
static int nm_parse(const char *s, char out[NUM_DIGITS_MAX + 4], double *v)
{
    const char *ip, *fp = NULL;
    size_t ni = 0, nf = 0, o = 0, i;
    int neg = 0, nonzero = 0;

    while (*s == ' ')
        s++;
    if (*s == '+' || *s == '-')
        neg = *s++ == '-';
    ip = s;
    while (*s >= '0' && *s <= '9')
        s++, ni++;
    if (*s == '.') {
        fp = ++s;
        while (*s >= '0' && *s <= '9')
            s++, nf++;
    }
    while (*s == ' ')
        s++;
    if (*s != '\0' || ni + nf == 0)
        return -1;
    while (ni > 1 && *ip == '0') /* leading zeros are not significant */
        ip++, ni--;
    if (ni + nf > NUM_DIGITS_MAX)
        return -2;
    for (i = 0; i < ni; i++)
        nonzero |= ip[i] != '0';
    for (i = 0; i < nf; i++)
        nonzero |= fp[i] != '0';
    if (neg && nonzero)
        out[o++] = '-';
    if (ni == 0) {
        out[o++] = '0';
    } else {
        memcpy(out + o, ip, ni);
        o += ni;
    }
    if (nf > 0) {
        out[o++] = '.';
        memcpy(out + o, fp, nf);
        o += nf;
    }
    out[o] = '\0';
    *v = strtod(out, NULL);
    return 0;
}

/* --------------------------------------------------------------- UCUM */

/* UCUM atoms (case-sensitive "c/s" codes of the UCUM tables) we know; a
 * code is a plausible UCUM code when it follows the UCUM syntax and each
 * simple unit is a known atom, a known atom with a prefix, or a bracketed
 * atom "[...]". */
static const char *const ucum_atoms[] = {
    "m",   "s",     "g",      "rad", "K",   "C",   "cd",  "mol", "sr",  "Hz", "N",   "Pa",
    "J",   "W",     "A",      "V",   "F",   "Ohm", "S",   "Wb",  "Cel", "T",  "H",   "lm",
    "lx",  "Bq",    "Gy",     "Sv",  "gon", "deg", "'",   "''",  "l",   "L",  "ar",  "min",
    "h",   "d",     "a",      "wk",  "mo",  "t",   "bar", "u",   "eV",  "pc", "gf",  "Ky",
    "Gal", "dyn",   "erg",    "P",   "St",  "Mx",  "G",   "Oe",  "Gb",  "sb", "Lmb", "ph",
    "Ci",  "R",     "RAD",    "REM", "eq",  "osm", "kat", "U",   "%",   "g%", "B",   "Np",
    "cal", "m[Hg]", "m[H2O]", "st",  "Ao",  "b",   "Bi",
};

static const char ucum_prefixes[] = "YZEPTGMkhdcmunpfazy";

static int ucum_known(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < ARRAY_LEN(ucum_atoms); i++)
        if (strlen(ucum_atoms[i]) == n && memcmp(ucum_atoms[i], s, n) == 0)
            return 1;
    return 0;
}

/* "[...]" with no bracket, brace or parenthesis inside. */
static int ucum_bracketed(const char *s, size_t n)
{
    size_t i;

    if (n < 3 || s[0] != '[' || s[n - 1] != ']')
        return 0;
    for (i = 1; i + 1 < n; i++)
        if (strchr("[]{}()", s[i]))
            return 0;
    return 1;
}

static int ucum_atom(const char *s, size_t n)
{
    return ucum_known(s, n) || ucum_bracketed(s, n);
}

static int ucum_simple_unit(const char *s, size_t n)
{
    if (ucum_atom(s, n))
        return 1;
    if (n > 2 && s[0] == 'd' && s[1] == 'a' && ucum_atom(s + 2, n - 2))
        return 1;
    return n > 1 && strchr(ucum_prefixes, s[0]) && ucum_atom(s + 1, n - 1);
}

struct ucum {
    const char *s;
    size_t i, n;
    int depth;
};

static int ucum_term(struct ucum *u);

static int ucum_digits(struct ucum *u, size_t max)
{
    size_t k = 0;

    while (u->i < u->n && u->s[u->i] >= '0' && u->s[u->i] <= '9')
        u->i++, k++;
    return k > 0 && k <= max;
}

static int ucum_annotation(struct ucum *u)
{
    if (u->i >= u->n || u->s[u->i] != '{')
        return 0;
    for (u->i++; u->i < u->n && u->s[u->i] != '}'; u->i++)
        if (u->s[u->i] == '{')
            return 0;
    if (u->i >= u->n)
        return 0;
    u->i++;
    return 1;
}

static int ucum_component(struct ucum *u)
{
    const char *s = u->s;
    size_t start = u->i;

    if (u->i >= u->n)
        return 0;
    if (s[u->i] == '(') {
        if (++u->depth > UCUM_DEPTH_MAX)
            return 0;
        u->i++;
        if (!ucum_term(u) || u->i >= u->n || s[u->i] != ')')
            return 0;
        u->i++;
        u->depth--;
        return 1;
    }
    if (s[u->i] == '{')
        return ucum_annotation(u);
    if (s[u->i] >= '0' && s[u->i] <= '9') {
        if (u->n - u->i >= 3 && s[u->i] == '1' && s[u->i + 1] == '0' &&
            (s[u->i + 2] == '*' || s[u->i + 2] == '^')) {
            u->i += 3; /* the atoms 10* and 10^, with an exponent */
            if (u->i < u->n && (s[u->i] == '+' || s[u->i] == '-'))
                u->i++;
            return ucum_digits(u, 3);
        }
        return ucum_digits(u, 12); /* a factor */
    }
    while (u->i < u->n) {
        char c = s[u->i];

        if (c == '[') {
            while (u->i < u->n && s[u->i] != ']')
                u->i++;
            if (u->i >= u->n)
                return 0;
            u->i++;
        } else if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '%' || c == '\'') {
            u->i++;
        } else {
            break;
        }
    }
    if (u->i == start || !ucum_simple_unit(s + start, u->i - start))
        return 0;
    if (u->i < u->n && (s[u->i] == '+' || s[u->i] == '-' || (s[u->i] >= '0' && s[u->i] <= '9'))) {
        if (s[u->i] == '+' || s[u->i] == '-')
            u->i++;
        if (!ucum_digits(u, 3))
            return 0;
    }
    if (u->i < u->n && s[u->i] == '{')
        return ucum_annotation(u);
    return 1;
}

static int ucum_term(struct ucum *u)
{
    if (u->i < u->n && u->s[u->i] == '/')
        u->i++;
    if (!ucum_component(u))
        return 0;
    while (u->i < u->n && (u->s[u->i] == '.' || u->s[u->i] == '/')) {
        u->i++;
        if (!ucum_component(u))
            return 0;
    }
    return 1;
}

/* True if s is a plausible UCUM code (see ucum_atoms). */
static int ucum_plausible(const char *s)
{
    struct ucum u = {s, 0, strlen(s), 0};
    size_t i;

    if (u.n == 0 || u.n > UCUM_MAX)
        return 0;
    for (i = 0; i < u.n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7F)
            return 0;
    return ucum_term(&u) && u.i == u.n;
}

/* ---------------------------------------------------------- code tables */

/* Coding systems of HL7 v2 table 0396 we name by their FHIR URI. */
static const char *map_system(const char *sys)
{
    if (strcmp(sys, "LN") == 0)
        return EG_LOINC_SYSTEM;
    if (strcmp(sys, "SCT") == 0 || strcmp(sys, "SNM") == 0)
        return SNOMED_SYSTEM;
    return sys;
}

/* OBX-11 (HL7 v2.5.1 table 0085) -> Observation.status (SPEC §5). */
static const char *map_status(const char *s)
{
    static const struct {
        const char *v2, *fhir;
    } map[] = {{"F", "final"},
               {"C", "corrected"},
               {"P", "preliminary"},
               {"X", "cancelled"},
               {"W", "entered-in-error"}};
    size_t i;

    for (i = 0; i < ARRAY_LEN(map); i++)
        if (strcmp(s, map[i].v2) == 0)
            return map[i].fhir;
    return "unknown";
}

/* OBX-8 (HL7 v2.5.1 table 0078, and the codes later versions added) ->
 * Observation.interpretation in v3-ObservationInterpretation, which uses
 * the same codes; displays from that code system. */
static const struct {
    const char *code, *display;
} interp_codes[] = {
    {"<", "Off scale low"},
    {">", "Off scale high"},
    {"A", "Abnormal"},
    {"AA", "Critical abnormal"},
    {"B", "Better"},
    {"D", "Significant change down"},
    {"DET", "Detected"},
    {"E", "Equivocal"},
    {"H", "High"},
    {"HH", "Critical high"},
    {"I", "Intermediate"},
    {"IND", "Indeterminate"},
    {"L", "Low"},
    {"LL", "Critical low"},
    {"MS", "moderately susceptible"},
    {"N", "Normal"},
    {"ND", "Not detected"},
    {"NEG", "Negative"},
    {"NR", "Non-reactive"},
    {"NS", "Non-susceptible"},
    {"POS", "Positive"},
    {"R", "Resistant"},
    {"RR", "Reactive"},
    {"S", "Susceptible"},
    {"U", "Significant change up"},
    {"VS", "very susceptible"},
    {"W", "Worse"},
    {"WR", "Weakly reactive"},
};

/* Category of an observation without a SPEC §4 code (SPEC §13). */
static const struct eg_reading_spec lab_category = {
    .category = "laboratory",
    .category_display = "Laboratory",
};

/* ---------------------------------------------------------- JSON helpers */

static int add_str(cJSON *o, const char *key, const char *v)
{
    return cJSON_AddStringToObject(o, key, v) ? 0 : -1;
}

/* A JSON number from the text nm_parse() wrote (kept exactly). */
static int add_num_text(cJSON *o, const char *key, const char *text)
{
    return egjson_add_taken(o, key, cJSON_CreateRaw(text));
}

/* A coded element (HL7 v2.5.1 data types CE and CWE) split into its parts. */
struct cwe {
    char *code, *text, *sys;    /* components 1-3 */
    char *code2, *text2, *sys2; /* components 4-6: alternate coding */
    char *orig;                 /* component 9: original text (CWE) */
};

static eg_err read_cwe(struct hp *p, struct span f, const char *label, struct cwe *c)
{
    eg_err rc;

    if ((rc = decode_comp(p, f, 1, label, &c->code)) ||
        (rc = decode_comp(p, f, 2, label, &c->text)) ||
        (rc = decode_comp(p, f, 3, label, &c->sys)) ||
        (rc = decode_comp(p, f, 4, label, &c->code2)) ||
        (rc = decode_comp(p, f, 5, label, &c->text2)) ||
        (rc = decode_comp(p, f, 6, label, &c->sys2)) ||
        (rc = decode_comp(p, f, 9, label, &c->orig)))
        return rc;
    return EG_OK;
}

/* {"system","code","display"} with system mapped and empty parts left out. */
static cJSON *coding_json(const char *code, const char *display, const char *sys)
{
    cJSON *c = cJSON_CreateObject();

    if (!c || (*sys && add_str(c, "system", map_system(sys))) || add_str(c, "code", code) ||
        (*display && add_str(c, "display", display))) {
        cJSON_Delete(c);
        return NULL;
    }
    return c;
}

/* CodeableConcept of a CE/CWE: coding[] from components 1-3 and 4-6 (those
 * with a code), text from component 9, else component 2 (as the device path
 * repeats the display). *empty is set when there is nothing to say. */
static cJSON *concept_json(const struct cwe *c, int *empty)
{
    cJSON *cc = cJSON_CreateObject(), *codings = NULL;
    const char *text = *c->orig ? c->orig : c->text;

    *empty = !*c->code && !*c->code2 && !*text;
    if (!cc)
        return NULL;
    if (*c->code || *c->code2) {
        codings = cJSON_AddArrayToObject(cc, "coding");
        if (!codings)
            goto fail;
        if (*c->code && egjson_add_taken(codings, NULL, coding_json(c->code, c->text, c->sys)))
            goto fail;
        if (*c->code2 && egjson_add_taken(codings, NULL, coding_json(c->code2, c->text2, c->sys2)))
            goto fail;
    }
    if (*text && add_str(cc, "text", text))
        goto fail;
    return cc;
fail:
    cJSON_Delete(cc);
    return NULL;
}

/* How the unit of a quantity is written (OBX-6). */
struct unit {
    const char *ucum; /* UCUM code (unit = code = this), or NULL */
    const char *text; /* otherwise the unit as given (Quantity.unit only), or NULL */
};

/* {"value"[, "comparator"], "unit", "system", "code"} (FHIR R4 Quantity
 * element order) with the value kept exactly as sent. */
static cJSON *quantity_json(const char *num, const char *comparator, const struct unit *u)
{
    cJSON *q = cJSON_CreateObject();

    if (!q || add_num_text(q, "value", num) || (comparator && add_str(q, "comparator", comparator)))
        goto fail;
    if (u->ucum) {
        if (add_str(q, "unit", u->ucum) || add_str(q, "system", EG_UCUM_SYSTEM) ||
            add_str(q, "code", u->ucum))
            goto fail;
    } else if (u->text && add_str(q, "unit", u->text)) {
        goto fail;
    }
    return q;
fail:
    cJSON_Delete(q);
    return NULL;
}

/* Puts "comparator" right after "value" in a Quantity built by
 * eg_fhir_quantity(): it is appended, then the items between value and it
 * move behind it in order (cJSON 1.7.15's cJSON_InsertItemInArray refuses
 * positions inside a list). Returns 0 or -1. */
static int insert_comparator(cJSON *q, const char *comparator)
{
    cJSON *it;

    if (!q->child || !cJSON_AddStringToObject(q, "comparator", comparator))
        return -1;
    while ((it = q->child->next) && strcmp(it->string, "comparator") != 0) {
        cJSON_DetachItemViaPointer(q, it);
        if (!cJSON_AddItemToArray(q, it)) { /* keeps the key */
            cJSON_Delete(it);
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------- DTM */

/* Parses an HL7 v2.5.1 DTM (also TS component 1): YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]]
 * [+/-ZZZZ]. With hours: an instant (offset from the value, else
 * off_min), written as UTC "Z" with milliseconds. YYYYMMDD: a FHIR date
 * "YYYY-MM-DD"; YYYYMM and YYYY: FHIR partial dates "YYYY-MM", "YYYY";
 * their instant is 00:00 UTC of the first day (an offset on them is
 * ignored). Returns 0, or -1 if s is not a DTM. */
static int dtm_parse(const char *s, int off_min, char out[EG_TIME_STRLEN], int64_t *ms)
{
    char rfc[48];
    size_t nd = 0, nf = 0, i;
    const char *frac = NULL, *off = NULL;
    int64_t t;

    while (s[nd] >= '0' && s[nd] <= '9')
        nd++;
    i = nd;
    if (s[i] == '.') {
        frac = s + i + 1;
        for (i++; s[i] >= '0' && s[i] <= '9'; i++)
            nf++;
        if (nd != 14 || nf < 1 || nf > 4)
            return -1;
    }
    if (s[i] == '+' || s[i] == '-') {
        off = s + i;
        for (i++; s[i] >= '0' && s[i] <= '9'; i++)
            ;
        if (i - (size_t)(off - s) != 5)
            return -1;
    }
    if (s[i] != '\0' || (nd >= 4 && memcmp(s, "0000", 4) == 0)) /* FHIR has no year 0 */
        return -1;
    switch (nd) {
    case 4:
    case 6:
        /* a year or a month is not a measurement time: consent needs an
         * instant, and the vital-signs profile (vs-1) a day at least */
        return -1;
    case 8:
        snprintf(rfc, sizeof rfc, "%.4s-%.2s-%.2s", s, s + 4, s + 6);
        if (eg_date_parse(rfc, ms) != 0)
            return -1;
        memcpy(out, rfc, 11); /* "YYYY-MM-DD" and its NUL */
        return 0;
    case 10:
    case 12:
    case 14:
        break;
    default:
        return -1;
    }
    {
        char tz[8], fr[4] = "000";

        if (off) {
            snprintf(tz, sizeof tz, "%c%.2s:%.2s", off[0], off + 1, off + 3);
        } else {
            int a = off_min < 0 ? -off_min : off_min;

            if (a > 23 * 60 + 59)
                return -1;
            snprintf(tz, sizeof tz, "%c%02d:%02d", off_min < 0 ? '-' : '+', a / 60, a % 60);
        }
        for (i = 0; i < nf && i < 3; i++)
            fr[i] = frac[i];
        snprintf(rfc, sizeof rfc, "%.4s-%.2s-%.2sT%.2s:%.2s:%.2s.%s%s", s, s + 4, s + 6, s + 8,
                 nd >= 12 ? s + 10 : "00", nd >= 14 ? s + 12 : "00", fr, tz);
    }
    if (eg_time_parse(rfc, &t) != 0)
        return -1;
    *ms = t;
    eg_time_format(t, out);
    return 0;
}

/* ------------------------------------------------------------- messages */

/* The patient of the current PATIENT_RESULT group (the last PID). */
struct pid_state {
    int have;
    int index; /* PID[index] */
    char idents[EG_HOSP_MAX_IDENTS][EG_HOSP_IDENT_MAX];
    int nidents;
};

/* The governing OBR (the last one in the current PATIENT_RESULT group). */
struct obr_state {
    int have;
    int index;
    struct span obr7;
};

static eg_err read_pid(struct hp *p, struct span seg, int index, struct pid_state *ps)
{
    char label[32];
    struct span f, r;
    struct pieces it;
    eg_err rc;

    snprintf(label, sizeof label, "PID[%d]-3", index);
    memset(ps, 0, sizeof *ps);
    ps->have = 1;
    ps->index = index;
    seg_field(seg, &p->enc, 0, 3, &f);
    pieces_init(&it, f);
    while (pieces_next(&it, p->enc.rs, &r)) {
        char *id;
        size_t n;

        rc = decode(p, sub_span(r, &p->enc, 1, 1, 1), label, &id);
        if (rc != EG_OK)
            return rc;
        n = strlen(id);
        if (n == 0)
            continue;
        if (n >= EG_HOSP_IDENT_MAX)
            return eg_fail(p->e, EG_E_SCHEMA, "%s: an identifier is longer than %d bytes", label,
                           EG_HOSP_IDENT_MAX - 1);
        if (ps->nidents == EG_HOSP_MAX_IDENTS)
            continue; /* the first EG_HOSP_MAX_IDENTS are the candidates */
        memcpy(ps->idents[ps->nidents++], id, n + 1);
    }
    if (ps->nidents == 0)
        return eg_fail(p->e, EG_E_SCHEMA, "%s: no identifier", label);
    return EG_OK;
}

enum vtype { VT_NM, VT_SN, VT_ST, VT_TX, VT_FT, VT_CE, VT_CWE };

static const char *const vtype_names[] = {"NM", "SN", "ST", "TX", "FT", "CE", "CWE"};

/* One OBX being turned into an Observation. */
struct obx {
    int index;    /* OBX[index], from 1 */
    char lab[24]; /* "OBX[index]" */
    char f2[32], f3[32], f5[32], f6[32], f8[32], f11[32], f14[32];
    enum vtype vt;
    struct cwe code;
    const char *loinc; /* the §4 LOINC code, or NULL */
    struct eg_loinc_match m;
    char effective[EG_TIME_STRLEN];
    int64_t effective_ms;
};

/* Appends " (code)" to a §4 detail that does not name the code yet. */
static eg_err with_code(struct eg_error *e, eg_err rc, const char *code)
{
    size_t n;

    if (e && !strstr(e->detail, code)) {
        n = strlen(e->detail);
        snprintf(e->detail + n, sizeof e->detail - n, " (%s)", code);
    }
    return rc;
}

/* OBX-14, else OBR-7 of the governing OBR. */
static eg_err read_effective(struct hp *p, struct span seg, const struct obr_state *os,
                             struct obx *x)
{
    char label[48], qb[QB], nowb[EG_TIME_STRLEN];
    struct span f;
    char *s;
    int64_t ahead;
    eg_err rc;

    seg_field(seg, &p->enc, 0, 14, &f);
    snprintf(label, sizeof label, "%s", x->f14);
    rc = decode_comp(p, f, 1, label, &s);
    if (rc != EG_OK)
        return rc;
    if (!*s) {
        if (!os->have || os->obr7.n == 0)
            return eg_fail(p->e, EG_E_SCHEMA,
                           "%s: required (no observation time in OBX-14 and no OBR-7)", x->f14);
        snprintf(label, sizeof label, "OBR[%d]-7 (for %s)", os->index, x->lab);
        rc = decode_comp(p, os->obr7, 1, label, &s);
        if (rc != EG_OK)
            return rc;
        if (!*s)
            return eg_fail(p->e, EG_E_SCHEMA,
                           "%s: required (no observation time in OBX-14 and no OBR-7)", x->f14);
    }
    if (dtm_parse(s, p->ctx->utc_offset_min, x->effective, &x->effective_ms) != 0)
        return eg_fail(p->e, EG_E_SCHEMA,
                       "%s: \"%s\" is not an HL7 DTM with at least a day "
                       "(YYYYMMDD[HH[MM[SS[.S]]]][+/-ZZZZ])",
                       label, eg_detail_str(qb, sizeof qb, s));
    ahead = x->effective_ms - p->ctx->now_ms;
    if (ahead > EG_FUTURE_SKEW_MS) {
        eg_time_format(x->effective_ms, nowb);
        return eg_fail(p->e, EG_E_RANGE,
                       "%s: %s is %" PRId64 ".%03" PRId64 " s in the future (at most %d s allowed)",
                       label, nowb, ahead / 1000, ahead % 1000, EG_FUTURE_SKEW_MS / 1000);
    }
    return EG_OK;
}

/* OBX-6: the unit of a quantity that has no SPEC §4 code. §4's spellings
 * map to their UCUM code; otherwise the code is UCUM when OBX-6.3 is empty
 * or "UCUM" and the code is plausible UCUM; otherwise only Quantity.unit
 * is written (OBX-6.2 text, else the code). */
static eg_err read_unit(struct hp *p, struct span seg, const struct obx *x, struct unit *u)
{
    struct span f;
    char *code, *text, *sys;
    const char *canon;
    eg_err rc;

    u->ucum = u->text = NULL;
    seg_field(seg, &p->enc, 0, 6, &f);
    if ((rc = decode_comp(p, f, 1, x->f6, &code)) || (rc = decode_comp(p, f, 2, x->f6, &text)) ||
        (rc = decode_comp(p, f, 3, x->f6, &sys)))
        return rc;
    canon = eg_unit_canonical(code);
    if (canon)
        u->ucum = canon;
    else if (*code && (!*sys || strcmp(sys, "UCUM") == 0) && ucum_plausible(code))
        u->ucum = code;
    else if (*text)
        u->text = text;
    else if (*code)
        u->text = code;
    return EG_OK;
}

/* Parses a number of OBX-5 for the detail label. */
static eg_err number(struct hp *p, const struct obx *x, const char *s, char *num, double *v)
{
    char qb[QB];
    int r = nm_parse(s, num, v);

    if (r == -2)
        return eg_fail(p->e, EG_E_SCHEMA, "%s: \"%s\" has more than %d digits", x->f5,
                       eg_detail_str(qb, sizeof qb, s), NUM_DIGITS_MAX);
    if (r != 0)
        return eg_fail(p->e, EG_E_SCHEMA, "%s: \"%s\" is not numeric for %s", x->f5,
                       eg_detail_str(qb, sizeof qb, s), vtype_names[x->vt]);
    return EG_OK;
}

/* A structured numeric (HL7 v2.5.1 data type SN): comparator ^ num1 ^
 * separator/suffix ^ num2. */
struct sn {
    const char *comparator; /* NULL, or a FHIR Quantity.comparator */
    char num1[NUM_DIGITS_MAX + 4], num2[NUM_DIGITS_MAX + 4];
    double v1, v2;
    char kind; /* 'q' quantity, '-' range, ':' ratio */
};

static eg_err read_sn(struct hp *p, struct span f5, const struct obx *x, struct sn *sn)
{
    static const char *const comparators[] = {"<", ">", "<=", ">="}; /* FHIR Quantity */
    char qb[QB], *c1, *c2, *c3, *c4;
    size_t i;
    eg_err rc;

    memset(sn, 0, sizeof *sn);
    if (npieces(f5, p->enc.rs) > 1)
        return eg_fail(p->e, EG_E_SCHEMA, "%s: SN takes one value, got %d repetitions", x->f5,
                       npieces(f5, p->enc.rs));
    if ((rc = decode_comp(p, f5, 1, x->f5, &c1)) || (rc = decode_comp(p, f5, 2, x->f5, &c2)) ||
        (rc = decode_comp(p, f5, 3, x->f5, &c3)) || (rc = decode_comp(p, f5, 4, x->f5, &c4)))
        return rc;
    if (!*c2)
        return eg_fail(p->e, EG_E_SCHEMA, "%s: SN has no number (component 2)", x->f5);
    if ((rc = number(p, x, c2, sn->num1, &sn->v1)))
        return rc;
    for (i = 0; i < ARRAY_LEN(comparators); i++)
        if (strcmp(c1, comparators[i]) == 0)
            sn->comparator = comparators[i];
    if (!sn->comparator && *c1 && strcmp(c1, "=") != 0)
        return eg_fail(p->e, EG_E_SCHEMA,
                       "%s: SN comparator \"%s\" is not supported (<, >, <=, >=, =)", x->f5,
                       eg_detail_str(qb, sizeof qb, c1));
    if (!*c3 && !*c4) {
        sn->kind = 'q';
        return EG_OK;
    }
    if (sn->comparator || !*c4 ||
        (strcmp(c3, "-") != 0 && strcmp(c3, ":") != 0 && strcmp(c3, "/") != 0))
        return eg_fail(p->e, EG_E_SCHEMA,
                       "%s: SN \"%s\" is not a supported form (number, comparator^number, "
                       "^low^-^high, ^n^:^d, ^n^/^d)",
                       x->f5, eg_detail_str(qb, sizeof qb, c3));
    if ((rc = number(p, x, c4, sn->num2, &sn->v2)))
        return rc;
    sn->kind = c3[0] == '-' ? '-' : ':';
    if (sn->kind == '-' && sn->v1 > sn->v2)
        return eg_fail(p->e, EG_E_SCHEMA, "%s: SN range %s-%s has its low above its high", x->f5,
                       sn->num1, sn->num2);
    return EG_OK;
}

/* value[x] of an OBX with a SPEC §4 code: one number in §4's units. */
static eg_err value_s4(struct hp *p, struct span seg, struct span f5, struct obx *x,
                       struct eg_value *val, const char **comparator)
{
    const struct eg_reading_spec *s = x->m.spec;
    char num[NUM_DIGITS_MAX + 4], *text, *unit;
    struct span f6;
    double v;
    eg_err rc;

    *comparator = NULL;
    if (x->vt != VT_NM && x->vt != VT_SN)
        return eg_fail(p->e, EG_E_SCHEMA, "%s: %s (%s) needs NM or SN, got %s", x->f2, s->name,
                       x->loinc, vtype_names[x->vt]);
    if (x->m.part < 0)
        return eg_fail(p->e, EG_E_SCHEMA,
                       "%s: %s is the %s panel; send each part as its own OBX with its own code",
                       x->f3, x->loinc, s->name);
    if (x->vt == VT_NM) {
        rc = decode(p, f5, x->f5, &text);
        if (rc == EG_OK)
            rc = number(p, x, text, num, &v);
        if (rc != EG_OK)
            return rc;
    } else {
        struct sn sn;

        if ((rc = read_sn(p, f5, x, &sn)))
            return rc;
        if (sn.kind != 'q')
            return eg_fail(p->e, EG_E_SCHEMA, "%s: %s (%s) needs a single value, not a %s", x->f5,
                           s->name, x->loinc, sn.kind == '-' ? "range" : "ratio");
        v = sn.v1;
        *comparator = sn.comparator;
    }
    seg_field(seg, &p->enc, 0, 6, &f6);
    if ((rc = decode_comp(p, f6, 1, x->f6, &unit)))
        return rc;
    rc = eg_quantity_normalize(&s->parts[x->m.part], x->loinc, *unit ? unit : NULL, v, x->f5, x->f6,
                               val, p->e);
    if (rc != EG_OK)
        return with_code(p->e, rc, x->loinc);
    return EG_OK;
}

/* value[x] of an OBX without a SPEC §4 code: sets *key and *value. */
static eg_err value_other(struct hp *p, struct span seg, struct span f5, struct obx *x,
                          const char **key, cJSON **value)
{
    char num[NUM_DIGITS_MAX + 4], *text;
    struct unit u;
    double v;
    eg_err rc;

    *value = NULL;
    switch (x->vt) {
    case VT_NM:
        if ((rc = decode(p, f5, x->f5, &text)) || (rc = number(p, x, text, num, &v)) ||
            (rc = read_unit(p, seg, x, &u)))
            return rc;
        *key = "valueQuantity";
        *value = quantity_json(num, NULL, &u);
        break;
    case VT_SN: {
        struct sn sn;
        struct unit none = {NULL, NULL};

        if ((rc = read_sn(p, f5, x, &sn)) || (rc = read_unit(p, seg, x, &u)))
            return rc;
        if (sn.kind == 'q') {
            *key = "valueQuantity";
            *value = quantity_json(sn.num1, sn.comparator, &u);
        } else {
            const char *a = sn.kind == '-' ? "low" : "numerator";
            const char *b = sn.kind == '-' ? "high" : "denominator";
            const struct unit *uu = sn.kind == '-' ? &u : &none;

            *key = sn.kind == '-' ? "valueRange" : "valueRatio";
            *value = cJSON_CreateObject();
            if (*value && (egjson_add_taken(*value, a, quantity_json(sn.num1, NULL, uu)) ||
                           egjson_add_taken(*value, b, quantity_json(sn.num2, NULL, uu)))) {
                cJSON_Delete(*value);
                *value = NULL;
            }
        }
        break;
    }
    case VT_ST:
    case VT_TX:
    case VT_FT: {
        int nrep = npieces(f5, p->enc.rs), k = 0, blank = 1;
        size_t total = 0, off = 0, i;
        char **parts, *joined;
        struct pieces it;
        struct span r;

        parts = (char **)hp_alloc(p, sizeof(char *) * (size_t)nrep);
        if (!parts)
            return eg_fail(p->e, EG_E_NOMEM, "%s: out of memory", x->f5);
        pieces_init(&it, f5);
        while (pieces_next(&it, p->enc.rs, &r)) {
            if (span_has(r, p->enc.cs) || span_has(r, p->enc.ss))
                return eg_fail(p->e, EG_E_SCHEMA,
                               "%s: a %s value has a raw component or subcomponent separator "
                               "(escape it as %cS%c or %cT%c)",
                               x->f5, vtype_names[x->vt], p->enc.esc, p->enc.esc, p->enc.esc,
                               p->enc.esc);
            if ((rc = decode(p, r, x->f5, &parts[k])))
                return rc;
            total += strlen(parts[k++]) + 1;
        }
        joined = hp_alloc(p, total + 1);
        if (!joined)
            return eg_fail(p->e, EG_E_NOMEM, "%s: out of memory", x->f5);
        for (k = 0; k < nrep; k++) {
            size_t n = strlen(parts[k]);

            if (k > 0)
                joined[off++] = '\n'; /* repetitions are lines */
            memcpy(joined + off, parts[k], n);
            off += n;
        }
        joined[off] = '\0';
        for (i = 0; i < off; i++)
            if (joined[i] != ' ' && joined[i] != '\t' && joined[i] != '\r' && joined[i] != '\n')
                blank = 0;
        if (blank)
            return eg_fail(p->e, EG_E_SCHEMA, "%s: required (the %s value is blank)", x->f5,
                           vtype_names[x->vt]);
        *key = "valueString";
        *value = cJSON_CreateString(joined);
        break;
    }
    case VT_CE:
    case VT_CWE: {
        struct cwe c;
        int empty;

        if (npieces(f5, p->enc.rs) > 1)
            return eg_fail(p->e, EG_E_SCHEMA, "%s: %s takes one value, got %d repetitions", x->f5,
                           vtype_names[x->vt], npieces(f5, p->enc.rs));
        if ((rc = read_cwe(p, f5, x->f5, &c)))
            return rc;
        *key = "valueCodeableConcept";
        *value = concept_json(&c, &empty);
        if (*value && empty) {
            cJSON_Delete(*value);
            return eg_fail(p->e, EG_E_SCHEMA, "%s: %s has no code and no text", x->f5,
                           vtype_names[x->vt]);
        }
        break;
    }
    }
    if (!*value)
        return eg_fail(p->e, EG_E_NOMEM, "%s: out of memory", x->f5);
    return EG_OK;
}

/* OBX-8 -> interpretation (NULL when OBX-8 is empty). */
static eg_err read_interpretation(struct hp *p, struct span seg, const struct obx *x, cJSON **out)
{
    char qb[QB], *flag;
    struct span f, r;
    struct pieces it;
    size_t i;
    eg_err rc;

    uint64_t seen = 0; /* each flag once: a repeated flag must not inflate the entry */
    int reps = 0;

    *out = NULL;
    seg_field(seg, &p->enc, 0, 8, &f);
    pieces_init(&it, f);
    while (pieces_next(&it, p->enc.rs, &r)) {
        cJSON *cc, *codings, *c;

        if (++reps > 16) {
            rc = eg_fail(p->e, EG_E_SCHEMA, "%s: more than 16 abnormal flags", x->f8);
            goto fail;
        }
        if ((rc = decode(p, sub_span(r, &p->enc, 1, 1, 1), x->f8, &flag)))
            goto fail;
        if (!*flag)
            continue;
        for (i = 0; i < ARRAY_LEN(interp_codes); i++)
            if (strcmp(interp_codes[i].code, flag) == 0)
                break;
        if (i == ARRAY_LEN(interp_codes)) {
            rc = eg_fail(p->e, EG_E_SCHEMA, "%s: unknown abnormal flag \"%s\" (HL7 table 0078)",
                         x->f8, eg_detail_str(qb, sizeof qb, flag));
            goto fail;
        }
        if (i < 64 && (seen & (UINT64_C(1) << i)))
            continue;
        if (i < 64)
            seen |= UINT64_C(1) << i;
        if (!*out && !(*out = cJSON_CreateArray()))
            goto nomem;
        cc = cJSON_CreateObject();
        if (egjson_add_taken(*out, NULL, cc) || !(codings = cJSON_AddArrayToObject(cc, "coding")))
            goto nomem;
        c = cJSON_CreateObject();
        if (egjson_add_taken(codings, NULL, c) || add_str(c, "system", INTERP_SYSTEM) ||
            add_str(c, "code", interp_codes[i].code) ||
            add_str(c, "display", interp_codes[i].display))
            goto nomem;
    }
    return EG_OK;
nomem:
    rc = eg_fail(p->e, EG_E_NOMEM, "%s: out of memory", x->f8);
fail:
    cJSON_Delete(*out);
    *out = NULL;
    return rc;
}

/* Adds child under key unless bad; child is taken (deleted if not added).
 * Returns the new bad. */
static int give(cJSON *parent, const char *key, cJSON *child, int bad)
{
    if (bad) {
        cJSON_Delete(child);
        return 1;
    }
    return egjson_add_taken(parent, key, child) != 0;
}

/* The Observation (SPEC §6 key order, as the device path; no subject).
 * Takes category, code, value and interp (interp may be NULL), also on
 * failure. Returns NULL on OOM. */
static cJSON *build_obs(struct hp *p, size_t index, const char *status, cJSON *category,
                        cJSON *code, const char *effective, const char *vkey, cJSON *value,
                        cJSON *interp)
{
    char urn[128], ident[64 + EG_HOSP_MSGID_MAX + 64];
    cJSON *obs = cJSON_CreateObject(), *ids, *id, *meta;
    int bad;

    snprintf(urn, sizeof urn, HOSP_URN "%s", p->ctx->hospital_id);
    snprintf(ident, sizeof ident, "%s/%s/%zu", p->ctx->hospital_id, p->msg_id, index);
    bad = !obs || add_str(obs, "resourceType", "Observation") ||
          !(meta = cJSON_AddObjectToObject(obs, "meta")) || add_str(meta, "source", urn) ||
          !(ids = cJSON_AddArrayToObject(obs, "identifier")) ||
          egjson_add_taken(ids, NULL, id = cJSON_CreateObject()) || add_str(id, "system", urn) ||
          add_str(id, "value", ident) || add_str(obs, "status", status);
    /* from here on each piece is handed over, also when already failed */
    bad = give(obs, "category", category, bad);
    bad = give(obs, "code", code, bad);
    bad = bad || add_str(obs, "effectiveDateTime", effective);
    bad = give(obs, vkey, value, bad);
    if (interp)
        bad = give(obs, "interpretation", interp, bad);
    if (!bad)
        return obs;
    cJSON_Delete(obs);
    return NULL;
}

/* Looks for a SPEC §4 LOINC code in OBX-3 (components 1-3, then 4-6). */
static void find_s4(struct obx *x)
{
    x->loinc = NULL;
    if (*x->code.code && strcmp(map_system(x->code.sys), EG_LOINC_SYSTEM) == 0 &&
        eg_reading_by_loinc(x->code.code, &x->m) == 0)
        x->loinc = x->code.code;
    else if (*x->code.code2 && strcmp(map_system(x->code.sys2), EG_LOINC_SYSTEM) == 0 &&
             eg_reading_by_loinc(x->code.code2, &x->m) == 0)
        x->loinc = x->code.code2;
}

static eg_err read_obx(struct hp *p, struct span seg, int index, const struct pid_state *ps,
                       const struct obr_state *os, struct eg_hobs *o)
{
    char qb[QB], *vt, *st;
    struct span f2, f3, f5, f11;
    struct obx x;
    cJSON *category = NULL, *code = NULL, *value = NULL, *interp = NULL;
    const char *vkey = "valueQuantity", *status;
    int empty, absent;
    size_t i;
    eg_err rc;

    memset(&x, 0, sizeof x);
    x.index = index;
    snprintf(x.lab, sizeof x.lab, "OBX[%d]", index);
#define FLD(buf, n) snprintf(buf, sizeof buf, "%s-%d", x.lab, n)
    FLD(x.f2, 2);
    FLD(x.f3, 3);
    FLD(x.f5, 5);
    FLD(x.f6, 6);
    FLD(x.f8, 8);
    FLD(x.f11, 11);
    FLD(x.f14, 14);
#undef FLD
    if (!ps->have)
        return eg_fail(p->e, EG_E_SCHEMA, "%s: no PID segment before it", x.lab);

    /* OBX-11 status first: a cancelled result (X) may come without a value,
     * and then without a value type (HL7 v2.5.1 7.4.2.2, 7.4.2.11) */
    seg_field(seg, &p->enc, 0, 11, &f11);
    if ((rc = decode_comp(p, f11, 1, x.f11, &st)))
        return rc;
    status = map_status(st);
    seg_field(seg, &p->enc, 0, 5, &f5);
    absent = f5.n == 0 && strcmp(status, "cancelled") == 0;

    /* OBX-2 value type */
    seg_field(seg, &p->enc, 0, 2, &f2);
    if ((rc = decode_comp(p, f2, 1, x.f2, &vt)))
        return rc;
    if (!*vt && !absent)
        return eg_fail(p->e, EG_E_SCHEMA, "%s: required (value type)", x.f2);
    for (i = 0; *vt && i < ARRAY_LEN(vtype_names); i++)
        if (strcmp(vt, vtype_names[i]) == 0)
            break;
    if (*vt && i == ARRAY_LEN(vtype_names))
        return eg_fail(p->e, EG_E_UNSUPPORTED,
                       "%s: value type \"%s\" is not supported (NM, SN, ST, TX, FT, CE, CWE)", x.f2,
                       eg_detail_str(qb, sizeof qb, vt));
    x.vt = (enum vtype)i;

    /* OBX-3 observation identifier */
    seg_field(seg, &p->enc, 0, 3, &f3);
    if ((rc = read_cwe(p, f3, x.f3, &x.code)))
        return rc;
    if (!*x.code.code)
        return eg_fail(p->e, EG_E_SCHEMA, "%s: required (observation code)", x.f3);
    if (!*x.code.sys)
        return eg_fail(p->e, EG_E_SCHEMA, "%s: coding system (component 3) required for \"%s\"",
                       x.f3, eg_detail_str(qb, sizeof qb, x.code.code));
    find_s4(&x);

    /* OBX-5 observation value: required unless the result was cancelled */
    if (f5.n == 0 && !absent)
        return eg_fail(p->e, EG_E_SCHEMA, "%s: required (observation value)", x.f5);

    if (absent) {
        /* status cancelled, no value: dataAbsentReason not-performed */
        if ((rc = read_effective(p, seg, os, &x)) ||
            (rc = read_interpretation(p, seg, &x, &interp)))
            return rc;
        if (x.loinc) {
            category = eg_fhir_category(x.m.spec);
            code = x.m.rule ? eg_fhir_concept(x.m.rule->codes, x.m.rule->ncodes)
                            : eg_fhir_concept(x.m.spec->panel, x.m.spec->npanel);
            snprintf(o->category, sizeof o->category, "%s", x.m.spec->category);
        } else {
            category = eg_fhir_category(&lab_category);
            code = concept_json(&x.code, &empty);
            snprintf(o->category, sizeof o->category, "%s", lab_category.category);
        }
        vkey = "dataAbsentReason";
        value = cJSON_Parse("{\"coding\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/"
                            "data-absent-reason\",\"code\":\"not-performed\",\"display\":\"Not "
                            "Performed\"}]}");
    } else if (x.loinc) {
        struct eg_value val;
        const char *cmp;

        if ((rc = value_s4(p, seg, f5, &x, &val, &cmp)))
            return rc;
        if ((rc = read_effective(p, seg, os, &x)) ||
            (rc = read_interpretation(p, seg, &x, &interp)))
            return rc;
        category = eg_fhir_category(x.m.spec);
        code = eg_fhir_concept(val.rule->codes, val.rule->ncodes);
        value = eg_fhir_quantity(&val);
        if (value && cmp && insert_comparator(value, cmp)) {
            cJSON_Delete(value);
            value = NULL;
        }
        snprintf(o->category, sizeof o->category, "%s", x.m.spec->category);
    } else {
        if ((rc = value_other(p, seg, f5, &x, &vkey, &value)))
            return rc;
        if ((rc = read_effective(p, seg, os, &x)) ||
            (rc = read_interpretation(p, seg, &x, &interp))) {
            cJSON_Delete(value);
            return rc;
        }
        category = eg_fhir_category(&lab_category);
        code = concept_json(&x.code, &empty);
        snprintf(o->category, sizeof o->category, "%s", lab_category.category);
    }
    if (!category || !code || !value) {
        cJSON_Delete(category);
        cJSON_Delete(code);
        cJSON_Delete(value);
        cJSON_Delete(interp);
        return eg_fail(p->e, EG_E_NOMEM, "%s: out of memory", x.lab);
    }
    o->resource =
        build_obs(p, (size_t)index - 1, status, category, code, x.effective, vkey, value, interp);
    if (!o->resource)
        return eg_fail(p->e, EG_E_NOMEM, "%s: out of memory building the Observation", x.lab);
    o->effective_ms = x.effective_ms;
    o->patient_id[0] = '\0';
    memcpy(o->idents, ps->idents, sizeof o->idents);
    o->nidents = ps->nidents;
    return EG_OK;
}

/* Segment ids are three upper-case letters or digits, the first a letter. */
static int seg_id_ok(struct span seg, const struct enc *enc)
{
    return seg.n >= 3 && seg.p[0] >= 'A' && seg.p[0] <= 'Z' &&
           ((seg.p[1] >= 'A' && seg.p[1] <= 'Z') || (seg.p[1] >= '0' && seg.p[1] <= '9')) &&
           ((seg.p[2] >= 'A' && seg.p[2] <= 'Z') || (seg.p[2] >= '0' && seg.p[2] <= '9')) &&
           (seg.n == 3 || seg.p[3] == enc->fs);
}

static eg_err parse_msg(struct hp *p, struct eg_hmsg *h)
{
    char why[160], qb[QB], *mid, *t1, *t2;
    struct span msh, f, name, seg;
    struct pid_state ps;
    struct obr_state os;
    size_t pos = 0, i, k, cap = 0;
    int nseg = 1, npid = 0, nobr = 0, nobx = 0, cs_ok;
    eg_err rc;

    if (read_enc(p->buf, p->len, &p->enc, why, sizeof why) != 0)
        return eg_fail(p->e, EG_E_PARSE, "%s", why);
    next_seg(p->buf, p->len, &pos, &msh);

    cs_ok = read_charset(msh, &p->enc, &p->cs, &name) == 0;

    /* MSH-10 first, so that the receipt and the ACK can name it (in an
     * unsupported character set only when it is plain ASCII) */
    seg_field(msh, &p->enc, 1, 10, &f);
    rc = decode(p, f, "MSH-10", &mid);
    if (rc == EG_OK && *mid && strlen(mid) < sizeof h->msg_id) {
        int ascii = 1;

        for (i = 0; mid[i]; i++)
            ascii &= (unsigned char)mid[i] >= 0x20 && (unsigned char)mid[i] < 0x7F;
        if (cs_ok || ascii) {
            memcpy(h->msg_id, mid, strlen(mid) + 1);
            memcpy(p->msg_id, mid, strlen(mid) + 1);
            h->have_msg_id = 1;
        }
    }
    if (!cs_ok)
        return eg_fail(
            p->e, EG_E_UNSUPPORTED,
            "MSH-18: character set \"%s\" is not supported (8859/1, ASCII, UNICODE UTF-8)",
            raw_quote(name.p, name.n, qb, sizeof qb));
    if (rc != EG_OK)
        return rc;

    /* the whole payload in its character set */
    for (i = 0; i < p->len; i += k) {
        if (p->buf[i] == 0)
            return eg_fail(p->e, EG_E_PARSE, "payload: NUL byte at byte %zu", i);
        k = p->cs == CS_LATIN1 ? 1 : utf8_seq(p->buf + i, p->len - i);
        if (k == 0)
            return eg_fail(p->e, EG_E_PARSE,
                           "payload: invalid UTF-8 at byte %zu (MSH-18 does not say 8859/1)", i);
    }

    if (npieces(msh, p->enc.fs) < 12) /* MSH-1 to MSH-12 are required */
        return eg_fail(p->e, EG_E_PARSE, "MSH: truncated: ends at MSH-%d (MSH-12 is required)",
                       npieces(msh, p->enc.fs));

    seg_field(msh, &p->enc, 1, 9, &f);
    if ((rc = decode_comp(p, f, 1, "MSH-9", &t1)) || (rc = decode_comp(p, f, 2, "MSH-9", &t2)))
        return rc;
    if (!*t1)
        return eg_fail(p->e, EG_E_SCHEMA, "MSH-9: required (message type)");
    if (strcmp(t1, "ORU") != 0 || strcmp(t2, "R01") != 0) {
        char b1[QB], b2[QB];

        return eg_fail(p->e, EG_E_UNSUPPORTED, "MSH-9: %s%c%s is not ORU%cR01",
                       eg_detail_str(b1, sizeof b1, t1), p->enc.cs,
                       eg_detail_str(b2, sizeof b2, t2), p->enc.cs);
    }
    if (!*mid)
        return eg_fail(p->e, EG_E_SCHEMA, "MSH-10: required (message control id)");
    if (!h->have_msg_id)
        return eg_fail(p->e, EG_E_SCHEMA, "MSH-10: longer than %d bytes", EG_HOSP_MSGID_MAX - 1);

    memset(&ps, 0, sizeof ps);
    memset(&os, 0, sizeof os);
    while (next_seg(p->buf, p->len, &pos, &seg)) {
        nseg++;
        if (!seg_id_ok(seg, &p->enc))
            return eg_fail(p->e, EG_E_PARSE,
                           "segment %d (%zu bytes): does not start with a segment id and a field "
                           "separator (truncated, or a line break inside a field?)",
                           nseg, seg.n);
        if (memcmp(seg.p, "MSH", 3) == 0)
            return eg_fail(p->e, EG_E_UNSUPPORTED,
                           "segment %d: a second MSH (batches are not supported)", nseg);
        if (memcmp(seg.p, "PID", 3) == 0) {
            if ((rc = read_pid(p, seg, ++npid, &ps)))
                return rc;
            memset(&os, 0, sizeof os); /* a new PATIENT_RESULT group */
        } else if (memcmp(seg.p, "OBR", 3) == 0) {
            os.have = 1;
            os.index = ++nobr;
            seg_field(seg, &p->enc, 0, 7, &os.obr7);
        } else if (memcmp(seg.p, "OBX", 3) == 0) {
            if (++nobx > EG_HOSP_MAX_OBS)
                return eg_fail(p->e, EG_E_SCHEMA, "OBX[%d]: more than %d observations in a message",
                               nobx, EG_HOSP_MAX_OBS);
            if (h->n == cap) {
                size_t ncap = cap ? cap * 2 : 8;
                struct eg_hobs *no;

                if (ncap > EG_HOSP_MAX_OBS)
                    ncap = EG_HOSP_MAX_OBS;
                no = realloc(h->obs, ncap * sizeof *no);
                if (!no)
                    return eg_fail(p->e, EG_E_NOMEM, "OBX[%d]: out of memory", nobx);
                h->obs = no;
                cap = ncap;
            }
            memset(&h->obs[h->n], 0, sizeof h->obs[h->n]);
            if ((rc = read_obx(p, seg, nobx, &ps, &os, &h->obs[h->n])))
                return rc;
            h->n++;
        }
        /* other segments (SFT, PD1, NTE, PV1, ORC, SPM, Z.., ...) are not used */
    }
    if (nobx == 0)
        return eg_fail(p->e, EG_E_SCHEMA, "message: no OBX segment");
    return EG_OK;
}

eg_err eg_hl7_parse(const uint8_t *buf, size_t len, const struct eg_hosp_ctx *ctx,
                    struct eg_hmsg *h, struct eg_error *e)
{
    struct hp p;
    eg_err rc;
    size_t i;

    if (!h)
        return eg_fail(e, EG_E_INTERNAL, "eg_hl7_parse: no output");
    memset(h, 0, sizeof *h);
    if ((!buf && len) || !ctx || !ctx->hospital_id || !*ctx->hospital_id ||
        strlen(ctx->hospital_id) > HOSP_ID_MAX)
        return eg_fail(e, EG_E_INTERNAL, "eg_hl7_parse: bad arguments");
    memset(&p, 0, sizeof p);
    p.buf = buf;
    p.len = len;
    p.ctx = ctx;
    p.e = e;
    p.enc = default_enc;
    rc = parse_msg(&p, h);
    hp_free(&p);
    if (rc != EG_OK) {
        for (i = 0; i < h->n; i++)
            cJSON_Delete(h->obs[i].resource);
        free(h->obs);
        h->obs = NULL;
        h->n = 0;
    }
    return rc;
}

/* ------------------------------------------------------------------ ACK */

/* A growing string; on OOM it stays failed. */
struct sb {
    char *p;
    size_t n, cap;
    int oom;
};

static void sb_put(struct sb *b, const void *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        char *np;

        while (b->n + n + 1 > ncap)
            ncap *= 2;
        np = realloc(b->p, ncap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_c(struct sb *b, char c)
{
    sb_put(b, &c, 1);
}

static void sb_s(struct sb *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* \Xhh\ for byte c. */
static void sb_hex(struct sb *b, uint8_t esc, uint8_t c)
{
    char t[8];

    snprintf(t, sizeof t, "%cX%02X%c", esc, c, esc);
    sb_s(b, t);
}

/* Copies a raw field of the incoming message (same delimiters, so its
 * escape sequences stay valid): printable ASCII and valid UTF-8 as they
 * are, 8859/1 bytes transcoded to UTF-8, anything else as \Xhh\. */
static void sb_copy_raw(struct sb *b, struct span f, const struct enc *enc, enum charset cs)
{
    size_t i, k;

    for (i = 0; i < f.n; i += k) {
        uint8_t c = f.p[i];

        k = 1;
        if (c >= 0x20 && c < 0x7F) {
            sb_c(b, (char)c);
        } else if (c >= 0x80 && cs == CS_LATIN1) {
            sb_c(b, (char)(0xC0 | (c >> 6)));
            sb_c(b, (char)(0x80 | (c & 0x3F)));
        } else if (c >= 0x80 && (k = utf8_seq(f.p + i, f.n - i)) > 0) {
            sb_put(b, f.p + i, k);
        } else {
            k = 1;
            sb_hex(b, enc->esc, c);
        }
    }
}

/* Writes our own text escaped for the ACK's delimiters (HL7 v2.5.1 escapes):
 * each delimiter as \F\ \S\ \R\ \E\ \T\ (\P\), control characters and
 * invalid UTF-8 bytes as \Xhh\. */
static void sb_escaped(struct sb *b, const char *text, const struct enc *enc)
{
    const uint8_t *s = (const uint8_t *)text;
    size_t n = strlen(text), i, k;

    for (i = 0; i < n; i += k) {
        uint8_t c = s[i];
        char name = 0;

        k = 1;
        if (c == enc->fs)
            name = 'F';
        else if (c == enc->cs)
            name = 'S';
        else if (c == enc->rs)
            name = 'R';
        else if (c == enc->esc)
            name = 'E';
        else if (c == enc->ss)
            name = 'T';
        else if (enc->nchars == 5 && c == enc->tc)
            name = 'P';
        if (name) {
            sb_c(b, (char)enc->esc);
            sb_c(b, name);
            sb_c(b, (char)enc->esc);
        } else if (c >= 0x20 && c < 0x7F) {
            sb_c(b, (char)c);
        } else if (c >= 0x80 && (k = utf8_seq(s + i, n - i)) > 0) {
            sb_put(b, s + i, k);
        } else {
            k = 1;
            sb_hex(b, enc->esc, c);
        }
    }
}

char *eg_hl7_ack(const uint8_t *buf, size_t len, const char *ack_code, const char *text,
                 int64_t now_ms, const char *control_id)
{
    static const char *const codes[] = {"AA", "AE", "AR", "CA", "CE", "CR"};
    struct span msh = {NULL, 0}, f3 = {NULL, 0}, f4 = {NULL, 0}, f5 = {NULL, 0}, f6 = {NULL, 0},
                f10 = {NULL, 0}, f11 = {NULL, 0}, f12 = {NULL, 0}, name;
    struct enc enc = default_enc;
    enum charset cs = CS_UTF8;
    char why[160], ts[EG_TIME_STRLEN], dtm[32];
    const char *code = "AE";
    struct sb b = {NULL, 0, 0, 0};
    size_t pos = 0, i;

    if (read_enc(buf, len, &enc, why, sizeof why) == 0 && next_seg(buf, len, &pos, &msh)) {
        if (read_charset(msh, &enc, &cs, &name) != 0)
            cs = CS_UTF8;
        seg_field(msh, &enc, 1, 3, &f3);
        seg_field(msh, &enc, 1, 4, &f4);
        seg_field(msh, &enc, 1, 5, &f5);
        seg_field(msh, &enc, 1, 6, &f6);
        seg_field(msh, &enc, 1, 10, &f10);
        seg_field(msh, &enc, 1, 11, &f11);
        seg_field(msh, &enc, 1, 12, &f12);
    } else {
        enc = default_enc;
    }
    for (i = 0; ack_code && i < ARRAY_LEN(codes); i++)
        if (strcmp(ack_code, codes[i]) == 0)
            code = codes[i];

    /* MSH-7: YYYYMMDDHHMMSS.SSS+0000 from "YYYY-MM-DDTHH:MM:SS.mmmZ" */
    eg_time_format(now_ms, ts);
    snprintf(dtm, sizeof dtm, "%.4s%.2s%.2s%.2s%.2s%.2s.%.3s+0000", ts, ts + 5, ts + 8, ts + 11,
             ts + 14, ts + 17, ts + 20);

    sb_s(&b, "MSH");
    sb_c(&b, (char)enc.fs);
    sb_c(&b, (char)enc.cs);
    sb_c(&b, (char)enc.rs);
    sb_c(&b, (char)enc.esc);
    sb_c(&b, (char)enc.ss);
    if (enc.nchars == 5)
        sb_c(&b, (char)enc.tc);
    sb_c(&b, (char)enc.fs);
    sb_copy_raw(&b, f5, &enc, cs); /* MSH-3 = their MSH-5, ... */
    sb_c(&b, (char)enc.fs);
    sb_copy_raw(&b, f6, &enc, cs);
    sb_c(&b, (char)enc.fs);
    sb_copy_raw(&b, f3, &enc, cs);
    sb_c(&b, (char)enc.fs);
    sb_copy_raw(&b, f4, &enc, cs);
    sb_c(&b, (char)enc.fs);
    sb_s(&b, dtm); /* MSH-7 */
    sb_c(&b, (char)enc.fs);
    sb_c(&b, (char)enc.fs); /* MSH-8 empty */
    sb_s(&b, "ACK");
    sb_c(&b, (char)enc.cs);
    sb_s(&b, "R01");
    sb_c(&b, (char)enc.cs);
    sb_s(&b, "ACK");
    sb_c(&b, (char)enc.fs);
    sb_escaped(&b, control_id ? control_id : "", &enc); /* MSH-10 */
    sb_c(&b, (char)enc.fs);
    if (f11.n)
        sb_copy_raw(&b, f11, &enc, cs);
    else
        sb_s(&b, "P");
    sb_c(&b, (char)enc.fs);
    if (f12.n)
        sb_copy_raw(&b, f12, &enc, cs);
    else
        sb_s(&b, "2.5.1");
    sb_c(&b, '\r');

    sb_s(&b, "MSA");
    sb_c(&b, (char)enc.fs);
    sb_s(&b, code);
    sb_c(&b, (char)enc.fs);
    sb_copy_raw(&b, f10, &enc, cs); /* MSA-2 = their MSH-10 */
    if (text) {
        sb_c(&b, (char)enc.fs);
        sb_escaped(&b, text, &enc);
    }
    sb_c(&b, '\r');
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
