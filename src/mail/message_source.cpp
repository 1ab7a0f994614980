#include "mail/message_source.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <system_error>

namespace spamward {

namespace {

namespace fs = std::filesystem;

constexpr size_t kBlock = 1 << 20;  // read size
constexpr size_t kPeek = 1024;      // bytes of a line needed to tell what it is

// Splits a stream of bytes into mbox messages (see the header for the rules). Lines are
// handled as they complete; a line longer than kPeek is classified by its first kPeek bytes
// and then passed through without being held, so memory stays bounded for any input.
class MboxSplitter {
 public:
  using Emit = std::function<bool(RawMessage&)>;
  MboxSplitter(std::string file, size_t cap, const Emit& emit)
      : file_(std::move(file)), cap_(cap), emit_(emit) {}

  // Returns false when the consumer asked to stop.
  bool feed(std::string_view data) {
    while (!data.empty() && !stopped_) {
      size_t nl = data.find('\n');
      std::string_view piece = nl == std::string_view::npos ? data : data.substr(0, nl + 1);
      data.remove_prefix(piece.size());
      bool complete = nl != std::string_view::npos;
      if (passing_) {
        // The rest of a long line already classified.
        if (!skipping_) append(piece);
        if (complete) end_line(false);
        continue;
      }
      head_.append(piece);
      if (complete || head_.size() >= kPeek) classify(complete);
    }
    return !stopped_;
  }

  bool finish() {
    if (!stopped_ && !passing_ && !head_.empty()) classify(true);
    if (!stopped_ && started_) emit_current(/*before_separator=*/true);
    return !stopped_;
  }

  size_t count() const { return index_; }

 private:
  void classify(bool complete) {
    std::string_view line = head_;
    bool separator = line.starts_with("From ") && (first_line_ || previous_blank_);
    first_line_ = false;
    if (separator) {
      if (started_) emit_current(true);
      if (stopped_) return;
      start_message();
      skipping_ = true;  // the separator line is not part of the message
    } else {
      if (!started_) start_message();  // text before any separator: a message of its own
      // mboxrd/mboxo: one '>' is removed from a quoted From line.
      size_t quotes = line.find_first_not_of('>');
      if (quotes != std::string_view::npos && quotes > 0 &&
          line.substr(quotes).starts_with("From ")) {
        line.remove_prefix(1);
      }
      append(line);
      skipping_ = false;
    }
    bool blank = complete && (head_ == "\n" || head_ == "\r\n");
    head_.clear();
    if (complete) {
      end_line(blank);
    } else {
      passing_ = true;
    }
  }

  void end_line(bool blank) {
    previous_blank_ = blank;
    last_blank_size_ = blank && !skipping_ ? (blank_crlf_ ? 2 : 1) : 0;
    passing_ = false;
    skipping_ = false;
  }

  void append(std::string_view bytes) {
    blank_crlf_ = bytes == "\r\n";
    current_.raw_size += bytes.size();
    if (current_.data.size() < cap_) {
      current_.data.append(bytes.substr(0, cap_ - current_.data.size()));
    }
  }

  void start_message() {
    current_ = RawMessage{};
    current_.file = file_;
    current_.index = ++index_;
    started_ = true;
    last_blank_size_ = 0;
  }

  void emit_current(bool before_separator) {
    // The blank line before a separator (or at the end) belongs to the mbox, not the message.
    if (before_separator && last_blank_size_ > 0 && current_.raw_size >= last_blank_size_) {
      current_.raw_size -= last_blank_size_;
      if (current_.data.size() > current_.raw_size) current_.data.resize(current_.raw_size);
    }
    started_ = false;
    if (!emit_(current_)) stopped_ = true;
  }

  const std::string file_;
  const size_t cap_;
  const Emit& emit_;
  RawMessage current_;
  std::string head_;  // the start of the current line, until classified
  size_t index_ = 0;
  size_t last_blank_size_ = 0;
  bool first_line_ = true;
  bool previous_blank_ = false;
  bool passing_ = false;   // inside a long line already classified
  bool skipping_ = false;  // ... which is a separator, not message text
  bool started_ = false;
  bool stopped_ = false;
  bool blank_crlf_ = false;
};

struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f && f != stdin) std::fclose(f);
  }
};

