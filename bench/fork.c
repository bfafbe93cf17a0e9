/*
 * fork.c - what fork() costs a process that uses the allocator.
 *
 * Servers that fork a worker per task, shells, make and git fork again and
 * again from a process with a heap.  An allocator takes its locks before
 * fork and releases them after, in the parent and in the child (else the
 * child could inherit a lock that a thread of the parent held), and every
 * page those releases write is copied on that first write, on each side:
 * a page fault per page, per fork, per side.  This forks a child that
 * mallocs, writes and frees one block and exits, from a parent holding a
 * heap of small blocks and a few large ones, and reports the median time
 * from fork to wait and the page faults per fork, the parent's and the
 * child's:
 *   idle   the parent's other threads (none) are idle;
 *   busy   two more threads malloc and free all along, so that fork meets
 *          them in the allocator and its locks are taken from under them.
 * Faults are counted over all forks (getrusage: RUSAGE_SELF for the
 * parent, RUSAGE_CHILDREN for the children, whose own start-up and exit
 * count too, alike for every allocator), and so is the children's CPU
 * time (user and system, per fork): the child's own work, its exit's
 * teardown of the page tables fork copied included, which grows with the
 * parent's resident memory.  On a machine with no core to spare the busy
 * time to wait is mostly how long the new child waits for a core, not
 * what it does: with two threads busy on two cores (or only spinning, in
 * a scratch program), perf sched showed children that the kernel placed
 * on a busy thread's core runnable but not running for 3.6 ms, a time
 * slice, and those placed on the parent's core, which it leaves to wait,
 * running after 0.04 ms, each with 0.2 ms of work.  Which core a child
 * gets follows the cores' recent load: one allocator's busy median went
 * from 0.7 to 3.9 ms between runs, its children's CPU time unchanged.
 *
 * Usage: fork [--quick] [forks]
 */
#define _GNU_SOURCE
#include "bench.h"

#include <string.h>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static _Atomic bool stop;
static volatile char sink;

/* A thread that keeps the allocator busy: blocks of 16 B..4 KiB in a small
 * ring, each replaced in turn. */
static void *churn(void *arg) {
  (void)arg;
  enum { RING = 256 };
  char *ring[RING] = {0};
  uint64_t rng = 0x2545f4914f6cdd1du ^ (uintptr_t)&ring;
  for (unsigned i = 0; !atomic_load_explicit(&stop, memory_order_relaxed);
       i = (i + 1) % RING) {
    free(ring[i]);
    size_t n = rand_between(&rng, 16, 4096);
    ring[i] = xmalloc(n);
    ring[i][0] = (char)n;
  }
  for (int i = 0; i < RING; i++) free(ring[i]);
  return NULL;
}

/* What the waited-for children used so far: page faults, and user and
 * system time in microseconds (one getrusage for both). */
struct usage {
  uint64_t faults;
  double cpu_us;
};
static struct usage children_usage(void) {
  struct rusage ru;
  getrusage(RUSAGE_CHILDREN, &ru);
  return (struct usage){
      (uint64_t)ru.ru_minflt + (uint64_t)ru.ru_majflt,
      (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
          (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec)};
}

/* `forks` forks; returns the median us per fork to wait, the faults per
 * fork in *parent and *child, and the child's CPU time in *cpu (us). */
static double forks_of(long forks, double *times, double *parent,
                       double *child, double *cpu) {
  uint64_t p0 = minor_faults();
  struct usage c0 = children_usage();
  for (long i = 0; i < forks; i++) {
    uint64_t t0 = now_ns();
    pid_t pid = xfork();
    if (pid == 0) {
      char *p = malloc(100);
      if (!p) _exit(1);
      p[0] = 1;
      sink = p[0];
      free(p);
      _exit(0);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
      fprintf(stderr, "fork: a child failed\n");
      exit(1);
    }
    times[i] = (double)(now_ns() - t0) / 1e3;
  }
  *parent = (double)(minor_faults() - p0) / (double)forks;
  struct usage c1 = children_usage();
  *child = (double)(c1.faults - c0.faults) / (double)forks;
  *cpu = (c1.cpu_us - c0.cpu_us) / (double)forks;
  return median(times, (int)forks);
}

int main(int argc, char **argv) {
  bool quick = has_flag(argc, argv, "--quick");
  long forks = num_arg(argc, argv, 0, quick ? 20 : 1000);
  if (forks < 1) {
    fprintf(stderr, "usage: fork [--quick] [forks]\n");
    return 2;
  }
  /* The parent's heap: 20000 small blocks and 8 large ones, written. */
  enum { SMALL = 20000, LARGE = 8 };
  static char *keep[SMALL + LARGE];
  /* The table's 156 KiB of .bss, resident before the start mark: the
   * program's own, counted in every allocator's end/start (1.32 for umpa,
   * whose own pages kept were about 45 KiB of its 224). */
  memset(keep, 0, sizeof keep);
  struct rss_marks m;
  rss_mark_start(&m);
  for (int i = 0; i < SMALL; i++) {
    keep[i] = xmalloc(16 + (size_t)(i * 37) % 1000);
    keep[i][0] = (char)i;
  }
  for (int i = SMALL; i < SMALL + LARGE; i++) {
    keep[i] = xmalloc(256 * KiB);
    touch_pages(keep[i], 256 * KiB);
  }
  double *times = xmalloc((size_t)forks * sizeof *times);
  double idle_pf, idle_cf, busy_pf, busy_cf, idle_cpu, busy_cpu;
  forks_of(quick ? 2 : 20, times, &idle_pf, &idle_cf, &idle_cpu); /* warm */
  double idle = forks_of(forks, times, &idle_pf, &idle_cf, &idle_cpu);
  pthread_t t[2];
  for (int i = 0; i < 2; i++) start_thread(&t[i], churn, NULL);
  double busy = forks_of(forks, times, &busy_pf, &busy_cf, &busy_cpu);
  atomic_store(&stop, true);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  rss_mark_peak(&m);
  free(times);
  for (int i = 0; i < SMALL + LARGE; i++) free(keep[i]);
  rss_mark_end(&m);

  printf("fork: %ld forks each way; the child mallocs, writes and frees a "
         "block and exits\n", forks);
  printf("idle: %.1f us per fork to wait, page faults per fork: parent "
         "%.2f, child %.2f; the child's CPU time %.1f us\n", idle, idle_pf,
         idle_cf, idle_cpu);
  printf("busy (2 threads allocating): %.1f us, parent %.2f, child %.2f; "
         "child CPU %.1f us\n", busy, busy_pf, busy_cf, busy_cpu);
  print_rss_text(&m);
  printf("result: bench=fork forks=%ld idle_us=%.1f busy_us=%.1f "
         "idle_parent_faults=%.2f idle_child_faults=%.2f "
         "busy_parent_faults=%.2f busy_child_faults=%.2f "
         "idle_child_cpu_us=%.1f busy_child_cpu_us=%.1f",
         forks, idle, busy, idle_pf, idle_cf, busy_pf, busy_cf, idle_cpu,
         busy_cpu);
  print_rss_fields(&m);
  return 0;
}
