#include "vmexec.h"
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static bool plain(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
}

int bh_vmexec_encode(char *const *argv, size_t argc, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t off = 0;
    for (size_t i = 0; i < argc; i++) {
        if (i > 0) {
            if (off + 1 >= size)
                return -1;
            out[off++] = '+';
        }
        for (const unsigned char *p = (const unsigned char *)argv[i]; *p; p++) {
            size_t need = plain(*p) ? 1 : *p == '-' ? 2 : 3;
            if (off + need >= size)
                return -1;
            if (plain(*p)) {
                out[off++] = (char)*p;
            } else if (*p == '-') {
                out[off++] = '-';
                out[off++] = '-';
            } else {
                out[off++] = '-';
                out[off++] = hex[*p >> 4];
                out[off++] = hex[*p & 15];
            }
        }
    }
    if (off >= size)
        return -1;
    out[off] = '\0';
    return (int)off;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1; /* Qubes writes upper case only; anything else is not its encoding */
}

int bh_vmexec_decode(const char *arg, char ***argv_out, size_t *argc_out, bh_error *err)
{
    *argv_out = NULL;
    size_t len = strnlen(arg, BH_VMEXEC_MAX_LEN + 1);
    if (len > BH_VMEXEC_MAX_LEN)
        return bh_fail(err, E2BIG, "qubes.VMExec argument longer than %d bytes", BH_VMEXEC_MAX_LEN);
    if (len == 0)
        return bh_fail(err, EINVAL, "qubes.VMExec without a command");
    size_t argc = 1;
    for (size_t i = 0; i < len; i++)
        if (arg[i] == '+')
            argc++;
    if (argc > BH_VMEXEC_MAX_ARGS)
        return bh_fail(err, E2BIG, "qubes.VMExec with more than %d arguments", BH_VMEXEC_MAX_ARGS);
    /* one block: the pointer array, then the decoded strings (never longer than encoded) */
    char **v = malloc((argc + 1) * sizeof *v + len + 1);
    if (!v)
        return bh_fail_errno(err, "malloc");
    char *s = (char *)(v + argc + 1);
    size_t n = 0;
    v[n++] = s;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)arg[i];
        if (c == '+') {
            *s++ = '\0';
            v[n++] = s;
        } else if (plain(c)) {
            *s++ = (char)c;
        } else if (c == '-') {
            if (i + 1 < len && arg[i + 1] == '-') {
                *s++ = '-';
                i++;
                continue;
            }
            int hi = i + 2 < len ? hexval(arg[i + 1]) : -1, lo = hi >= 0 ? hexval(arg[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                free(v);
                return bh_fail(err, EINVAL, "qubes.VMExec: '-' must start '--' or '-XX' (byte %zu)", i);
            }
            if (hi == 0 && lo == 0) {
                free(v);
                return bh_fail(err, EINVAL, "qubes.VMExec: NUL byte in an argument");
            }
            *s++ = (char)(hi << 4 | lo);
            i += 2;
        } else {
            free(v);
            return bh_fail(err, EINVAL, "qubes.VMExec: byte 0x%02x outside the encoding", c);
        }
    }
    *s = '\0';
    v[n] = NULL;
    if (!v[0][0]) {
        free(v);
        return bh_fail(err, EINVAL, "qubes.VMExec: empty command");
    }
    *argv_out = v;
    if (argc_out)
        *argc_out = n;
    return 0;
}
