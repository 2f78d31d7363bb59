/* The qubes.Filecopy stream (docs/qrexec.md, "File copy"), byte-compatible with Qubes.
 *
 * Per entry a 32-byte little-endian header
 *   {u32 namelen (with NUL); u32 mode; u64 filelen; u32 atime, atime_nsec, mtime, mtime_nsec}
 * then the name, then for a regular file filelen bytes, for a symlink its target (no NUL),
 * for a directory nothing (its header comes again after its contents, to set times).
 * An all-zero header ends the stream. The receiver answers {u32 errno; u32 pad; u64 crc32}
 * over every byte it read (zlib CRC-32), then {u32 namelen; name} of the last file.
 *
 * The unpacker runs inside the receiving qube, as the user, and trusts nothing: every
 * name is checked, every path is walked from the incoming dir's fd with O_NOFOLLOW, and
 * limits bound names, depth, entry count and bytes. */
#pragma once
#include "err.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BH_FC_HDR_SIZE 32
#define BH_FC_MAX_NAME 16384      /* Qubes' MAX_PATH_LENGTH: namelen (NUL included) < this */
#define BH_FC_MAX_DEPTH 128       /* the fuzz harness's resolver depth (the unpacker has no bound) */
#define BH_FC_LEGAL_EOF 31415926  /* Qubes' status for a stream that ended inside an entry */
#define BH_FC_DEFAULT_MAX_FILES 1000000ull

struct bh_fc_hdr {
    uint32_t namelen, mode;
    uint64_t filelen;
    uint32_t atime, atime_nsec, mtime, mtime_nsec;
};

void bh_fc_hdr_encode(uint8_t out[BH_FC_HDR_SIZE], const struct bh_fc_hdr *h);
void bh_fc_hdr_decode(const uint8_t in[BH_FC_HDR_SIZE], struct bh_fc_hdr *h);

/* Which names the receiver takes: exactly Qubes' receiver's rules (qubes-linux-utils,
 * qrexec-lib: qubes_pure_validate_file_name_v2 / _symbolic_link_v2), plus NAME_MAX per
 * component (the kernel's; Qubes' receiver meets it as ENAMETOOLONG from openat).
 *   - a name: relative, canonical (no empty, "." or ".." component, no "//", no trailing
 *     '/'), every byte printable ASCII or a UTF-8 character that is safe to display
 *     (name_allowlist.inc: no control characters, tab, DEL, bidi overrides such as
 *     U+202E, right-to-left letters, combining marks, non-ASCII spaces, symbols, ...);
 *     BH_FC_ALLOW_UNSAFE_CHARACTERS (the receiver's opt-in, --allow-all-names) lets any
 *     byte but '/' and NUL through; refused: -EILSEQ (-ENAMETOOLONG past the bounds);
 *   - a symlink: its name as above and at least two components deep; its target
 *     relative, valid as a name, with ".." only as leading components and at most
 *     depth-2 of them (so it resolves inside the link's top-level entry, whatever the
 *     other links are); BH_FC_ALLOW_NON_CANONICAL_SYMLINKS (Qubes' receiver's default)
 *     lets "." and "//" into the target; BH_FC_ALLOW_UNSAFE_SYMLINKS skips the target
 *     check; refused: -EILSEQ (the name) or -ENOLINK (where it points). */
enum {
    BH_FC_ALLOW_UNSAFE_CHARACTERS = 1 << 0,
    BH_FC_ALLOW_NON_CANONICAL_SYMLINKS = 1 << 1,
    BH_FC_ALLOW_UNSAFE_SYMLINKS = 1 << 2,
};
/* depth (components), or -EILSEQ / -ENAMETOOLONG */
int bh_fc_name_check_flags(const char *name, unsigned flags);
/* 0, -EILSEQ, -ENOLINK or -ENAMETOOLONG */
int bh_fc_symlink_check_flags(const char *linkname, const char *target, unsigned flags);
/* The strictest rules (flags 0): depth or -1; 0 or -1. */
int bh_fc_name_check(const char *name);
int bh_fc_symlink_check(const char *linkname, const char *target);
/* One code point is safe to display (the allowlist above). */
bool bh_fc_code_point_safe(uint32_t cp);

/* Where the unpacker reads from (an fd, or memory in the fuzz harness). */
struct bh_fc_reader {
    ssize_t (*read)(void *ctx, void *buf, size_t n);
    void *ctx;
};

struct bh_fc_limits {
    uint64_t max_files;  /* entries */
    uint64_t max_bytes;  /* file data in total; 0 = unlimited */
    unsigned name_flags; /* BH_FC_ALLOW_*; 0 = strictest */
};

struct bh_fc_result {
    int error;           /* errno-style; 0 = all fine */
    uint32_t crc;
    char last_name[BH_FC_MAX_NAME];
    char msg[256];
};

/* Where the unpacker creates what the stream describes. Every name passed has passed
 * bh_fc_name_check_flags, every symlink target bh_fc_symlink_check_flags; each call returns 0, or
 * -1 with errno (the errno is what the sender is told). */
struct bh_fc_sink {
    /* a new regular file (never replacing anything), then its data, then done (complete
     * false: the stream failed inside it; the file is closed either way) */
    int (*file_create)(void *ctx, const char *name, const struct bh_fc_hdr *h);
    int (*file_write)(void *ctx, const void *p, size_t n);
    void (*file_done)(void *ctx, const struct bh_fc_hdr *h, bool complete);
    /* a directory: created empty, or if it exists (its second header, after its
     * contents), given its mode and times */
    int (*dir)(void *ctx, const char *name, const struct bh_fc_hdr *h);
    int (*symlink)(void *ctx, const char *name, const char *target);
    void *ctx;
};
/* The stream's checks and limits, creating entries through sink (the fuzz harness's is
 * in memory). Returns 0 or -1 (res->error set: Qubes' status, an errno value or
 * BH_FC_LEGAL_EOF; Qubes' receiver exits with it). */
int bh_fc_unpack_to(const struct bh_fc_reader *r, const struct bh_fc_sink *sink, const struct bh_fc_limits *lim,
                    struct bh_fc_result *res);
/* Unpacks a whole stream under dirfd: every path is walked from dirfd with O_NOFOLLOW,
 * nothing is created through a symlink or replaced. Returns 0 or -1 (res->error set). */
int bh_fc_unpack(const struct bh_fc_reader *r, int dirfd, const struct bh_fc_limits *lim,
                 struct bh_fc_result *res);
/* Encodes the receiver's answer into buf (at least 20 + BH_FC_MAX_NAME); returns size. */
size_t bh_fc_result_encode(const struct bh_fc_result *res, uint8_t *buf);
/* Parses the answer (from a receiver we do not trust): 0 ok, -1 malformed. */
int bh_fc_result_read(int fd, struct bh_fc_result *res);
