// A real redis-server for the unit tests of the Redis store (and bench/store_bench): started
// on a free loopback port with no persistence (unless `extra` arguments say otherwise: later
// arguments win), in a temp dir of its own; killed with the process that started it (also
// when that dies: PR_SET_PDEATHSIG). Test-only; no GoogleTest dependency.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace spamward::test {

class RedisServer {
 public:
  // `extra`: more redis-server arguments, e.g. {"--requirepass", "secret"}.
  explicit RedisServer(std::vector<std::string> extra = {}) : extra_(std::move(extra)) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "spamward-redis-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    // Another process may take the port between our probe and redis's bind: try again.
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = free_port();
      if (start()) return;
    }
    std::string log;  // the destructor will not run: report and clean up here
    if (FILE* f = std::fopen((dir_ + "/redis.log").c_str(), "r")) {
      char line[512];
      while (std::fgets(line, sizeof line, f)) log += line;
      std::fclose(f);
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    throw std::runtime_error("redis-server did not start:\n" + log);
  }
  ~RedisServer() {
    kill();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  int port() const { return port_; }
  std::string url(int db = 0) const {
    return "redis://127.0.0.1:" + std::to_string(port_) + "/" + std::to_string(db);
  }

  // Starts (again) on the same port; false when it did not answer PING within 10 s.
  bool start() {
    std::vector<std::string> args = {"/usr/bin/redis-server",
                                     "--bind",
                                     "127.0.0.1",
                                     "--port",
                                     std::to_string(port_),
                                     "--save",
                                     "",
                                     "--appendonly",
                                     "no",
                                     "--dir",
                                     dir_,
                                     "--logfile",
                                     dir_ + "/redis.log",
                                     "--daemonize",
                                     "no"};
    args.insert(args.end(), extra_.begin(), extra_.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      // Only system calls here: other threads of the test may hold allocator locks.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);
      execv(argv[0], argv.data());
      _exit(127);
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (ping()) return true;
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    kill();
    return false;
  }

  // SIGKILL, as a crash or a lost host would.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);
    ::kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  // A stalled server: it accepts nothing and answers nothing until resume().
  void pause() { ::kill(pid_, SIGSTOP); }
  void resume() { ::kill(pid_, SIGCONT); }

  // Sends one inline command and returns the first reply line (e.g. "+OK").
  std::string command(const std::string& line) const {
    int fd = connect_fd();
    if (fd < 0) return "";
    std::string out = line + "\r\n";
    (void)!write(fd, out.data(), out.size());
    std::string reply;
    char c;
    while (read(fd, &c, 1) == 1 && c != '\n') reply.push_back(c);
    close(fd);
    if (!reply.empty() && reply.back() == '\r') reply.pop_back();
    return reply;
  }
  // Up and answering (with a password set, it answers that one is needed).
  bool ping() const {
    std::string reply = command("PING");
    return reply == "+PONG" || reply.starts_with("-NOAUTH");
  }
  void flushall() const {
    if (command("FLUSHALL") != "+OK") throw std::runtime_error("FLUSHALL failed");
  }

 private:
  static int free_port() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      close(fd);
      throw std::runtime_error("no free port");
    }
    close(fd);
    return ntohs(a.sin_port);
  }

  int connect_fd() const {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port_));
    timeval tv{2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      close(fd);
      return -1;
    }
    return fd;
  }

  std::vector<std::string> extra_;
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// One server for every test of the process that needs a plain one (the contract suite);
// started on first use, killed at exit.
inline RedisServer& shared_redis() {
  static std::unique_ptr<RedisServer> server = std::make_unique<RedisServer>();
  return *server;
}

}  // namespace spamward::test
