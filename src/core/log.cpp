#include "core/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/sink.h>
#include <spdlog/spdlog.h>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

#include <fmt/format.h>

namespace spamward {

namespace {

constexpr const char* kTextPattern = "%Y-%m-%dT%H:%M:%S.%e%z [%l] %v";
constexpr std::string_view kDecisionLoggerName = "decision";

std::string errno_text(int err) {
  return std::strerror(err);
}

// One destination: stderr or an append-only file. Writes go straight to the descriptor
// (no stdio buffer), one write(2) per line.
class Output {
 public:
  Output() : fd_(STDERR_FILENO) {}
  explicit Output(std::string path) : fd_(open_append(path)), path_(std::move(path)) {}
  ~Output() {
    if (!path_.empty()) ::close(fd_);
  }
  Output(const Output&) = delete;
  Output& operator=(const Output&) = delete;

  const std::string& path() const { return path_; }

  void write(std::string_view line) {
    std::lock_guard lock(mu_);
    const char* p = line.data();
    size_t left = line.size();
    while (left > 0) {
      ssize_t n = ::write(fd_, p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        return;  // nowhere left to report a logging failure; never throw from a log call
      }
      p += n;
      left -= static_cast<size_t>(n);
    }
  }

  // Opens the path again and swaps it in with dup2, so the descriptor number stays the same
  // and a concurrent write goes wholly to the old or wholly to the new file.
  void reopen() {
    if (path_.empty()) return;
    int fresh = open_append(path_);
    std::lock_guard lock(mu_);
    int rc;
    do {
      rc = ::dup2(fresh, fd_);
    } while (rc < 0 && errno == EINTR);
    int err = errno;
    ::close(fresh);
    if (rc < 0)
      throw std::runtime_error("cannot reopen log file " + path_ + ": " + errno_text(err));
  }

 private:
  static int open_append(const std::string& path) {
    int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    if (fd < 0) throw std::runtime_error("cannot open log file " + path + ": " + errno_text(errno));
    return fd;
  }

