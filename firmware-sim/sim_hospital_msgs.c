/*
 * sim_hospital_msgs.c — lab and vital-sign results of a simulated hospital
 * as FHIR R4 JSON Bundles and HL7 v2.5 ORU^R01 messages (SPEC §5; see
 * sim_hospital_msgs.h).
 *
 * What the gateway requires and this file therefore always writes:
 *  - FHIR (gateway/eg_fhir_in.c): a Bundle without "id" (a Bundle id would
 *    become the message id instead of identifier.value), entries that are
 *    only Observations, each with status, code.coding[] with system and
 *    code, subject.identifier.value (its system is not used by the gateway;
 *    ours deliberately avoids the reserved urn:ehrgate: prefix),
 *    effectiveDateTime in UTC with Z, and valueQuantity, or for blood
 *    pressure 85354-9 exactly one systolic and one diastolic component;
 *    only R4 Observation elements and datatype members.
 *  - HL7 (gateway/eg_hl7.c, HL7 v2.5.1 chapters 2 and 7): MSH-1 to MSH-12,
 *    MSH-9 ORU^R01, MSH-10 = the message id, a PID before the OBX, OBX-3
 *    with a coding system, NM values as plain decimals, OBX-14 with an
 *    explicit +0000 offset (so the hospital's configured UTC offset does not
 *    shift it), OBX-8 flags from HL7 table 0078. A SPEC §4 panel code
 *    (85354-9) is refused in an OBX, so blood pressure is two OBX.
 *
 * Values are drawn from normal distributions around adult norms and
 * clamped well inside SPEC §4's plausible ranges (for §4 codes) and inside
 * physiology (for the others), then rounded to the precision a lab reports.
 */
#include "sim_hospital_msgs.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_json.h"
#include "eg_time.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define LOINC_SYSTEM "http://loinc.org"
#define UCUM_SYSTEM "http://unitsofmeasure.org"
#define OBSCAT_SYSTEM "http://terminology.hl7.org/CodeSystem/observation-category"
#define INTERP_SYSTEM "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
#define SIM_URN "urn:ehrgate-sim:hospital:" /* not urn:ehrgate: (reserved by the gateway) */
#define MAX_RESULTS 4                       /* results (HL7: OBX) per message */

/* ------------------------------------------------------------ the tests */

enum kind {
    K_GLUCOSE = 0,
    K_HEMOGLOBIN,
    K_POTASSIUM,
    K_CREATININE,
    K_HEART_RATE,
    K_BODY_TEMP,
    K_SPO2,
    K_BLOOD_PRESSURE,
    K__COUNT
};

/* One kind of result: its LOINC code, unit and how values are drawn. */
struct test_def {
    const char *loinc, *display; /* LOINC code and long common name */
    const char *text;            /* CodeableConcept.text */
    const char *ucum;            /* UCUM code of the unit */
    const char *unit;            /* FHIR Quantity.unit (human-readable) */
    int lab;                     /* 1 laboratory, 0 vital-signs */
    double mean, sd, lo, hi;     /* drawn N(mean, sd), clamped to [lo, hi] */
    int decimals;                /* reported precision */
    double ref_lo, ref_hi;       /* reference range (labs), else 0, 0 */
};

/* Adult reference intervals as commonly reported; vital signs within SPEC
 * §4 (heart rate 20-300, body temperature 25-45 Cel, SpO2 50-100, systolic
 * 40-300, diastolic 20-200; glucose 10-1000 mg/dL). */
