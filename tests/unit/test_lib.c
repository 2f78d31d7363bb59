#include "tap.h"
#include "buf.h"
#include "names.h"
#include "err.h"
#include <string.h>
#include <errno.h>

int main(void)
{
    bh_buf b;
    bh_buf_init(&b, 8);
    CHECK(bh_buf_adds(&b, "12345678") == 0);
    CHECK(bh_buf_addc(&b, 'x') == -1 && errno == E2BIG);
    CHECK(b.len == 8);
    bh_buf_consume(&b, 3);
    CHECK(b.len == 5 && memcmp(b.data, "45678", 5) == 0);
    bh_buf_free(&b);

    CHECK(bh_qube_name_valid("work", NULL));
    CHECK(bh_qube_name_valid("sys-net", NULL));
    CHECK(!bh_qube_name_valid("1work", NULL));
    CHECK(!bh_qube_name_valid("none", NULL));
    CHECK(!bh_qube_name_valid("foo-dm", NULL));
    CHECK(!bh_qube_name_valid("a/b", NULL));
    CHECK(!bh_qube_name_valid("", NULL));
    CHECK(bh_qube_name_valid("abcdefghijabcdefghijabcdefghij1", NULL));
    CHECK(!bh_qube_name_valid("abcdefghijabcdefghijabcdefghij12", NULL));

    bh_error e;
    CHECK(bh_fail(&e, 5, "x %d", 1) == -1 && !strcmp(e.msg, "x 1") && e.errnum == 5);
    bh_prefix(&e, "ctx");
    CHECK(!strcmp(e.msg, "ctx: x 1"));
    return tap_done();
}
