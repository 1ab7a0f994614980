// Helpers the unit tests share: literal addresses, canned DNS answers, a counting resolver,
// and running one awaitable to its end. Test-only.
#pragma once

#include <sys/wait.h>
#include <unistd.h>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/ip_address.h"
#include "dns/resolver.h"

namespace spamward::test {

// An address the test writes literally; a typo throws rather than testing nothing.
inline IpAddress ip(const char* text) {
  auto a = IpAddress::parse(text);
  if (!a) throw std::invalid_argument(text);
  return *a;
}

inline DnsAnswer ok(std::vector<std::string> records) {
  return {DnsAnswer::Status::ok, std::move(records), 300};
}
inline DnsAnswer timeout() {
  return {DnsAnswer::Status::timeout, {}, 0};
}

// A FixtureResolver that also counts the queries it answers, to check limits bound the work.
class CountingResolver final : public Resolver {
 public:
  FixtureResolver fixture;
  int queries = 0;
  boost::asio::awaitable<DnsAnswer> query(std::string name, DnsType type) override {
    ++queries;
    auto inner = fixture.query(std::move(name), type);  // named first: GCC PR 100611
    DnsAnswer a = co_await std::move(inner);
    co_return a;
  }
};

// Runs `task` on a private io_context to its end; rethrows what it threw.
template <typename T>
T run_sync(boost::asio::awaitable<T> task) {
  boost::asio::io_context io;
  T result{};
  std::exception_ptr error;
  boost::asio::co_spawn(io, std::move(task), [&](std::exception_ptr e, T r) {
    error = e;
    result = std::move(r);
  });
  io.run();
  if (error) std::rethrow_exception(error);
  return result;
}

// A child process forked at construction and released by run(). Fork it at the start of a
// test, before the test opens stores (whose writer threads may hold a lock at fork time: GCC
// 12's libasan has no fork handler for its allocator lock, and such a child deadlocks). The
// child waits on a pipe, then runs `child`; its return value is the exit status.
class ChildProcess {
 public:
  template <typename F>
  explicit ChildProcess(F child) {
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      close(fds[1]);
      char go = 0;
      int rc = 1;
      if (read(fds[0], &go, 1) == 1) {
        try {
          rc = child();
        } catch (...) {
          rc = 99;
        }
      }
      _exit(rc);
    }
    close(fds[0]);
    go_fd_ = fds[1];
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess() {
    if (go_fd_ >= 0) wait_for(false);  // never released: the child reads EOF and exits
  }

  // Lets the child run and waits for it: its exit status, or 128 when it did not exit.
  int run() { return wait_for(true); }

 private:
  int wait_for(bool release) {
    if (release) {
      char go = 'g';
      if (write(go_fd_, &go, 1) != 1) return 128;
    }
    close(go_fd_);
    go_fd_ = -1;
    int status = 0;
    waitpid(pid_, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  }
  pid_t pid_ = -1;
  int go_fd_ = -1;
};

}  // namespace spamward::test
