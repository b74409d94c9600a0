#include "cpus.h"

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads a small pseudo-file whole; NULL when it cannot be read.  cgroup and
 * proc files report a size of 0 or 4096, so read until EOF. */
static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	char *text = NULL;
	size_t len = 0;

	if (f == NULL)
		return NULL;
	FILE *m = open_memstream(&text, &len);
	if (m == NULL) {
		fclose(f);
		return NULL;
	}
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		if (fwrite(chunk, 1, n, m) != n)
			break;
	bool bad = ferror(f) || ferror(m);
	fclose(f);
	if (fclose(m) != 0 || bad) {
		free(text);
		return NULL;
	}
	return text;
}

/* A whole decimal integer, surrounding blanks allowed. */
static int
parse_long(const char *s, long long *v)
{
	char *end;
	errno = 0;
	long long x = strtoll(s, &end, 10);
	if (end == s || errno != 0)
		return -1;
	while (*end == ' ' || *end == '\t' || *end == '\n')
		end++;
	if (*end != '\0')
		return -1;
	*v = x;
	return 0;
}

int
cpus_parse_v2(const char *text, double *cores)
{
	char quota[32];
	long long period;
	char *end;

	if (sscanf(text, "%31s", quota) != 1)
		return -1;
	const char *p = strstr(text, quota) + strlen(quota);
	errno = 0;
	period = strtoll(p, &end, 10);
	if (end == p || errno != 0 || period <= 0)
		return -1;
	while (*end == ' ' || *end == '\n')
		end++;
	if (*end != '\0')
		return -1;
	if (strcmp(quota, "max") == 0) {
		*cores = 0;
		return 0;
	}
	long long q;
	if (parse_long(quota, &q) < 0 || q <= 0)
		return -1;
	*cores = (double)q / (double)period;
	return 0;
}

int
cpus_parse_v1(const char *quota, const char *period, double *cores)
{
	long long q, p;

	if (parse_long(quota, &q) < 0 || parse_long(period, &p) < 0 || p <= 0)
		return -1;
	if (q < 0) {
		*cores = 0;   /* -1: no quota */
		return 0;
	}
	if (q == 0)
		return -1;
	*cores = (double)q / (double)p;
	return 0;
}

/* mountinfo escapes blanks and backslashes in paths as \ooo. */
static void
unescape(char *s)
{
	char *w = s;
	for (char *r = s; *r != '\0'; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' &&
		    r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

/* Is word one of the comma-separated items of list? */
static bool
has_item(const char *list, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = list; p != NULL && *p != '\0';) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (len == n && strncmp(p, word, n) == 0)
			return true;
		p = comma ? comma + 1 : NULL;
	}
	return false;
}

struct hier {
	bool v2;
	const char *path;   /* the process's cgroup in this hierarchy */
};

/* Reads the limit files of one cgroup directory; 0 when none applies. */
static double
dir_limit(const char *dir, bool v2, char *file, size_t filelen)
{
	double cores = 0;

	if (v2) {
		snprintf(file, filelen, "%s/cpu.max", dir);
		char *t = slurp(file);
		if (t != NULL && cpus_parse_v2(t, &cores) < 0)
			cores = 0;
		free(t);
	} else {
		char pfile[1024];
		snprintf(file, filelen, "%s/cpu.cfs_quota_us", dir);
		snprintf(pfile, sizeof(pfile), "%s/cpu.cfs_period_us", dir);
		char *q = slurp(file), *p = slurp(pfile);
		if (q != NULL && p != NULL && cpus_parse_v1(q, p, &cores) < 0)
			cores = 0;
		free(q);
		free(p);
	}
	return cores;
}

/* Walks from mount point + rel up to the mount point itself. */
static void
walk(const char *root, const char *mnt, const char *rel, bool v2,
    struct cpus_limit *lim)
{
	char dir[1024], file[1100];
	int n = snprintf(dir, sizeof(dir), "%s%s%s", root, mnt, rel);
	if (n < 0 || (size_t)n >= sizeof(dir))
		return;
	size_t base = strlen(root) + strlen(mnt);
	/* "/" as a mount point leaves a trailing slash; trim for the walk. */
	while (strlen(dir) > 1 && dir[strlen(dir) - 1] == '/')
		dir[strlen(dir) - 1] = '\0';
	if (base > strlen(dir))
		base = strlen(dir);
	for (;;) {
		double c = dir_limit(dir, v2, file, sizeof(file));
		if (c > 0 && (lim->cores == 0 || c < lim->cores)) {
			lim->cores = c;
			snprintf(lim->where, sizeof(lim->where), "%s", file);
		}
		if (strlen(dir) <= base)
			break;
		char *slash = strrchr(dir, '/');
		if (slash == NULL || (size_t)(slash - dir) < base)
			break;
		*slash = '\0';
		if (strlen(dir) < base)
			break;
	}
}

