/* Unit tests of the tools' parsers and formatters (no daemon needed). */
#include "../../tests/unit/tap.h"
#include "api.h"
#include "cli.h"
#include "fwrule.h"
#include "sizes.h"
#include "table.h"
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char *table_text(const struct table *t)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    table_print(t, f);
    fclose(f);
    char *out = qt_strdup(buf);
    free(buf);
    return out;
}

static void test_table(void)
{
    struct table t;
    table_init(&t, 2);
    const char *r1[] = { "a", "1" }, *r2[] = { "longname", "" }, *r3[] = { "b", "xyz" };
    table_add(&t, r1, 2);
    table_add(&t, r2, 2);
    table_add(&t, r3, 2);
    /* What `column -t -s US` prints for the same rows. */
    CHECK(!strcmp(table_text(&t), "a         1\nlongname  \nb         xyz\n"));
}

static struct strv words(const char *s)
{
    struct strv v = { 0 };
    char *c = qt_strdup(s), *save = NULL;
    for (char *w = strtok_r(c, " ", &save); w; w = strtok_r(NULL, " ", &save))
        strv_push(&v, w);
    return v;
}

static const char *fw_args(const char *s)
{
    struct strv v = words(s);
    struct fwrule r;
    const char *err;
    if (!fwrule_parse_args(&v, 1000, &r, &err))
        return qt_printf("ERR %s", err);
    return fwrule_format(&r);
}

static const char *fw_line(const char *s)
{
    struct fwrule r;
    const char *err;
    if (!fwrule_parse_line(s, &r, &err))
        return qt_printf("ERR %s", err);
    return fwrule_format(&r);
}

static void test_fwrule(void)
{
    /* Qubes' own test vectors (qubesadmin/tests/tools/qvm_firewall.py). */
    CHECK(!strcmp(fw_args("dsthost=127.0.0.1 action=accept"), "action=accept dst4=127.0.0.1/32"));
    CHECK(!strcmp(fw_args("accept 127.0.0.1 tcp 80"),
                  "action=accept proto=tcp dst4=127.0.0.1/32 dstports=80-80"));
    CHECK(!strcmp(fw_args("accept 127.0.0.1 icmp 8"),
                  "action=accept proto=icmp dst4=127.0.0.1/32 icmptype=8"));
    CHECK(!strcmp(fw_args("dsthost=127.0.0.1 accept dstports=443 tcp"),
                  "action=accept proto=tcp dst4=127.0.0.1/32 dstports=443-443"));
    CHECK(!strcmp(fw_args("dsthost=127.0.0.1 action=accept expire=+100"),
                  "action=accept dst4=127.0.0.1/32 expire=1100"));
    CHECK(!strcmp(fw_args("dst6=::1 accept"), "action=accept dst6=::1/128"));
    CHECK(!strncmp(fw_args("dsthost= action=accept"), "ERR invalid rule description", 28));
    CHECK(!strncmp(fw_args("accept example.com tcp 99999"), "ERR Ports out of range", 22));
    CHECK(!strncmp(fw_args("accept Bad_Host"), "ERR Invalid hostname", 20));
    CHECK(!strncmp(fw_args("accept 1.2.3.4/33"), "ERR netmask for IPv4", 20));
    CHECK(!strncmp(fw_args("foo=bar"), "ERR Invalid rule element", 24));
    CHECK(!strncmp(fw_args("dsthost=x.org"), "ERR missing action=", 19));
    CHECK(!strncmp(fw_args("accept x.org udp 5 6 7"), "ERR invalid rule description", 28));
    CHECK(!strcmp(fw_line("action=accept specialtarget=dns comment=Allow DNS and=more"),
                  "action=accept specialtarget=dns comment=Allow DNS and=more"));
    CHECK(!strncmp(fw_line("action=accept comment=a\naction=drop"), "ERR Invalid comment", 19));
    CHECK(!strcmp(fw_line("action=drop proto=icmp icmptype=8"),
                  "action=drop proto=icmp icmptype=8"));
    CHECK(!strcmp(fw_line("action=accept dst4=0.0.0.0/0"), "action=accept"));
    CHECK(!strncmp(fw_line("action=accept dstports=80"), "ERR dstports valid only", 23));
    CHECK(!strncmp(fw_line("action=reject"), "ERR invalid action", 18));
    CHECK(!strncmp(fw_line("proto=tcp"), "ERR missing action=", 19));
    CHECK(!strncmp(fw_line("action=accept junk"), "ERR invalid rule element", 24));

    struct fwrule r;
    const char *err, *cells[8];
    CHECK(fwrule_parse_line("action=accept dsthost=qubes-os.org proto=tcp dstports=443-443 "
                            "expire=1100", &r, &err));
    fwrule_cells(&r, 1000, cells);
    CHECK(!strcmp(cells[1], "qubes-os.org") && !strcmp(cells[2], "tcp"));
    CHECK(!strcmp(cells[3], "443") && !strcmp(cells[4], "-") && !strcmp(cells[6], "+100s"));
}

