/* Unit tests for the file-copy name and symlink rules. */
#include "../../tests/unit/tap.h"
#include "filecopy.h"
#include <errno.h>

int main(void)
{
    enum { U = BH_FC_ALLOW_UNSAFE_CHARACTERS, NC = BH_FC_ALLOW_NON_CANONICAL_SYMLINKS,
           US = BH_FC_ALLOW_UNSAFE_SYMLINKS };
    /* canonical relative paths only: every refusal is EILSEQ, as Qubes' receiver */
    CHECK(bh_fc_name_check("a", 0) == 0);
    CHECK(bh_fc_name_check("a/b/c", 0) == 0);
    CHECK(bh_fc_name_check("...", 0) == 0); /* a legal file name */
    CHECK(bh_fc_name_check(".hidden", 0) == 0);
    CHECK(bh_fc_name_check("a b (1).txt", 0) == 0);
    static const char *const bad[] = { "/etc/passwd", "..", "a/../../x", "a/./b", "a//b", "a/", "", ".",
                                       "./a", "../a", "a/.." };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(bh_fc_name_check(bad[i], 0) == -EILSEQ && bh_fc_name_check(bad[i], U) == -EILSEQ);
    /* characters: printable ASCII, and UTF-8 that is safe to display */
    CHECK(bh_fc_name_check("caf\xc3\xa9", 0) == 0);                 /* é */
    CHECK(bh_fc_name_check("\xe6\x96\x87\xe4\xbb\xb6", 0) == 0);     /* 文件 */
    CHECK(bh_fc_name_check("\xd0\xb4\xd0\xb0", 0) == 0);            /* да */
    static const char *const unsafe[] = {
        "a\tb", "a\nb", "a\rb", "\x1b[31m", "a\x7f", "x\xe2\x80\xaegpj.exe" /* U+202E */,
        "x\xe2\x80\x8f" /* U+200F RLM */, "x\xe2\x81\xa6" /* U+2066 isolate */, "\xd7\x90" /* Hebrew alef */,
        "\xd8\xa7" /* Arabic alef */, "a\xc2\xa0" "b" /* NBSP */, "e\xcc\x81" /* combining acute */,
        "\xf0\x9f\x98\x80" /* emoji */, "\xee\x80\x80" /* private use */, "\xc3" /* truncated */,
        "\xc0\xaf" /* overlong */, "\xe0\x80\xaf", "\xed\xa0\x80" /* surrogate */, "\xf4\x90\x80\x80",
        "\xff", "a\xc2\x85" /* NEL */, "\xef\xbb\xbf" /* BOM */ };
    for (size_t i = 0; i < sizeof unsafe / sizeof *unsafe; i++) {
        CHECK(bh_fc_name_check(unsafe[i], 0) == -EILSEQ);
        CHECK(bh_fc_name_check(unsafe[i], U) == 0); /* the receiver's opt-in */
    }
    CHECK(bh_fc_code_point_safe(0x41) && !bh_fc_code_point_safe(0x202e) && !bh_fc_code_point_safe(0x10ffff));

    /* symlinks: two components deep at least; the target stays in the top-level entry */
    CHECK(bh_fc_symlink_check("l", "x", NC) == -ENOLINK);
    CHECK(bh_fc_symlink_check("a/l", "b/c", NC) == 0);
    CHECK(bh_fc_symlink_check("a/b/l", "../c", NC) == 0);
    CHECK(bh_fc_symlink_check("a/l", "../x", NC) == -ENOLINK);
    CHECK(bh_fc_symlink_check("a/l", "..", NC) == -ENOLINK);
    CHECK(bh_fc_symlink_check("a/b/l", "../../x", NC) == -ENOLINK);
    CHECK(bh_fc_symlink_check("a/b/l", "c/../d", NC) == -ENOLINK); /* ".." only leading */
    CHECK(bh_fc_symlink_check("a/l", "/etc/shadow", NC) == -ENOLINK);
    CHECK(bh_fc_symlink_check("a/l", "./b//c/", NC) == 0);           /* non-canonical: Qubes' default */
    CHECK(bh_fc_symlink_check("a/l", "./b//c", 0) == -EILSEQ);
    CHECK(bh_fc_symlink_check("a/l", "b\tc", NC) == -EILSEQ);
    CHECK(bh_fc_symlink_check("a/l", "b\tc", NC | U) == 0);
    CHECK(bh_fc_symlink_check("a/l\t", "b", NC) == -EILSEQ);
    CHECK(bh_fc_symlink_check("l", "/etc/shadow", US) == 0);        /* the opt-in skips the target */
    CHECK(bh_fc_symlink_check("../l", "x", US) == -EILSEQ);

    struct bh_fc_hdr h = { 5, 0100644, 0x100000002ull, 1, 2, 3, 4 }, g;
    uint8_t raw[32];
    bh_fc_hdr_encode(raw, &h);
    bh_fc_hdr_decode(raw, &g);
    CHECK(g.namelen == 5 && g.mode == 0100644 && g.filelen == 0x100000002ull && g.mtime_nsec == 4);
    CHECK(raw[8] == 2 && raw[12] == 1);
    return tap_done();
}
