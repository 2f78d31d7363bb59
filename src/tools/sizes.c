#include "sizes.h"
#include "util.h"
#include <string.h>

bool parse_size(const char *text, unsigned long long *out)
{
    /* Same unit order as Qubes' parse_size: the first suffix that matches wins. */
    static const struct {
        const char *unit;
        unsigned long long mult;
    } units[] = {
        { "K", 1000ULL }, { "KB", 1000ULL }, { "M", 1000000ULL }, { "MB", 1000000ULL },
        { "G", 1000000000ULL }, { "GB", 1000000000ULL }, { "KI", 1024ULL },
        { "KIB", 1024ULL }, { "MI", 1048576ULL }, { "MIB", 1048576ULL },
        { "GI", 1073741824ULL }, { "GIB", 1073741824ULL },
    };
    char *s = str_upper(text);
    while (*s == ' ' || *s == '\t' || *s == '\n')
        s++;
    size_t len = strlen(s);
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\n'))
        s[--len] = '\0';
    unsigned long long v;
    if (str_to_u64(s, &v)) {
        *out = v;
        return true;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (!str_endswith(s, units[i].unit))
            continue;
        char *num = qt_strndup(s, len - strlen(units[i].unit));
        size_t nl = strlen(num);
        while (nl && num[nl - 1] == ' ')
            num[--nl] = '\0';
        if (!str_to_u64(num, &v) || v > ~0ULL / units[i].mult)
            return false;
        *out = v * units[i].mult;
        return true;
    }
    return false;
}
