#!/bin/sh
# Generates the runner for one unit-test file: every TEST(name) found in it, in file order.
# Each test runs in its own child process so a crash fails that test, not the whole file; a
# child that exits 77 skipped (SKIP() in test.h printed "SKIP file/test: reason").
set -eu
src=$1
names=$(sed -n 's/^TEST(\([A-Za-z0-9_]*\)).*/\1/p' "$src")
base=$(basename "$src" .c)
printf '#include <stdio.h>\n#include <stdlib.h>\n#include <unistd.h>\n#include <sys/wait.h>\n'
printf 'int test_failed;\nconst char *test_name;\n'
for n in $names; do printf 'void test_%s(void);\n' "$n"; done
printf 'static const struct { const char *name; void (*fn)(void); } tests[] = {\n'
for n in $names; do printf '\t{"%s", test_%s},\n' "$n" "$n"; done
printf '};\n'
cat <<C
int main(void)
{
	int failed = 0;

	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		int status;
		pid_t pid;

		fflush(NULL);
		pid = fork();
		if (pid == 0) {
			static char name[256];

			snprintf(name, sizeof(name), "$base/%s", tests[i].name);
			test_name = name;
			test_failed = 0;
			tests[i].fn();
			fflush(NULL);
			_exit(test_failed ? 1 : 0);
		}
		waitpid(pid, &status, 0);
		if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
			; /* SKIP: the child printed the line with its reason */
		} else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
			printf("PASS $base/%s\n", tests[i].name);
		} else {
			printf("FAIL $base/%s\n", tests[i].name);
			failed++;
		}
	}
	return failed ? 1 : 0;
}
C
