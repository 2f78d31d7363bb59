/* See render.h. Lines are handled as (pointer, length) spans of the input; numbers are
 * at most 20 digits and saturate instead of overflowing. */
#include "render.h"
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct span {
    const char *p;
    size_t n;
};

/* The next line of *text (without its newline); false at the end. */
static bool next_line(const char **text, struct span *line)
{
    const char *s = *text;
    if (!s || !*s)
        return false;
    const char *nl = strchr(s, '\n');
    line->p = s;
    line->n = nl ? (size_t)(nl - s) : strlen(s);
    *text = nl ? nl + 1 : s + line->n;
    return true;
}

static bool is_blank(char c) { return c == ' ' || c == '\t'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* The first token of a line (after leading blanks). */
static struct span first_token(struct span l)
{
    size_t i = 0;
    while (i < l.n && is_blank(l.p[i]))
        i++;
    size_t j = i;
    while (j < l.n && !is_blank(l.p[j]))
        j++;
    return (struct span){ l.p + i, j - i };
}

static bool starts_with(struct span l, const char *word)
{
    size_t n = strlen(word);
    return l.n >= n && !memcmp(l.p, word, n);
}

/* A decimal number made of p[0..n) (digits only, n >= 1); saturates. */
static uint64_t number(const char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t d = (uint64_t)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return UINT64_MAX;
        v = v * 10 + d;
    }
    return v;
}

/* Reads the next blank-separated number at l[*pos]; false (pos unchanged) if the next
 * token is not a plain number. *start gets where its leading blanks begin. */
static bool next_number(struct span l, size_t *pos, uint64_t *v)
{
    size_t i = *pos;
    while (i < l.n && is_blank(l.p[i]))
        i++;
    size_t d = i;
    while (i < l.n && is_digit(l.p[i]) && i - d < 21)
        i++;
    if (i == d || (i < l.n && !is_blank(l.p[i])))
        return false;
    *v = number(l.p + d, i - d);
    *pos = i;
    return true;
}

/* One line with its first max_nums counts shown as 0, each right-aligned in the
 * columns the original number took. Why 0 and not the growth since the qube's start:
 * interrupt, softirq, context-switch and fork counts are the host's, so their growth
 * carries every other qube's activity (a NIC's or disk's interrupts, keystroke timing
 * on an input line, forks anywhere): a side channel. Names, chips and layout stay, so
 * tools that parse the files (vmstat, top) still work. */
static int zero_from(bh_buf *out, struct span l, size_t pos, size_t max_nums, bool keep_width);

static int zero_line(bh_buf *out, struct span l, size_t max_nums)
{
    struct span key = first_token(l);
    return zero_from(out, l, (size_t)(key.p - l.p) + key.n, max_nums, true);
}

/* l[0..pos) as it is, then up to max_nums numbers as 0, then the rest as it is. With
 * keep_width each 0 fills the columns its number took (files the kernel pads into
 * columns); else it keeps the blanks before the number and is one digit wide (files the
 * kernel writes with single spaces: a padded 0 would show how many digits the host's
 * number had). */
static int zero_from(bh_buf *out, struct span l, size_t pos, size_t max_nums, bool keep_width)
{
    if (bh_buf_add(out, l.p, pos) < 0)
        return -1;
    for (size_t k = 0; k < max_nums; k++) {
        size_t start = pos;
        uint64_t cur;
        if (!next_number(l, &pos, &cur))
            break;
        size_t blanks = 0;
        while (start + blanks < pos && is_blank(l.p[start + blanks]))
            blanks++;
        if (keep_width ? bh_buf_printf(out, "%*u", (int)(pos - start), 0u) < 0
                       : bh_buf_add(out, l.p + start, blanks) < 0 || bh_buf_addc(out, '0') < 0)
            return -1;
    }
    if (bh_buf_add(out, l.p + pos, l.n - pos) < 0 || bh_buf_addc(out, '\n') < 0)
        return -1;
    return 0;
}

int bh_pf_render_zeroed(bh_buf *out, const char *cur)
{
    struct span l;
    size_t cols = 0;
    bool header = true;
    while (next_line(&cur, &l)) {
        if (header) {
            /* "   CPU0   CPU1 ...": kept, and it says how many counts a line has */
            for (size_t i = 0; i < l.n; i++)
                if ((i == 0 || is_blank(l.p[i - 1])) && l.n - i >= 3 && !memcmp(l.p + i, "CPU", 3))
                    cols++;
            header = false;
            if (bh_buf_add(out, l.p, l.n) < 0 || bh_buf_addc(out, '\n') < 0)
                return -1;
            continue;
        }
        if (zero_line(out, l, cols) < 0)
            return -1;
    }
    return 0;
}

