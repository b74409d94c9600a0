/*
 * tlsfiles: checks the PEM files of broker.cacert, broker.cert and
 * broker.key before any connection uses them, so that `taskd -t`, a start
 * and a reload say which file is wrong and why, instead of a handshake
 * failing later with a vaguer reason.
 *
 * Only reads files; touches no global state (OpenSSL's error queue aside,
 * which it clears).  Each function returns 0, or -1 with a one-line
 * reason in err that names the file.
 */
#ifndef TASKD_TLSFILES_H
#define TASKD_TLSFILES_H

#include <stddef.h>

/* path holds at least one PEM certificate (a CA bundle). */
int tlsfiles_check_ca(const char *path, char *err, size_t errlen);

/* cert holds a PEM certificate (a chain: the first is ours), key an
 * unencrypted PEM private key, and the key is the certificate's.  *which
 * is set to 0 when the problem is the certificate file, 1 when it is the
 * key file or the pair. */
int tlsfiles_check_pair(const char *cert, const char *key, int *which,
    char *err, size_t errlen);

#endif
