/* libFuzzer harness: whole Admin API requests dispatched against a model with the
 * default layout in an in-memory store: property, create, tag, feature, label, notes
 * and firewall parsers all see the bytes. Checks that every reply is well-formed. */
#include "api.h"
#include "defaults.h"
#include "store.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static struct bh_app app;

int bh_server_subscribe(void *conn, const char *filter)
{
    (void)conn;
    (void)filter;
    return -1;
}

static void setup(void)
{
    bh_error err;
    struct bh_store *s = bh_store_open(":memory:", &err);
    if (!s || bh_app_load(&app, s, &err) < 0 || bh_defaults_create(&app, &err) < 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!app.store)
        setup();
    struct bh_request r;
    if (bh_request_parse((const char *)data, size, &r, NULL) < 0)
        return 0;
    /* Keep the model bounded across runs: no creation of thousands of qubes. */
    if (app.nqubes > 64 && !strncmp(r.method, "admin.vm.Create", 15))
        return 0;
    bh_buf out;
    bh_buf_init(&out, 0);
    bh_dispatch(&app, &r, &out, NULL);
    if (out.len < 2 || (out.data[0] != '0' && out.data[0] != '2') || out.data[1] != '\0')
        __builtin_trap();
    if (out.data[0] == '2' && out.data[out.len - 1] != '\0')
        __builtin_trap();
    bh_buf_free(&out);
    return 0;
}
