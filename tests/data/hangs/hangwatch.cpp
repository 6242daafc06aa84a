// hangwatch: a game loop with a watchdog that reports a hang through the real Crashpad handler,
// without crashing (tests/test_hangs.py; docs/hangs.md explains the protocol).
//
// Usage: hangwatch HANDLER LIMIT_SECONDS [HANDLER-ARGS...]
//   (e.g. --database=DB --url=URL --annotation=prod=... --annotation=ver=...)
//
// Three threads:
// - main: the game loop. Each frame touches its heartbeat, then sleeps 10 ms.
// - "NAR worker" (pthread_setname_np): asks the narrative model for a line, touches its
//   heartbeat, then blocks in nar::Dialogue::wait_for_model on a condition variable that nobody
//   signals: the hang.
// - the watchdog: every 50 ms it looks at both heartbeats. When one is older than
//   LIMIT_SECONDS, it writes a dump WITHOUT crashing, as Crashpad's
//   CrashpadClient::DumpWithoutCrash(context) does on the client library: it captures its own
//   context (getcontext), makes a synthetic siginfo (si_signo -1, Crashpad's kSimulatedSigno),
//   and forks HANDLER with HANDLER-ARGS plus
//     --annotation=hang=1 --annotation=hang_seconds=<seconds> --annotation=hang_thread=<name>
//     --trace-parent-with-exception=<address of ExceptionInformation>
//   The handler ptrace-attaches to us, dumps every thread (so the hung one too), uploads, and
//   exits; the watchdog waits for it. The dump's "crashing" thread is the watchdog: crashd
//   signs the hang from the thread hang_thread names.
// Then the game shuts down normally: the NAR worker is released, every thread joined, exit 0.
// The program prints "hang reported: <thread> <seconds>" when the handler is done.
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#define NOINLINE __attribute__((noinline))

using Clock = std::chrono::steady_clock;

// -- Crashpad's side (client/linux/exception_information.h, util/posix/signals.h) -------------
struct __attribute__((packed)) ExceptionInformation {
  uint64_t siginfo_address;
  uint64_t context_address;
  int32_t thread_id;
};
constexpr int kSimulatedSigno = -1;  // Crashpad's Signals::kSimulatedSigno: a dump without a signal

static ExceptionInformation g_info;
static siginfo_t g_siginfo;
static ucontext_t g_context;
static std::vector<std::string> g_handler_args;  // HANDLER and its arguments, from argv

// -- heartbeats ------------------------------------------------------------------------------
struct Heartbeat {
  const char *thread_name;
  std::atomic<int64_t> last_ns{0};
  void touch() { last_ns.store(Clock::now().time_since_epoch().count()); }
  double seconds_since() const {
    return (Clock::now().time_since_epoch().count() - last_ns.load()) / 1e9;
  }
};

static Heartbeat g_main_beat{"main"};
static Heartbeat g_nar_beat{"NAR worker"};
static std::atomic<bool> g_quit{false};

// -- the hang reporter: dump without crash --------------------------------------------------
// Fork the handler with the hang annotations and wait for it. Runs on the watchdog thread;
// everything the handler reads (g_info, g_siginfo, g_context) is static, so it stays valid.
NOINLINE static bool dump_without_crash(const Heartbeat &hung, double seconds) {
  getcontext(&g_context);
  memset(&g_siginfo, 0, sizeof g_siginfo);
  g_siginfo.si_signo = kSimulatedSigno;
  g_info.siginfo_address = (uintptr_t)&g_siginfo;
  g_info.context_address = (uintptr_t)&g_context;
  g_info.thread_id = (int32_t)syscall(SYS_gettid);

  char buffer[64];
  std::vector<std::string> args = g_handler_args;
  args.push_back("--annotation=hang=1");
  snprintf(buffer, sizeof buffer, "%.1f", seconds);
  args.push_back(std::string("--annotation=hang_seconds=") + buffer);
  args.push_back(std::string("--annotation=hang_thread=") + hung.thread_name);
  snprintf(buffer, sizeof buffer, "--trace-parent-with-exception=%llu",
           (unsigned long long)(uintptr_t)&g_info);
  args.push_back(buffer);
  std::vector<char *> argv;
  for (auto &arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  // Yama ptrace_scope=1 lets a process trace its descendants only after this.
  prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
  pid_t pid = fork();
  if (pid == 0) {
    execv(argv[0], argv.data());
    _exit(127);
  }
  if (pid < 0) return false;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

NOINLINE static void watchdog(double limit) {
  pthread_setname_np(pthread_self(), "watchdog");
  while (!g_quit.load()) {
    for (Heartbeat *beat : {&g_main_beat, &g_nar_beat}) {
      double seconds = beat->seconds_since();
      if (seconds > limit) {
        bool ok = dump_without_crash(*beat, seconds);
        printf("hang reported: %s %.1f (handler %s)\n", beat->thread_name, seconds, ok ? "ok" : "failed");
        fflush(stdout);
        g_quit.store(true);  // one report, then the game shuts down
        return;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// -- the game --------------------------------------------------------------------------------
namespace nar {

class Dialogue {
 public:
  // Waits for the narrative model to hand over a line. The model never answers: the hang.
  NOINLINE void wait_for_model() {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait(lock, [this] { return model_ready_ || released_; });
  }
  void release() {
    std::lock_guard<std::mutex> lock(mutex_);
    released_ = true;
    ready_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  bool model_ready_ = false;
  bool released_ = false;
};

NOINLINE void worker(Dialogue *dialogue) {
  pthread_setname_np(pthread_self(), "NAR worker");
  g_nar_beat.touch();
  dialogue->wait_for_model();
}

}  // namespace nar

namespace game {

NOINLINE void run_frame() {
  g_main_beat.touch();
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

NOINLINE void main_loop() {
  while (!g_quit.load()) run_frame();
}

}  // namespace game

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s HANDLER LIMIT_SECONDS [HANDLER-ARGS...]\n", argv[0]);
    return 2;
  }
  double limit = atof(argv[2]);
  g_handler_args.push_back(argv[1]);
  for (int i = 3; i < argc; i++) g_handler_args.push_back(argv[i]);

  g_main_beat.touch();
  g_nar_beat.touch();
  nar::Dialogue dialogue;
  std::thread nar_thread(nar::worker, &dialogue);
  std::thread watch_thread(watchdog, limit);
  game::main_loop();
  watch_thread.join();
  dialogue.release();  // shutting down: the model will not come, let the worker finish
  nar_thread.join();
  return 0;
}
