#include "tlsfiles.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

static int
fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	ERR_clear_error();
	return -1;
}

/* OpenSSL's reason for the last failure, e.g. "no start line". */
static const char *
ssl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
	return r != NULL ? r : "not PEM";
}

/* A key with a passphrase cannot be used by a daemon that starts
 * unattended (rabbitmq-c would abort on it): refuse it here, never
 * prompt on a terminal. */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	*(int *)u = 1;
	return -1;
}

static FILE *
open_file(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	if (f == NULL)
		fail(err, errlen, "cannot read %s: %s", path, strerror(errno));
	return f;
}

int
tlsfiles_check_ca(const char *path, char *err, size_t errlen)
{
	FILE *f = open_file(path, err, errlen);
	if (f == NULL)
		return -1;
	ERR_clear_error();
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (x == NULL)
		return fail(err, errlen, "%s holds no PEM certificate (%s)", path,
		    ssl_reason());
	X509_free(x);
	ERR_clear_error();
	return 0;
}

int
tlsfiles_check_pair(const char *cert, const char *key, int *which,
    char *err, size_t errlen)
{
	*which = 0;
	FILE *f = open_file(cert, err, errlen);
	if (f == NULL)
		return -1;
	ERR_clear_error();
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (x == NULL)
		return fail(err, errlen, "%s holds no PEM certificate (%s)", cert,
		    ssl_reason());

	*which = 1;
	if ((f = open_file(key, err, errlen)) == NULL) {
		X509_free(x);
		return -1;
	}
	int asked = 0;
	EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, no_passphrase, &asked);
	fclose(f);
	if (k == NULL) {
		X509_free(x);
		if (asked)
			return fail(err, errlen, "%s is encrypted: taskd needs a key "
			    "without a passphrase (keep it readable by taskd only)", key);
		return fail(err, errlen, "%s holds no PEM private key (%s)", key,
		    ssl_reason());
	}
	int match = X509_check_private_key(x, k);
	EVP_PKEY_free(k);
	X509_free(x);
	if (match != 1)
		return fail(err, errlen, "%s is not the private key of the "
		    "certificate in %s", key, cert);
	ERR_clear_error();
	return 0;
}
