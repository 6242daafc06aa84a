// The crashd test "game": crashes in the way argv[3] names, under the Crashpad handler.
// Usage: game HANDLER DATABASE MODE [thread] [console]
//   thread:  the mode runs on a std::thread worker instead of the main thread
//   console: the mode is reached through the debug console (another call path to the bug)
// bench/grouping_accuracy.py uses the options to make several dumps of one bug.
// The signal handler starts crashpad_handler --trace-parent-with-exception, as
// tests/clients/crashme.c does; the handler ptrace-attaches and writes a minidump.
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cassert>
#include <stdexcept>
#include <string>
#include <thread>

#include "ggml_like.h"

#define NOINLINE __attribute__((noinline))

extern "C" {  // the Rust cdylib "nar" (src/nar)
int nar_generate_line(const char *key);
int nar_load_persona(const char *source);
int nar_set_mood(int mood);
int nar_pick_voice(int index);
int nar_quest_progress(int done, int total);
int nar_lookup_speaker(int id);
}

// -- Crashpad ---------------------------------------------------------------------------------
struct __attribute__((packed)) ExceptionInformation {
  uint64_t siginfo_address;
  uint64_t context_address;
  int32_t thread_id;
};
static ExceptionInformation g_info;
static char *g_handler_argv[8];

