/*
 * cpus: how many CPU cores this process may really use, and why.
 *
 * The CPU pool wants one worker per core the kernel will actually give
 * taskd, which is often fewer than nproc:
 *
 *   usable = min(affinity, max(1, round(quota)))
 *
 * where affinity is the number of CPUs in the process's affinity mask
 * (taskset, systemd CPUAffinity=, a cpuset) and quota is the tightest CPU
 * bandwidth limit of the process's cgroup or any of its ancestors, in cores:
 * cgroup v2 cpu.max ("QUOTA PERIOD", QUOTA "max" = none), cgroup v1
 * cpu.cfs_quota_us / cpu.cfs_period_us (-1 = none).  Shares/weights are
 * ignored: they divide CPU among busy groups but cap nothing.
 *
 * The cgroup is found the way the kernel publishes it: /proc/self/cgroup
 * names the process's path in each hierarchy, /proc/self/mountinfo tells
 * where (and from which root) that hierarchy is mounted.  The walk goes up
 * from the process's cgroup to the mount point, since a parent's limit
 * binds its children too (systemd puts the limit on a slice, not on the
 * service's own cgroup, more often than not).
 *
 * The parsing functions take file contents or paths, so the unit tests feed
 * them sample trees (tests/data/cgroup/).  Nothing here logs: callers get a
 * human reason to log once.
 */
#ifndef TASKD_CPUS_H
#define TASKD_CPUS_H

#include <stddef.h>

/* A CPU bandwidth limit in cores (quota / period), or 0 for none. */
struct cpus_limit {
	double cores;      /* 0 = no limit found */
	char where[1200];  /* the file that set it, for the log; "" if none */
};

/* Parses the text of a cgroup v2 cpu.max file ("max 100000",
 * "150000 100000").  Returns 0 and sets *cores (0 for "max"), or -1 when
 * the text is not of that form. */
int cpus_parse_v2(const char *text, double *cores);

/* Parses the texts of cgroup v1 cpu.cfs_quota_us and cpu.cfs_period_us.
 * Returns 0 and sets *cores (0 for a quota of -1), or -1 when malformed. */
int cpus_parse_v1(const char *quota, const char *period, double *cores);

/*
 * Finds the tightest CPU limit of the process described by cgroup_file
 * (/proc/self/cgroup) and mountinfo_file (/proc/self/mountinfo).  root is
 * prepended to every mount point read from mountinfo ("" on a live system;
 * a test directory in the unit tests).  Every hierarchy that has a CPU
 * controller is looked at (a hybrid system may have both v1 and v2).
 * Returns 0 with *lim filled (lim->cores 0 when no limit applies), or -1
 * when cgroup_file or mountinfo_file cannot be read (lim->where then holds
 * the reason); a missing limit file on the way up is not an error.
 */
int cpus_cgroup_limit(const char *cgroup_file, const char *mountinfo_file,
    const char *root, struct cpus_limit *lim);

/* The number of CPUs in this process's affinity mask (at least 1). */
int cpus_affinity(void);

/* min(affinity, max(1, round(limit))), limit 0 meaning none. */
int cpus_combine(int affinity, double limit);

/*
 * The worker count to use: configured when > 0 (cpu.workers), else the
 * usable core count of this process.  reason receives a one-line
 * explanation for the start-up log, e.g. "2 usable cores: affinity 4 CPUs,
 * cgroup quota 1.50 cores (/sys/fs/cgroup/cpu/x/cpu.cfs_quota_us)".
 */
int cpus_usable(int configured, char *reason, size_t reasonlen);

#endif
