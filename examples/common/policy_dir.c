/*
 * policy_dir.c — a policy directory into a builder (see policy_dir.h).
 */
#include "policy_dir.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int is_yaml(const struct dirent *e)
{
    size_t n = strlen(e->d_name);
    return n > 5 && !strcmp(e->d_name + n - 5, ".yaml");
}

int ex_policy_dir_add(fx_policy_builder *b, const char *dir, fx_authz_diags *d)
{
    struct dirent **ents;
    int n = scandir(dir, &ents, is_yaml, by_name);
    if (n < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, ents[i]->d_name);
        fx_policy_builder_add_file(b, path, d);
        free(ents[i]);
    }
    free(ents);
    return n;
}
