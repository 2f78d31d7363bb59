#include "ask_proto.h"
#include <stdio.h>
#include <string.h>

bool bh_ask_field_ok(const char *s, size_t size)
{
    size_t n = strnlen(s, size);
    if (n == 0 || n >= size)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

int bh_ask_choice_index(const struct bh_ask_question *q, const char *name)
{
    for (size_t i = 0; i < q->n_choices; i++)
        if (!strcmp(q->choices[i], name))
            return (int)i;
    return -1;
}

static int fail(const char **why, const char *msg)
{
    if (why)
        *why = msg;
    return -1;
}

int bh_ask_question_init(struct bh_ask_question *q, const char *source, const char *service,
                         const char *deflt, char *const *choices, size_t n, const char **why)
{
    memset(q, 0, sizeof *q);
    if (!source || !bh_ask_field_ok(source, sizeof q->source))
        return fail(why, "bad source name");
    if (!service || !bh_ask_field_ok(service, sizeof q->service))
        return fail(why, "bad service name");
    if (n == 0 || n > BH_ASK_MAX_CHOICES)
        return fail(why, "no choices or too many");
    memcpy(q->source, source, strlen(source) + 1);
    memcpy(q->service, service, strlen(service) + 1);
    for (size_t i = 0; i < n; i++) {
        if (!choices[i] || !bh_ask_field_ok(choices[i], BH_ASK_NAME_MAX))
            return fail(why, "bad target name");
        if (bh_ask_choice_index(q, choices[i]) >= 0)
            continue; /* offered once */
        memcpy(q->choices[q->n_choices++], choices[i], strlen(choices[i]) + 1);
    }
    if (deflt && *deflt) {
        if (!bh_ask_field_ok(deflt, sizeof q->deflt))
            return fail(why, "bad default target");
        if (bh_ask_choice_index(q, deflt) >= 0)
            memcpy(q->deflt, deflt, strlen(deflt) + 1);
    }
    return 0;
}

int bh_ask_format(const struct bh_ask_question *q, char *out, size_t size)
{
    size_t off = 0;
    int n = snprintf(out, size, "bulkhead-ask 1\nsource %s\nservice %s\ndefault %s\n", q->source, q->service,
                     q->deflt);
    if (n < 0 || (size_t)n >= size)
        return -1;
    off = (size_t)n;
    for (size_t i = 0; i < q->n_choices; i++) {
        n = snprintf(out + off, size - off, "choice %s\n", q->choices[i]);
        if (n < 0 || (size_t)n >= size - off)
            return -1;
        off += (size_t)n;
    }
    n = snprintf(out + off, size - off, "end\n");
    if (n < 0 || (size_t)n >= size - off)
        return -1;
    return (int)(off + (size_t)n);
}

/* Takes the next line "KEY VALUE" (value may be empty only if allow_empty); the value is
 * copied into val (size vsize) after the field check. Moves *pos past the newline. */
static int take(const char *msg, size_t len, size_t *pos, const char *key, char *val, size_t vsize,
                bool allow_empty)
{
    size_t start = *pos;
    const char *nl = memchr(msg + start, '\n', len - start);
    if (!nl)
        return -1;
    size_t linelen = (size_t)(nl - (msg + start));
    size_t klen = strlen(key);
    if (linelen < klen + 1 || memcmp(msg + start, key, klen) || msg[start + klen] != ' ')
        return -1;
    size_t vlen = linelen - klen - 1;
    if (vlen >= vsize)
        return -1;
    memcpy(val, msg + start + klen + 1, vlen);
    val[vlen] = '\0';
    if (vlen == 0 ? !allow_empty : !bh_ask_field_ok(val, vsize))
        return -1;
    *pos = start + linelen + 1;
    return 0;
}

static bool next_is(const char *msg, size_t len, size_t pos, const char *line)
{
    size_t n = strlen(line);
    return len - pos >= n && !memcmp(msg + pos, line, n);
}

int bh_ask_parse(const char *msg, size_t len, struct bh_ask_question *q, const char **why)
{
    memset(q, 0, sizeof *q);
    if (len > BH_ASK_MSG_MAX)
        return fail(why, "question too long");
    if (memchr(msg, '\0', len))
        return fail(why, "NUL byte in question");
    size_t pos = 0;
    if (!next_is(msg, len, pos, "bulkhead-ask 1\n"))
        return fail(why, "not a bulkhead-ask 1 question");
    pos += strlen("bulkhead-ask 1\n");
    char deflt[BH_ASK_NAME_MAX] = "";
    if (take(msg, len, &pos, "source", q->source, sizeof q->source, false) < 0)
        return fail(why, "bad source line");
    if (take(msg, len, &pos, "service", q->service, sizeof q->service, false) < 0)
        return fail(why, "bad service line");
    if (take(msg, len, &pos, "default", deflt, sizeof deflt, true) < 0)
        return fail(why, "bad default line");
    while (!next_is(msg, len, pos, "end\n")) {
        if (q->n_choices == BH_ASK_MAX_CHOICES)
            return fail(why, "too many choices");
        char *c = q->choices[q->n_choices];
        if (take(msg, len, &pos, "choice", c, BH_ASK_NAME_MAX, false) < 0)
            return fail(why, "bad choice line");
        if (bh_ask_choice_index(q, c) >= 0) /* searches the ones before c */
            return fail(why, "choice offered twice");
        q->n_choices++;
    }
    if (pos + 4 != len)
        return fail(why, "bytes after the end");
    if (q->n_choices == 0)
        return fail(why, "no choices");
    if (deflt[0]) {
        if (bh_ask_choice_index(q, deflt) < 0)
            return fail(why, "default is not a choice");
        memcpy(q->deflt, deflt, strlen(deflt) + 1);
    }
    return 0;
}

int bh_ask_parse_answer(const struct bh_ask_question *q, const char *msg, size_t len, char *target,
                        size_t size)
{
    if (len == 5 && !memcmp(msg, "deny\n", 5))
        return 0;
    if (len < 8 || len > BH_ASK_ANSWER_MAX || memcmp(msg, "allow ", 6) || msg[len - 1] != '\n')
        return -1;
    char name[BH_ASK_NAME_MAX];
    size_t n = len - 7;
    if (n >= sizeof name)
        return -1;
    memcpy(name, msg + 6, n);
    name[n] = '\0';
    if (!bh_ask_field_ok(name, sizeof name) || bh_ask_choice_index(q, name) < 0 || n >= size)
        return -1;
    memcpy(target, name, n + 1);
    return 1;
}
