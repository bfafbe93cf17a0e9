/*
 * atfork_main.c - forks under a library's fork handlers that allocate
 * (atfork_lib.c), with libumpa.so preloaded: every fork completes, and the
 * handlers' allocations succeed, in the parent and in the child.  A hang
 * is ended by the alarm.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

extern int atfork_lib_prepared, atfork_lib_children;

int main(void) {
  alarm(60);
  for (int i = 0; i < 3; i++) {
    pid_t pid = fork();
    if (pid < 0) return 2;
    if (pid == 0) _exit(atfork_lib_children == 1 ? 0 : 3);
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
      fprintf(stderr, "atfork_main: child %d: status %#x\n", i, status);
      return 1;
    }
  }
  if (atfork_lib_prepared != 3) {
    fprintf(stderr, "atfork_main: prepare handler allocated %d times of 3\n",
            atfork_lib_prepared);
    return 1;
  }
  printf("atfork_main: 3 forks\n");
  return 0;
}
