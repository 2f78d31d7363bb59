/* Sizes as qvm-volume resize takes them: bytes, or a number with K/KB/M/MB/G/GB
 * (powers of 1000) or Ki/KiB/Mi/MiB/Gi/GiB (powers of 1024); case-insensitive. */
#pragma once
#include <stdbool.h>

bool parse_size(const char *s, unsigned long long *out);