unsigned bh_pf_stat_cpus(const char *host_stat, unsigned *out, unsigned max)
{
    struct span l;
    unsigned n = 0;
    while (next_line(&host_stat, &l) && n < max) {
        if (l.n < 4 || memcmp(l.p, "cpu", 3) || !is_digit(l.p[3]))
            continue;
        size_t i = 3;
        while (i < l.n && is_digit(l.p[i]) && i < 10)
            i++;
        uint64_t c = number(l.p + 3, i - 3);
        if (c < BH_PF_MAX_CPUS)
            out[n++] = (unsigned)c;
    }
    return n;
}

/* Ticks (USER_HZ) of user, system and idle time of CPU c as the qube sees it. */
static void cpu_ticks(const struct bh_pf_view *v, unsigned c, uint64_t t[3])
{
    uint64_t ns_per_tick = 1000000000ull / (v->hz ? v->hz : 100);
    uint64_t age = v->age_ns / ns_per_tick;
    t[0] = c < v->ncpu ? v->cpus[c].user_ns / ns_per_tick : 0;
    t[1] = c < v->ncpu ? v->cpus[c].system_ns / ns_per_tick : 0;
    t[2] = age > t[0] + t[1] ? age - t[0] - t[1] : 0;
}

static int cpu_line(bh_buf *out, const char *name, const uint64_t t[3])
{
    return bh_buf_printf(out, "%s %llu 0 %llu %llu 0 0 0 0 0 0\n", name, (unsigned long long)t[0],
                         (unsigned long long)t[1], (unsigned long long)t[2]);
}

int bh_pf_render_stat(bh_buf *out, const char *host_stat, const struct bh_pf_view *v)
{
    static unsigned list[BH_PF_MAX_CPUS];
    unsigned n = bh_pf_stat_cpus(host_stat, list, BH_PF_MAX_CPUS);
    uint64_t sum[3] = { 0, 0, 0 };
    for (unsigned i = 0; i < n; i++) {
        uint64_t t[3];
        cpu_ticks(v, list[i], t);
        for (int k = 0; k < 3; k++)
            sum[k] += t[k];
    }
    if (cpu_line(out, "cpu ", sum) < 0)
        return -1;
    for (unsigned i = 0; i < n; i++) {
        uint64_t t[3];
        char name[24];
        cpu_ticks(v, list[i], t);
        snprintf(name, sizeof name, "cpu%u", list[i]);
        if (cpu_line(out, name, t) < 0)
            return -1;
    }
    struct span l;
    while (next_line(&host_stat, &l)) {
        int r = 0;
        if (starts_with(l, "cpu"))
            continue; /* written above */
        else if (starts_with(l, "btime "))
            r = bh_buf_printf(out, "btime %llu\n", (unsigned long long)v->btime);
        else if (starts_with(l, "intr ") || starts_with(l, "ctxt ") || starts_with(l, "processes ") ||
                 starts_with(l, "softirq "))
            r = zero_line(out, l, SIZE_MAX);
        else if (starts_with(l, "procs_running "))
            r = bh_buf_printf(out, "procs_running 1\n"); /* the reader; the host's load is not the qube's */
        else if (starts_with(l, "procs_blocked "))
            r = bh_buf_printf(out, "procs_blocked 0\n");
        else /* a line this kernel has and we do not know: not shown */
            r = 0;
        if (r < 0)
            return -1;
    }
    return 0;
}

int bh_pf_render_uptime(bh_buf *out, const char *host_stat, const struct bh_pf_view *v)
{
    static unsigned list[BH_PF_MAX_CPUS];
    unsigned n = bh_pf_stat_cpus(host_stat, list, BH_PF_MAX_CPUS);
    uint64_t idle = 0;
    for (unsigned i = 0; i < n; i++) {
        uint64_t t[3];
        cpu_ticks(v, list[i], t);
        idle += t[2];
    }
    unsigned hz = v->hz ? v->hz : 100;
    uint64_t age_cs = v->age_ns / 10000000ull, idle_cs = idle * 100 / hz;
    return bh_buf_printf(out, "%llu.%02llu %llu.%02llu\n", (unsigned long long)(age_cs / 100),
                         (unsigned long long)(age_cs % 100), (unsigned long long)(idle_cs / 100),
                         (unsigned long long)(idle_cs % 100));
}

int bh_pf_parse_usage_all(const char *text, struct bh_pf_cpu *cpus, unsigned ncpu)
{
    memset(cpus, 0, sizeof *cpus * ncpu);
    struct span l;
    if (!next_line(&text, &l) || !starts_with(l, "cpu user system"))
        return -1;
    while (next_line(&text, &l)) {
        size_t pos = 0;
        uint64_t c, u, s;
        if (!next_number(l, &pos, &c) || !next_number(l, &pos, &u) || !next_number(l, &pos, &s))
            return -1;
        if (c < ncpu)
            cpus[c] = (struct bh_pf_cpu){ u, s };
    }
    return 0;
}

