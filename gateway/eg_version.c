/*
 * eg_version.c — the version string shared by ehrgate and ehrctl.
 */
#include "eg_version.h"

const char *eg_version(void) { return "0.1.0"; }
