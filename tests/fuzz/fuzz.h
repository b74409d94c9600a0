/*
 * fuzz: what every fuzz target shares.  A target is one file,
 * tests/fuzz/fuzz_NAME.c, defining LLVMFuzzerTestOneInput; its corpus is
 * tests/fuzz/corpus/NAME/.  Built with --enable-fuzzing it is a libFuzzer
 * binary, otherwise replay.c gives it a main() that runs the corpus.
 *
 * FUZZ_CHECK is an assertion that stays on in every build: a target that
 * finds a broken invariant must crash, so the fuzzer keeps the input.
 */
#ifndef TASKD_FUZZ_H
#define TASKD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, \
		    __LINE__, #cond); \
		abort(); \
	} \
} while (0)

#endif
