// The crashd test "game": crashes in the way argv[1] names, under the Crashpad handler.
// Usage: game HANDLER DATABASE MODE
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
  sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
  sigaction(SIGSEGV, &sa, nullptr);
  sigaction(SIGABRT, &sa, nullptr);
  sigaction(SIGBUS, &sa, nullptr);
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

NOINLINE void say_line() { printf("%d\n", nar_generate_line("farewell")); }
NOINLINE void load_persona() { printf("%d\n", nar_load_persona("forty-two")); }
NOINLINE void change_mood() { printf("%d\n", nar_set_mood(9)); }
NOINLINE void pick_voice() { printf("%d\n", nar_pick_voice(7)); }

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
  else {
    fprintf(stderr, "unknown mode %s\n", mode.c_str());
    return 2;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s HANDLER DATABASE MODE\n", argv[0]);
    return 2;
  }
  install_crashpad(argv[1], argv[2]);
  return run(argv[3]);
}
