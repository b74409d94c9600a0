/*
 * fuzz_conf: the config loader (src/conf.c over libconfig).  The input is
 * the text of taskd.conf.  conf_load reads a path, so the text goes into
 * a memfd named by /proc/self/fd/N: no file is left behind, and nothing
 * else in conf.c changes for the fuzzer.
 *
 * Checked besides memory errors: either a conf or a problem list comes
 * back, never both or neither; every problem is one non-empty line with a
 * "file:" prefix and no control character; a loaded conf has what validation promises.
 *
 * A config is trusted input (only the operator writes it), and a few keys
 * name files that conf_load reads (password_file, @include): run the
 * fuzzer as an ordinary user in an empty directory (tests/fuzz/run-all
 * does), so a path it invents can at worst name a file that user may read.
 */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "conf.h"
#include "fuzz.h"

static int memfd = -1;
static char path[64];

static void
check_problems(const char *errs)
{
	FUZZ_CHECK(errs != NULL && errs[0] != '\0');
	for (const char *l = errs; *l != '\0'; ) {
		const char *nl = strchr(l, '\n');
		size_t n = nl ? (size_t)(nl - l) : strlen(l);
		FUZZ_CHECK(n > 0);
		/* "file:line: what" or "file: what" */
		const char *c1 = memchr(l, ':', n);
		FUZZ_CHECK(c1 != NULL && c1 > l);
		/* Values are echoed, but never a control character that would
		 * split or forge a log line. */
		for (size_t i = 0; i < n; i++)
			FUZZ_CHECK((unsigned char)l[i] >= 0x20 && l[i] != 0x7f);
		l += n;
		if (*l == '\n')
			l++;
	}
}

static void
check_conf(const struct conf *c)
{
	FUZZ_CHECK(c->broker.host != NULL && c->broker.port >= 1 && c->broker.port <= 65535);
	FUZZ_CHECK(c->queue_name != NULL && c->reply_queue != NULL && c->default_task != NULL);
	FUZZ_CHECK(c->io_max_concurrency >= 1 && c->io_max_concurrency <= 1000000);
	FUZZ_CHECK(c->cpu_workers >= 0 && c->cpu_workers <= 1024);
	FUZZ_CHECK(c->ntasks == 0 || c->tasks != NULL);
	for (size_t i = 0; i < c->ntasks; i++) {
		const struct conf_task *t = &c->tasks[i];
		FUZZ_CHECK(t->name != NULL && t->name[0] != '\0');
		/* handler or exec, never both, never neither */
		FUZZ_CHECK((t->handler != NULL) != (t->exec != NULL));
		FUZZ_CHECK(t->exec == NULL || (t->exec[0] != NULL && t->exec[0][0] == '/'));
		FUZZ_CHECK(conf_task_find(c, t->name) == t);
		FUZZ_CHECK(t->timeout > 0);
	}
	if (c->default_task[0] != '\0')
		FUZZ_CHECK(conf_task_find(c, c->default_task) != NULL);
	for (char **p = c->plugins; p != NULL && *p != NULL; p++)
		FUZZ_CHECK((*p)[0] == '/');
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (memfd < 0) {
		memfd = memfd_create("fuzz_conf", MFD_CLOEXEC);
		FUZZ_CHECK(memfd >= 0);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	}
	FUZZ_CHECK(ftruncate(memfd, 0) == 0);
	FUZZ_CHECK(pwrite(memfd, data, size, 0) == (ssize_t)size);

	char *errs = NULL;
	struct conf *c = conf_load(path, &errs);
	FUZZ_CHECK((c == NULL) != (errs == NULL));
	if (c != NULL) {
		check_conf(c);
		conf_free(c);
	} else {
		check_problems(errs);
		free(errs);
	}
	return 0;
}
