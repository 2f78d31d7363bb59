/* A tiny assertion helper for C unit tests: CHECK(cond) records a failure with its line;
 * tests end with `return tap_done();` (exit 1 if anything failed). */
#pragma once
#include <stdio.h>
static int tap_failed, tap_count;
#define CHECK(c) do { tap_count++; if (!(c)) { tap_failed++; fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c); } } while (0)
static inline int tap_done(void) { printf("%d checks, %d failed\n", tap_count, tap_failed); return tap_failed ? 1 : 0; }
