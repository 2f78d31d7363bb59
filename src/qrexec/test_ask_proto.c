/* Unit tests for the ask question/answer format: round trip, limits, hostile text. */
#include "../../tests/unit/tap.h"
#include "ask_proto.h"
#include <string.h>

static int parse(const char *s, struct bh_ask_question *q)
{
    const char *why;
    return bh_ask_parse(s, strlen(s), q, &why);
}

int main(void)
{
    static struct bh_ask_question q, q2;
    static char buf[BH_ASK_MSG_MAX];
    const char *why;
    char *const ch[] = { "b", "c", "b", "@dispvm:dvm" };
    CHECK(bh_ask_question_init(&q, "a", "qubes.Filecopy+x", "c", ch, 4, &why) == 0);
    CHECK(q.n_choices == 3 && !strcmp(q.deflt, "c")); /* offered once */
    int n = bh_ask_format(&q, buf, sizeof buf);
    CHECK(n > 0);
    CHECK(bh_ask_parse(buf, (size_t)n, &q2, &why) == 0 && !memcmp(&q, &q2, sizeof q));
    CHECK(bh_ask_parse(buf, (size_t)n - 1, &q2, &why) < 0); /* truncated */

    /* a default that is not offered is dropped by the relay, refused by the agent */
    CHECK(bh_ask_question_init(&q, "a", "s", "zz", ch, 2, &why) == 0 && q.deflt[0] == '\0');
    CHECK(parse("bulkhead-ask 1\nsource a\nservice s\ndefault zz\nchoice b\nend\n", &q2) < 0);
    CHECK(parse("bulkhead-ask 1\nsource a\nservice s\ndefault \nchoice b\nend\n", &q2) == 0 && !q2.deflt[0]);

    /* hostile text: escapes, spaces, controls, DEL, high bytes, NUL, overlong */
    char *const esc[] = { "b\x1b]0;pwned\x07" };
    CHECK(bh_ask_question_init(&q, "a", "s", "", esc, 1, &why) < 0);
    CHECK(bh_ask_question_init(&q, "a\r", "s", "", ch, 1, &why) < 0);
    CHECK(bh_ask_question_init(&q, "a", "s x", "", ch, 1, &why) < 0);
    CHECK(bh_ask_question_init(&q, "a", "s\x7f", "", ch, 1, &why) < 0);
    CHECK(bh_ask_question_init(&q, "a", "s\xc3\xa9", "", ch, 1, &why) < 0);
    CHECK(bh_ask_question_init(&q, "a", "s", "", ch, 0, &why) < 0);
    CHECK(parse("bulkhead-ask 1\nsource a\x1b[2J\nservice s\ndefault \nchoice b\nend\n", &q2) < 0);
    CHECK(parse("bulkhead-ask 1\nsource a\nservice s\ndefault \nchoice b c\nend\n", &q2) < 0);
    CHECK(parse("bulkhead-ask 1\nsource a\nservice s\ndefault \nchoice b\nchoice b\nend\n", &q2) < 0);
    CHECK(parse("bulkhead-ask 1\nsource a\nservice s\ndefault \nend\n", &q2) < 0);
    CHECK(parse("bulkhead-ask 1\nsource a\nservice s\ndefault \nchoice b\nend\nx", &q2) < 0);
    CHECK(parse("bulkhead-ask 2\nsource a\nservice s\ndefault \nchoice b\nend\n", &q2) < 0);
    CHECK(bh_ask_parse("bulkhead-ask 1\nsource a\0\nservice s\ndefault \nchoice b\nend\n", 50, &q2, &why) < 0);
    memset(buf, 'a', sizeof buf);
    n = snprintf(buf, sizeof buf, "bulkhead-ask 1\nsource ");
    buf[n + 64] = '\n';
    CHECK(bh_ask_parse(buf, (size_t)n + 65, &q2, &why) < 0); /* a 64-byte name */
    CHECK(bh_ask_parse(buf, sizeof buf + 1, &q2, &why) < 0);  /* more than a question can be */
    /* too many choices */
    n = snprintf(buf, sizeof buf, "bulkhead-ask 1\nsource a\nservice s\ndefault \n");
    for (int i = 0; i <= BH_ASK_MAX_CHOICES; i++)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "choice q%d\n", i);
    n += snprintf(buf + n, sizeof buf - (size_t)n, "end\n");
    CHECK(bh_ask_parse(buf, (size_t)n, &q2, &why) < 0);

    /* answers: only an offered target */
    CHECK(bh_ask_question_init(&q, "a", "s", "b", ch, 2, &why) == 0);
    char t[BH_ASK_NAME_MAX];
    CHECK(bh_ask_parse_answer(&q, "allow c\n", 8, t, sizeof t) == 1 && !strcmp(t, "c"));
    CHECK(bh_ask_parse_answer(&q, "deny\n", 5, t, sizeof t) == 0);
    CHECK(bh_ask_parse_answer(&q, "allow a\n", 8, t, sizeof t) < 0);
    CHECK(bh_ask_parse_answer(&q, "allow c", 7, t, sizeof t) < 0);
    CHECK(bh_ask_parse_answer(&q, "allow c\nx", 9, t, sizeof t) < 0);
    CHECK(bh_ask_parse_answer(&q, "allow \n", 7, t, sizeof t) < 0);
    return tap_done();
}
