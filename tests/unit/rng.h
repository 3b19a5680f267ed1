/* tests/unit/rng.h: the C unit tests' repeatable pseudo-random numbers, Marsaglia's xorshift32 (shifts 13, 17,
 * 5). Each test keeps its own state and seed; a state must not be 0. */
#ifndef TESTS_UNIT_RNG_H
#define TESTS_UNIT_RNG_H

#include <stdint.h>

static inline uint32_t unit_xorshift32(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

#endif