static void test_sizes(void)
{
    unsigned long long v;
    CHECK(parse_size("1024", &v) && v == 1024);
    CHECK(parse_size("10GiB", &v) && v == 10ULL << 30);
    CHECK(parse_size("10g", &v) && v == 10000000000ULL);
    CHECK(parse_size(" 5 MB ", &v) && v == 5000000);
    CHECK(parse_size("3Ki", &v) && v == 3072);
    CHECK(!parse_size("abc", &v));
    CHECK(!parse_size("-5", &v));
    CHECK(!parse_size("99999999999999999999GiB", &v));
}

static void test_props(void)
{
    struct prop p;
    CHECK(prop_parse("memory", "default=True type=int 400", &p));
    CHECK(p.is_default && !strcmp(p.type, "int") && !strcmp(p.value, "400"));
    CHECK(prop_parse("netvm", "default=False type=vm ", &p) && prop_is_none(&p));
    CHECK(prop_parse("kernelopts", "default=True type=str a b  c", &p));
    CHECK(!strcmp(p.value, "a b  c"));
    CHECK(!prop_parse("x", "bogus", &p));
    struct props ps;
    CHECK(props_parse_all("a default=True type=str x\\ny\nb default=False type=str c\\\\d\n", &ps));
    CHECK(ps.n == 2 && !strcmp(ps.p[0].value, "x\ny") && !strcmp(ps.p[1].value, "c\\d"));
    CHECK(!ps.p[1].is_default);
}

static void test_repr(void)
{
    CHECK(!strcmp(py_repr("work"), "'work'"));
    CHECK(!strcmp(py_repr("it's"), "\"it's\""));
    CHECK(!strcmp(py_repr("a\nb"), "'a\\nb'"));
}

static void test_cli(void)
{
    enum { A = 1, B, C };
    static const struct cli_opt o[] = {
        { "alpha", 'a', CLI_FLAG, A },
        { "beta", 'b', CLI_ARG, B },
        { "class", 0, CLI_ARGS, C },
        { NULL, 0, 0, 0 },
    };
    char *argv[] = { "t", "x", "--al", "-bV", "--class", "k1", "k2", "--beta=W", "y", "--",
                     "--alpha", "-5", NULL };
    struct cli_args a;
    cli_parse(12, argv, o, &a);
    CHECK(cli_has(&a, A));
    CHECK(!strcmp(cli_get(&a, B), "W"));
    struct strv cls = { 0 };
    cli_get_all(&a, C, &cls);
    CHECK(cls.n == 2 && !strcmp(cls.v[1], "k2"));
    CHECK(a.pos.n == 4 && !strcmp(a.pos.v[0], "x") && !strcmp(a.pos.v[2], "--alpha"));
    CHECK(!strcmp(a.pos.v[3], "-5"));

    /* Usage errors exit 2. */
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stderr);
        char *bad[] = { "t", "--nope", NULL };
        cli_parse(2, bad, o, &a);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2);
}

int main(void)
{
    test_table();
    test_fwrule();
    test_sizes();
    test_props();
    test_repr();
    test_cli();
    return tap_done();
}