int bh_pf_parse_cpu_stat(const char *text, struct bh_pf_cpu *cpus, unsigned ncpu)
{
    memset(cpus, 0, sizeof *cpus * ncpu);
    uint64_t user = 0, sys = 0;
    bool have_u = false, have_s = false;
    struct span l;
    while (next_line(&text, &l)) {
        size_t pos;
        if (starts_with(l, "user_usec ")) {
            pos = 9;
            have_u = next_number(l, &pos, &user);
        } else if (starts_with(l, "system_usec ")) {
            pos = 11;
            have_s = next_number(l, &pos, &sys);
        }
    }
    if (!have_u || !have_s || !ncpu)
        return -1;
    for (unsigned c = 0; c < ncpu; c++) {
        cpus[c].user_ns = user / ncpu * 1000;
        cpus[c].system_ns = sys / ncpu * 1000;
    }
    return 0;
}

/* A token of decimal digits only. */
static bool all_digits(struct span t)
{
    if (!t.n)
        return false;
    for (size_t i = 0; i < t.n; i++)
        if (!is_digit(t.p[i]))
            return false;
    return true;
}

int bh_pf_render_counts_zeroed(bh_buf *out, const char *cur)
{
    struct span l;
    unsigned long version = 0;
    while (next_line(&cur, &l)) {
        struct span key = first_token(l);
        size_t pos = (size_t)(key.p - l.p) + key.n;
        if (key.n == 7 && !memcmp(key.p, "version", 7)) { /* schedstat's format version */
            struct span v = first_token((struct span){ l.p + pos, l.n - pos });
            version = all_digits(v) && v.n < 6 ? (unsigned long)number(v.p, v.n) : 0;
            if (bh_buf_add(out, l.p, l.n) < 0 || bh_buf_addc(out, '\n') < 0)
                return -1;
            continue;
        }
        if (bh_buf_add(out, l.p, pos) < 0)
            return -1;
        /* schedstat's "domainN CPUMASK counts..." (version 17 and later: "domainN NAME
         * CPUMASK counts..."): the name and mask stay; every other all-digit token is a
         * count and reads 0, and a token that is not one (a name, a mask with hex
         * letters or commas) stays as it is without ending the zeroing. */
        unsigned keep = starts_with(key, "domain") ? (version >= 17 ? 2 : 1) : 0;
        while (pos < l.n) {
            struct span t = first_token((struct span){ l.p + pos, l.n - pos });
            if (!t.n)
                break;
            if (bh_buf_add(out, l.p + pos, (size_t)(t.p - (l.p + pos))) < 0)
                return -1;
            bool count = !keep && all_digits(t);
            if (keep)
                keep--;
            if (count ? bh_buf_addc(out, '0') < 0 : bh_buf_add(out, t.p, t.n) < 0)
                return -1;
            pos = (size_t)(t.p - l.p) + t.n;
        }
        if (bh_buf_add(out, l.p + pos, l.n - pos) < 0 || bh_buf_addc(out, '\n') < 0)
            return -1;
    }
    return 0;
}

int bh_pf_render_pressure(bh_buf *out, const char *cur)
{
    struct span l;
    while (next_line(&cur, &l)) {
        struct span key = first_token(l);
        size_t pos = (size_t)(key.p - l.p) + key.n;
        if (bh_buf_add(out, l.p, pos) < 0)
            return -1;
        /* " NAME=VALUE" tokens: the value as 0 in its own form (avg "0.00", total "0") */
        while (pos < l.n) {
            struct span rest = { l.p + pos, l.n - pos };
            struct span t = first_token(rest);
            if (!t.n)
                break;
            const char *eq = memchr(t.p, '=', t.n);
            if (bh_buf_add(out, l.p + pos, (size_t)(t.p - (l.p + pos))) < 0)
                return -1;
            if (!eq) {
                if (bh_buf_add(out, t.p, t.n) < 0)
                    return -1;
            } else {
                bool decimal = memchr(eq, '.', t.n - (size_t)(eq - t.p)) != NULL;
                if (bh_buf_add(out, t.p, (size_t)(eq - t.p) + 1) < 0 || bh_buf_adds(out, decimal ? "0.00" : "0") < 0)
                    return -1;
            }
            pos = (size_t)(t.p - l.p) + t.n;
        }
        if (bh_buf_addc(out, '\n') < 0)
            return -1;
    }
    return 0;
}
