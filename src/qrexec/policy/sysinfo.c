/* The system-info snapshot: storage, look-ups, and the small text format for tests. */
#include "sysinfo.h"
#include "cleanup.h"
#include "io.h"
#include "names.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const klass_names[] = {
    [BH_KLASS_ADMINVM] = "AdminVM",       [BH_KLASS_APPVM] = "AppVM",
    [BH_KLASS_TEMPLATEVM] = "TemplateVM", [BH_KLASS_DISPVM] = "DispVM",
    [BH_KLASS_STANDALONEVM] = "StandaloneVM",
};

int bh_policy_klass_parse(const char *s)
{
    for (size_t i = 0; i < BH_ARRAY_SIZE(klass_names); i++)
        if (!strcmp(s, klass_names[i]))
            return (int)i;
    return -1;
}

const char *bh_policy_klass_name(enum bh_klass k)
{
    return (size_t)k < BH_ARRAY_SIZE(klass_names) ? klass_names[k] : "?";
}

bool bh_power_state_running(const char *s)
{
    return !strcmp(s, "Running") || !strcmp(s, "Transient") || !strcmp(s, "Paused") ||
           !strcmp(s, "Suspended");
}

bool bh_uuid_valid(const char *s)
{
    static const int dash[] = { 8, 13, 18, 23 };
    if (strlen(s) != 36)
        return false;
    for (int i = 0, d = 0; i < 36; i++) {
        if (d < 4 && i == dash[d]) {
            if (s[i] != '-')
                return false;
            d++;
        } else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    return true;
}

void bh_sysinfo_init(struct bh_sysinfo *si) { memset(si, 0, sizeof *si); }

static void qube_free(struct bh_qube_info *q)
{
    free(q->name);
    free(q->uuid);
    free(q->default_dispvm);
    free(q->template);
    for (size_t i = 0; i < q->n_tags; i++)
        free(q->tags[i]);
    free(q->tags);
}

void bh_sysinfo_free(struct bh_sysinfo *si)
{
    for (size_t i = 0; i < si->n; i++)
        qube_free(&si->qubes[i]);
    free(si->qubes);
    memset(si, 0, sizeof *si);
}

const struct bh_qube_info *bh_sysinfo_find(const struct bh_sysinfo *si, const char *name)
{
    for (size_t i = 0; i < si->n; i++)
        if (!strcmp(si->qubes[i].name, name))
            return &si->qubes[i];
    return NULL;
}

const struct bh_qube_info *bh_sysinfo_find_uuid(const struct bh_sysinfo *si, const char *uuid)
{
    for (size_t i = 0; i < si->n; i++)
        if (si->qubes[i].uuid && !strcmp(si->qubes[i].uuid, uuid))
            return &si->qubes[i];
    return NULL;
}

const struct bh_qube_info *bh_sysinfo_adminvm(const struct bh_sysinfo *si)
{
    for (size_t i = 0; i < si->n; i++)
        if (si->qubes[i].klass == BH_KLASS_ADMINVM)
            return &si->qubes[i];
    return NULL;
}

int bh_qube_set_str(char **field, const char *value, bh_error *err)
{
    char *c = NULL;
    if (value && !(c = strdup(value)))
        return bh_fail_errno(err, "strdup");
    free(*field);
    *field = c;
    return 0;
}

struct bh_qube_info *bh_sysinfo_add(struct bh_sysinfo *si, const char *name, enum bh_klass k,
                                    const char *uuid, bh_error *err)
{
    const char *why;
    /* dom0 is the one AdminVM name that Qubes' naming rules would otherwise accept
     * anyway; any other name must be a valid qube name. */
    if (!bh_qube_name_valid(name, &why)) {
        bh_fail(err, EINVAL, "qube %.64s: %s", name, why);
        return NULL;
    }
    if ((size_t)k >= BH_ARRAY_SIZE(klass_names)) {
        bh_fail(err, EINVAL, "qube %s: bad class", name);
        return NULL;
    }
    if (bh_sysinfo_find(si, name)) {
        bh_fail(err, EEXIST, "qube %s listed twice", name);
        return NULL;
    }
    if (k == BH_KLASS_ADMINVM && bh_sysinfo_adminvm(si)) {
        bh_fail(err, EEXIST, "more than one AdminVM (%s)", name);
        return NULL;
    }
    if (uuid && (!bh_uuid_valid(uuid) || bh_sysinfo_find_uuid(si, uuid))) {
        bh_fail(err, EINVAL, "qube %s: bad or duplicate uuid", name);
        return NULL;
    }
    if (si->n >= BH_SYSINFO_MAX_QUBES) {
        bh_fail(err, E2BIG, "more than %d qubes", BH_SYSINFO_MAX_QUBES);
        return NULL;
    }
    if (si->n == si->cap) {
        size_t nc = si->cap ? si->cap * 2 : 16;
        struct bh_qube_info *nq = realloc(si->qubes, nc * sizeof *nq);
        if (!nq) {
            bh_fail_errno(err, "realloc");
            return NULL;
        }
        si->qubes = nq;
        si->cap = nc;
    }
    struct bh_qube_info *q = &si->qubes[si->n];
    memset(q, 0, sizeof *q);
    q->klass = k;
    q->name = strdup(name);
    q->tags = calloc(1, sizeof *q->tags);
    if (!q->name || !q->tags || (uuid && !(q->uuid = strdup(uuid)))) {
        qube_free(q);
        bh_fail_errno(err, "strdup");
        return NULL;
    }
    /* dom0 is always running: calls to it never need a start. */
    q->running = k == BH_KLASS_ADMINVM;
    si->n++;
    return q;
}

bool bh_qube_has_tag(const struct bh_qube_info *q, const char *tag)
{
    for (size_t i = 0; i < q->n_tags; i++)
        if (!strcmp(q->tags[i], tag))
            return true;
    return false;
}

int bh_qube_add_tag(struct bh_qube_info *q, const char *tag, bh_error *err)
{
    if (!bh_ident_valid(tag, 255))
        return bh_fail(err, EINVAL, "qube %s: bad tag name", q->name);
    if (bh_qube_has_tag(q, tag))
        return 0;
    if (q->n_tags >= BH_SYSINFO_MAX_TAGS)
        return bh_fail(err, E2BIG, "qube %s: too many tags", q->name);
    char **nt = realloc(q->tags, (q->n_tags + 2) * sizeof *nt);
    if (!nt)
        return bh_fail_errno(err, "realloc");
    q->tags = nt;
    if (!(nt[q->n_tags] = strdup(tag)))
        return bh_fail_errno(err, "strdup");
    nt[++q->n_tags] = NULL;
    return 0;
}

static int parse_bool(const char *v, bool *out)
{
    if (!strcmp(v, "yes") || !strcmp(v, "True") || !strcmp(v, "true") || !strcmp(v, "1"))
        *out = true;
    else if (!strcmp(v, "no") || !strcmp(v, "False") || !strcmp(v, "false") || !strcmp(v, "0") ||
             !*v)
        *out = false;
    else
        return -1;
    return 0;
}

/* One "key=value" field of the test format. */
static int parse_field(struct bh_qube_info *q, char *field, bh_error *err)
{
    char *eq = strchr(field, '=');
    if (!eq)
        return bh_fail(err, EINVAL, "expected key=value, got '%.64s'", field);
    *eq = '\0';
    const char *k = field, *v = eq + 1;
    if (!strcmp(k, "state")) {
        q->running = q->klass == BH_KLASS_ADMINVM || bh_power_state_running(v);
        return 0;
    }
    if (!strcmp(k, "template_for_dispvms")) {
        if (parse_bool(v, &q->template_for_dispvms) < 0)
            return bh_fail(err, EINVAL, "template_for_dispvms: yes or no");
        return 0;
    }
    if (!strcmp(k, "default_dispvm") || !strcmp(k, "template")) {
        if (*v && !bh_qube_name_valid(v, NULL))
            return bh_fail(err, EINVAL, "%s: bad qube name", k);
        return bh_qube_set_str(!strcmp(k, "template") ? &q->template : &q->default_dispvm,
                               *v ? v : NULL, err);
    }
    if (!strcmp(k, "tags")) {
        char *save = NULL;
        for (char *t = strtok_r((char *)v, ",", &save); t; t = strtok_r(NULL, ",", &save))
            if (bh_qube_add_tag(q, t, err) < 0)
                return -1;
        return 0;
    }
    return bh_fail(err, EINVAL, "unknown key '%.32s'", k);
}

int bh_sysinfo_parse(struct bh_sysinfo *si, const char *text, bh_error *err)
{
    _cleanup_free_ char *copy = strdup(text);
    if (!copy)
        return bh_fail_errno(err, "strdup");
    unsigned lineno = 0;
    /* strtok_r skips empty lines, so count lines by hand. */
    for (char *line = copy, *next; line; line = next) {
        lineno++;
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char *save = NULL;
        char *name = strtok_r(line, " \t", &save);
        if (!name || name[0] == '#')
            continue;
        char *klass = strtok_r(NULL, " \t", &save);
        int k = klass ? bh_policy_klass_parse(klass) : -1;
        if (k < 0)
            return bh_fail(err, EINVAL, "line %u: expected NAME CLASS", lineno);
        char *fields[16];
        size_t nf = 0;
        const char *uuid = NULL;
        for (char *f; (f = strtok_r(NULL, " \t", &save));) {
            if (!strncmp(f, "uuid=", 5))
                uuid = f + 5;
            else if (nf < BH_ARRAY_SIZE(fields))
                fields[nf++] = f;
            else
                return bh_fail(err, E2BIG, "line %u: too many fields", lineno);
        }
        struct bh_qube_info *q = bh_sysinfo_add(si, name, (enum bh_klass)k, uuid, err);
        if (!q)
            return bh_prefix(err, "line %u", lineno);
        for (size_t i = 0; i < nf; i++)
            if (parse_field(q, fields[i], err) < 0)
                return bh_prefix(err, "line %u", lineno);
    }
    if (!bh_sysinfo_adminvm(si) && !bh_sysinfo_add(si, "dom0", BH_KLASS_ADMINVM, NULL, err))
        return -1;
    return 0;
}

int bh_sysinfo_load_file(struct bh_sysinfo *si, const char *path, bh_error *err)
{
    size_t len;
    _cleanup_free_ char *text = bh_read_file(path, 4u << 20, &len);
    if (!text)
        return bh_fail_errno(err, "cannot read %s", path);
    if (strlen(text) != len)
        return bh_fail(err, EINVAL, "%s: NUL byte", path);
    if (bh_sysinfo_parse(si, text, err) < 0)
        return bh_prefix(err, "%s", path);
    return 0;
}
