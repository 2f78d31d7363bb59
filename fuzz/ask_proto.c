/* libFuzzer: the agent's question parser and the relay's answer parser. A parsed
 * question must be fit to show: every field printable, bounded, the default a choice. */
#include "ask_proto.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_field(const char *s, size_t size, bool may_be_empty)
{
    if (!(may_be_empty && !s[0]) && !bh_ask_field_ok(s, size))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *b = malloc(size ? size : 1); /* exact size: ASan sees any overread */
    memcpy(b, data, size);
    static struct bh_ask_question q;
    const char *why;
    if (bh_ask_parse(b, size, &q, &why) == 0) {
        check_field(q.source, sizeof q.source, false);
        check_field(q.service, sizeof q.service, false);
        check_field(q.deflt, sizeof q.deflt, true);
        if (q.n_choices == 0 || q.n_choices > BH_ASK_MAX_CHOICES)
            abort();
        for (size_t i = 0; i < q.n_choices; i++)
            check_field(q.choices[i], BH_ASK_NAME_MAX, false);
        if (q.deflt[0] && bh_ask_choice_index(&q, q.deflt) < 0)
            abort();
        /* and the question round-trips */
        static char out[BH_ASK_MSG_MAX];
        static struct bh_ask_question q2;
        int n = bh_ask_format(&q, out, sizeof out);
        if (n < 0 || bh_ask_parse(out, (size_t)n, &q2, &why) < 0 || memcmp(&q, &q2, sizeof q))
            abort();
    }
    /* the answer, against a fixed question */
    static struct bh_ask_question fixed;
    char *const ch[] = { "b", "c", "@dispvm:d" };
    if (bh_ask_question_init(&fixed, "a", "qubes.GetDate", "b", ch, 3, &why) < 0)
        abort();
    char t[BH_ASK_NAME_MAX];
    if (bh_ask_parse_answer(&fixed, b, size, t, sizeof t) == 1 && bh_ask_choice_index(&fixed, t) < 0)
        abort();
    free(b);
    return 0;
}
