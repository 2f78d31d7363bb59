/* The question that qrexec-policy-ask relays to qrexec-policy-agent, and its answer.
 *
 * Both ends are dom0 programs, but every field carries names that qubes chose (the
 * source qube, the service and its argument), so the agent parses it like qube bytes:
 * one message of at most BH_ASK_MSG_MAX bytes, every field printable ASCII without
 * spaces and bounded, nothing shown to a person before it passed bh_ask_parse().
 *
 *   bulkhead-ask 1\n
 *   source SOURCE\n
 *   service SERVICE[+ARG]\n
 *   default [TARGET]\n          (empty: nothing preselected)
 *   choice TARGET\n             (1..BH_ASK_MAX_CHOICES times)
 *   end\n
 *
 * The answer: "allow TARGET\n" or "deny\n". */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#define BH_ASK_MSG_MAX 16384
#define BH_ASK_NAME_MAX 64     /* a target: a qube name or @dispvm:NAME, with NUL */
#define BH_ASK_SERVICE_MAX 1024 /* SERVICE+ARG, with NUL (longer ones are denied unasked) */
#define BH_ASK_MAX_CHOICES 128
#define BH_ASK_ANSWER_MAX 128

struct bh_ask_question {
    char source[BH_ASK_NAME_MAX];
    char service[BH_ASK_SERVICE_MAX];
    char deflt[BH_ASK_NAME_MAX]; /* "" or one of choices[] */
    size_t n_choices;
    char choices[BH_ASK_MAX_CHOICES][BH_ASK_NAME_MAX];
};

/* 1..size-1 bytes, each printable ASCII other than space (0x21..0x7e). */
bool bh_ask_field_ok(const char *s, size_t size);

/* Fills q from the relay's arguments, checking every field; -1 (with *why) if any field
 * is not fit to be shown. A default that is not among the choices is dropped. */
int bh_ask_question_init(struct bh_ask_question *q, const char *source, const char *service,
                         const char *deflt, char *const *choices, size_t n, const char **why);

/* Writes the message into out (size BH_ASK_MSG_MAX); returns its length or -1. */
int bh_ask_format(const struct bh_ask_question *q, char *out, size_t size);

/* Parses exactly one message of len bytes; -1 (with *why) on anything unexpected. */
int bh_ask_parse(const char *msg, size_t len, struct bh_ask_question *q, const char **why);

/* Index of name among the choices, or -1. */
int bh_ask_choice_index(const struct bh_ask_question *q, const char *name);

/* Parses the agent's answer; returns 1 and the chosen target (one of the choices) in
 * target, 0 for a refusal, -1 for anything else. */
int bh_ask_parse_answer(const struct bh_ask_question *q, const char *msg, size_t len, char *target,
                        size_t size);
