/* Qubes' device serialisation (qubes/device_protocol.py): the `key='value' ...` text of
 * a DeviceAssignment that admin.vm.device.<class>.{Attach,Assign} receive as payload.
 * Parsed as Qubes' DeviceSerializer.unpack_properties splits it (same quirks), checked
 * as DeviceAssignment.deserialize checks it, with Qubes' ProtocolError messages. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#define BH_DEVA_MAX_PAYLOAD 4096 /* Qubes sets none; a real assignment is ~200 bytes */
#define BH_DEVA_MAX_PROPS 32
#define BH_DEVA_KEY 64
#define BH_DEVA_VAL 256

struct bh_dev_kv {
    char key[BH_DEVA_KEY];
    char val[BH_DEVA_VAL];
};

struct bh_dev_props {
    size_t n;
    struct bh_dev_kv kv[BH_DEVA_MAX_PROPS];
};

/* unpack_properties: 0, or -1 with Qubes' message in msg. Keys and values are checked
 * against Qubes' allowed characters; a key given twice keeps its first place and its
 * last value (a Python dict). */
int bh_dev_props_unpack(const char *data, size_t len, struct bh_dev_props *out, char *msg, size_t msglen);
const char *bh_dev_props_get(const struct bh_dev_props *p, const char *key);

struct bh_dev_assignment {
    char device_id[BH_DEVA_VAL];
    char mode[BH_DEVA_VAL];       /* manual, ask-to-attach, auto-attach, required */
    char frontend[BH_DEVA_VAL];   /* frontend_domain if given, else "" */
    struct bh_dev_props options;  /* the `_key` properties, without the underscore */
};

/* DeviceAssignment.deserialize against the device the argument named: backend, port,
 * devclass and (unless expected_devid is "*") device_id must match when present. */
int bh_dev_assignment_parse(const char *data, size_t len, const char *backend, const char *port,
                            const char *devclass, const char *expected_devid, struct bh_dev_assignment *out,
                            char *msg, size_t msglen);

/* Appends ` key='value'` (value quoted as Qubes' serialize_str) to a buffer of size n;
 * returns false if it does not fit. */
bool bh_dev_pack(char *buf, size_t n, const char *key, const char *value);
