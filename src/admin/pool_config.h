/* admin.pool.Add's payload: the new pool's options, one KEY=VALUE a line, as qubesd
 * reads them (qubes/api/admin.py pool_add). Bytes from an Admin API client, which may be
 * a qube the policy lets manage pools: parsed here, bounded, before anything uses them. */
#pragma once
#include <stddef.h>

#define BH_POOLCFG_MAX_LEN 4096 /* whole payload, bytes */
#define BH_POOLCFG_MAX 16       /* options */
#define BH_POOLCFG_KEY 64       /* key length */
#define BH_POOLCFG_VAL 1024     /* value length (dir_path) */

struct bh_poolcfg {
    size_t n;
    struct {
        char key[BH_POOLCFG_KEY + 1];
        char val[BH_POOLCFG_VAL + 1];
    } o[BH_POOLCFG_MAX];
    char name[BH_POOLCFG_VAL + 1]; /* the `name` option, taken out of o[] */
};

/* Qubes' checks, in Qubes' order; on failure -1 with the exception class (static
 * string) in *exc_type and Qubes' message in msg:
 *   non-ASCII                 ProtocolError "Pool parameters contains non-ASCII characters"
 *   a line without '='        ProtocolError "Options must be separated by equal sign"
 *   a key given twice         ProtocolError "Options must be unique"
 *   no name                   ProtocolError "Pool configuration must contain key: name"
 *   name outside [A-Za-z0-9-_.]  ProtocolError "Pool name must be in safe set: ..."
 * Lines end at Python's str.splitlines() separators. Over a bound: ProtocolError. */
int bh_poolcfg_parse(const char *data, size_t len, struct bh_poolcfg *out, const char **exc_type, char *msg,
                     size_t msglen);
/* The value of option key, or NULL. */
const char *bh_poolcfg_get(const struct bh_poolcfg *c, const char *key);
