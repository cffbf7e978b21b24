/*
 * eg_testutil.h — small helpers shared by the CUnit test executables
 * (static inline: each test is its own program and uses what it needs).
 */
#ifndef EG_TESTUTIL_H
#define EG_TESTUTIL_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

#endif
