/* Shared checks of the C test programs: every vsdk call is checked, and a failure prints the
 * call, its result name and the thread's last error, then exits with status 1. */
#ifndef VSDK_TEST_CHECK_H
#define VSDK_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vsdk.h"

#define CHECK(call)                                                                   \
    do {                                                                              \
        vsdk_result r_ = (call);                                                      \
        if (r_ != VSDK_RESULT_OK) {                                                   \
            fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #call,  \
                    vsdk_result_name(r_), vsdk_last_error());                         \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

/* The call must fail with `code` and leave a non-empty last error. */
#define EXPECT_CODE(call, code)                                                       \
    do {                                                                              \
        vsdk_result r_ = (call);                                                      \
        if (r_ != (code)) {                                                           \
            fprintf(stderr, "%s:%d: %s gave %s, expected %s: %s\n", __FILE__, __LINE__, \
                    #call, vsdk_result_name(r_), vsdk_result_name(code),              \
                    vsdk_last_error());                                               \
            exit(1);                                                                  \
        }                                                                             \
        if (strlen(vsdk_last_error()) == 0) {                                         \
            fprintf(stderr, "%s:%d: %s failed without a last error\n", __FILE__,      \
                    __LINE__, #call);                                                 \
            exit(1);                                                                  \
        }                                                                             \
        printf("  %-40s -> %s: %s\n", #code, vsdk_result_name(r_), vsdk_last_error()); \
    } while (0)

#define ASSERT(cond)                                                                  \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

/* A string list holds `want`. */
static inline int strings_contain(const vsdk_strings *list, const char *want) {
    size_t n = 0;
    CHECK(vsdk_strings_len(list, &n));
    for (size_t i = 0; i < n; i++) {
        const char *s = NULL;
        CHECK(vsdk_strings_get(list, i, &s));
        if (strcmp(s, want) == 0) {
            return 1;
        }
    }
    return 0;
}

/* A progress callback that counts its events and prints them. */
static inline void count_event(void *user_data, const char *event) {
    int *n = (int *)user_data;
    (*n)++;
    printf("    event: %s\n", event);
}

#endif
