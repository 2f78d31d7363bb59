/* Unit tests of render.c on kernel-format samples: nothing that counts from the host's
 * boot passes through, the columns stay where tools expect them, figures are the qube's. */
#include "render.h"
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *host_stat_now =
    "cpu  910000 5 810000 9100000 7 0 3 0 0 0\n"
    "cpu0 455000 2 405000 4550000 3 0 1 0 0 0\n"
    "cpu1 455000 3 405000 4550000 4 0 2 0 0 0\n"
    "intr 49292472 0 9 5\n"
    "ctxt 112590959\n"
    "btime 1796416890\n"
    "processes 1760666\n"
    "procs_running 3\n"
    "procs_blocked 1\n"
    "softirq 42787853 0 4145404\n";

static char *s(bh_buf *b)
{
    bh_buf_addc(b, '\0');
    return b->data;
}

static void test_stat(void)
{
    struct bh_pf_cpu cpus[2];
    const char *usage = "cpu user system\n0 3000000000 1000000000\n1 500000000 0\n";
    assert(bh_pf_parse_usage_all("garbage\n", cpus, 2) < 0);
    assert(bh_pf_parse_usage_all(usage, cpus, 2) == 0);
    assert(cpus[0].user_ns == 3000000000ull && cpus[0].system_ns == 1000000000ull && cpus[1].user_ns == 500000000ull);
    struct bh_pf_view v = { .age_ns = 10500000000ull, .btime = 1796430000, .hz = 100, .cpus = cpus, .ncpu = 2 };
    bh_buf b;
    bh_buf_init(&b, 1 << 16);
    assert(bh_pf_render_stat(&b, host_stat_now, &v) == 0);
    const char *want =
        "cpu  350 0 100 1650 0 0 0 0 0 0\n" /* 1050 ticks per CPU: cpu0 300+100+650, cpu1 50+0+1000 */
        "cpu0 300 0 100 650 0 0 0 0 0 0\n"
        "cpu1 50 0 0 1000 0 0 0 0 0 0\n"
        "intr        0 0 0 0\n"
        "ctxt         0\n"
        "btime 1796430000\n"
        "processes       0\n"
        "procs_running 1\n"
        "procs_blocked 0\n"
        "softirq        0 0       0\n";
    if (strcmp(s(&b), want)) {
        fprintf(stderr, "got:\n%s\nwant:\n%s\n", b.data, want);
        abort();
    }
    bh_buf_reset(&b);
    assert(bh_pf_render_uptime(&b, host_stat_now, &v) == 0);
    assert(!strcmp(s(&b), "10.50 16.50\n"));
    /* more CPU use than age (accounting started a little early): idle 0, never wraps */
    cpus[0].user_ns = 20000000000ull;
    bh_buf_reset(&b);
    assert(bh_pf_render_uptime(&b, host_stat_now, &v) == 0);
    assert(!strcmp(s(&b), "10.50 10.00\n"));
    bh_buf_free(&b);
}

static void test_cpu_stat_v2(void)
{
    struct bh_pf_cpu cpus[4];
    assert(bh_pf_parse_cpu_stat("usage_usec 9000\nuser_usec 8000\nsystem_usec 1000\n", cpus, 4) == 0);
    assert(cpus[3].user_ns == 2000000 && cpus[3].system_ns == 250000);
    assert(bh_pf_parse_cpu_stat("usage_usec 9000\n", cpus, 4) < 0);
}

static void test_zeroed(void)
{
    const char *cur = "           CPU0       CPU1       \n"
                      "  0:         50          7   IO-APIC   2-edge      timer\n"
                      "  9:          4          0   IO-APIC   9-fasteoi   acpi 12\n"
                      "LOC:    9000123    8000456   Local timer interrupts\n"
                      "ERR:          3\n";
    const char *want = "           CPU0       CPU1       \n"
                       "  0:          0          0   IO-APIC   2-edge      timer\n"
                       "  9:          0          0   IO-APIC   9-fasteoi   acpi 12\n"
                       "LOC:          0          0   Local timer interrupts\n"
                       "ERR:          0\n";
    bh_buf b;
    bh_buf_init(&b, 1 << 16);
    assert(bh_pf_render_zeroed(&b, cur) == 0);
    if (strcmp(s(&b), want)) {
        fprintf(stderr, "got:\n%s\nwant:\n%s\n", b.data, want);
        abort();
    }
    /* softirqs: the same shape */
    bh_buf_reset(&b);
    assert(bh_pf_render_zeroed(&b, "                    CPU0       CPU1\n       TIMER:    2189740    1955558\n") == 0);
    assert(!strcmp(s(&b), "                    CPU0       CPU1\n       TIMER:          0          0\n"));
    /* the limit holds: a text larger than the buffer fails, it is not cut */
    bh_buf small;
    bh_buf_init(&small, 16);
    assert(bh_pf_render_zeroed(&small, cur) < 0);
    bh_buf_free(&small);
    bh_buf_free(&b);
}

/* Counters that grow with the whole host's activity read as 0, names and columns kept. */
static void test_counts_and_pressure(void)
{
    static const struct {
        int (*render)(bh_buf *, const char *);
        const char *why, *in, *want;
    } cases[] = {
        { bh_pf_render_counts_zeroed, "vmstat",
          "nr_free_pages 5072910\npgpgin 88811234\nnuma_hit 981640043\n",
          "nr_free_pages 0\npgpgin 0\nnuma_hit 0\n" },
        { bh_pf_render_counts_zeroed, "schedstat version 15",
          "version 15\ntimestamp 4298331234\n"
          "cpu0 0 0 0 0 0 0 8123456789 912345 4567\n"
          "domain0 00000003 1 2 3 0 0 0\ndomain1 ff,00000003 7 8\n",
          "version 15\ntimestamp 0\ncpu0 0 0 0 0 0 0 0 0 0\n"
          "domain0 00000003 0 0 0 0 0 0\ndomain1 ff,00000003 0 0\n" },
        /* version 17 (Linux 6.13): the domain's name before its mask; a token that is
         * not a count does not end the zeroing */
        { bh_pf_render_counts_zeroed, "schedstat version 17",
          "version 17\ntimestamp 4298331234\n"
          "domain0 MC 00000003 1 2 3\ndomain1 PKG ff,0000000f 7 8\n"
          "cpu1 5 x 6\n",
          "version 17\ntimestamp 0\n"
          "domain0 MC 00000003 0 0 0\ndomain1 PKG ff,0000000f 0 0\ncpu1 0 x 0\n" },
        { bh_pf_render_pressure, "pressure",
          "some avg10=78.90 avg60=75.42 avg300=69.55 total=24713219530\n"
          "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
          "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
          "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bh_buf b;
        bh_buf_init(&b, 1 << 16);
        assert(cases[i].render(&b, cases[i].in) == 0);
        if (strcmp(s(&b), cases[i].want)) {
            fprintf(stderr, "%s: got:\n%s\nwant:\n%s\n", cases[i].why, b.data, cases[i].want);
            abort();
        }
        bh_buf_free(&b);
    }
}

int main(void)
{
    test_counts_and_pressure();
    test_stat();
    test_cpu_stat_v2();
    test_zeroed();
    puts("procfs render: ok");
    return 0;
}
