/*
 * test_chain.c — CUnit tests of gateway/eg_chain.c (sealing, reload after
 * rollback and restart, contiguity) and eg_api.c's reply routing (the SPEC
 * §3 Response Topic rule), on a real SQLite file.
 */
#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eg_api.h"
#include "eg_chain.h"
#include "eg_crypto.h"
#include "eg_entries.h"
#include "eg_merkle.h"
#include "eg_registry.h"
#include "eg_store.h"
#include "eg_vault.h"

static char dir[256];
static char db[300], key[300], mk[300];
static struct eg_rng *rng;

static int setup(void)
{
    char tmpl[] = "/tmp/eg-chain-XXXXXX";
    if (!mkdtemp(tmpl))
        return -1;
    snprintf(dir, sizeof dir, "%s", tmpl);
    snprintf(db, sizeof db, "%s/t.db", dir);
    snprintf(key, sizeof key, "%s/gw.key", dir);
    snprintf(mk, sizeof mk, "%s/mk.key", dir);
    return eg_rng_new(&rng) == EG_OK ? 0 : -1;
}

static int teardown(void)
{
    char cmd[400];
    eg_rng_free(rng);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

struct fx {
    struct eg_store *st;
    struct eg_vault *v;
    struct eg_chain *c;
};

static void open_fx(struct fx *f)
{
    struct eg_error e = {0};
    CU_ASSERT_EQUAL_FATAL(eg_store_open(db, EG_STORE_CREATE, &f->st, &e), EG_OK);
    CU_ASSERT_EQUAL_FATAL(eg_vault_open_gateway(f->st, key, mk, rng, &f->v, &e), EG_OK);
    CU_ASSERT_EQUAL_FATAL(eg_chain_open(f->st, f->v, &f->c, &e), EG_OK);
}

static void close_fx(struct fx *f)
{
    eg_chain_free(f->c);
    eg_vault_free(f->v);
    eg_store_close(f->st);
}

/* appends n entries (in the open transaction) and adds them to the chain */
static void append(struct fx *f, uint64_t *seq, int n)
{
    for (int i = 0; i < n; i++, (*seq)++) {
        uint8_t leaf[32];
        cJSON *res = cJSON_CreateObject();
        struct eg_entry_in in = {.kind = "observation", .patient = "P1",
                                 .category = "vital-signs", .src_type = "device",
                                 .src_id = "D1", .msg_id = "1", .received_at = 1,
                                 .effective_at = 1, .resource = res};
        CU_ASSERT_EQUAL(eg_entry_append(f->st, f->v, "gw1", *seq, &in, leaf), EG_OK);
        CU_ASSERT_EQUAL(eg_chain_add(f->c, *seq, leaf), EG_OK);
        cJSON_Delete(res);
    }
}

static void test_seal_sizes_links_and_roots(void)
{
    struct fx f;
    struct eg_block b0, b1, l;
    uint8_t(*leaves)[32] = NULL;
    uint8_t root[32], gid[32];
    uint64_t seq = 0;

    open_fx(&f);
    CU_ASSERT_EQUAL(eg_chain_open_count(f.c), 0);
    CU_ASSERT_FALSE(eg_chain_due(f.c, 4, 100000));
    CU_ASSERT_EQUAL_FATAL(eg_store_begin(f.st), EG_OK);
    append(&f, &seq, 6);
    CU_ASSERT_TRUE(eg_chain_due(f.c, 4, 100000));
    CU_ASSERT_EQUAL(eg_chain_seal(f.c, 4, &b0), EG_OK);
    CU_ASSERT_EQUAL(eg_chain_open_count(f.c), 2);
    CU_ASSERT_FALSE(eg_chain_due(f.c, 4, 100000));
    CU_ASSERT_TRUE(eg_chain_due(f.c, 4, 0)); /* interval passed */
    CU_ASSERT_EQUAL(eg_chain_seal(f.c, 4, &b1), EG_OK);
    CU_ASSERT_EQUAL(eg_store_commit(f.st), EG_OK);
    eg_chain_committed(f.c);

    CU_ASSERT_EQUAL(b0.height, 0);
    CU_ASSERT_EQUAL(b0.first_seq, 0);
    CU_ASSERT_EQUAL(b0.count, 4);
    CU_ASSERT_EQUAL(b1.height, 1);
    CU_ASSERT_EQUAL(b1.first_seq, 4);
    CU_ASSERT_EQUAL(b1.count, 2);
    {
        uint8_t zero[32] = {0};
        CU_ASSERT_EQUAL(memcmp(b0.prev_hash, zero, 32), 0);
    }
    CU_ASSERT_EQUAL(memcmp(b1.prev_hash, b0.hash, 32), 0);
    CU_ASSERT_EQUAL(eg_block_verify(&b1, eg_vault_signing_key(f.v)), EG_OK);
    /* the stored block and its root over the stored leaves */
    eg_key_fingerprint(eg_vault_signing_key(f.v), gid);
    CU_ASSERT_EQUAL(eg_block_load(f.st, 1, gid, &l), EG_OK);
    CU_ASSERT_EQUAL(memcmp(l.hash, b1.hash, 32), 0);
    CU_ASSERT_STRING_EQUAL(l.sig, b1.sig);
    CU_ASSERT_EQUAL(eg_leaves_load(f.st, 4, 2, &leaves), EG_OK);
    eg_merkle_root((const uint8_t(*)[32])leaves, 2, root);
    CU_ASSERT_EQUAL(memcmp(root, b1.merkle_root, 32), 0);
    free(leaves);
    CU_ASSERT_EQUAL(eg_block_load(f.st, 2, gid, &l), EG_E_NOT_FOUND);
    CU_ASSERT_EQUAL(eg_leaves_load(f.st, 4, 3, &leaves), EG_E_CONFLICT); /* seq 6 absent */
    /* no empty blocks; entries must join in order */
    CU_ASSERT_EQUAL(eg_chain_seal(f.c, 4, &l), EG_E_INTERNAL);
    {
        uint8_t leaf[32] = {1};
        CU_ASSERT_EQUAL(eg_chain_add(f.c, 9, leaf), EG_E_INTERNAL);
    }
    close_fx(&f);
}

static void test_rollback_and_restart_continue_the_chain(void)
{
    struct fx f;
    struct eg_block b, again;
    uint64_t seq = 6; /* after the previous test */

    open_fx(&f);
    CU_ASSERT_EQUAL(eg_chain_open_count(f.c), 0);
    /* a transaction that seals and then rolls back leaves no trace */
    CU_ASSERT_EQUAL_FATAL(eg_store_begin(f.st), EG_OK);
    append(&f, &seq, 3);
    CU_ASSERT_EQUAL(eg_chain_seal(f.c, 3, &b), EG_OK);
    CU_ASSERT_EQUAL(b.height, 2);
    eg_store_rollback(f.st);
    CU_ASSERT_EQUAL(eg_chain_abort(f.c), EG_OK);
    CU_ASSERT_EQUAL(eg_chain_open_count(f.c), 0);
    seq = 6;
    /* committed entries without a block are reloaded as the open block */
    CU_ASSERT_EQUAL_FATAL(eg_store_begin(f.st), EG_OK);
    append(&f, &seq, 3);
    CU_ASSERT_EQUAL(eg_store_commit(f.st), EG_OK);
    close_fx(&f);

    open_fx(&f);
    CU_ASSERT_EQUAL(eg_chain_open_count(f.c), 3);
    CU_ASSERT_EQUAL_FATAL(eg_store_begin(f.st), EG_OK);
    CU_ASSERT_EQUAL(eg_chain_seal(f.c, 100, &again), EG_OK);
    CU_ASSERT_EQUAL(eg_store_commit(f.st), EG_OK);
    CU_ASSERT_EQUAL(again.height, 2);
    CU_ASSERT_EQUAL(again.first_seq, 6);
    CU_ASSERT_EQUAL(again.count, 3);
    close_fx(&f);
}

static void test_reply_routing(void)
{
    const char *fam = "ehr/anchor/gw1/replies";
    static const struct {
        const char *resp;
        int forbidden;
        const char *topic;
    } cases[] = {
        {NULL, 0, "ehr/anchor/gw1/replies"},
        {"ehr/anchor/gw1/replies", 0, "ehr/anchor/gw1/replies"},
        {"ehr/anchor/gw1/replies/app-42", 0, "ehr/anchor/gw1/replies/app-42"},
        {"ehr/anchor/gw1/repliesX", 1, "ehr/anchor/gw1/replies"},
        {"ehr/anchor/gw1/replie", 1, "ehr/anchor/gw1/replies"},
        {"ehr/device/D1/receipts", 1, "ehr/anchor/gw1/replies"},
        {"ehr/anchor/gw1/replies/+", 1, "ehr/anchor/gw1/replies"},
        {"ehr/anchor/gw1/replies/#", 1, "ehr/anchor/gw1/replies"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char topic[256], *props = NULL;
        struct eg_msg *m = eg_msg_new("t", 1, "{}", 2, NULL, 0, cases[i].resp,
                                      cases[i].resp ? strlen(cases[i].resp) : 0, "\x01\xff", 2);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        CU_ASSERT_EQUAL(eg_api_route(m, fam, topic, sizeof topic, &props), cases[i].forbidden);
        CU_ASSERT_STRING_EQUAL(topic, cases[i].topic);
        CU_ASSERT_PTR_NOT_NULL(props);
        if (props) {
            CU_ASSERT_PTR_NOT_NULL(strstr(props, "\"corr\":\"01ff\""));
        }
        free(props);
        eg_msg_free(m);
    }
}

int main(void)
{
    CU_pSuite s;
    unsigned fails;
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    s = CU_add_suite("chain", setup, teardown);
    CU_add_test(s, "seal sizes, links and roots", test_seal_sizes_links_and_roots);
    CU_add_test(s, "rollback and restart continue the chain",
                test_rollback_and_restart_continue_the_chain);
    CU_add_test(s, "reply routing (Response Topic rule)", test_reply_routing);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    fails = CU_get_number_of_failures() + CU_get_number_of_suites_failed();
    CU_cleanup_registry();
    return fails != 0;
}
