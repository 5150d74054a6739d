/*
 * policy_dir.h — the example services that link the authz library load a
 * deployment's policy directory the way the gateway's `policies.files` glob
 * does: every *.yaml in it, in name order, into one builder.
 */
#ifndef EX_POLICY_DIR_H
#define EX_POLICY_DIR_H

#include "ficus_authz.h"

/* Adds every *.yaml of dir to b (errors go to d). The number of files added, or -1 with errno set
 * when dir cannot be read. */
int ex_policy_dir_add(fx_policy_builder *b, const char *dir, fx_authz_diags *d);

#endif
