#include "names.h"
#include <string.h>

static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool bh_qube_name_valid(const char *name, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    size_t n = strlen(name);
    if (n == 0) {
        *why = "VM name must not be empty";
        return false;
    }
    if (n > BH_NAME_MAX) {
        *why = "VM name must be shorter than 32 characters";
        return false;
    }
    if (!is_alpha(name[0])) {
        *why = "VM name must start with a letter";
        return false;
    }
    for (size_t i = 1; i < n; i++) {
        char c = name[i];
        if (!is_alpha(c) && !is_digit(c) && c != '_' && c != '.' && c != '-') {
            *why = "VM name contains illegal characters";
            return false;
        }
    }
    if (!strcmp(name, "none") || !strcmp(name, "default")) {
        *why = "VM name cannot be 'none' nor 'default'";
        return false;
    }
    if (n >= 3 && !strcmp(name + n - 3, "-dm")) {
        *why = "VM name cannot end with -dm";
        return false;
    }
    return true;
}

bool bh_ident_valid(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!is_alpha(c) && !is_digit(c) && c != '_' && c != '.' && c != '-')
            return false;
    }
    return true;
}