static void on_crash(int sig, siginfo_t *si, void *uc) {
  g_info.siginfo_address = (uintptr_t)si;
  g_info.context_address = (uintptr_t)uc;
  g_info.thread_id = (int32_t)syscall(SYS_gettid);
  pid_t pid = fork();
  if (pid == 0) {
    execv(g_handler_argv[0], g_handler_argv);
    _exit(127);
  }
  if (pid > 0) {
    prctl(PR_SET_PTRACER, pid, 0, 0, 0);
    int status;
    while (waitpid(pid, &status, 0) < 0) {}
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

static void install_crashpad(const char *handler, const char *database) {
  static char db[4096], exc[64];
  snprintf(db, sizeof db, "--database=%s", database);
  snprintf(exc, sizeof exc, "--trace-parent-with-exception=%llu",
           (unsigned long long)(uintptr_t)&g_info);
  int i = 0;
  g_handler_argv[i++] = (char *)handler;
  g_handler_argv[i++] = db;
  g_handler_argv[i++] = (char *)"--annotation=prod=realcrash-game";
  g_handler_argv[i++] = (char *)"--annotation=ver=1.0.0";
  g_handler_argv[i++] = exc;
  g_handler_argv[i] = nullptr;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_crash;
  // SA_ONSTACK: a thread with an alternate signal stack (stack-overflow mode) runs the handler
  // there; the others have none and run it on their own stack, as without the flag.
  sa.sa_flags = SA_SIGINFO | SA_RESETHAND | SA_ONSTACK;
  sigaction(SIGSEGV, &sa, nullptr);
  sigaction(SIGABRT, &sa, nullptr);
  sigaction(SIGBUS, &sa, nullptr);
  sigaction(SIGFPE, &sa, nullptr);
}

// The SIGSEGV of a stack overflow can only run on an alternate signal stack (one per thread).
static void install_alt_stack() {
  static thread_local char stack[1 << 16];
  stack_t ss;
  memset(&ss, 0, sizeof ss);
  ss.ss_sp = stack;
  ss.ss_size = sizeof stack;
  sigaltstack(&ss, nullptr);
}

// -- the game ---------------------------------------------------------------------------------
namespace game {

struct Inventory {
  int slots[8];
  int count;
};

struct Player {
  Inventory *inventory;
  int health;
};

// Bad pointers the optimizer cannot see through.
static void *volatile g_null = nullptr;
static void *volatile g_wild = (void *)(uintptr_t)0x10;

NOINLINE void take_damage(Player *player, int amount) {
  player->health -= amount;
  player->inventory->count -= 1;  // null-deref: the inventory was never created
}

NOINLINE void update_world(int tick) {
  Player player{static_cast<Inventory *>(g_null), 100};
  take_damage(&player, tick);
}

NOINLINE void load_save(const std::string &path) {
  if (path.find(".sav") == std::string::npos) throw std::runtime_error("not a save file: " + path);
}

NOINLINE void add_item(Inventory *inventory, int item) {
  assert(inventory->count < 8 && "inventory full");
  inventory->slots[inventory->count++] = item;
}

static volatile size_t g_chat_bytes;  // used after the calls, so -O2 makes no tail calls

NOINLINE void copy_chat_message(const char *message, size_t length) {
  memcpy(g_wild, message, length);  // memcpy: into a freed buffer
  g_chat_bytes = g_chat_bytes + length;
}

NOINLINE size_t chat_message_length() {
  size_t length = strlen(static_cast<const char *>(g_wild));  // strlen: on a dangling pointer
  g_chat_bytes = length;
  return length;
}

NOINLINE void stream_asset(int id) {
  int *header = static_cast<int *>(g_null);
  header[id] = 1;  // worker thread: the asset header was not loaded
}

NOINLINE void asset_worker(int id) { stream_asset(id); }

// The same bug reached from two places: apply_physics forgets a body can be missing.
struct Body {
  float velocity;
};
NOINLINE void apply_physics(Body *body, float dt) { body->velocity += 9.81f * dt; }
NOINLINE void simulate_frame() { apply_physics(static_cast<Body *>(g_null), 0.016f); }
NOINLINE void editor_preview() { apply_physics(static_cast<Body *>(g_null), 0.0f); }

// -- more bugs (bench/grouping_accuracy.py): each its own signature --------------------------
static void *volatile g_freed = (void *)(uintptr_t)0xdead0000;  // unmapped: a freed inventory
static volatile int g_zero = 0;
static volatile int g_sink;

NOINLINE void remove_item(Inventory *inventory, int slot) {
  inventory->slots[slot] = 0;  // use after free: the inventory was released on death
  inventory->count -= 1;
}
NOINLINE void drop_item_command(int slot) { remove_item(static_cast<Inventory *>(g_freed), slot); g_sink = slot; }

NOINLINE int grid_cell_size(int width, int cells) { return width / cells; }  // SIGFPE: no cells
NOINLINE void build_collision_grid() { g_sink = grid_cell_size(1024, g_zero); }

struct QuestNode {
  QuestNode *next;
  int reward;
};
// Unbounded recursion on a cyclic quest graph: a stack overflow (SIGSEGV on the guard page).
NOINLINE int walk_quest_tree(const QuestNode *node, int depth) {
  volatile char scratch[256];
  scratch[depth & 255] = (char)depth;
  return node->reward + walk_quest_tree(node->next, depth + 1) + scratch[depth & 255];
}
NOINLINE void count_quest_rewards() {
  static QuestNode cycle{&cycle, 1};
  g_sink = walk_quest_tree(&cycle, 0);
}

NOINLINE void write_save(const char *path) {
  FILE *file = fopen(path, "wb");
  if (!file) abort();  // the save folder is read-only: abort rather than lose the save silently
  fclose(file);
}

// A worker thread decodes audio into a buffer that was never allocated.
NOINLINE void decode_audio_chunk(int chunk) {
  short *pcm = static_cast<short *>(g_null);
  pcm[chunk * 512] = 1;
}
NOINLINE void audio_worker(int chunk) { decode_audio_chunk(chunk); g_sink = chunk; }

NOINLINE void say_line() { printf("%d\n", nar_generate_line("farewell")); }
NOINLINE void load_persona() { printf("%d\n", nar_load_persona("forty-two")); }
NOINLINE void change_mood() { printf("%d\n", nar_set_mood(9)); }
NOINLINE void pick_voice() { printf("%d\n", nar_pick_voice(7)); }
NOINLINE void show_quest_log() { printf("%d\n", nar_quest_progress(3, g_zero)); }
NOINLINE void greet_speaker() { printf("%d\n", nar_lookup_speaker(2)); }

}  // namespace game

// ggml callers, named like llama.cpp's
NOINLINE void llama_decode_layer(int rows) {
  ggml_tensor a{64, rows, static_cast<float *>(game::g_wild)};
  float bdata[64] = {0};
  float out[64];
  ggml_tensor b{64, 1, bdata};
  ggml_tensor dst{1, rows, out};
  ggml_compute_forward_mul_mat(&a, &b, &dst);  // the weights were never mapped
}

NOINLINE float llama_sample_token(int n_vocab) {
  float logits[16] = {0};
  float score;
  ggml_vec_dot_f32(n_vocab, &score, logits, static_cast<const float *>(game::g_wild));
  return score;
}

NOINLINE void llama_apply_bias(int n) {
  float z[16];
  ggml_vec_add_f32(n, z, static_cast<const float *>(game::g_null), z);
}

// The same kernels as llama_decode_layer for another caller, another bug; written out again, not
// shared, since a shared helper would be one more frame between the caller and the kernel.
NOINLINE void llama_attention(int rows) {
  ggml_tensor q{64, rows, static_cast<float *>(game::g_freed)};
  float kdata[64] = {0};
  float scores[64];
  ggml_tensor k{64, 1, kdata};
  ggml_tensor dst{1, rows, scores};
  ggml_compute_forward_mul_mat(&q, &k, &dst);  // the KV cache was freed
}

NOINLINE void llama_rope_rotate(int n) {
  ggml_vec_scale_f32(n, static_cast<float *>(game::g_wild), 0.5f);  // the rope cache was not built
  game::g_sink = n;  // work after the call: -O2 makes no tail call, so this frame stays
}

// A zkLogin-like JWT parser: it assumes the token has a payload after the first '.'.
extern "C" NOINLINE int zklogin_parse_jwt(const char *jwt) {
  const char *payload = strchr(jwt, '.') + 1;  // no '.': payload is (char *)1
  int claims = 0;
  for (const char *p = payload; *p != '.'; p++) claims += (*p == ':');
  return claims;
}
namespace game {
NOINLINE void sign_in(const char *token) { g_sink = zklogin_parse_jwt(token); }
}  // namespace game

static int run(const std::string &mode) {
  if (mode == "null-deref") game::update_world(1);
  else if (mode == "uncaught-throw") game::load_save("profile.json");
  else if (mode == "assert") {
    game::Inventory full{{0}, 8};
    game::add_item(&full, 3);
  } else if (mode == "memcpy") {
    static char message[4096] = "hello";
    game::copy_chat_message(message, sizeof message);
  } else if (mode == "strlen") printf("%zu\n", game::chat_message_length());
  else if (mode == "thread") std::thread(game::asset_worker, 3).join();
  else if (mode == "same-bug-frame") game::simulate_frame();
  else if (mode == "same-bug-editor") game::editor_preview();
  else if (mode == "ggml-decode") llama_decode_layer(4);
  else if (mode == "ggml-sample") printf("%f\n", llama_sample_token(16));
  else if (mode == "ggml-add") llama_apply_bias(16);
  else if (mode == "nar-unwrap") game::say_line();
  else if (mode == "nar-expect") game::load_persona();
  else if (mode == "nar-panic") game::change_mood();
  else if (mode == "nar-index") game::pick_voice();
  else if (mode == "use-after-free") game::drop_item_command(2);
  else if (mode == "divide-zero") game::build_collision_grid();
  else if (mode == "stack-overflow") {
    install_alt_stack();
    game::count_quest_rewards();
  }
  else if (mode == "save-abort") game::write_save("/nonexistent/saves/slot1.sav");
  else if (mode == "audio-thread") std::thread(game::audio_worker, 5).join();
  else if (mode == "ggml-attention") llama_attention(4);
  else if (mode == "ggml-rope") llama_rope_rotate(16);
  else if (mode == "zklogin") game::sign_in("eyJhbGciOiJSUzI1NiJ9");
  else if (mode == "nar-divide") game::show_quest_log();
  else if (mode == "nar-borrow") game::greet_speaker();
  else {
    fprintf(stderr, "unknown mode %s\n", mode.c_str());
    return 2;
  }
  return 0;
}

// The second call path: the debug console runs a mode typed by a tester.
static volatile int g_console_status;
NOINLINE void console_exec(const std::string &command) { g_console_status = run(command); }
NOINLINE void console_submit(const std::string &line) {
  console_exec(line);
  g_console_status = g_console_status + 1;
}

static int run_via(const std::string &mode, bool console) {
  if (!console) return run(mode);
  console_submit(mode);
  return g_console_status;
}

int main(int argc, char **argv) {
  bool thread = false, console = false;
  for (int i = 4; i < argc; i++) {
    std::string option = argv[i];
    if (option == "thread") thread = true;
    else if (option == "console") console = true;
    else argc = 0;
  }
  if (argc < 4) {
    fprintf(stderr, "usage: %s HANDLER DATABASE MODE [thread] [console]\n", argv[0]);
    return 2;
  }
  install_crashpad(argv[1], argv[2]);
  if (!thread) return run_via(argv[3], console);
  int status = 0;
  std::string mode = argv[3];
  std::thread worker([&] { status = run_via(mode, console); });
  worker.join();
  return status;
}
