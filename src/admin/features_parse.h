/* What a qube asks of dom0 through qubes.FeaturesRequest / qubes.NotifyTools: in Qubes
 * the qube writes /features-request/KEY (or /qubes-tools/KEY) into its QubesDB and
 * qubesd reads them; Bulkhead has no QubesDB, so the same KEY=VALUE pairs are the
 * call's payload, one per line. Parsed here, bounded, before any extension looks at it. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#define BH_FR_MAX 256       /* entries in one request */
#define BH_FR_KEY 64        /* key length, bytes (QubesDB path component) */
#define BH_FR_VAL 1024      /* value length, bytes */

struct bh_fr_entry {
    char key[BH_FR_KEY + 1];
    char val[BH_FR_VAL + 1];
};

struct bh_fr {
    size_t n;
    struct bh_fr_entry e[BH_FR_MAX];
};

/* Lines KEY=VALUE ('\n'-separated, a last '\n' optional). Keys: [A-Za-z0-9._-], not
 * empty; values checked against `safe` (Qubes' safe set of the service). A key given
 * twice keeps the last value (QubesDB). 0, or -1 with Qubes' reason in msg. */
int bh_fr_parse(const char *data, size_t len, const char *safe, struct bh_fr *out, char *msg, size_t msglen);
const char *bh_fr_get(const struct bh_fr *f, const char *key);

/* Qubes' safe sets: qubes.FeaturesRequest values, qubes.NotifyTools values. */
#define BH_FR_SAFE_REQUEST "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.,_= "
#define BH_FR_SAFE_TOOLS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
