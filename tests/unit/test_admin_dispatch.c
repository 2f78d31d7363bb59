/* bh_dispatch against an in-memory model with the default layout: replies are always
 * whole, even when the answer does not fit the connection's output limit. */
#include "tap.h"
#include "api.h"
#include "call_auth.h"
#include "defaults.h"
#include "store.h"
#include <stdlib.h>
#include <string.h>

static struct bh_app app;

static void call(const char *hdr, size_t limit, bh_buf *out)
{
    struct bh_request r;
    bh_buf_init(out, limit);
    if (bh_request_parse(hdr, strlen(hdr) + 1, &r, NULL) < 0)
        abort();
    bh_dispatch(&app, &r, out, NULL);
}

int main(void)
{
    bh_error err;
    struct bh_store *s = bh_store_open(":memory:", &err);
    if (!s || bh_app_load(&app, s, &err) < 0 || bh_defaults_create(&app, &err) < 0)
        return 2;
    /* A call process's "SERVICE REQUESTED" payload: hostile forms refused. */
    char svc[16], req[8];
    CHECK(bh_call_payload_parse("qubes.X b", 9, svc, sizeof svc, req, sizeof req) && !strcmp(svc, "qubes.X") &&
          !strcmp(req, "b"));
    CHECK(!bh_call_payload_parse("qubes.X", 7, svc, sizeof svc, req, sizeof req));        /* no target */
    CHECK(!bh_call_payload_parse("qubes.X ", 8, svc, sizeof svc, req, sizeof req));       /* empty target */
    CHECK(!bh_call_payload_parse(" b", 2, svc, sizeof svc, req, sizeof req));             /* empty service */
    CHECK(!bh_call_payload_parse("qubes.X  b", 10, svc, sizeof svc, req, sizeof req));    /* two blanks */
    CHECK(!bh_call_payload_parse("qubes.X b\n", 10, svc, sizeof svc, req, sizeof req));  /* control byte */
    CHECK(!bh_call_payload_parse("q\0X b", 5, svc, sizeof svc, req, sizeof req));        /* NUL */
    CHECK(!bh_call_payload_parse("qubes.X 12345678", 16, svc, sizeof svc, req, sizeof req)); /* too long */
    CHECK(!bh_call_payload_parse("qubes.Xxxxxxxxxxx b", 19, svc, sizeof svc, req, sizeof req));

    bh_buf out;
    call("admin.vm.List+ dom0 name dom0", 0, &out);
    CHECK(out.len > 2 && !memcmp(out.data, "0\0", 2) && strstr(out.data + 2, "\ndom0 class=AdminVM "));
    size_t full = out.len;
    bh_buf_free(&out);

    /* The list does not fit: an error, not a success with a cut (or empty) body. */
    call("admin.vm.List+ dom0 name dom0", full / 2, &out);
    CHECK(out.len > 2 && !memcmp(out.data, "2\0QubesException\0\0", 18));
    CHECK(out.data[out.len - 1] == '\0' && strstr(out.data + 18, "too large"));
    bh_buf_free(&out);

    call("admin.vm.List+ dom0 name dom0", full, &out);
    CHECK(out.len == full && out.data[0] == '0');
    bh_buf_free(&out);

    call("admin.vm.property.Get+memory dom0 name work", 0, &out);
    CHECK(out.len == 2 + strlen("default=True type=int 400") && !memcmp(out.data + 2, "default=True type=int 400", 25));
    bh_buf_free(&out);
    bh_app_free(&app);
    bh_store_close(s);
    return tap_done();
}
