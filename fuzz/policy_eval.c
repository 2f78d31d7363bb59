/* libFuzzer: evaluation with caller-controlled source, target and service (what a
 * qube sends through its daemon) against a fixed policy that uses every token. The
 * input is three NUL-separated strings. */
#include "policy.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static struct bh_sysinfo si;
static bh_policy *pol;

static const char policy_text[] =
    "qubes.Filecopy * work @default ask default_target=personal\n"
    "qubes.Filecopy * @tag:t1 @tag:t2 allow notify=yes\n"
    "qubes.OpenInVM * @anyvm @dispvm allow\n"
    "qubes.OpenInVM * @dispvm:dvm @anyvm deny\n"
    "qubes.OpenInVM * @dispvm:@tag:t1 @dispvm:@tag:t1 ask\n"
    "qubes.GetDate * @anyvm @adminvm allow target=dom0\n"
    "a.b +c @type:AppVM uuid:11111111-2222-3333-4444-555555555555 allow user=root autostart=no\n"
    "a.b * * @dispvm:dvm ask target=@dispvm:dvm\n"
    "a.b * @anyvm @anyvm ask\n"
    "* * @anyvm @anyvm deny\n";

static void setup(void)
{
    if (pol)
        return;
    bh_sysinfo_init(&si);
    bh_error err;
    if (bh_sysinfo_parse(&si,
                         "dom0 AdminVM\n"
                         "work AppVM state=Running tags=t1,t2 default_dispvm=dvm "
                         "uuid=11111111-2222-3333-4444-555555555555\n"
                         "personal AppVM tags=t2\n"
                         "dvm AppVM template_for_dispvms=yes tags=t1\n"
                         "disp1 DispVM template=dvm state=Running\n",
                         &err) < 0)
        abort();
    pol = bh_policy_load_buffer("eval.policy", policy_text, sizeof policy_text - 1, NULL);
    if (!pol || bh_policy_error_count(pol))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    char *buf = malloc(size + 3);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = buf[size + 1] = buf[size + 2] = '\0';
    const char *src = buf;
    const char *tgt = src + strlen(src) + 1;
    if (tgt > buf + size + 1)
        tgt = buf + size + 1;
    const char *svc = tgt + strlen(tgt) + 1;
    if (svc > buf + size + 2)
        svc = buf + size + 2;
    struct bh_policy_result r;
    if (bh_policy_evaluate(pol, &si, src, tgt, svc, &r) == BH_POLICY_ASK) {
        const char *pick = r.n_choices ? r.choices[r.n_choices - 1] : "x";
        char copy[64];
        strncpy(copy, pick, sizeof copy - 1);
        copy[sizeof copy - 1] = '\0';
        bh_policy_confirm_ask(&r, &si, copy);
    }
    bh_policy_result_free(&r);
    free(buf);
    return 0;
}
