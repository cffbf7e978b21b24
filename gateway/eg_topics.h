/*
 * eg_topics.h — the topic tree of SPEC §3. The gateway is the only part of
 * ehrgate that knows topics.
 */
#ifndef EG_TOPICS_H
#define EG_TOPICS_H

#include <stddef.h>

enum eg_topic_kind {
    EG_T_UNKNOWN = 0,
    EG_T_DEVICE_TELEMETRY, /* {p}/device/{id}/telemetry */
    EG_T_HOSPITAL_RECORDS, /* {p}/hospital/{id}/records */
    EG_T_ANCHOR_REQUEST,   /* {p}/anchor/{name}/request (id = name) */
    EG_T_PATIENT_CONSENT,  /* {p}/patient/{id}/consent */
    EG_T_PATIENT_REQUEST,  /* {p}/patient/{id}/request */
    EG_T_FEED_REQUEST,     /* {p}/feed/{grantee}/request (id = grantee) */
    EG_T_ADMIN_REQUEST,    /* {p}/admin/request (id empty) */
};

/* Classifies topic under prefix; copies the {id} level into id (65 bytes)
 * when it is a valid SPEC §2 id. EG_T_UNKNOWN otherwise. */
enum eg_topic_kind eg_topic_parse(const char *prefix, const char *topic, char id[65]);

/* For {p}/device/X/telemetry and {p}/hospital/X/records with any single
 * level X (also one that is not a valid id): writes X's receipts topic and
 * returns "device" or "hospital"; NULL for anything else. */
const char *eg_topic_source_raw(const char *prefix, const char *topic, char *receipts,
                                size_t size);

/* snprintf-style builders; return 0, or -1 if truncated. */
int eg_topic_device_receipts(char *buf, size_t size, const char *prefix, const char *device_id);
int eg_topic_hospital_receipts(char *buf, size_t size, const char *prefix,
                               const char *hospital_id);
int eg_topic_status(char *buf, size_t size, const char *prefix, const char *name);
int eg_topic_stats(char *buf, size_t size, const char *prefix, const char *name);

/* {p}/anchor/{name}/{leaf} with leaf blocks, head, request or replies. */
int eg_topic_anchor(char *buf, size_t size, const char *prefix, const char *name,
                    const char *leaf);

/* {p}/patient/{id}/{leaf}; {p}/feed/{grantee}[/{leaf}] (leaf NULL: the feed
 * itself); {p}/admin/{leaf}. */
int eg_topic_patient(char *buf, size_t size, const char *prefix, const char *patient_id,
                     const char *leaf);
int eg_topic_feed(char *buf, size_t size, const char *prefix, const char *grantee,
                  const char *leaf);
int eg_topic_admin(char *buf, size_t size, const char *prefix, const char *leaf);

/* Longest filter: 64-char prefix + "/anchor/" + 64-char name + "/request" + NUL. */
#define EG_TOPIC_FILTER_MAX 160

/* Subscription filters for the implemented input families. Returns the
 * count, or -1 if a filter does not fit (never a truncated filter). */
int eg_topic_filters(const char *prefix, const char *name, char filters[][EG_TOPIC_FILTER_MAX],
                     int max);

#endif
