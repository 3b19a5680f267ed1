/* tests/unit/unit.h: the check macro the C unit tests share: counts checks, prints each failure with its
 * file and line and a printf-style explanation, and lets main() end with `return n_failed != 0`. */
#ifndef TESTS_UNIT_UNIT_H
#define TESTS_UNIT_UNIT_H

#include <stdio.h>

static int n_checks, n_failed;

#define CHECK(cond, ...)                                                                                     \
    do {                                                                                                     \
        n_checks++;                                                                                          \
        if (!(cond)) {                                                                                       \
            n_failed++;                                                                                      \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                                      \
            printf(__VA_ARGS__);                                                                             \
            printf("\n");                                                                                    \
        }                                                                                                    \
    } while (0)

#endif