static const struct test_def tests[K__COUNT] = {
    [K_GLUCOSE] = {"2339-0", "Glucose [Mass/volume] in Blood", "Glucose", "mg/dL", "mg/dL", 1, 108,
                   28, 45, 450, 0, 70, 140},
    [K_HEMOGLOBIN] = {"718-7", "Hemoglobin [Mass/volume] in Blood", "Hemoglobin", "g/dL", "g/dL", 1,
                      13.8, 1.7, 6.5, 19.5, 1, 12.0, 17.5},
    [K_POTASSIUM] = {"2823-3", "Potassium [Moles/volume] in Serum or Plasma", "Potassium", "mmol/L",
                     "mmol/L", 1, 4.2, 0.45, 2.6, 6.8, 1, 3.5, 5.1},
    [K_CREATININE] = {"2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "Creatinine",
                      "mg/dL", "mg/dL", 1, 0.95, 0.22, 0.35, 8.0, 2, 0.60, 1.20},
    [K_HEART_RATE] = {"8867-4", "Heart rate", "Heart rate", "/min", "beats/minute", 0, 78, 13, 38,
                      170, 0, 0, 0},
    [K_BODY_TEMP] = {"8310-5", "Body temperature", "Body temperature", "Cel", "C", 0, 36.9, 0.45,
                     35.0, 40.8, 1, 0, 0},
    [K_SPO2] = {"59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry",
                "Oxygen saturation", "%", "%", 0, 97, 1.6, 84, 100, 0, 0, 0},
    [K_BLOOD_PRESSURE] = {"85354-9", "Blood pressure panel with all children optional",
                          "Blood pressure", "mm[Hg]", "mmHg", 0, 124, 16, 85, 210, 0, 0, 0},
};

/* SpO2's other code (the FHIR R4 oxygen-saturation profile wants 2708-6). */
static const char spo2_alt_code[] = "2708-6";
static const char spo2_alt_display[] = "Oxygen saturation in Arterial blood";

/* Blood pressure components (the systolic value is drawn by the panel's row). */
static const char sys_code[] = "8480-6", sys_display[] = "Systolic blood pressure";
static const char dia_code[] = "8462-4", dia_display[] = "Diastolic blood pressure";

/* The order panels of an ORU (OBR-4). */
static const char lab_panel_code[] = "11502-2", lab_panel_text[] = "Laboratory report";
static const char vs_panel_code[] = "85353-1",
                  vs_panel_text[] = "Vital signs, weight, height, head circumference, oxygen "
                                    "saturation and BMI panel";

/* One drawn result. */
struct result {
    enum kind k;
    double v;     /* the value (blood pressure: systolic) */
    double v2;    /* blood pressure: diastolic */
    int alt_code; /* SpO2 in HL7: 2708-6 instead of 59408-5 */
};

static double round_to(double v, int decimals)
{
    double scale = pow(10.0, decimals);

    return round(v * scale) / scale;
}

