#include <check.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cpus.h"

START_TEST(test_parse_v2)
{
	static const struct { const char *text; int rc; double cores; } cases[] = {
		{ "max 100000\n", 0, 0 },
		{ "150000 100000\n", 0, 1.5 },
		{ "50000 100000", 0, 0.5 },
		{ "200000 50000\n", 0, 4.0 },
		{ "max\n", -1, 0 },          /* no period */
		{ "abc 100000\n", -1, 0 },
		{ "100000 0\n", -1, 0 },
		{ "0 100000\n", -1, 0 },
		{ "100000 100000 7\n", -1, 0 },
		{ "", -1, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		double c = -1;
		int rc = cpus_parse_v2(cases[i].text, &c);
		ck_assert_msg(rc == cases[i].rc, "'%s': rc %d, want %d",
		    cases[i].text, rc, cases[i].rc);
		if (rc == 0)
			ck_assert_msg(fabs(c - cases[i].cores) < 1e-9, "'%s': %g cores, want %g",
			    cases[i].text, c, cases[i].cores);
	}
}
END_TEST

START_TEST(test_parse_v1)
{
	static const struct { const char *q, *p; int rc; double cores; } cases[] = {
		{ "-1\n", "100000\n", 0, 0 },
		{ "250000\n", "100000\n", 0, 2.5 },
		{ "10000", "100000", 0, 0.1 },
		{ "x\n", "100000\n", -1, 0 },
		{ "100000\n", "0\n", -1, 0 },
		{ "100000\n", "", -1, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		double c = -1;
		int rc = cpus_parse_v1(cases[i].q, cases[i].p, &c);
		ck_assert_msg(rc == cases[i].rc, "case %zu: rc %d", i, rc);
		if (rc == 0)
			ck_assert_msg(fabs(c - cases[i].cores) < 1e-9, "case %zu: %g", i, c);
	}
}
END_TEST

START_TEST(test_combine)
{
	static const struct { int aff; double lim; int want; } cases[] = {
		{ 2, 0, 2 }, { 8, 1.5, 2 }, { 8, 1.49, 1 }, { 8, 0.1, 1 },
		{ 2, 4.0, 2 }, { 1, 3.0, 1 }, { 16, 2.5, 3 }, { 0, 0, 1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ck_assert_msg(cpus_combine(cases[i].aff, cases[i].lim) == cases[i].want,
		    "affinity %d, limit %g: %d, want %d", cases[i].aff, cases[i].lim,
		    cpus_combine(cases[i].aff, cases[i].lim), cases[i].want);
}
END_TEST

/* Each sample tree under tests/data/cgroup/NAME: cgroup, mountinfo, and fs/
 * standing for / (the mount points of mountinfo live under it). */
static void
limit_of(const char *name, struct cpus_limit *lim)
{
	char cg[1024], mi[1024], root[1024];
	snprintf(cg, sizeof(cg), "%s/cgroup/%s/cgroup", TEST_DATA, name);
	snprintf(mi, sizeof(mi), "%s/cgroup/%s/mountinfo", TEST_DATA, name);
	snprintf(root, sizeof(root), "%s/cgroup/%s/fs", TEST_DATA, name);
	ck_assert_msg(cpus_cgroup_limit(cg, mi, root, lim) == 0, "%s: %s", name, lim->where);
}

START_TEST(test_trees)
{
	static const struct { const char *name; double cores; const char *where; int n8; } cases[] = {
		/* this machine kind: hybrid v1 with its own cpu mount, no quota */
		{ "v1-none", 0, "", 8 },
		/* slice 1.5 cores, service 0.5: the service's binds */
		{ "v1-nested", 0.5, "cpu,cpuacct/taskd.slice/taskd.service/cpu.cfs_quota_us", 1 },
		/* only the parent limits */
		{ "v1-parent", 3.0, "cpu/batch/cpu.cfs_quota_us", 3 },
		/* v2: the slice's 2.5 cores bind a service at "max" */
		{ "v2-nested", 2.5, "system.slice/cpu.max", 3 },
		{ "v2-max", 0, "", 8 },
		/* mount root /docker/abc: the container's cgroup is the mount point */
		{ "v2-container", 1.2, "sys/fs/cgroup/cpu.max", 1 },
		/* leaf 1.5 cores under a 4-core parent; the mount path has a blank */
		{ "v2-escaped", 1.5, "cg root/a/b/cpu.max", 2 },
		{ "v2-nocontroller", 0, "", 8 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cpus_limit lim;
		limit_of(cases[i].name, &lim);
		ck_assert_msg(fabs(lim.cores - cases[i].cores) < 1e-9, "%s: %g cores, want %g",
		    cases[i].name, lim.cores, cases[i].cores);
		size_t wl = strlen(cases[i].where), gl = strlen(lim.where);
		ck_assert_msg(wl == 0 ? gl == 0 : (gl >= wl &&
		    strcmp(lim.where + gl - wl, cases[i].where) == 0),
		    "%s: limit from '%s', want '...%s'", cases[i].name, lim.where,
		    cases[i].where);
		ck_assert_int_eq(cpus_combine(8, lim.cores), cases[i].n8);
	}
}
END_TEST

START_TEST(test_missing_files)
{
	struct cpus_limit lim;
	ck_assert_int_eq(cpus_cgroup_limit(TEST_DATA "/cgroup/nope/cgroup",
	    TEST_DATA "/cgroup/v1-none/mountinfo", "", &lim), -1);
	ck_assert_msg(strstr(lim.where, "nope/cgroup") != NULL, "reason: %s", lim.where);
}
END_TEST

START_TEST(test_usable)
{
	char why[1024];
	int n = cpus_usable(0, why, sizeof(why));
	ck_assert_int_ge(n, 1);
	ck_assert_int_le(n, cpus_affinity());
	ck_assert_msg(strstr(why, "usable cores") != NULL, "reason: %s", why);
	ck_assert_int_eq(cpus_usable(7, why, sizeof(why)), 7);
	ck_assert_msg(strncmp(why, "cpu.workers = 7", 15) == 0, "reason: %s", why);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("cpus");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_parse_v2);
	tcase_add_test(tc, test_parse_v1);
	tcase_add_test(tc, test_combine);
	tcase_add_test(tc, test_trees);
	tcase_add_test(tc, test_missing_files);
	tcase_add_test(tc, test_usable);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
