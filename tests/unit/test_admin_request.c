#include "tap.h"
#include "request.h"
#include "response.h"
#include <string.h>

static int parse(const char *s, size_t n, struct bh_request *r) { return bh_request_parse(s, n, r, NULL); }
#define P(lit, r) parse(lit, sizeof(lit) - 1, r)

int main(void)
{
    struct bh_request r;
    CHECK(P("admin.vm.List+ dom0 name dom0\0", &r) == 0);
    CHECK(!strcmp(r.method, "admin.vm.List") && !strcmp(r.arg, "") && !strcmp(r.dest, "dom0") && r.payload_len == 0);
    CHECK(P("admin.vm.property.Set+netvm dom0 name work\0sys-net", &r) == 0);
    CHECK(!strcmp(r.arg, "netvm") && r.payload_len == 7 && !memcmp(r.payload, "sys-net", 7));
    CHECK(P("admin.vm.List+ dom0 keyword adminvm\0", &r) == 0 && !strcmp(r.dest, "dom0"));
    CHECK(P("a+b+c dom0 name x\0", &r) == 0 && !strcmp(r.method, "a") && !strcmp(r.arg, "b+c"));
    /* hostile and malformed headers */
    CHECK(P("admin.vm.List dom0 name dom0\0", &r) < 0);          /* no '+' */
    CHECK(P("admin.vm.List+ dom0 name dom0", &r) < 0);           /* no NUL */
    CHECK(P("admin.vm.List+ dom0 name\0", &r) < 0);              /* 3 fields */
    CHECK(P("admin.vm.List+ dom0 name dom0 x\0", &r) < 0);       /* 5 fields */
    CHECK(P("admin.vm.List+  dom0 name dom0\0", &r) < 0);        /* double space */
    CHECK(P("admin.vm.List+ dom0 keyword other\0", &r) < 0);
    CHECK(P("admin.vm.List+ dom0 uuid dom0\0", &r) < 0);
    CHECK(P("admin.vm.List+ do\xffm0 name dom0\0", &r) < 0);     /* non-ASCII */
    CHECK(P("admin.vm.List+ dom0 name dom\x01\0", &r) < 0);      /* control */
    CHECK(P("+x dom0 name dom0\0", &r) < 0);                     /* empty method */
    char big[300];
    memset(big, 'a', sizeof big);
    memcpy(big + 290, "+ x name d", 10);
    CHECK(parse(big, sizeof big, &r) < 0);
    static char huge[70 * 1024];
    memcpy(huge, "a+ b name c\0", 12);
    CHECK(parse(huge, sizeof huge, &r) < 0);

    /* responses */
    bh_buf b;
    bh_buf_init(&b, 0);
    struct bh_exc e;
    bh_exc(&e, "QubesValueError", "100%% sure");
    bh_reply_exc(&b, &e);
    CHECK(b.len == sizeof("2\0QubesValueError\0\0" "100%% sure\0") - 1);
    CHECK(!memcmp(b.data, "2\0QubesValueError\0\0" "100%% sure\0", b.len));
    bh_buf_reset(&b);
    const char *kv[] = { "vm", "work", NULL };
    bh_reply_event(&b, "", "domain-add", kv);
    CHECK(b.len == sizeof("1\0\0domain-add\0vm\0work\0\0") - 1 && !memcmp(b.data, "1\0\0domain-add\0vm\0work\0\0", b.len));
    bh_buf_free(&b);
    return tap_done();
}
