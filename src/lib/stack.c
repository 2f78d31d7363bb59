#include "stack.h"
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

int bh_stack_alloc(struct bh_stack *s, size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size = (size + page - 1) / page * page;
    size_t guard = (BH_STACK_GUARD + page - 1) / page * page;
    if (!size || size > (size_t)-1 - guard) {
        errno = EINVAL;
        return -1;
    }
    char *m = mmap(NULL, guard + size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (m == MAP_FAILED)
        return -1;
    if (mprotect(m, guard, PROT_NONE) < 0) {
        int e = errno;
        munmap(m, guard + size);
        errno = e;
        return -1;
    }
    s->map = m;
    s->len = guard + size;
    return 0;
}

void bh_stack_free(struct bh_stack *s)
{
    if (s->map)
        munmap(s->map, s->len);
    s->map = NULL;
    s->len = 0;
}
