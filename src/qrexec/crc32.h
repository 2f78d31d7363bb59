/* CRC-32 of the file-copy protocol (zlib's crc32: reflected, polynomial 0xEDB88320,
 * init and final xor 0xffffffff), computed with Debian's ISA-L (libisal2: carry-less
 * multiply, many GB/s) when the qube has it, else with zlib (~1-3 GB/s). ISA-L is
 * looked up at run time so that the in-qube programs work in any template. */
#pragma once
#include <stddef.h>
#include <stdint.h>

/* Looks the fast implementation up now (before a chroot or sandbox hides the library);
 * otherwise the first bh_crc32 does. */
void bh_crc32_init(void);

/* crc: 0 to start, or a previous result to continue (as zlib's crc32). */
uint32_t bh_crc32(uint32_t crc, const void *buf, size_t len);

/* Which implementation is in use: "isa-l" or "zlib" (for tests and benches). */
const char *bh_crc32_impl(void);

/* zlib's alone, for tests comparing the two. */
uint32_t bh_crc32_zlib(uint32_t crc, const void *buf, size_t len);
