/*
 * eg_topics.c — topic parsing and building (SPEC §3).
 */
#include "eg_topics.h"

#include <stdio.h>
#include <string.h>

#include "eg_telemetry.h"

enum eg_topic_kind eg_topic_parse(const char *prefix, const char *topic, char id[65])
{
    size_t pl = strlen(prefix);
    const char *p, *slash;
    size_t idlen;
    enum eg_topic_kind kind;

    id[0] = '\0';
    if (strncmp(topic, prefix, pl) != 0 || topic[pl] != '/')
        return EG_T_UNKNOWN;
    p = topic + pl + 1;
    if (strncmp(p, "device/", 7) == 0) {
        p += 7;
        kind = EG_T_DEVICE_TELEMETRY;
    } else if (strncmp(p, "hospital/", 9) == 0) {
        p += 9;
        kind = EG_T_HOSPITAL_RECORDS;
    } else if (strncmp(p, "anchor/", 7) == 0) {
        p += 7;
        kind = EG_T_ANCHOR_REQUEST;
    } else if (strncmp(p, "patient/", 8) == 0) {
        p += 8;
        kind = EG_T_PATIENT_CONSENT;
    } else if (strncmp(p, "feed/", 5) == 0) {
        p += 5;
        kind = EG_T_FEED_REQUEST;
    } else if (strcmp(p, "admin/request") == 0) {
        return EG_T_ADMIN_REQUEST;
    } else {
        return EG_T_UNKNOWN;
    }
    slash = strchr(p, '/');
    if (!slash)
        return EG_T_UNKNOWN;
    idlen = (size_t)(slash - p);
    if (idlen == 0 || idlen > 64)
        return EG_T_UNKNOWN;
    memcpy(id, p, idlen);
    id[idlen] = '\0';
    if (!eg_id_valid(id)) {
        id[0] = '\0';
        return EG_T_UNKNOWN;
    }
    if (kind == EG_T_DEVICE_TELEMETRY && strcmp(slash, "/telemetry") == 0)
        return kind;
    if (kind == EG_T_HOSPITAL_RECORDS && strcmp(slash, "/records") == 0)
        return kind;
    if (kind == EG_T_ANCHOR_REQUEST && strcmp(slash, "/request") == 0)
        return kind;
    if (kind == EG_T_PATIENT_CONSENT && strcmp(slash, "/consent") == 0)
        return kind;
    if (kind == EG_T_PATIENT_CONSENT && strcmp(slash, "/request") == 0)
        return EG_T_PATIENT_REQUEST;
    if (kind == EG_T_FEED_REQUEST && strcmp(slash, "/request") == 0)
        return kind;
    id[0] = '\0';
    return EG_T_UNKNOWN;
}

const char *eg_topic_source_raw(const char *prefix, const char *topic, char *receipts,
                                size_t size)
{
    size_t pl = strlen(prefix);
    const char *p, *slash, *family, *leaf;
    int n;
    if (strncmp(topic, prefix, pl) != 0 || topic[pl] != '/')
        return NULL;
    p = topic + pl + 1;
    if (strncmp(p, "device/", 7) == 0) {
        family = "device";
        leaf = "/telemetry";
        p += 7;
    } else if (strncmp(p, "hospital/", 9) == 0) {
        family = "hospital";
        leaf = "/records";
        p += 9;
    } else {
        return NULL;
    }
    slash = strchr(p, '/');
    if (!slash || strcmp(slash, leaf) != 0)
        return NULL;
    n = snprintf(receipts, size, "%s/%s/%.*s/receipts", prefix, family, (int)(slash - p), p);
    return n < 0 || (size_t)n >= size ? NULL : family;
}

static int fmt(char *buf, size_t size, const char *a, const char *b, const char *c,
               const char *d)
{
    int n = snprintf(buf, size, "%s/%s/%s/%s", a, b, c, d);
    return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

int eg_topic_device_receipts(char *buf, size_t size, const char *prefix, const char *device_id)
{
    return fmt(buf, size, prefix, "device", device_id, "receipts");
}

int eg_topic_hospital_receipts(char *buf, size_t size, const char *prefix,
                               const char *hospital_id)
{
    return fmt(buf, size, prefix, "hospital", hospital_id, "receipts");
}

int eg_topic_status(char *buf, size_t size, const char *prefix, const char *name)
{
    return fmt(buf, size, prefix, "gateway", name, "status");
}

int eg_topic_stats(char *buf, size_t size, const char *prefix, const char *name)
{
    return fmt(buf, size, prefix, "gateway", name, "stats");
}

int eg_topic_anchor(char *buf, size_t size, const char *prefix, const char *name,
                    const char *leaf)
{
    return fmt(buf, size, prefix, "anchor", name, leaf);
}

int eg_topic_patient(char *buf, size_t size, const char *prefix, const char *patient_id,
                     const char *leaf)
{
    return fmt(buf, size, prefix, "patient", patient_id, leaf);
}

int eg_topic_feed(char *buf, size_t size, const char *prefix, const char *grantee,
                  const char *leaf)
{
    int n = leaf ? snprintf(buf, size, "%s/feed/%s/%s", prefix, grantee, leaf)
                 : snprintf(buf, size, "%s/feed/%s", prefix, grantee);
    return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

int eg_topic_admin(char *buf, size_t size, const char *prefix, const char *leaf)
{
    int n = snprintf(buf, size, "%s/admin/%s", prefix, leaf);
    return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

int eg_topic_filters(const char *prefix, const char *name, char filters[][EG_TOPIC_FILTER_MAX],
                     int max)
{
    static const char *const fmts[] = {"%s/device/+/telemetry", "%s/hospital/+/records",
                                       "%s/anchor/%s/request",  "%s/patient/+/consent",
                                       "%s/patient/+/request",  "%s/feed/+/request",
                                       "%s/admin/request"};
    int n = 0;
    for (size_t i = 0; i < sizeof fmts / sizeof fmts[0] && n < max; i++) {
        int w = snprintf(filters[n], EG_TOPIC_FILTER_MAX, fmts[i], prefix, name);
        if (w < 0 || w >= EG_TOPIC_FILTER_MAX)
            return -1;
        n++;
    }
    return n;
}
