/* eg_version.h — program version. */
#ifndef EG_VERSION_H
#define EG_VERSION_H
const char *eg_version(void);
#endif
