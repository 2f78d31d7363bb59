/* A stack for clone(2)'s fn. A plain anonymous mapping has no guard: the kernel's
 * stack guard gap protects only the main thread's growing stack, so a thread or clone
 * child that overflows its mmap'd stack writes into whatever mapping lies below, which
 * under CLONE_VM is the parent's memory. These stacks have BH_STACK_GUARD bytes of
 * PROT_NONE below them: an overflow faults. */
#pragma once
#include <stddef.h>

/* More than one page: a frame with a large local buffer could step over a single
 * guard page without touching it. */
#define BH_STACK_GUARD (64u * 1024)

struct bh_stack {
    char *map;  /* the whole mapping, guard included */
    size_t len;
};

/* size bytes (rounded up to pages) of read-write stack above the guard: 0, or -1 with
 * errno. */
int bh_stack_alloc(struct bh_stack *s, size_t size);
/* The highest address: what clone(2) takes (stacks grow down). */
static inline void *bh_stack_top(const struct bh_stack *s)
{
    return s->map + s->len;
}
void bh_stack_free(struct bh_stack *s);