int
cpus_cgroup_limit(const char *cgroup_file, const char *mountinfo_file,
    const char *root, struct cpus_limit *lim)
{
	lim->cores = 0;
	lim->where[0] = '\0';

	char *cg = slurp(cgroup_file);
	if (cg == NULL) {
		snprintf(lim->where, sizeof(lim->where), "cannot read %s: %s",
		    cgroup_file, strerror(errno));
		return -1;
	}
	char *mi = slurp(mountinfo_file);
	if (mi == NULL) {
		snprintf(lim->where, sizeof(lim->where), "cannot read %s: %s",
		    mountinfo_file, strerror(errno));
		free(cg);
		return -1;
	}

	/* The hierarchies that can carry a CPU limit: v1 "N:...cpu...:/path"
	 * and the v2 "0::/path". */
	struct hier h[2] = { { false, NULL }, { true, NULL } };
	char *save = NULL;
	for (char *line = strtok_r(cg, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		char *c1 = strchr(line, ':');
		char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (c2 == NULL)
			continue;
		*c1 = *c2 = '\0';
		if (strcmp(line, "0") == 0 && c1 + 1 == c2)
			h[1].path = c2 + 1;
		else if (has_item(c1 + 1, "cpu"))
			h[0].path = c2 + 1;
	}

	save = NULL;
	for (char *line = strtok_r(mi, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		/* id parent maj:min root mountpoint opts [optional...] - type src superopts */
		char *f[6] = { 0 };
		char *fs = NULL, *superopts = NULL;
		char *s2 = NULL;
		int i = 0;
		bool dash = false;
		int after = 0;
		for (char *tok = strtok_r(line, " ", &s2); tok != NULL;
		    tok = strtok_r(NULL, " ", &s2)) {
			if (!dash && i < 6)
				f[i++] = tok;
			else if (!dash && strcmp(tok, "-") == 0)
				dash = true;
			else if (dash && after == 0)
				fs = tok, after++;
			else if (dash && after == 1)
				after++;
			else if (dash && after == 2)
				superopts = tok, after++;
		}
		if (i < 5 || fs == NULL)
			continue;
		char *mroot = f[3], *mnt = f[4];
		unescape(mroot);
		unescape(mnt);
		for (int k = 0; k < 2; k++) {
			if (h[k].path == NULL)
				continue;
			if (h[k].v2 ? strcmp(fs, "cgroup2") != 0 :
			    (strcmp(fs, "cgroup") != 0 || superopts == NULL ||
			    !has_item(superopts, "cpu")))
				continue;
			const char *rel;
			size_t rl = strlen(mroot);
			if (strcmp(mroot, "/") == 0)
				rel = h[k].path;
			else if (strncmp(h[k].path, mroot, rl) == 0 &&
			    (h[k].path[rl] == '/' || h[k].path[rl] == '\0'))
				rel = h[k].path + rl;
			else
				continue;  /* another part of the tree is mounted here */
			walk(root, mnt, rel, h[k].v2, lim);
			h[k].path = NULL;  /* one mount per hierarchy is enough */
		}
	}
	free(cg);
	free(mi);
	return 0;
}

int
cpus_affinity(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0) {
		int n = CPU_COUNT(&set);
		if (n > 0)
			return n;
	}
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

int
cpus_combine(int affinity, double limit)
{
	if (affinity < 1)
		affinity = 1;
	if (limit <= 0)
		return affinity;
	/* Rounded, not ceiled: a 1.2-core quota with 2 busy workers would be
	 * throttled every period, which costs more than one idle fraction. */
	long q = lround(limit);
	if (q < 1)
		q = 1;
	return q < affinity ? (int)q : affinity;
}

int
cpus_usable(int configured, char *reason, size_t reasonlen)
{
	struct cpus_limit lim;
	int aff = cpus_affinity();
	int rc = cpus_cgroup_limit("/proc/self/cgroup", "/proc/self/mountinfo", "", &lim);
	int n = cpus_combine(aff, rc == 0 ? lim.cores : 0);
	char why[1400];

	if (rc < 0)
		snprintf(why, sizeof(why), "affinity %d CPUs, cgroup unknown (%s)",
		    aff, lim.where);
	else if (lim.cores > 0)
		snprintf(why, sizeof(why), "affinity %d CPUs, cgroup quota %.2f "
		    "cores (%s)", aff, lim.cores, lim.where);
	else
		snprintf(why, sizeof(why), "affinity %d CPUs, no cgroup CPU quota", aff);

	if (configured > 0) {
		snprintf(reason, reasonlen, "cpu.workers = %d (usable cores: %d; %s)",
		    configured, n, why);
		return configured;
	}
	snprintf(reason, reasonlen, "%d usable cores: %s", n, why);
	return n;
}
