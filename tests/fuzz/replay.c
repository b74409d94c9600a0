/*
 * replay: the main() of a fuzz target built without libFuzzer.  It feeds
 * every file of the given directories (or the given files) to
 * LLVMFuzzerTestOneInput, once each, so `make check` keeps the corpus
 * passing with gcc and under ASan.
 *
 *   fuzz_NAME [DIR|FILE]...
 *
 * With no argument it replays FUZZ_CORPUS/NAME, NAME being the program's
 * name without "fuzz_" (make check runs the targets that way).  A target
 * that crashes crashes this program (the sanitizers report where); a
 * corpus file that cannot be read, or an empty corpus, is a failure too:
 * a replay that ran nothing proves nothing.
 */
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* Reads all of path into a buffer of its own size exactly, so ASan sees a
 * read past the end as what it is. */
static int
replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	size_t cap = 4096, n = 0;
	unsigned char *p = malloc(cap);
	for (;;) {
		if (p == NULL) {
			fprintf(stderr, "replay: %s: out of memory\n", path);
			fclose(f);
			return -1;
		}
		n += fread(p + n, 1, cap - n, f);
		if (n < cap)
			break;
		cap *= 2;
		unsigned char *q = realloc(p, cap);
		if (q == NULL)
			free(p);
		p = q;
	}
	int bad = ferror(f);
	fclose(f);
	if (bad) {
		fprintf(stderr, "replay: %s: read error\n", path);
		free(p);
		return -1;
	}
	unsigned char *exact = malloc(n ? n : 1);
	if (exact == NULL) {
		free(p);
		return -1;
	}
	memcpy(exact, p, n);
	free(p);
	LLVMFuzzerTestOneInput(exact, n);
	free(exact);
	return 0;
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replays a file, or each regular file of a directory in name order (a
 * failure then names the same file on every run).  Returns the number of
 * inputs run, or -1. */
static long
replay_path(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode))
		return replay_file(path) < 0 ? -1 : 1;

	DIR *d = opendir(path);
	if (d == NULL) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			char **v = realloc(names, cap * sizeof(*v));
			if (v == NULL)
				break;
			names = v;
		}
		size_t len = strlen(path) + strlen(e->d_name) + 2;
		if ((names[n] = malloc(len)) == NULL)
			break;
		snprintf(names[n++], len, "%s/%s", path, e->d_name);
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof(*names), by_name);
	long ran = 0;
	for (size_t i = 0; i < n; i++) {
		if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
			if (replay_file(names[i]) < 0)
				ran = -1;
			else if (ran >= 0)
				ran++;
		}
		free(names[i]);
	}
	free(names);
	return ran;
}

int
main(int argc, char **argv)
{
	if (LLVMFuzzerInitialize != NULL)
		LLVMFuzzerInitialize(&argc, &argv);

	char *deflt[2] = { NULL, NULL };
	char **paths = argv + 1;
	if (argc < 2) {
		const char *name = strrchr(argv[0], '/');
		name = name ? name + 1 : argv[0];
		if (strncmp(name, "fuzz_", 5) == 0)
			name += 5;
		size_t len = strlen(FUZZ_CORPUS) + strlen(name) + 2;
		if ((deflt[0] = malloc(len)) == NULL)
			return 1;
		snprintf(deflt[0], len, "%s/%s", FUZZ_CORPUS, name);
		paths = deflt;
	}
	long total = 0;
	int rc = 0;
	for (char **p = paths; *p != NULL; p++) {
		long ran = replay_path(*p);
		if (ran < 0)
			rc = 1;
		else
			total += ran;
	}
	free(deflt[0]);
	if (rc == 0 && total == 0) {
		fprintf(stderr, "replay: no input found\n");
		rc = 1;
	}
	if (rc == 0)
		printf("%s: %ld inputs replayed\n", argv[0], total);
	return rc;
}
