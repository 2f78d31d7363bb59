/* Qube tokens of policy lines and of calls: parsing and printing. Matching is in
 * eval.c, next to the facts it needs. */
#include "policy_int.h"
#include "names.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longer than any name, uuid, tag or type (the line limit bounds it anyway). */
#define TOK_VALUE_MAX 255

struct keyword {
    const char *text;
    enum tok_kind kind;
    unsigned ctx; /* where it may appear */
};

static const struct keyword exact_keywords[] = {
    { "*", TOK_WILDCARD, CTX_SOURCE | CTX_TARGET },
    { "@anyvm", TOK_ANYVM, CTX_SOURCE | CTX_TARGET },
    { "@adminvm", TOK_ADMINVM, CTX_SOURCE | CTX_TARGET | CTX_REDIRECT | CTX_INTENDED },
    { "@default", TOK_DEFAULT, CTX_TARGET | CTX_INTENDED },
    { "@dispvm", TOK_DISPVM, CTX_TARGET | CTX_REDIRECT | CTX_INTENDED },
};

/* Longest prefix first: "@dispvm:@tag:" before "@dispvm:". */
static const struct keyword prefix_keywords[] = {
    { "@dispvm:@tag:", TOK_DISPVM_TAG, CTX_SOURCE | CTX_TARGET },
    { "@dispvm:", TOK_DISPVM_NAME, CTX_SOURCE | CTX_TARGET | CTX_REDIRECT | CTX_INTENDED },
    { "@tag:", TOK_TAG, CTX_SOURCE | CTX_TARGET },
    { "@type:", TOK_TYPE, CTX_SOURCE | CTX_TARGET },
    { "uuid:", TOK_UUID, CTX_SOURCE | CTX_TARGET | CTX_REDIRECT | CTX_INTENDED },
};

static int set_value(struct tok *out, enum tok_kind k, const char *v, const char **why)
{
    out->kind = k;
    out->value = v ? strdup(v) : NULL;
    if (v && !out->value) {
        *why = "out of memory";
        return -1;
    }
    return 0;
}

int tok_parse(const char *s, enum tok_ctx ctx, struct tok *out, const char **why)
{
    memset(out, 0, sizeof *out);
    if (!*s) {
        *why = "empty token";
        return -1;
    }
    if (!strcmp(s, "dom0"))
        s = "@adminvm";
    for (size_t i = 0; i < sizeof exact_keywords / sizeof *exact_keywords; i++) {
        const struct keyword *kw = &exact_keywords[i];
        if (strcmp(s, kw->text))
            continue;
        if (!(kw->ctx & ctx)) {
            *why = "token not allowed here";
            return -1;
        }
        return set_value(out, kw->kind, NULL, why);
    }
    for (size_t i = 0; i < sizeof prefix_keywords / sizeof *prefix_keywords; i++) {
        const struct keyword *kw = &prefix_keywords[i];
        size_t pl = strlen(kw->text);
        if (strncmp(s, kw->text, pl))
            continue;
        const char *v = s + pl;
        if (!(kw->ctx & ctx)) {
            *why = "token not allowed here";
            return -1;
        }
        if (!*v) {
            *why = "empty value in token";
            return -1;
        }
        /* As Qubes' parser: the value is not checked against what exists or could
         * exist (an upper-case uuid, @type:RemoteVM, a name no qube has: each simply
         * matches nothing); only a value that starts with '@' is not a token. */
        if (*v == '@') {
            *why = kw->kind == TOK_DISPVM_NAME ? "invalid @dispvm: token" : "invalid token";
            return -1;
        }
        if (strlen(v) > TOK_VALUE_MAX) {
            *why = "token too long";
            return -1;
        }
        return set_value(out, kw->kind, v, why);
    }
    if (s[0] == '@') {
        *why = "unknown @ token";
        return -1;
    }
    /* Anything else is a qube name to Qubes, valid or not: it matches only a qube of
     * that name. */
    if (strlen(s) > TOK_VALUE_MAX) {
        *why = "token too long";
        return -1;
    }
    return set_value(out, TOK_NAME, s, why);
}

void tok_free(struct tok *t)
{
    free(t->value);
    t->value = NULL;
}

const char *tok_str(const struct tok *t, char *buf, size_t n)
{
    static const char *const fixed[] = {
        [TOK_WILDCARD] = "*", [TOK_ANYVM] = "@anyvm", [TOK_ADMINVM] = "@adminvm",
        [TOK_DEFAULT] = "@default", [TOK_DISPVM] = "@dispvm",
    };
    const char *prefix = "";
    switch (t->kind) {
    case TOK_WILDCARD:
    case TOK_ANYVM:
    case TOK_ADMINVM:
    case TOK_DEFAULT:
    case TOK_DISPVM:
        snprintf(buf, n, "%s", fixed[t->kind]);
        return buf;
    case TOK_UUID: prefix = "uuid:"; break;
    case TOK_DISPVM_NAME: prefix = "@dispvm:"; break;
    case TOK_DISPVM_TAG: prefix = "@dispvm:@tag:"; break;
    case TOK_TAG: prefix = "@tag:"; break;
    case TOK_TYPE: prefix = "@type:"; break;
    case TOK_NAME: break;
    }
    snprintf(buf, n, "%s%s", prefix, t->value ? t->value : "");
    return buf;
}
