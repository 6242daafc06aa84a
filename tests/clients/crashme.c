/* crashme: a Linux program that crashes and has the real Crashpad handler dump it.
 *
 * Usage: crashme HANDLER [HANDLER-ARGS...]   (e.g. --database=DB --url=URL --annotation=k=v)
 *
 * On SIGSEGV the signal handler forks HANDLER with HANDLER-ARGS plus
 * --trace-parent-with-exception=<address of ExceptionInformation>. The handler ptrace-attaches
 * to us (its parent), reads the siginfo and ucontext through that address, writes a minidump
 * into the database and uploads it; we wait for it to exit, then die of the SIGSEGV.
 * Crashpad's ExceptionInformation (client/linux/exception_information.h) is packed:
 * {u64 siginfo_address; u64 context_address; i32 thread_id}.
 * Used by tests/test_crashpad_client.py.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

struct __attribute__((packed)) exception_information {
  uint64_t siginfo_address;
  uint64_t context_address;
  int32_t thread_id;
};

#define MAX_ARGS 32
static struct exception_information g_info;
static char g_exception_arg[64];
static char *g_handler_argv[MAX_ARGS + 2];

static void on_crash(int sig, siginfo_t *si, void *context) {
  (void)sig;
  g_info.siginfo_address = (uintptr_t)si;
  g_info.context_address = (uintptr_t)context;
  g_info.thread_id = (int32_t)syscall(SYS_gettid);
  /* Yama ptrace_scope=1 only lets a process trace its descendants; allow the handler (our
   * child) before it exists, so its PTRACE_ATTACH cannot race us. Fails harmlessly without Yama. */
  prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
  pid_t pid = fork();
  if (pid == 0) {
    execv(g_handler_argv[0], g_handler_argv);
    _exit(127);
  }
  if (pid > 0) {
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  /* SA_RESETHAND restored the default action: returning re-runs the faulting store, which
   * now kills us with the original SIGSEGV. */
}

__attribute__((noinline)) static void crash_here(volatile int *p) { *p = 42; }

int main(int argc, char **argv) {
  if (argc < 2 || argc - 1 > MAX_ARGS) {
    fprintf(stderr, "usage: %s HANDLER [HANDLER-ARGS...] (at most %d)\n", argv[0], MAX_ARGS);
    return 2;
  }
  for (int i = 1; i < argc; i++) g_handler_argv[i - 1] = argv[i];
  snprintf(g_exception_arg, sizeof g_exception_arg, "--trace-parent-with-exception=%llu",
           (unsigned long long)(uintptr_t)&g_info);
  g_handler_argv[argc - 1] = g_exception_arg;
  g_handler_argv[argc] = NULL;

  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_sigaction = on_crash;
  action.sa_flags = SA_SIGINFO | SA_RESETHAND;
  sigaction(SIGSEGV, &action, NULL);
  crash_here((volatile int *)(uintptr_t)0x45);
  return 0;
}