  std::mutex mu_;
  int fd_;
  std::string path_;
};

std::string utc_time(std::chrono::system_clock::time_point t) {
  auto secs = std::chrono::time_point_cast<std::chrono::seconds>(t);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - secs).count();
  std::time_t tt = std::chrono::system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

// JSON lines. A decision line's payload is already a JSON object (decision_json): the time is
// spliced in as its first field instead of wrapping it, so consumers see one flat object.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string_view payload(msg.payload.data(), msg.payload.size());
    std::string_view logger(msg.logger_name.data(), msg.logger_name.size());
    std::string line;
    if (logger == kDecisionLoggerName && payload.size() >= 3 && payload.substr(0, 2) == "{\"" &&
        payload.back() == '}') {
      line = "{\"time\":\"" + utc_time(msg.time) + "\",";
      line.append(payload.substr(1));
    } else {
      nlohmann::json j;
      j["time"] = utc_time(msg.time);
      auto level = spdlog::level::to_string_view(msg.level);
      j["level"] = std::string(level.data(), level.size());
      j["logger"] = std::string(logger);
      j["msg"] = std::string(payload);
      // Log messages may carry hostile bytes (HELO names, addresses): never throw on bad UTF-8.
      line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    line += '\n';
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

// The one sink every spamward logger writes through; setup_logging() swaps its formatter and
// output in place, so loggers handed out earlier keep working.
class OutputSink final : public spdlog::sinks::sink {
 public:
  OutputSink() : formatter_(text_formatter()), output_(std::make_shared<Output>()) {}
  ~OutputSink() override { set_buffered(false); }

  void log(const spdlog::details::log_msg& msg) override {
    bool write_now;
    {
      std::lock_guard lock(mu_);
      spdlog::memory_buf_t buf;
      formatter_->format(msg, buf);
      pending_.append(buf.data(), buf.size());
      // Warnings and errors go out at once (with everything before them, in order).
      write_now = !buffered_ || msg.level >= spdlog::level::warn || pending_.size() >= kMaxPending;
      if (!write_now && !waiting_) {
        waiting_ = true;
        cv_.notify_one();
      }
    }
    if (write_now) flush();
  }
  void flush() override {
    std::lock_guard order(write_mu_);  // keeps batches in order across threads
    std::string batch;
    std::shared_ptr<Output> out;
    {
      std::lock_guard lock(mu_);
      batch.swap(pending_);
      waiting_ = false;
      out = output_;
    }
    if (!batch.empty()) out->write(batch);
  }
  void set_pattern(const std::string& pattern) override {
    set_formatter(std::make_unique<spdlog::pattern_formatter>(pattern));
  }
  void set_formatter(std::unique_ptr<spdlog::formatter> formatter) override {
    std::lock_guard lock(mu_);
    formatter_ = std::move(formatter);
  }

  void set_output(std::shared_ptr<Output> output) {
    flush();
    std::lock_guard lock(mu_);
    output_ = std::move(output);
  }
  std::shared_ptr<Output> output() const {
    std::lock_guard lock(mu_);
    return output_;
  }

  // Buffered: info lines are gathered and written together at most kMaxDelay after the first
  // (by a flusher thread), or sooner when kMaxPending bytes wait; one write(2) per batch
  // instead of one per decision. Off: every line is written at once.
  void set_buffered(bool on) {
    if (on) {
      std::lock_guard lock(mu_);
      if (buffered_) return;
      buffered_ = true;
      stop_ = false;
      flusher_ = std::thread([this] { run_flusher(); });
      return;
    }
    {
      std::lock_guard lock(mu_);
      if (!buffered_) return;
      buffered_ = false;
      stop_ = true;
      cv_.notify_one();
    }
    if (flusher_.joinable()) flusher_.join();
    flush();
  }

  static std::unique_ptr<spdlog::formatter> text_formatter() {
    return std::make_unique<spdlog::pattern_formatter>(kTextPattern);
  }

 private:
  static constexpr size_t kMaxPending = 32 * 1024;
  static constexpr auto kMaxDelay = std::chrono::milliseconds(50);

  void run_flusher() {
    std::unique_lock lock(mu_);
    while (!stop_) {
      cv_.wait(lock, [this] { return stop_ || waiting_; });
      if (stop_) break;
      cv_.wait_for(lock, kMaxDelay, [this] { return stop_; });
      lock.unlock();
      flush();
      lock.lock();
    }
  }

  mutable std::mutex mu_;
  std::mutex write_mu_;
  std::unique_ptr<spdlog::formatter> formatter_;
  std::shared_ptr<Output> output_;
  std::string pending_;
  bool buffered_ = false;
  bool waiting_ = false;  // lines are pending and the flusher was told
  bool stop_ = false;
  std::condition_variable cv_;
  std::thread flusher_;
};

struct LogState {
  std::mutex setup_mu;  // serialises setup_logging / reopen_log
  std::shared_ptr<OutputSink> sink;
  std::shared_ptr<spdlog::logger> main;
  std::shared_ptr<spdlog::logger> decision;
};

// Never destroyed: code running in static destructors may still log.
LogState& state() {
  static LogState* s = [] {
    auto* st = new LogState;
    st->sink = std::make_shared<OutputSink>();
    st->main = std::make_shared<spdlog::logger>("spamward", st->sink);
    st->decision = std::make_shared<spdlog::logger>(std::string(kDecisionLoggerName), st->sink);
    st->decision->set_level(spdlog::level::info);
    spdlog::set_default_logger(st->main);
    return st;
  }();
  return *s;
}

// spdlog's own default logger writes to stdout; replace it with ours (stderr) before main()
// so commands that print results on stdout never get log lines mixed in.
[[maybe_unused]] const bool kDefaultInstalled = (state(), true);

}  // namespace

void setup_logging(const LogConfig& config) {
  std::unique_ptr<spdlog::formatter> formatter;
  if (config.format == "text") {
    formatter = OutputSink::text_formatter();
  } else if (config.format == "json") {
    formatter = std::make_unique<JsonFormatter>();
  } else {
    throw std::runtime_error("unknown log format \"" + config.format +
                             "\" (expected \"text\" or \"json\")");
  }
  // Open first: on failure nothing changes.
  auto output =
      config.file.empty() ? std::make_shared<Output>() : std::make_shared<Output>(config.file);
  auto& st = state();
  std::lock_guard lock(st.setup_mu);
  st.sink->set_formatter(std::move(formatter));
  st.sink->set_output(std::move(output));
}

void reopen_log() {
  auto& st = state();
  std::lock_guard lock(st.setup_mu);
  st.sink->output()->reopen();
}

void set_log_buffering(bool on) {
  state().sink->set_buffered(on);
}

void flush_log() {
  state().sink->flush();
}

spdlog::logger& decision_logger() {
  return *state().decision;
}

}  // namespace spamward
