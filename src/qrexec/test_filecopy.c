/* Unit tests for the file-copy name and symlink rules. */
#include "../../tests/unit/tap.h"
#include "crc32.h"
#include "filecopy.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    CHECK(bh_fc_name_check("a") == 1);
    CHECK(bh_fc_name_check("a/b/c") == 3);
    CHECK(bh_fc_name_check("/etc/passwd") < 0);
    CHECK(bh_fc_name_check("..") < 0);
    CHECK(bh_fc_name_check("a/../../x") < 0);
    CHECK(bh_fc_name_check("a/./b") < 0);
    CHECK(bh_fc_name_check("a//b") < 0);
    CHECK(bh_fc_name_check("a/") < 0);
    CHECK(bh_fc_name_check("") < 0);
    CHECK(bh_fc_name_check("...") == 1); /* a legal file name */

    CHECK(bh_fc_symlink_check("l", "x") < 0); /* as Qubes: a top-level entry is never a link */
    CHECK(bh_fc_symlink_check("l", "../x") < 0);
    CHECK(bh_fc_symlink_check("l", "/etc/shadow") < 0);
    CHECK(bh_fc_symlink_check("a/l", "b/c") == 0);
    CHECK(bh_fc_symlink_check("a/b/l", "../c") == 0);
    CHECK(bh_fc_symlink_check("a/l", "..") < 0);
    CHECK(bh_fc_symlink_check("a/l", "../..") < 0);
    CHECK(bh_fc_symlink_check("a/l", "b/../../../x") < 0);
    CHECK(bh_fc_symlink_check("a/l", "") < 0);
    /* found by fuzz/qfile_unpack: ".." after a name climbs through the copy's own links
     * (d/y -> "." or d/e/u -> ".."), so it is refused, as in Qubes */
    CHECK(bh_fc_symlink_check("d/z", "y/y/../..") < 0);
    CHECK(bh_fc_symlink_check("d/z", "e/u/e/u/../..") < 0);
    CHECK(bh_fc_symlink_check("d/y", ".") < 0);
    CHECK(bh_fc_symlink_check("d/e/u", "..") == 0);      /* as Qubes: d, inside its entry */
    CHECK(bh_fc_symlink_check("d/e/u", "../f") == 0);
    CHECK(bh_fc_symlink_check("d/e/u", "../../f") < 0);  /* one more than depth - 2 */
    CHECK(bh_fc_symlink_check("a/b/c/l", "../../f/g") == 0);
    CHECK(bh_fc_symlink_check("a/l", "./x") < 0);
    CHECK(bh_fc_symlink_check("a/l", "x//y") < 0);
    CHECK(bh_fc_symlink_check("a/l", "x/") == 0);        /* as Qubes: a trailing '/' in a target */

    enum { U = BH_FC_ALLOW_UNSAFE_CHARACTERS, NC = BH_FC_ALLOW_NON_CANONICAL_SYMLINKS,
           US = BH_FC_ALLOW_UNSAFE_SYMLINKS };
    /* canonical relative paths only: every refusal is EILSEQ, as Qubes' receiver */
    CHECK(bh_fc_name_check_flags("a", 0) > 0);
    CHECK(bh_fc_name_check_flags("a/b/c", 0) > 0);
    CHECK(bh_fc_name_check_flags("...", 0) > 0); /* a legal file name */
    CHECK(bh_fc_name_check_flags(".hidden", 0) > 0);
    CHECK(bh_fc_name_check_flags("a b (1).txt", 0) > 0);
    static const char *const bad[] = { "/etc/passwd", "..", "a/../../x", "a/./b", "a//b", "a/", "", ".",
                                       "./a", "../a", "a/.." };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(bh_fc_name_check_flags(bad[i], 0) == -EILSEQ && bh_fc_name_check_flags(bad[i], U) == -EILSEQ);
    /* characters: printable ASCII, and UTF-8 that is safe to display */
    CHECK(bh_fc_name_check_flags("caf\xc3\xa9", 0) > 0);                 /* é */
    CHECK(bh_fc_name_check_flags("\xe6\x96\x87\xe4\xbb\xb6", 0) > 0);     /* 文件 */
    CHECK(bh_fc_name_check_flags("\xd0\xb4\xd0\xb0", 0) > 0);            /* да */
    static const char *const unsafe[] = {
        "a\tb", "a\nb", "a\rb", "\x1b[31m", "a\x7f", "x\xe2\x80\xaegpj.exe" /* U+202E */,
        "x\xe2\x80\x8f" /* U+200F RLM */, "x\xe2\x81\xa6" /* U+2066 isolate */, "\xd7\x90" /* Hebrew alef */,
        "\xd8\xa7" /* Arabic alef */, "a\u00a0b" /* NBSP */, "e\xcc\x81" /* combining acute */,
        "\xf0\x9f\x98\x80" /* emoji */, "\xee\x80\x80" /* private use */, "\xc3" /* truncated */,
        "\xc0\xaf" /* overlong */, "\xe0\x80\xaf", "\xed\xa0\x80" /* surrogate */, "\xf4\x90\x80\x80",
        "\xff", "a\xc2\x85" /* NEL */, "\xef\xbb\xbf" /* BOM */ };
    for (size_t i = 0; i < sizeof unsafe / sizeof *unsafe; i++) {
        CHECK(bh_fc_name_check_flags(unsafe[i], 0) == -EILSEQ);
        CHECK(bh_fc_name_check_flags(unsafe[i], U) > 0); /* the receiver's opt-in */
    }
    CHECK(bh_fc_code_point_safe(0x41) && !bh_fc_code_point_safe(0x202e) && !bh_fc_code_point_safe(0x10ffff));

    /* symlinks: two components deep at least; the target stays in the top-level entry */
    CHECK(bh_fc_symlink_check_flags("l", "x", NC) == -ENOLINK);
    CHECK(bh_fc_symlink_check_flags("a/l", "b/c", NC) == 0);
    CHECK(bh_fc_symlink_check_flags("a/b/l", "../c", NC) == 0);
    CHECK(bh_fc_symlink_check_flags("a/l", "../x", NC) == -ENOLINK);
    CHECK(bh_fc_symlink_check_flags("a/l", "..", NC) == -ENOLINK);
    CHECK(bh_fc_symlink_check_flags("a/b/l", "../../x", NC) == -ENOLINK);
    CHECK(bh_fc_symlink_check_flags("a/b/l", "c/../d", NC) == -ENOLINK); /* ".." only leading */
    CHECK(bh_fc_symlink_check_flags("a/l", "/etc/shadow", NC) == -ENOLINK);
    CHECK(bh_fc_symlink_check_flags("a/l", "./b//c/", NC) == 0);           /* non-canonical: Qubes' default */
    CHECK(bh_fc_symlink_check_flags("a/l", "./b//c", 0) == -EILSEQ);
    CHECK(bh_fc_symlink_check_flags("a/l", "b\tc", NC) == -EILSEQ);
    CHECK(bh_fc_symlink_check_flags("a/l", "b\tc", NC | U) == 0);
    CHECK(bh_fc_symlink_check_flags("a/l\t", "b", NC) == -EILSEQ);
    CHECK(bh_fc_symlink_check_flags("l", "/etc/shadow", US) == 0);        /* the opt-in skips the target */
    CHECK(bh_fc_symlink_check_flags("../l", "x", US) == -EILSEQ);

    struct bh_fc_hdr h = { 5, 0100644, 0x100000002ull, 1, 2, 3, 4 }, g;
    uint8_t raw[32];
    bh_fc_hdr_encode(raw, &h);
    bh_fc_hdr_decode(raw, &g);
    CHECK(g.namelen == 5 && g.mode == 0100644 && g.filelen == 0x100000002ull && g.mtime_nsec == 4);
    CHECK(raw[8] == 2 && raw[12] == 1);

    /* CRC-32: the known value, and the fast path (ISA-L when installed) equal to zlib's
     * for every length and alignment, in one piece or continued in chunks */
    CHECK(bh_crc32(0, "123456789", 9) == 0xcbf43926u);
    CHECK(bh_crc32_zlib(0, "123456789", 9) == 0xcbf43926u);
    CHECK(bh_crc32(0, "", 0) == 0);
    fprintf(stderr, "# crc32 implementation: %s\n", bh_crc32_impl());
    size_t big = 1 << 20;
    unsigned char *buf = malloc(big + 64);
    CHECK(buf != NULL);
    srand(7);
    for (size_t i = 0; i < big + 64; i++)
        buf[i] = (unsigned char)rand();
    int same = 1;
    for (size_t len = 0; len < 300; len++)
        for (size_t off = 0; off < 16; off++)
            same &= bh_crc32(0, buf + off, len) == bh_crc32_zlib(0, buf + off, len);
    CHECK(same);
    uint32_t whole = bh_crc32_zlib(0, buf + 3, big), parts = 0;
    for (size_t at = 0, step = 1; at < big; at += step, step = step * 3 + 1)
        parts = bh_crc32(parts, buf + 3 + at, at + step > big ? big - at : step);
    CHECK(parts == whole);
    CHECK(bh_crc32(bh_crc32(0, buf, 1000), buf + 1000, big - 1000) == bh_crc32_zlib(0, buf, big));
    free(buf);
    return tap_done();
}
