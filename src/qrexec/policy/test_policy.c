/* Unit tests of the policy engine: every token, action, parameter and directive, the
 * evaluation rules, and hostile files. Each test builds its own policy directory under
 * a private temporary directory and removes it at the end. */
#include "policy.h"
#include "../../../tests/unit/tap.h"
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[256];
static char pdir[300];
static struct bh_sysinfo si;

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st; (void)flag; (void)f;
    return remove(p);
}

static void reset_dir(void)
{
    nftw(pdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    mkdir(pdir, 0755);
}

static void put(const char *name, const char *text)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", pdir, name);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    mkdir(path, 0755);
    *slash = '/';
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

static bh_policy *load1(const char *text)
{
    reset_dir();
    put("30-test.policy", text);
    return bh_policy_load_dir(pdir);
}

/* Number of syntax errors a single file produces. */
static size_t nerr(const char *text)
{
    bh_policy *p = load1(text);
    size_t n = bh_policy_error_count(p);
    bh_policy_free(p);
    return n;
}

static bool err_has(bh_policy *p, const char *needle)
{
    for (size_t i = 0; i < bh_policy_error_count(p); i++)
        if (strstr(bh_policy_error(p, i), needle))
            return true;
    return false;
}

static enum bh_policy_decision ev(bh_policy *p, const char *src, const char *tgt, const char *svc,
                                  struct bh_policy_result *r)
{
    return bh_policy_evaluate(p, &si, src, tgt, svc, r);
}

/* Evaluates one call against a one-file policy and returns the decision; target and
 * line of the deciding rule written to the optional outs. */
static enum bh_policy_decision ev1(const char *text, const char *src, const char *tgt,
                                   const char *svc, char *target_out, unsigned *line_out)
{
    bh_policy *p = load1(text);
    CHECK(bh_policy_error_count(p) == 0);
    for (size_t i = 0; i < bh_policy_error_count(p); i++)
        fprintf(stderr, "  unexpected: %s\n", bh_policy_error(p, i));
    struct bh_policy_result r;
    enum bh_policy_decision d = ev(p, src, tgt, svc, &r);
    if (target_out)
        strcpy(target_out, r.target);
    if (line_out)
        *line_out = r.rule_line;
    bh_policy_result_free(&r);
    bh_policy_free(p);
    return d;
}

static bool choices_are(const struct bh_policy_result *r, const char *want)
{
    char got[1024] = "";
    for (size_t i = 0; i < r->n_choices; i++) {
        if (i)
            strcat(got, " ");
        strcat(got, r->choices[i]);
    }
    if (strcmp(got, want))
        fprintf(stderr, "  choices: got '%s', want '%s'\n", got, want);
    return !strcmp(got, want);
}

static void test_tokens(void)
{
    /* valid everywhere they may appear */
    CHECK(nerr("s * work personal allow\n") == 0);
    CHECK(nerr("s * uuid:11111111-2222-3333-4444-555555555555 uuid:aaaaaaaa-2222-3333-4444-555555555555 allow\n") == 0);
    CHECK(nerr("s * * * deny\n") == 0);
    CHECK(nerr("s * @anyvm @anyvm ask\n") == 0);
    CHECK(nerr("s * @adminvm @adminvm allow\n") == 0);
    CHECK(nerr("s * dom0 dom0 allow\n") == 0);
    CHECK(nerr("s * work @default ask\n") == 0);
    CHECK(nerr("s * work @dispvm allow\n") == 0);
    CHECK(nerr("s * @dispvm:dvm @dispvm:dvm allow\n") == 0);
    CHECK(nerr("s * @dispvm:@tag:t @dispvm:@tag:t allow\n") == 0);
    CHECK(nerr("s * @tag:t1 @tag:t-2.x allow\n") == 0);
    CHECK(nerr("s * @type:AppVM @type:TemplateVM allow\n") == 0);
    CHECK(nerr("s * @type:DispVM @type:StandaloneVM deny\n") == 0);
    /* not allowed where they are */
    CHECK(nerr("s * @default work allow\n") == 1);
    CHECK(nerr("s * @dispvm work allow\n") == 1);
    CHECK(nerr("s * work @anyvm allow target=@anyvm\n") == 1);
    CHECK(nerr("s * work @anyvm allow target=*\n") == 1);
    CHECK(nerr("s * work @anyvm allow target=@tag:x\n") == 1);
    CHECK(nerr("s * work @anyvm allow target=@type:AppVM\n") == 1);
    CHECK(nerr("s * work @anyvm allow target=@default\n") == 1);
    CHECK(nerr("s * work @anyvm ask default_target=@dispvm:@tag:x\n") == 1);
    /* unknown or malformed */
    CHECK(nerr("s * @foo work allow\n") == 1);
    CHECK(nerr("s * work @tag: allow\n") == 1);
    CHECK(nerr("s * work @dispvm: allow\n") == 1);
    CHECK(nerr("s * work @dispvm:@foo:x allow\n") == 1);
    /* As Qubes' parser (qrexec/policy/parser.py, VMToken): a value is not checked
     * against what could exist; such tokens parse and match nothing. */
    CHECK(nerr("s * @type:Foo work allow\n") == 0);
    CHECK(nerr("s * @type:RemoteVM work allow\n") == 0);
    CHECK(nerr("s * uuid:xyz work allow\n") == 0);
    CHECK(nerr("s * 1work personal allow\n") == 0);
    CHECK(nerr("s * work pers/onal allow\n") == 0);
    CHECK(nerr("s * work $anyvm allow\n") == 0);
    CHECK(nerr("s * aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa work allow\n") == 0);
    CHECK(nerr("s * work @tag:a/b allow\n") == 0);
    CHECK(nerr("s * work @tag:@x allow\n") == 1);
}

static void test_service_argument(void)
{
    CHECK(nerr("qubes.Filecopy * work personal allow\n") == 0);
    CHECK(nerr("qubes.Filecopy + work personal allow\n") == 0);
    CHECK(nerr("qubes.Filecopy +a.b-c_d+e work personal allow\n") == 0);
    CHECK(nerr("* * work personal allow\n") == 0);
    CHECK(nerr("* +x work personal allow\n") == 1);
    CHECK(nerr("s x work personal allow\n") == 1);
    CHECK(nerr("s+x * work personal allow\n") == 1);
    CHECK(nerr("s/x * work personal allow\n") == 1);
    CHECK(nerr("s +a/b work personal allow\n") == 1);
    CHECK(nerr("s * work personal\n") == 1);
    CHECK(nerr("s * work\n") == 1);
    CHECK(nerr("# comment\n   # indented comment\n\n  \t \n") == 0);
    CHECK(nerr("s * work personal allow # trailing comment\n") == 1);
}

static void test_actions_params(void)
{
    CHECK(nerr("s * work personal allow target=dom0 user=root notify=yes autostart=no\n") == 0);
    CHECK(nerr("s * work personal ask target=personal default_target=personal user=u notify=no autostart=yes\n") == 0);
    CHECK(nerr("s * work personal deny notify=no\n") == 0);
    CHECK(nerr("s * work personal permit\n") == 1);
    CHECK(nerr("s * work personal Allow\n") == 1);
    CHECK(nerr("s * work personal deny target=personal\n") == 1);
    CHECK(nerr("s * work personal deny user=root\n") == 1);
    CHECK(nerr("s * work personal deny autostart=no\n") == 1);
    CHECK(nerr("s * work personal allow default_target=personal\n") == 1);
    CHECK(nerr("s * work personal allow foo=bar\n") == 1);
    CHECK(nerr("s * work personal allow user=a user=b\n") == 1);
    CHECK(nerr("s * work personal allow notify=yes notify=yes\n") == 1);
    CHECK(nerr("s * work personal allow notify=maybe\n") == 1);
    CHECK(nerr("s * work personal allow autostart=1\n") == 1);
    CHECK(nerr("s * work personal allow target=\n") == 1);
    CHECK(nerr("s * work personal allow user=\n") == 1);
    CHECK(nerr("s * work personal allow user=a:b\n") == 1);
    CHECK(nerr("s * work personal allow notify\n") == 1);
    CHECK(nerr("s * work personal allow =x\n") == 1);
    CHECK(nerr("s * work personal allow,target=x\n") == 1);
    /* @default needs target= to allow, not to ask or deny */
    CHECK(nerr("s * work @default allow\n") == 1);
    CHECK(nerr("s * work @default allow target=personal\n") == 0);
    CHECK(nerr("s * work @default ask\n") == 0);
    CHECK(nerr("s * work @default deny\n") == 0);
    bh_policy *p = load1("s * work @default allow\n");
    CHECK(err_has(p, "30-test.policy:1: allow action for @default rule must specify target="));
    bh_policy_free(p);
}

static void test_directives(void)
{
    reset_dir();
    put("10-a.policy", "!include include/inc\n");
    put("include/inc", "s * work personal allow\n");
    put("20-b.policy", "!include-dir more\n");
    put("more/1.policy", "t * work personal allow\n");
    put("more/2.policy", "u * work personal ask\n");
    put("more/ignored.txt", "garbage\n");
    put("more/.hidden.policy", "garbage\n");
    put("30-c.policy", "!include-service svc +arg include/old\n!include-service svc2 * include/old\n");
    put("include/old", "# old format\n$anyvm $anyvm allow,user=root\n$include:include/old2\n");
    put("include/old2", "work dom0 deny\n");
    bh_policy *p = bh_policy_load_dir(pdir);
    for (size_t i = 0; i < bh_policy_error_count(p); i++)
        fprintf(stderr, "  unexpected: %s\n", bh_policy_error(p, i));
    CHECK(bh_policy_error_count(p) == 0);
    CHECK(bh_policy_rule_count(p) == 7);
    struct bh_policy_result r;
    CHECK(ev(p, "work", "personal", "s", &r) == BH_POLICY_ALLOW);
    CHECK(strstr(r.rule_file, "include/inc") && r.rule_line == 1);
    CHECK(ev(p, "work", "personal", "t", &r) == BH_POLICY_ALLOW);
    CHECK(strstr(r.rule_file, "more/1.policy") != NULL);
    CHECK(ev(p, "work", "personal", "u", &r) == BH_POLICY_ASK);
    bh_policy_result_free(&r);
    CHECK(ev(p, "work", "personal", "svc+arg", &r) == BH_POLICY_ALLOW);
    CHECK(!strcmp(r.user, "root"));
    CHECK(ev(p, "work", "personal", "svc+other", &r) == BH_POLICY_DENY);
    CHECK(ev(p, "work", "personal", "svc2+other", &r) == BH_POLICY_ALLOW);
    CHECK(ev(p, "work", "dom0", "svc2", &r) == BH_POLICY_DENY);
    CHECK(strstr(r.rule_file, "include/old2") && r.rule_line == 1);
    bh_policy_free(p);

    CHECK(nerr("!include\n") == 1);
    CHECK(nerr("!include a b\n") == 1);
    CHECK(nerr("!include-dir\n") == 1);
    CHECK(nerr("!include-service s +a\n") == 1);
    CHECK(nerr("!include-service * +a x\n") == 1);
    CHECK(nerr("!include nosuchfile\n") == 1);
    CHECK(nerr("!include-dir nosuchdir\n") == 1);
    CHECK(nerr("!frobnicate x\n") == 1);
    CHECK(nerr("!include-dir 30-test.policy\n") == 1); /* not a directory */
}

static void test_file_selection(void)
{
    reset_dir();
    /* C-locale order: "10-" < "9-", '-' (0x2d) < '_' (0x5f) */
    put("9-x.policy", "s * work personal deny\n");
    put("10-x.policy", "s * work personal allow\n");
    put("a-b.policy", "t * work personal allow\n");
    put("a_b.policy", "t * work personal deny\n");
    put(".hidden.policy", "* * @anyvm @anyvm allow\n");
    put("README", "not policy\n");
    put("notes.policy.bak", "* * @anyvm @anyvm allow\n");
    char d[600];
    snprintf(d, sizeof d, "%s/dir.policy", pdir);
    mkdir(d, 0755); /* a directory named like a policy file is skipped */
    bh_policy *p = bh_policy_load_dir(pdir);
    CHECK(bh_policy_error_count(p) == 0);
    struct bh_policy_result r;
    CHECK(ev(p, "work", "personal", "s", &r) == BH_POLICY_ALLOW);
    CHECK(strstr(r.rule_file, "10-x.policy") != NULL);
    CHECK(ev(p, "work", "personal", "t", &r) == BH_POLICY_ALLOW);
    CHECK(ev(p, "work", "personal", "other", &r) == BH_POLICY_DENY);
    bh_policy_free(p);

    /* a name outside [0-9a-z_.-] is an error that refuses every call */
    put("Upper.policy", "");
    p = bh_policy_load_dir(pdir);
    CHECK(err_has(p, "invalid file name"));
    CHECK(ev(p, "work", "personal", "s", &r) == BH_POLICY_DENY);
    CHECK(strstr(r.reason, "invalid file name") != NULL);
    bh_policy_free(p);
}

static void test_hostile(void)
{
    struct bh_policy_result r;
    /* overlong line */
    size_t big = BH_POLICY_MAX_LINE + 10;
    char *line = malloc(big + 64);
    memset(line, 'a', big);
    strcpy(line + big, " * work personal allow\ns * work personal allow\n");
    bh_policy *p = load1(line);
    CHECK(err_has(p, "30-test.policy:1: line longer than"));
    CHECK(ev(p, "work", "personal", "s", &r) == BH_POLICY_DENY);
    CHECK(strstr(r.reason, "line longer") != NULL);
    bh_policy_free(p);
    free(line);

    /* NUL byte: through the buffer interface (a C string cannot carry it) */
    static const char nul[] = "s * work personal allow\ns * wo\0rk personal allow\n";
    p = bh_policy_load_buffer("nul.policy", nul, sizeof nul - 1, NULL);
    CHECK(err_has(p, "nul.policy:2: NUL byte"));
    CHECK(ev(p, "work", "personal", "s", &r) == BH_POLICY_DENY);
    bh_policy_free(p);

    /* control characters and non-ASCII */
    CHECK(nerr("s * wor\x01k personal allow\n") == 1);
    CHECK(nerr("s * w\xc3\xa9 personal allow\n") == 1);
    /* CRLF line endings are whitespace, as Qubes' str.split() */
    CHECK(nerr("s * work personal allow\r\n") == 0);
    /* too many fields */
    CHECK(nerr("s * work personal allow a=1 a=2 a=3 a=4 a=5 a=6 a=7 a=8 a=9 a=10 a=11 a=12 "
               "a=13 a=14 a=15 a=16 a=17 a=18 a=19 a=20 a=21 a=22 a=23 a=24 a=25 a=26 a=27 a=28\n") == 1);

    /* include loops: self, mutual, directory */
    reset_dir();
    put("10-self.policy", "!include 10-self.policy\n");
    p = bh_policy_load_dir(pdir);
    CHECK(err_has(p, "include loop"));
    bh_policy_free(p);
    reset_dir();
    put("10-a.policy", "!include include/b\n");
    put("include/b", "!include include/c\n");
    put("include/c", "!include include/b\n");
    p = bh_policy_load_dir(pdir);
    CHECK(err_has(p, "include loop"));
    CHECK(ev(p, "work", "personal", "s", &r) == BH_POLICY_DENY);
    bh_policy_free(p);
    reset_dir();
    put("10-a.policy", "!include-dir .\n");
    put("20-b.policy", "s * work personal allow\n");
    p = bh_policy_load_dir(pdir);
    CHECK(err_has(p, "include loop"));
    bh_policy_free(p);
    reset_dir();
    put("10-a.policy", "!include-service s * include/x\n");
    put("include/x", "!include include/x\n");
    p = bh_policy_load_dir(pdir);
    CHECK(err_has(p, "include loop"));
    bh_policy_free(p);

    /* nesting deeper than the limit (a chain without a loop) */
    reset_dir();
    put("10-a.policy", "!include include/d0\n");
    for (int i = 0; i < BH_POLICY_MAX_DEPTH + 3; i++) {
        char n[64], t[64];
        snprintf(n, sizeof n, "include/d%d", i);
        snprintf(t, sizeof t, "!include include/d%d\n", i + 1);
        put(n, t);
    }
    p = bh_policy_load_dir(pdir);
    CHECK(err_has(p, "nested deeper"));
    bh_policy_free(p);

    /* includes outside the policy directory: .., absolute, symlink */
    reset_dir();
    char outside[600];
    snprintf(outside, sizeof outside, "%s/outside", tmp);
    FILE *f = fopen(outside, "w");
    fputs("* * @anyvm @anyvm allow\n", f);
    fclose(f);
    put("10-a.policy", "!include ../outside\n");
    p = bh_policy_load_dir(pdir);
    CHECK(err_has(p, "include outside the policy directory"));
    CHECK(ev(p, "work", "personal", "s", &r) == BH_POLICY_DENY);
    bh_policy_free(p);
    char abs_inc[700];
    snprintf(abs_inc, sizeof abs_inc, "!include %s\n", outside);
    reset_dir();
    put("10-a.policy", abs_inc);
    p = bh_policy_load_dir(pdir);
    CHECK(err_has(p, "include outside the policy directory"));
    bh_policy_free(p);
    reset_dir();
    char link[700];
    snprintf(link, sizeof link, "%s/include", pdir);
    mkdir(link, 0755);
    snprintf(link, sizeof link, "%s/include/evil", pdir);
    CHECK(symlink(outside, link) == 0);
    put("10-a.policy", "!include include/evil\n");
    p = bh_policy_load_dir(pdir);
    CHECK(err_has(p, "include outside the policy directory"));
    bh_policy_free(p);
    /* a top-level *.policy symlink leading outside is refused too */
    reset_dir();
    snprintf(link, sizeof link, "%s/10-evil.policy", pdir);
    CHECK(symlink(outside, link) == 0);
    p = bh_policy_load_dir(pdir);
    CHECK(err_has(p, "include outside the policy directory"));
    CHECK(ev(p, "work", "personal", "s", &r) == BH_POLICY_DENY);
    bh_policy_free(p);
    /* !include-dir ../ */
    CHECK(nerr("!include-dir ..\n") == 1);
    /* includes refused entirely when loading a buffer without a directory */
    p = bh_policy_load_buffer("b.policy", "!include x\n", 11, NULL);
    CHECK(err_has(p, "includes are not available"));
    bh_policy_free(p);
    /* a buffer with a directory for its includes (resolved at the first include): they
     * are read from it, and one leading outside it is refused as from a directory load */
    reset_dir();
    put("include/inc", "s * work personal allow\n");
    snprintf(link, sizeof link, "%s/include/evil", pdir);
    CHECK(symlink(outside, link) == 0);
    p = bh_policy_load_buffer("b.policy", "!include include/inc\n", 21, pdir);
    CHECK(bh_policy_error_count(p) == 0);
    CHECK(ev(p, "work", "personal", "s", &r) == BH_POLICY_ALLOW);
    CHECK(strstr(r.rule_file, "include/inc") && r.rule_line == 1);
    bh_policy_free(p);
    p = bh_policy_load_buffer("b.policy", "!include include/evil\n", 22, pdir);
    CHECK(err_has(p, "include outside the policy directory"));
    CHECK(bh_policy_error_count(p) == 1);
    bh_policy_free(p);
    p = bh_policy_load_buffer("b.policy", "!include include/inc\n", 21, "/nonexistent-policy-dir");
    CHECK(err_has(p, "includes are not available"));
    bh_policy_free(p);

    /* huge file */
    reset_dir();
    char path[700];
    snprintf(path, sizeof path, "%s/10-huge.policy", pdir);
    f = fopen(path, "w");
    for (size_t i = 0; i < BH_POLICY_MAX_FILE_SIZE / 20 + 10; i++)
        fputs("# padding padding..\n", f);
    fclose(f);
    put("20-ok.policy", "s * work personal allow\n");
    p = bh_policy_load_dir(pdir);
    CHECK(err_has(p, "file too large"));
    CHECK(ev(p, "work", "personal", "s", &r) == BH_POLICY_DENY);
    bh_policy_free(p);

    /* a FIFO named *.policy must not block the loader */
    reset_dir();
    snprintf(path, sizeof path, "%s/10-fifo.policy", pdir);
    CHECK(mkfifo(path, 0600) == 0);
    p = bh_policy_load_dir(pdir);
    CHECK(err_has(p, "not a regular file"));
    bh_policy_free(p);

    /* many includes of the same big file hit the total-bytes or file-count limit */
    reset_dir();
    char *many = malloc(40 * 2000);
    many[0] = '\0';
    for (int i = 0; i < 2000; i++)
        strcat(many, "!include include/x\n");
    put("10-a.policy", many);
    put("include/x", "s * work personal allow\n");
    p = bh_policy_load_dir(pdir);
    CHECK(err_has(p, "policy files read"));
    bh_policy_free(p);
    free(many);

    /* an empty directory and a missing one */
    reset_dir();
    p = bh_policy_load_dir(pdir);
    CHECK(bh_policy_error_count(p) == 0);
    CHECK(ev(p, "work", "personal", "s", &r) == BH_POLICY_DENY);
    CHECK(strstr(r.reason, "no matching rule") != NULL);
    bh_policy_free(p);
    p = bh_policy_load_dir("/nonexistent/policy.d");
    CHECK(bh_policy_error_count(p) == 1);
    CHECK(ev(p, "work", "personal", "s", &r) == BH_POLICY_DENY);
    bh_policy_free(p);
}

static void test_barrier(void)
{
    struct bh_policy_result r;
    reset_dir();
    put("10-ok.policy", "s * work personal allow\n");
    put("20-broken.policy", "t * work personal allow\nt * work personal bogus\n");
    put("30-later.policy", "u * work personal allow\n");
    bh_policy *p = bh_policy_load_dir(pdir);
    CHECK(bh_policy_error_count(p) == 1);
    CHECK(err_has(p, "20-broken.policy:2: invalid action 'bogus'"));
    /* decided before the broken file: unaffected */
    CHECK(ev(p, "work", "personal", "s", &r) == BH_POLICY_ALLOW);
    /* reaches the broken file (even a rule before the broken line): fails closed */
    CHECK(ev(p, "work", "personal", "t", &r) == BH_POLICY_DENY);
    CHECK(strstr(r.reason, "20-broken.policy:2:") != NULL);
    CHECK(ev(p, "work", "personal", "u", &r) == BH_POLICY_DENY);
    bh_policy_free(p);
    /* an ask reads every rule for its choices: any broken file fails it */
    reset_dir();
    put("10-ok.policy", "s * work personal ask\n");
    put("20-broken.policy", "x\n");
    p = bh_policy_load_dir(pdir);
    CHECK(ev(p, "work", "personal", "s", &r) == BH_POLICY_DENY);
    CHECK(strstr(r.reason, "20-broken.policy:1:") != NULL);
    bh_policy_free(p);
    /* an error in an included file points at that file and line */
    reset_dir();
    put("10-a.policy", "!include include/x\n");
    put("include/x", "# c\ns * work personal allow target=@anyvm\n");
    p = bh_policy_load_dir(pdir);
    CHECK(err_has(p, "include/x:2: invalid target= value '@anyvm'"));
    CHECK(ev(p, "work", "personal", "s", &r) == BH_POLICY_DENY);
    bh_policy_free(p);
}

static void test_eval_basic(void)
{
    char tg[64];
    unsigned ln;
    /* first match wins */
    CHECK(ev1("s * work personal deny\ns * work personal allow\n", "work", "personal", "s", tg, &ln) ==
          BH_POLICY_DENY);
    CHECK(ln == 1);
    CHECK(ev1("s * work personal allow\ns * work personal deny\n", "work", "personal", "s", tg, &ln) ==
          BH_POLICY_ALLOW);
    CHECK(ln == 1 && !strcmp(tg, "personal"));
    /* default deny */
    CHECK(ev1("s * work personal allow\n", "work", "vault", "s", NULL, NULL) == BH_POLICY_DENY);
    CHECK(ev1("s * work personal allow\n", "work", "personal", "s2", NULL, NULL) == BH_POLICY_DENY);
    /* a call to itself, by name and through a redirect */
    CHECK(ev1("* * @anyvm @anyvm allow\n", "work", "work", "s", NULL, NULL) == BH_POLICY_DENY);
    CHECK(ev1("* * @anyvm @anyvm allow target=work\n", "work", "personal", "s", NULL, NULL) ==
          BH_POLICY_DENY);
    /* arguments */
    const char *args = "s +a work personal allow\ns + work vault allow\n";
    CHECK(ev1(args, "work", "personal", "s+a", NULL, NULL) == BH_POLICY_ALLOW);
    CHECK(ev1(args, "work", "personal", "s+b", NULL, NULL) == BH_POLICY_DENY);
    CHECK(ev1(args, "work", "personal", "s", NULL, NULL) == BH_POLICY_DENY);
    CHECK(ev1(args, "work", "vault", "s", NULL, NULL) == BH_POLICY_ALLOW);
    CHECK(ev1(args, "work", "vault", "s+", NULL, NULL) == BH_POLICY_ALLOW);
    CHECK(ev1(args, "work", "vault", "s+x", NULL, NULL) == BH_POLICY_DENY);
    CHECK(ev1("* * work personal allow\n", "work", "personal", "any.thing+x", NULL, NULL) == BH_POLICY_ALLOW);
    /* invalid calls */
    CHECK(ev1("* * * * allow\n", "work", "personal", "", NULL, NULL) == BH_POLICY_DENY);
    CHECK(ev1("* * * * allow\n", "work", "personal", "+x", NULL, NULL) == BH_POLICY_DENY);
    CHECK(ev1("* * * * allow\n", "work", "personal", "s/x", NULL, NULL) == BH_POLICY_DENY);
    CHECK(ev1("* * * * allow\n", "nosuch", "personal", "s", NULL, NULL) == BH_POLICY_DENY);
    CHECK(ev1("* * * * allow\n", "work", "nosuch", "s", NULL, NULL) == BH_POLICY_DENY);
    CHECK(ev1("* * * * allow\n", "work", "@anyvm", "s", NULL, NULL) == BH_POLICY_DENY);
    CHECK(ev1("* * * * allow\n", "work", "@tag:t1", "s", NULL, NULL) == BH_POLICY_DENY);
    CHECK(ev1("* * * * allow\n", "work", "@dispvm:personal", "s", NULL, NULL) == BH_POLICY_DENY);
}

static void test_eval_tokens(void)
{
    char tg[64];
    /* @anyvm never matches dom0; * does; @adminvm/dom0 only dom0 */
    CHECK(ev1("s * @anyvm @anyvm allow\n", "work", "dom0", "s", NULL, NULL) == BH_POLICY_DENY);
    CHECK(ev1("s * @anyvm @anyvm allow\n", "dom0", "work", "s", NULL, NULL) == BH_POLICY_DENY);
    CHECK(ev1("s * * * allow\n", "work", "dom0", "s", tg, NULL) == BH_POLICY_ALLOW);
    CHECK(!strcmp(tg, "dom0"));
    CHECK(ev1("s * * * allow\n", "dom0", "work", "s", NULL, NULL) == BH_POLICY_ALLOW);
    CHECK(ev1("s * @anyvm @adminvm allow\n", "work", "@adminvm", "s", NULL, NULL) == BH_POLICY_ALLOW);
    CHECK(ev1("s * @anyvm dom0 allow\n", "work", "dom0", "s", NULL, NULL) == BH_POLICY_ALLOW);
    CHECK(ev1("s * @adminvm @anyvm allow\n", "dom0", "work", "s", NULL, NULL) == BH_POLICY_ALLOW);
    CHECK(ev1("s * @adminvm @anyvm allow\n", "personal", "work", "s", NULL, NULL) == BH_POLICY_DENY);
    /* @tag and @type match dom0 too, as in Qubes (TagVM/TypeVM.match read dom0's info) */
    CHECK(ev1("s * @anyvm @tag:t1 allow\n", "personal", "work", "s", NULL, NULL) == BH_POLICY_ALLOW);
    CHECK(ev1("s * @anyvm @tag:t1 allow\n", "work", "personal", "s", NULL, NULL) == BH_POLICY_DENY);
    CHECK(ev1("s * @tag:t1 @anyvm allow\n", "work", "personal", "s", NULL, NULL) == BH_POLICY_ALLOW);
    CHECK(ev1("s * @tag:admintag * allow\n", "dom0", "work", "s", NULL, NULL) == BH_POLICY_ALLOW);
    CHECK(ev1("s * @type:AppVM @type:TemplateVM allow\n", "work", "tpl", "s", NULL, NULL) == BH_POLICY_ALLOW);
    CHECK(ev1("s * @type:AppVM @type:TemplateVM allow\n", "work", "personal", "s", NULL, NULL) == BH_POLICY_DENY);
    CHECK(ev1("s * @type:DispVM @anyvm allow\n", "disp1", "work", "s", NULL, NULL) == BH_POLICY_ALLOW);
    CHECK(ev1("s * * @type:AdminVM allow\n", "work", "dom0", "s", NULL, NULL) == BH_POLICY_ALLOW);
    /* uuid: as source, target, redirect, and as the caller's target */
    const char *u = "s * uuid:11111111-2222-3333-4444-555555555555 uuid:22222222-2222-3333-4444-555555555555 allow\n";
    CHECK(ev1(u, "work", "personal", "s", NULL, NULL) == BH_POLICY_ALLOW);
    CHECK(ev1(u, "personal", "work", "s", NULL, NULL) == BH_POLICY_DENY);
    CHECK(ev1(u, "work", "uuid:22222222-2222-3333-4444-555555555555", "s", tg, NULL) == BH_POLICY_ALLOW);
    CHECK(!strcmp(tg, "personal"));
    CHECK(ev1("s * work @default allow target=uuid:22222222-2222-3333-4444-555555555555\n", "work", "", "s", tg,
              NULL) == BH_POLICY_ALLOW);
    CHECK(!strcmp(tg, "personal"));
    /* @default: the caller named no target */
    CHECK(ev1("s * work @default allow target=personal\n", "work", "@default", "s", tg, NULL) == BH_POLICY_ALLOW);
    CHECK(!strcmp(tg, "personal"));
    CHECK(ev1("s * work @default allow target=personal\n", "work", "vault", "s", NULL, NULL) == BH_POLICY_DENY);
    /* @anyvm matches @default, but an allow without a target then has nowhere to go */
    CHECK(ev1("s * @anyvm @anyvm allow\n", "work", "", "s", NULL, NULL) == BH_POLICY_DENY);
    /* redirect to a qube that does not exist */
    CHECK(ev1("s * work @anyvm allow target=ghost\n", "work", "personal", "s", NULL, NULL) == BH_POLICY_DENY);
}

static void test_eval_dispvm(void)
{
    char tg[64];
    struct bh_policy_result r;
    /* @dispvm resolves to the source's default_dispvm */
    CHECK(ev1("s * @anyvm @dispvm allow\n", "work", "@dispvm", "s", tg, NULL) == BH_POLICY_ALLOW);
    CHECK(!strcmp(tg, "@dispvm:dvm"));
    /* no default_dispvm: denied */
    CHECK(ev1("s * @anyvm @dispvm allow\n", "vault", "@dispvm", "s", NULL, NULL) == BH_POLICY_DENY);
    /* @dispvm:NAME as the caller's target and in a rule */
    CHECK(ev1("s * @anyvm @dispvm:dvm allow\n", "personal", "@dispvm:dvm", "s", tg, NULL) == BH_POLICY_ALLOW);
    CHECK(!strcmp(tg, "@dispvm:dvm"));
    /* a rule for @dispvm:dvm also covers @dispvm when that is the source's default */
    CHECK(ev1("s * @anyvm @dispvm:dvm allow\n", "work", "@dispvm", "s", tg, NULL) == BH_POLICY_ALLOW);
    CHECK(!strcmp(tg, "@dispvm:dvm"));
    CHECK(ev1("s * @anyvm @dispvm:dvm allow\n", "personal", "@dispvm", "s", NULL, NULL) == BH_POLICY_DENY);
    /* @dispvm:NAME of a qube that is not a disposable template: invalid target */
    CHECK(ev1("s * * * allow\n", "work", "@dispvm:personal", "s", NULL, NULL) == BH_POLICY_DENY);
    /* @dispvm:@tag:T */
    CHECK(ev1("s * @anyvm @dispvm:@tag:dt allow\n", "work", "@dispvm", "s", tg, NULL) == BH_POLICY_ALLOW);
    CHECK(!strcmp(tg, "@dispvm:dvm"));
    CHECK(ev1("s * @anyvm @dispvm:@tag:dt allow\n", "work", "@dispvm:dvm2", "s", NULL, NULL) == BH_POLICY_DENY);
    /* a disposable as the source, by its template */
    CHECK(ev1("s * @dispvm:dvm @anyvm allow\n", "disp1", "work", "s", NULL, NULL) == BH_POLICY_ALLOW);
    CHECK(ev1("s * @dispvm:dvm2 @anyvm allow\n", "disp1", "work", "s", NULL, NULL) == BH_POLICY_DENY);
    CHECK(ev1("s * @dispvm:@tag:dt @anyvm allow\n", "disp1", "work", "s", NULL, NULL) == BH_POLICY_ALLOW);
    CHECK(ev1("s * @dispvm:dvm @anyvm allow\n", "dvm", "work", "s", NULL, NULL) == BH_POLICY_DENY);
    /* redirect to @dispvm */
    CHECK(ev1("s * @anyvm @default allow target=@dispvm\n", "work", "", "s", tg, NULL) == BH_POLICY_ALLOW);
    CHECK(!strcmp(tg, "@dispvm:dvm"));
    CHECK(ev1("s * @anyvm @default allow target=@dispvm:dvm2\n", "work", "", "s", tg, NULL) == BH_POLICY_ALLOW);
    CHECK(!strcmp(tg, "@dispvm:dvm2"));
    /* autostart=no: a new disposable would have to start */
    CHECK(ev1("s * @anyvm @dispvm allow autostart=no\n", "work", "@dispvm", "s", NULL, NULL) == BH_POLICY_DENY);
    bh_policy *p = load1("s * @anyvm @dispvm allow\n");
    CHECK(ev(p, "work", "@dispvm", "s", &r) == BH_POLICY_ALLOW);
    CHECK(r.target_kind == BH_TARGET_DISPVM && !strcmp(r.dispvm_template, "dvm"));
    bh_policy_free(p);
}

static void test_eval_params(void)
{
    struct bh_policy_result r;
    bh_policy *p = load1("s * work personal allow user=root notify=yes\n"
                         "s * work vault allow autostart=no\n"
                         "s * work tpl deny notify=no\n"
                         "s * work dom0 deny\n"
                         "t * work @anyvm allow autostart=no\n");
    CHECK(ev(p, "work", "personal", "s", &r) == BH_POLICY_ALLOW);
    CHECK(!strcmp(r.user, "root") && r.notify && r.autostart);
    CHECK(r.target_kind == BH_TARGET_QUBE && !strcmp(r.target_uuid, "22222222-2222-3333-4444-555555555555"));
    CHECK(!strcmp(r.rule_file + strlen(r.rule_file) - 14, "30-test.policy") && r.rule_line == 1);
    /* vault is halted: autostart=no denies */
    CHECK(ev(p, "work", "vault", "s", &r) == BH_POLICY_DENY);
    CHECK(strstr(r.reason, "not running") != NULL);
    CHECK(ev(p, "work", "tpl", "s", &r) == BH_POLICY_DENY);
    CHECK(!r.notify && r.rule_line == 3);
    CHECK(ev(p, "work", "dom0", "s", &r) == BH_POLICY_DENY);
    CHECK(r.notify && r.rule_line == 4);
    /* personal is running in this system info? no: vault halted, disp1 running */
    CHECK(ev(p, "work", "disp1", "t", &r) == BH_POLICY_ALLOW);
    CHECK(!r.autostart);
    CHECK(ev(p, "work", "personal", "t", &r) == BH_POLICY_DENY);
    CHECK(ev(p, "work", "dom0", "t", &r) == BH_POLICY_DENY); /* @anyvm: not dom0 */
    bh_policy_free(p);
    p = load1("t * work * allow autostart=no\n");
    CHECK(ev(p, "work", "dom0", "t", &r) == BH_POLICY_ALLOW); /* dom0 always runs */
    CHECK(r.target_kind == BH_TARGET_ADMINVM);
    bh_policy_free(p);
}

static void test_eval_ask(void)
{
    struct bh_policy_result r;
    /* choices: every admitted target, minus an earlier deny; never the source */
    bh_policy *p = load1("s * work vault deny\n"
                         "s * work @anyvm ask default_target=personal\n"
                         "s * work dom0 allow\n");
    CHECK(ev(p, "work", "@default", "s", &r) == BH_POLICY_ASK);
    CHECK(choices_are(&r, "@dispvm:dvm @dispvm:dvm2 disp1 dom0 dvm dvm2 personal tpl"));
    CHECK(!strcmp(r.default_target, "personal"));
    CHECK(r.rule_line == 2 && r.target[0] == '\0');
    /* a person picks: allowed to that target */
    CHECK(bh_policy_confirm_ask(&r, &si, "tpl") == BH_POLICY_ALLOW);
    CHECK(!strcmp(r.target, "tpl") && r.target_kind == BH_TARGET_QUBE);
    bh_policy_result_free(&r);
    /* picking something not offered is refused */
    CHECK(ev(p, "work", "@default", "s", &r) == BH_POLICY_ASK);
    CHECK(bh_policy_confirm_ask(&r, &si, "vault") == BH_POLICY_DENY);
    bh_policy_result_free(&r);
    CHECK(ev(p, "work", "@default", "s", &r) == BH_POLICY_ASK);
    CHECK(bh_policy_confirm_ask(&r, &si, "work") == BH_POLICY_DENY);
    bh_policy_result_free(&r);
    CHECK(ev(p, "work", "@default", "s", &r) == BH_POLICY_ASK);
    CHECK(bh_policy_confirm_ask(&r, &si, "@dispvm:dvm") == BH_POLICY_ALLOW);
    CHECK(r.target_kind == BH_TARGET_DISPVM);
    bh_policy_result_free(&r);
    /* the caller's own target is the default when default_target= is absent */
    bh_policy_free(p);
    p = load1("s * work @anyvm ask\n");
    CHECK(ev(p, "work", "personal", "s", &r) == BH_POLICY_ASK);
    CHECK(!strcmp(r.default_target, "personal"));
    bh_policy_result_free(&r);
    CHECK(ev(p, "work", "@dispvm", "s", &r) == BH_POLICY_ASK);
    CHECK(!strcmp(r.default_target, "@dispvm:dvm"));
    bh_policy_result_free(&r);
    bh_policy_free(p);
    /* default_target= that is not a choice is dropped */
    p = load1("s * work @tag:t2 ask default_target=vault\n");
    CHECK(ev(p, "work", "personal", "s", &r) == BH_POLICY_ASK);
    CHECK(choices_are(&r, "personal tpl") && r.default_target[0] == 0);
    bh_policy_result_free(&r);
    bh_policy_free(p);
    /* target= makes the one choice */
    p = load1("s * work @default ask target=vault\n");
    CHECK(ev(p, "work", "", "s", &r) == BH_POLICY_ASK);
    CHECK(choices_are(&r, "vault"));
    bh_policy_result_free(&r);
    bh_policy_free(p);
    /* an allow with target= later in the file adds its redirect to the choices */
    p = load1("s * work @default ask\ns * work @adminvm allow target=tpl\ns * work @tag:t2 allow\n");
    CHECK(ev(p, "work", "", "s", &r) == BH_POLICY_ASK);
    CHECK(choices_are(&r, "personal tpl"));
    bh_policy_result_free(&r);
    bh_policy_free(p);
    /* a later deny does not remove what an earlier rule admits; an earlier one does */
    p = load1("s * work @tag:t2 deny\ns * work @default ask\ns * work @type:AppVM allow\ns * work vault deny\n");
    CHECK(ev(p, "work", "", "s", &r) == BH_POLICY_ASK);
    CHECK(choices_are(&r, "dvm dvm2 vault"));
    bh_policy_result_free(&r);
    bh_policy_free(p);
    /* nothing to choose from: denied */
    p = load1("s * work @default ask\n");
    CHECK(ev(p, "work", "", "s", &r) == BH_POLICY_DENY);
    CHECK(strstr(r.reason, "no target is available") != NULL);
    bh_policy_free(p);
    /* autostart=no applies to the chosen target */
    p = load1("s * work @anyvm ask autostart=no\n");
    CHECK(ev(p, "work", "", "s", &r) == BH_POLICY_ASK);
    CHECK(bh_policy_confirm_ask(&r, &si, "vault") == BH_POLICY_DENY);
    bh_policy_result_free(&r);
    CHECK(ev(p, "work", "", "s", &r) == BH_POLICY_ASK);
    CHECK(bh_policy_confirm_ask(&r, &si, "disp1") == BH_POLICY_ALLOW);
    bh_policy_result_free(&r);
    bh_policy_free(p);
    /* a deny of @dispvm:dvm removes the source's @dispvm too */
    p = load1("s * work @dispvm:dvm deny\ns * work @anyvm ask\n");
    CHECK(ev(p, "work", "personal", "s", &r) == BH_POLICY_ASK);
    CHECK(choices_are(&r, "@dispvm:dvm2 disp1 dvm dvm2 personal tpl vault"));
    bh_policy_result_free(&r);
    bh_policy_free(p);
}

static void test_sysinfo(void)
{
    struct bh_sysinfo s;
    bh_error err;
    bh_sysinfo_init(&s);
    CHECK(bh_sysinfo_parse(&s, "work AppVM\nwork AppVM\n", &err) < 0);
    bh_sysinfo_free(&s);
    bh_sysinfo_init(&s);
    CHECK(bh_sysinfo_parse(&s, "work Bogus\n", &err) < 0);
    bh_sysinfo_free(&s);
    bh_sysinfo_init(&s);
    CHECK(bh_sysinfo_parse(&s, "work AppVM colour=red\n", &err) < 0);
    bh_sysinfo_free(&s);
    bh_sysinfo_init(&s);
    CHECK(bh_sysinfo_parse(&s, "1bad AppVM\n", &err) < 0);
    bh_sysinfo_free(&s);
    bh_sysinfo_init(&s);
    CHECK(bh_sysinfo_parse(&s, "a AdminVM\nb AdminVM\n", &err) < 0);
    bh_sysinfo_free(&s);
    bh_sysinfo_init(&s);
    CHECK(bh_sysinfo_parse(&s, "# c\n\nwork AppVM tags=a,b state=Halted\n", &err) == 0);
    CHECK(s.n == 2 && bh_sysinfo_adminvm(&s) && !s.qubes[0].running);
    CHECK(bh_qube_has_tag(&s.qubes[0], "b") && !bh_qube_has_tag(&s.qubes[0], "c"));
    bh_sysinfo_free(&s);
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/test-policy-XXXXXX");
    if (!mkdtemp(tmp))
        return 2;
    snprintf(pdir, sizeof pdir, "%s/policy.d", tmp);
    if (chdir(tmp) < 0)
        return 2;
    bh_sysinfo_init(&si);
    bh_error err;
    if (bh_sysinfo_parse(&si,
                         "dom0 AdminVM tags=admintag\n"
                         "work AppVM state=Running tags=t1 default_dispvm=dvm "
                         "uuid=11111111-2222-3333-4444-555555555555\n"
                         "personal AppVM state=Halted tags=t2 uuid=22222222-2222-3333-4444-555555555555\n"
                         "vault AppVM state=Halted default_dispvm=nosuch\n"
                         "tpl TemplateVM tags=t2\n"
                         "dvm AppVM template_for_dispvms=yes tags=dt\n"
                         "dvm2 AppVM template_for_dispvms=yes\n"
                         "disp1 DispVM template=dvm state=Running\n",
                         &err) < 0) {
        fprintf(stderr, "sysinfo: %s\n", err.msg);
        return 2;
    }
    test_tokens();
    test_service_argument();
    test_actions_params();
    test_directives();
    test_file_selection();
    test_hostile();
    test_barrier();
    test_eval_basic();
    test_eval_tokens();
    test_eval_dispvm();
    test_eval_params();
    test_eval_ask();
    test_sysinfo();
    bh_sysinfo_free(&si);
    nftw(tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return tap_done();
}
