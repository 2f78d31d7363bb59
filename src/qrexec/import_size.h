/* admin.vm.volume.ImportWithSize's first line (the size of the data that follows, as
 * Qubes' dom0 script reads it: one line, at most 21 bytes with its newline), taken
 * from a qube's qrexec stream one byte at a time so that no data byte is consumed. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BH_IMPORT_SIZE_LINE_MAX 21

/* Feeds one byte of the stream. Returns 1 when the line is complete (out holds it
 * without the newline, NUL-terminated), 0 to go on, -1 when it is over the bound or
 * holds a NUL. *len counts what is in out. */
int bh_import_size_line_feed(char out[BH_IMPORT_SIZE_LINE_MAX + 1], size_t *len, char ch);
/* The reply body of internal.vm.volume.ImportBegin, "SIZE PATH": 0 and both, or -1. */
int bh_import_begin_reply_parse(const char *body, size_t n, uint64_t *size, char *path, size_t pathlen);
