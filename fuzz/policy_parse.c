/* libFuzzer: a policy file's bytes through the parser, then one evaluation so that
 * whatever parsed is also exercised by the matcher. */
#include "policy.h"
#include <stdint.h>
#include <stdio.h>
#include <ftw.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

static struct bh_sysinfo si;
static char dir[64];

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st; (void)flag; (void)f;
    return remove(p);
}

static void cleanup(void) { nftw(dir, rm_cb, 8, FTW_DEPTH | FTW_PHYS); }

static void put(const char *name, const char *text)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        abort();
    fputs(text, f);
    fclose(f);
}

static void setup(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    /* A small policy directory so that !include* lines reach real files: a rule
     * file, an old-format service file, a directory of two, and one that includes
     * itself; removed at exit. */
    snprintf(dir, sizeof dir, "/tmp/fuzz-policy-XXXXXX");
    if (!mkdtemp(dir))
        abort();
    atexit(cleanup);
    char sub[96];
    snprintf(sub, sizeof sub, "%s/include", dir);
    mkdir(sub, 0755);
    snprintf(sub, sizeof sub, "%s/d", dir);
    mkdir(sub, 0755);
    put("include/a", "s * work personal allow\n!include include/b\n");
    put("include/b", "t * @anyvm @dispvm ask default_target=@dispvm:dvm\n");
    put("include/svc", "$anyvm $anyvm allow,user=root\n$include:include/svc2\n");
    put("include/svc2", "work dom0 deny\n");
    put("include/self", "!include include/self\n");
    put("d/1.policy", "* * @tag:t1 @tag:t2 allow\n");
    put("d/2.policy", "u +x @dispvm:dvm @anyvm deny notify=no\n");
    bh_sysinfo_init(&si);
    bh_error err;
    if (bh_sysinfo_parse(&si,
                         "dom0 AdminVM\n"
                         "work AppVM state=Running tags=t1,t2 default_dispvm=dvm "
                         "uuid=11111111-2222-3333-4444-555555555555\n"
                         "personal AppVM tags=t2\n"
                         "dvm AppVM template_for_dispvms=yes tags=t1\n"
                         "disp1 DispVM template=dvm state=Running\n"
                         "tpl TemplateVM\n",
                         &err) < 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    bh_policy *p = bh_policy_load_buffer("fuzz.policy", data, size, dir);
    if (!p)
        return 0;
    static const char *const calls[][3] = {
        { "work", "personal", "qubes.Filecopy" },
        { "work", "@default", "qubes.Filecopy+x" },
        { "disp1", "@dispvm", "qubes.OpenInVM" },
        { "personal", "@adminvm", "qubes.GetDate" },
        { "work", "@dispvm:dvm", "a.b+c" },
    };
    for (size_t i = 0; i < sizeof calls / sizeof *calls; i++) {
        struct bh_policy_result r;
        if (bh_policy_evaluate(p, &si, calls[i][0], calls[i][1], calls[i][2], &r) == BH_POLICY_ASK &&
            r.n_choices)
            bh_policy_confirm_ask(&r, &si, r.choices[0]);
        bh_policy_result_free(&r);
    }
    bh_policy_free(p);
    return 0;
}