static double clamp(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* N(mean, sd) clamped to [lo, hi], rounded to decimals. */
static double draw(struct sim_rand *r, double mean, double sd, double lo, double hi, int decimals)
{
    return round_to(clamp(mean + sd * sim_rand_normal(r), lo, hi), decimals);
}

static void draw_value(struct sim_rand *r, struct result *res)
{
    const struct test_def *t = &tests[res->k];

    res->v2 = 0;
    res->alt_code = 0;
    switch (res->k) {
    case K_CREATININE:
        /* about one patient in ten with impaired renal function */
        if (sim_rand_below(r, 10) == 0)
            res->v = draw(r, 2.2, 0.8, 1.25, t->hi, t->decimals);
        else
            res->v = draw(r, t->mean, t->sd, t->lo, t->hi, t->decimals);
        break;
    case K_BODY_TEMP:
        /* about one in eight febrile */
        if (sim_rand_below(r, 8) == 0)
            res->v = draw(r, 38.6, 0.6, 37.8, t->hi, t->decimals);
        else
            res->v = draw(r, t->mean, t->sd, t->lo, 37.7, t->decimals);
        break;
    case K_SPO2:
        res->v = draw(r, t->mean, t->sd, t->lo, t->hi, t->decimals);
        res->alt_code = (int)sim_rand_below(r, 2);
        break;
    case K_BLOOD_PRESSURE: {
        double hi;

        res->v = draw(r, t->mean, t->sd, t->lo, t->hi, 0);
        hi = res->v - 20 < 125 ? res->v - 20 : 125; /* pulse pressure >= 20 */
        res->v2 = draw(r, 0.62 * res->v + 4, 6, 45, hi, 0);
        break;
    }
    default:
        res->v = draw(r, t->mean, t->sd, t->lo, t->hi, t->decimals);
        break;
    }
}

/* Draws 1..MAX_RESULTS results: a lab panel, a vital-signs set, or now and
 * then both, in random order within each group, labs first. bp_cost is what
 * blood pressure costs of the budget (HL7: 2 OBX; FHIR: 1 Observation).
 * Returns the number of results (>= 1). */
static size_t draw_results(struct sim_rand *r, int bp_cost, struct result out[MAX_RESULTS])
{
    enum kind pool[K__COUNT];
    size_t npool = 0, n = 0, i, j;
    int budget = 1 + (int)sim_rand_below(r, MAX_RESULTS);
    uint64_t group = sim_rand_below(r, 20); /* 0-8 labs, 9-17 vitals, 18-19 both */

    for (i = 0; i < K__COUNT; i++) {
        int lab = tests[i].lab;

        if ((group < 9 && lab) || (group >= 9 && group < 18 && !lab) || group >= 18)
            pool[npool++] = (enum kind)i;
    }
    for (i = npool; i > 1; i--) { /* Fisher-Yates */
        enum kind t;

        j = (size_t)sim_rand_below(r, i);
        t = pool[i - 1];
        pool[i - 1] = pool[j];
        pool[j] = t;
    }
    /* labs first (one OBR each group in HL7), stable within a group */
    for (int pass = 1; pass >= 0; pass--) {
        for (i = 0; i < npool && budget > 0; i++) {
            int cost = pool[i] == K_BLOOD_PRESSURE ? bp_cost : 1;

            if (tests[pool[i]].lab != pass || cost > budget)
                continue;
            out[n++].k = pool[i];
            budget -= cost;
        }
    }
    for (i = 0; i < n; i++)
        draw_value(r, &out[i]);
    return n;
}

/* "L", "H" or "N" against the reference range (HL7 table 0078). */
static const char *flag_of(const struct test_def *t, double v)
{
    return v < t->ref_lo ? "L" : v > t->ref_hi ? "H" : "N";
}

static const char *flag_display(const char *flag)
{
    return flag[0] == 'L' ? "Low" : flag[0] == 'H' ? "High" : "Normal";
}

/* ----------------------------------------------------------------- FHIR */

static int put_str(cJSON *o, const char *key, const char *v)
{
    return cJSON_AddStringToObject(o, key, v) ? 0 : -1;
}

static cJSON *coding(const char *system, const char *code, const char *display)
{
    cJSON *c = cJSON_CreateObject();

    if (!c || put_str(c, "system", system) || put_str(c, "code", code) ||
        (display && put_str(c, "display", display))) {
        cJSON_Delete(c);
        return NULL;
    }
    return c;
}

/* {"coding":[c1(, c2)],"text":text} (text may be NULL). Takes c1 and, when
 * two is set, c2, also on failure; a NULL coding (OOM) fails it. */
static cJSON *concept(cJSON *c1, cJSON *c2, int two, const char *text)
{
    cJSON *cc = cJSON_CreateObject(), *arr = cc ? cJSON_AddArrayToObject(cc, "coding") : NULL;
    int bad;

    bad = egjson_add_taken(arr, NULL, c1); /* frees c1 if arr is NULL */
    if (two)
        bad = egjson_add_taken(arr, NULL, c2) || bad;
    if (bad || (text && put_str(cc, "text", text))) {
        cJSON_Delete(cc);
        return NULL;
    }
    return cc;
}

static cJSON *quantity(double v, const char *unit, const char *ucum)
{
    cJSON *q = cJSON_CreateObject();

    if (!q || !cJSON_AddNumberToObject(q, "value", v) || put_str(q, "unit", unit) ||
        put_str(q, "system", UCUM_SYSTEM) || put_str(q, "code", ucum)) {
        cJSON_Delete(q);
        return NULL;
    }
    return q;
}

/* category: [{"coding":[observation-category code], "text"}]. */
static cJSON *category(int lab)
{
    const char *code = lab ? "laboratory" : "vital-signs";
    const char *display = lab ? "Laboratory" : "Vital Signs";
    cJSON *arr = cJSON_CreateArray();

    if (!arr || egjson_add_taken(arr, NULL,
                                 concept(coding(OBSCAT_SYSTEM, code, display), NULL, 0, display))) {
        cJSON_Delete(arr);
        return NULL;
    }
    return arr;
}

/* A component {"code", "valueQuantity"} of blood pressure. */
static cJSON *bp_component(const char *code, const char *display, double v)
{
    const struct test_def *t = &tests[K_BLOOD_PRESSURE];
    cJSON *c = cJSON_CreateObject();

    if (!c ||
        egjson_add_taken(c, "code",
                         concept(coding(LOINC_SYSTEM, code, display), NULL, 0, display)) ||
        egjson_add_taken(c, "valueQuantity", quantity(v, t->unit, t->ucum))) {
        cJSON_Delete(c);
        return NULL;
    }
    return c;
}

/* One Observation (R4 element order). subject is a prebuilt Reference that
 * is copied. */
static cJSON *observation(const struct result *res, const cJSON *subject, const char *when)
{
    const struct test_def *t = &tests[res->k];
    cJSON *o = cJSON_CreateObject(), *code, *arr;
    int bad = !o;

    bad = bad || put_str(o, "resourceType", "Observation") || put_str(o, "status", "final") ||
          egjson_add_taken(o, "category", category(t->lab));
    if (!bad) {
        if (res->k == K_SPO2) /* 2708-6 first, as the R4 oxygen-saturation profile wants */
        code = concept(coding(LOINC_SYSTEM, spo2_alt_code, spo2_alt_display),
                       coding(LOINC_SYSTEM, t->loinc, t->display), 1, t->text);
        else code = concept(coding(LOINC_SYSTEM, t->loinc, t->display), NULL, 0, t->text);
        bad = egjson_add_taken(o, "code", code) ||
              egjson_add_taken(o, "subject", cJSON_Duplicate(subject, 1)) ||
              put_str(o, "effectiveDateTime", when);
    }
    if (!bad && res->k != K_BLOOD_PRESSURE)
        bad = egjson_add_taken(o, "valueQuantity", quantity(res->v, t->unit, t->ucum));
    if (!bad && t->lab) {
        const char *flag = flag_of(t, res->v);
        cJSON *rr, *range;

        arr = cJSON_AddArrayToObject(o, "interpretation");
        bad = !arr || egjson_add_taken(
                          arr, NULL,
                          concept(coding(INTERP_SYSTEM, flag, flag_display(flag)), NULL, 0, NULL));
        rr = bad ? NULL : cJSON_AddArrayToObject(o, "referenceRange");
        range = rr ? cJSON_CreateObject() : NULL;
        bad = bad || egjson_add_taken(rr, NULL, range) ||
              egjson_add_taken(range, "low", quantity(t->ref_lo, t->unit, t->ucum)) ||
              egjson_add_taken(range, "high", quantity(t->ref_hi, t->unit, t->ucum));
    }
    if (!bad && res->k == K_BLOOD_PRESSURE) {
        arr = cJSON_AddArrayToObject(o, "component");
        bad = !arr || egjson_add_taken(arr, NULL, bp_component(sys_code, sys_display, res->v)) ||
              egjson_add_taken(arr, NULL, bp_component(dia_code, dia_display, res->v2));
    }
    if (bad) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* SIM_URN "{hospital_id}:{suffix}", malloc'ed, or NULL. */
static char *sim_urn(const char *hospital_id, const char *suffix)
{
    size_t n = sizeof SIM_URN + strlen(hospital_id) + 1 + strlen(suffix);
    char *s = malloc(n);

    if (s)
        snprintf(s, n, SIM_URN "%s:%s", hospital_id, suffix);
    return s;
}

char *sim_hosp_fhir_bundle(const char *hospital_id, const char *msg_id, const char *mrn,
                           int64_t effective_ms, struct sim_rand *r, size_t *len)
{
    struct result res[MAX_RESULTS];
    char when[EG_TIME_STRLEN], *mrn_sys = NULL, *msg_sys = NULL, *out = NULL;
    cJSON *bundle = NULL, *subject = NULL, *ident, *ids, *entries, *entry;
    size_t n, i, olen = 0;
    int bad;

    if (!hospital_id || !msg_id || !mrn || !r || !len)
        return NULL;
    n = draw_results(r, 1, res);
    eg_time_format(effective_ms, when);
    mrn_sys = sim_urn(hospital_id, "mrn");
    msg_sys = sim_urn(hospital_id, "message");
    subject = cJSON_CreateObject();
    bundle = cJSON_CreateObject();
    bad = !mrn_sys || !msg_sys || !subject || !bundle;

    /* subject: {"identifier":{"system","value":mrn}} (SPEC §5) */
    ident = bad ? NULL : cJSON_AddObjectToObject(subject, "identifier");
    bad = bad || !ident || put_str(ident, "system", mrn_sys) || put_str(ident, "value", mrn);

    /* no Bundle.id: the message id is identifier.value */
    bad = bad || put_str(bundle, "resourceType", "Bundle");
    ids = bad ? NULL : cJSON_AddObjectToObject(bundle, "identifier");
    bad = bad || !ids || put_str(ids, "system", msg_sys) || put_str(ids, "value", msg_id) ||
          put_str(bundle, "type", "collection") || put_str(bundle, "timestamp", when);
    entries = bad ? NULL : cJSON_AddArrayToObject(bundle, "entry");
    bad = bad || !entries;
    for (i = 0; i < n && !bad; i++) {
        entry = cJSON_CreateObject();
        bad = egjson_add_taken(entries, NULL, entry) ||
              egjson_add_taken(entry, "resource", observation(&res[i], subject, when));
    }
    if (!bad) {
        out = egjson_print(bundle, &olen);
        if (out && olen > SIM_HOSP_MAX_BYTES) {
            free(out);
            out = NULL;
        }
    }
    if (out)
        *len = olen;
    cJSON_Delete(bundle);
    cJSON_Delete(subject);
    free(mrn_sys);
    free(msg_sys);
    return out;
}

/* ------------------------------------------------------------------ HL7 */

/* A growing string with a hard cap; on OOM or overflow it stays failed. */
struct sb {
    char *p;
    size_t n, cap;
    int bad;
};

static void sb_put(struct sb *b, const char *s, size_t n)
{
    if (b->bad)
        return;
    if (b->n + n > SIM_HOSP_MAX_BYTES) {
        b->bad = 1;
        return;
    }
    if (b->n + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 1024;
        char *np;

        while (b->n + n + 1 > ncap)
            ncap *= 2;
        np = realloc(b->p, ncap);
        if (!np) {
            b->bad = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_s(struct sb *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* Text escaped for the |^~\& delimiters (HL7 v2.5.1 2.7.4 "Use of escape
 * sequences in text fields"): \F\ \S\ \R\ \E\ \T\, control bytes as \Xhh\
 * (a CR or LF would otherwise end the segment). */
static void sb_esc(struct sb *b, const char *s)
{
    char hex[8];

    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        switch (c) {
        case '|':
            sb_s(b, "\\F\\");
            break;
        case '^':
            sb_s(b, "\\S\\");
            break;
        case '~':
            sb_s(b, "\\R\\");
            break;
        case '\\':
            sb_s(b, "\\E\\");
            break;
        case '&':
            sb_s(b, "\\T\\");
            break;
        default:
            if (c < 0x20 || c == 0x7f) {
                snprintf(hex, sizeof hex, "\\X%02X\\", c);
                sb_s(b, hex);
            } else {
                sb_put(b, s, 1);
            }
        }
    }
}

/* An HL7 DTM in UTC: YYYYMMDDHHMMSS[.SSS]+0000 (milliseconds only when not
 * zero). */
static void hl7_dtm(int64_t ms, char out[32])
{
    char ts[EG_TIME_STRLEN];

    eg_time_format(ms, ts); /* YYYY-MM-DDTHH:MM:SS.mmmZ */
    if (memcmp(ts + 20, "000", 3) == 0)
        snprintf(out, 32, "%.4s%.2s%.2s%.2s%.2s%.2s+0000", ts, ts + 5, ts + 8, ts + 11, ts + 14,
                 ts + 17);
    else
        snprintf(out, 32, "%.4s%.2s%.2s%.2s%.2s%.2s.%.3s+0000", ts, ts + 5, ts + 8, ts + 11,
                 ts + 14, ts + 17, ts + 20);
}

static void sb_num(struct sb *b, double v, int decimals)
{
    char num[48];

    snprintf(num, sizeof num, "%.*f", decimals, v);
    sb_s(b, num);
}

/* OBX|i|NM|code^display^LN||value|ucum^ucum^UCUM|ref|flag|||F|||dtm */
static void sb_obx(struct sb *b, int set_id, const struct test_def *t, const char *code,
                   const char *display, double v, const char *dtm)
{
    char seq[16];

    snprintf(seq, sizeof seq, "%d", set_id);
    sb_s(b, "OBX|");
    sb_s(b, seq);
    sb_s(b, "|NM|");
    sb_esc(b, code);
    sb_s(b, "^");
    sb_esc(b, display);
    sb_s(b, "^LN||");
    sb_num(b, v, t->decimals);
    sb_s(b, "|");
    sb_esc(b, t->ucum);
    sb_s(b, "^");
    sb_esc(b, t->ucum);
    sb_s(b, "^UCUM|");
    if (t->lab) {
        sb_num(b, t->ref_lo, t->decimals);
        sb_s(b, "-");
        sb_num(b, t->ref_hi, t->decimals);
        sb_s(b, "|");
        sb_s(b, flag_of(t, v));
    } else {
        sb_s(b, "|");
    }
    sb_s(b, "|||F|||");
    sb_s(b, dtm);
    sb_s(b, "\r");
}

char *sim_hosp_hl7_oru(const char *hospital_id, const char *msg_id, const char *mrn,
                       int64_t effective_ms, struct sim_rand *r, size_t *len)
{
    struct result res[MAX_RESULTS];
    struct sb b = {NULL, 0, 0, 0};
    char dtm[32], seq[16];
    size_t n, i;
    int nobr = 0, set_id = 0, cur_lab = -1;

    if (!hospital_id || !msg_id || !mrn || !r || !len)
        return NULL;
    n = draw_results(r, 2, res);
    hl7_dtm(effective_ms, dtm);

    /* MSH (HL7 v2.5.1 2.14.9): MSH-3/4 sender, MSH-5/6 receiver, MSH-7 time,
     * MSH-9 type, MSH-10 control id, MSH-11 processing id, MSH-12 version */
    sb_s(&b, "MSH|^~\\&|SIMLAB|");
    sb_esc(&b, hospital_id);
    sb_s(&b, "|EHRGATE|NATIONAL|");
    sb_s(&b, dtm);
    sb_s(&b, "||ORU^R01^ORU_R01|");
    sb_esc(&b, msg_id);
    sb_s(&b, "|P|2.5\r");

    /* PID-3: the MRN, assigning authority the hospital, type MR */
    sb_s(&b, "PID|1||");
    sb_esc(&b, mrn);
    sb_s(&b, "^^^");
    sb_esc(&b, hospital_id);
    sb_s(&b, "^MR||Simulated^Patient\r");

    for (i = 0; i < n; i++) {
        const struct test_def *t = &tests[res[i].k];

        if (t->lab != cur_lab) { /* one OBR per group; results come grouped */
            cur_lab = t->lab;
            set_id = 0;
            snprintf(seq, sizeof seq, "%d", ++nobr);
            sb_s(&b, "OBR|");
            sb_s(&b, seq);
            sb_s(&b, "||");
            sb_esc(&b, msg_id);
            sb_s(&b, "-");
            sb_s(&b, seq);
            sb_s(&b, "|");
            sb_s(&b, t->lab ? lab_panel_code : vs_panel_code);
            sb_s(&b, "^");
            sb_esc(&b, t->lab ? lab_panel_text : vs_panel_text);
            sb_s(&b, "^LN|||");
            sb_s(&b, dtm);
            sb_s(&b, "\r");
        }
        if (res[i].k == K_BLOOD_PRESSURE) {
            sb_obx(&b, ++set_id, t, sys_code, sys_display, res[i].v, dtm);
            sb_obx(&b, ++set_id, t, dia_code, dia_display, res[i].v2, dtm);
        } else if (res[i].k == K_SPO2 && res[i].alt_code) {
            sb_obx(&b, ++set_id, t, spo2_alt_code, spo2_alt_display, res[i].v, dtm);
        } else {
            sb_obx(&b, ++set_id, t, t->loinc, t->display, res[i].v, dtm);
        }
    }
    if (b.bad) {
        free(b.p);
        return NULL;
    }
    *len = b.n;
    return b.p;
}
