/*
 * eg_testutil.h — small helpers shared by the CUnit test executables
 * (static inline: each test is its own program and uses what it needs).
 */
#ifndef EG_TESTUTIL_H
#define EG_TESTUTIL_H

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EG_TEST_MAX_FILE (1 << 20)

/* A CUnit check with a formatted message (CUnit copies the text); use
 * CHECKF(cond, fmt, ...) or check_at(line, cond, fmt, ...), which report
 * the calling test file and line. */
__attribute__((format(printf, 4, 5))) static inline void
eg_check_at(const char *file, unsigned line, int cond, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    CU_assertImplementation(cond ? CU_TRUE : CU_FALSE, line, msg, file, "", CU_FALSE);
}
#define check_at(line, cond, ...) eg_check_at(__FILE__, (line), (cond), __VA_ARGS__)
#define CHECKF(cond, ...) check_at(__LINE__, (cond), __VA_ARGS__)

/* Reads a whole file (at most EG_TEST_MAX_FILE bytes) into a malloc'ed
 * NUL-terminated buffer; *len (if not NULL) gets its length. NULL if it
 * cannot be read. */
static inline char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;

    if (!f)
        return NULL;
    buf = malloc(EG_TEST_MAX_FILE + 1);
    if (buf) {
        n = fread(buf, 1, EG_TEST_MAX_FILE, f);
        buf[n] = '\0';
        if (len)
            *len = n;
    }
    fclose(f);
    return buf;
}

/* Removes a flat temporary directory and the files in it. */
static inline void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[512];

    if (!d)
        return;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* 1 if needle (nlen bytes) occurs in hay (hlen bytes). */
static inline int has_bytes(const void *hay, size_t hlen, const void *needle, size_t nlen)
{
    const uint8_t *h = hay;

    for (size_t i = 0; nlen <= hlen && i <= hlen - nlen; i++)
        if (memcmp(h + i, needle, nlen) == 0)
            return 1;
    return 0;
}

/* 1 if hay is not NULL and contains needle. */
static inline int contains(const char *hay, const char *needle)
{
    return hay && strstr(hay, needle) != NULL;
}

/* One test of a suite run by eg_test_main. */
struct eg_test {
    const char *name;
    void (*fn)(void);
};

/* The usual main(): a mkdtemp() directory from template (kept in dir),
 * setup(), one suite with tests in order, teardown(), the directory
 * removed. Returns the process exit code (1 on a failure). */
static inline int eg_test_main(const char *suite, char *dir, const struct eg_test *tests,
                               size_t n, int (*setup)(void), void (*teardown)(void))
{
    CU_pSuite s;
    unsigned failures = 1;
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    if (setup() == 0 && CU_initialize_registry() == CUE_SUCCESS) {
        int ok = (s = CU_add_suite(suite, NULL, NULL)) != NULL;
        for (size_t i = 0; ok && i < n; i++)
            ok = CU_add_test(s, tests[i].name, tests[i].fn) != NULL;
        if (ok) {
            CU_basic_set_mode(CU_BRM_VERBOSE);
            CU_basic_run_tests();
            failures = CU_get_number_of_failures();
        }
        CU_cleanup_registry();
    }
    teardown();
    remove_tree(dir);
    return failures ? 1 : 0;
}

#endif