// One file or stdin: a single message or an mbox, told by its first bytes.
bool read_stream(std::FILE* in, const std::string& name, const MessageSourceOptions& options,
                 const std::function<bool(RawMessage&)>& on_message, size_t& delivered,
                 std::string& error) {
  std::unique_ptr<char[]> buffer(new char[kBlock]);
  size_t n = std::fread(buffer.get(), 1, kBlock, in);
  std::string_view first(buffer.get(), n);
  bool mbox = first.starts_with("From ");
  if (!mbox) {
    RawMessage m;
    m.file = name;
    while (n > 0) {
      m.raw_size += n;
      if (m.data.size() < options.max_message_bytes) {
        m.data.append(buffer.get(), std::min(n, options.max_message_bytes - m.data.size()));
      }
      n = std::fread(buffer.get(), 1, kBlock, in);
    }
    if (std::ferror(in)) {
      error = std::strerror(errno);
      return true;
    }
    ++delivered;
    return on_message(m);
  }
  MboxSplitter splitter(name, options.max_message_bytes, on_message);
  bool go_on = true;
  while (n > 0 && go_on) {
    go_on = splitter.feed(std::string_view(buffer.get(), n));
    n = std::fread(buffer.get(), 1, kBlock, in);
  }
  if (go_on) go_on = splitter.finish();
  delivered += splitter.count();
  if (std::ferror(in)) error = std::strerror(errno);
  return go_on;
}

bool read_file(const std::string& path, const MessageSourceOptions& options,
               const std::function<bool(RawMessage&)>& on_message, size_t& delivered,
               const std::function<void(const std::string&, const std::string&)>& on_error) {
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (!f) {
    on_error(path, std::strerror(errno));
    return true;
  }
  std::string error;
  bool go_on = read_stream(f.get(), path, options, on_message, delivered, error);
  if (!error.empty()) on_error(path, error);
  return go_on;
}

bool hidden(const fs::path& p) {
  std::string name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

std::vector<std::string> sorted_files(const fs::path& dir, bool recursive, std::error_code& ec) {
  std::vector<std::string> files;
  auto add = [&](const fs::directory_entry& e) {
    if (!hidden(e.path()) && e.is_regular_file(ec)) files.push_back(e.path().string());
  };
  if (recursive) {
    for (auto it = fs::recursive_directory_iterator(
             dir, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_directory(ec) && hidden(it->path())) {
        it.disable_recursion_pending();
        continue;
      }
      add(*it);
    }
  } else {
    for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
         it.increment(ec)) {
      add(*it);
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

size_t for_each_message(
    const std::vector<std::string>& paths, const MessageSourceOptions& options,
    const std::function<bool(RawMessage&)>& on_message,
    const std::function<void(const std::string& path, const std::string& reason)>& on_error) {
  size_t delivered = 0;
  for (const auto& path : paths) {
    if (path == "-") {
      std::string error;
      bool go_on = read_stream(stdin, "-", options, on_message, delivered, error);
      if (!error.empty()) on_error(path, error);
      if (!go_on) break;
      continue;
    }
    std::error_code ec;
    fs::file_status status = fs::status(path, ec);
    if (ec) {
      on_error(path, ec.message());
      continue;
    }
    if (!fs::is_directory(status)) {
      if (!read_file(path, options, on_message, delivered, on_error)) break;
      continue;
    }
    std::vector<std::string> files;
    bool maildir = fs::is_directory(fs::path(path) / "cur", ec) ||
                   fs::is_directory(fs::path(path) / "new", ec);
    if (maildir) {
      for (const char* sub : {"new", "cur"}) {
        std::error_code sub_ec;
        if (!fs::is_directory(fs::path(path) / sub, sub_ec)) continue;
        auto some = sorted_files(fs::path(path) / sub, false, sub_ec);
        if (sub_ec) on_error((fs::path(path) / sub).string(), sub_ec.message());
        files.insert(files.end(), some.begin(), some.end());
      }
    } else {
      files = sorted_files(path, true, ec);
      if (ec) on_error(path, ec.message());
    }
    bool go_on = true;
    for (const auto& file : files) {
      if (!(go_on = read_file(file, options, on_message, delivered, on_error))) break;
    }
    if (!go_on) break;
  }
  return delivered;
}

std::vector<std::string> split_mbox(std::string_view text) {
  std::vector<std::string> out;
  std::function<bool(RawMessage&)> collect = [&out](RawMessage& m) {
    out.push_back(std::move(m.data));
    return true;
  };
  MboxSplitter splitter("", SIZE_MAX, collect);
  splitter.feed(text);
  splitter.finish();
  return out;
}

}  // namespace spamward
