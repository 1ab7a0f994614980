// libFuzzer target for the IMAP learning source's curl-free parts (bayes/imap_source.h).
//
// Input: byte 0 picks the read size, byte 1 the limits; the rest is what an IMAP server sends.
// Besides the sanitizers, it checks properties:
// - framing is independent of how the bytes are split (same responses, same error), nothing
//   more comes out after an error, and what is buffered stays within the limits;
// - the response shapes (status, SEARCH, FETCH) either parse or throw ImapError, never anything
//   else, and a FETCH body is never longer than max_literal_bytes;
// - a whole learning run (EXAMINE, UID SEARCH, UID FETCH, LOGOUT) against these bytes as the
//   server's answers ends normally or with ImapError; it hands the sink UIDs in ascending
//   order per folder, each message at most max_message_bytes long;
// - modified UTF-7 and quoting of the input as a folder name: decode(encode(x)) == x, a mailbox
//   argument never holds CR, LF or 8-bit bytes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "bayes/imap_source.h"

namespace {

using namespace spamward;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

ImapLimits limits_for(uint8_t pick) {
  ImapLimits l;
  l.max_line_bytes = 64 + (pick & 0x0F) * 64;
  l.max_literal_bytes = (pick >> 4) * 16;
  l.max_literals = 1 + (pick & 0x03);
  return l;
}

struct Parsed {
  std::vector<ImapResponse> responses;
  std::string error;
};

Parsed parse(std::string_view input, size_t step, const ImapLimits& limits) {
  ImapResponseParser p(limits);
  Parsed out;
  for (size_t i = 0; i < input.size(); i += step) {
    p.feed(input.substr(i, step));
    check(p.buffered() <=
          limits.max_line_bytes + 2 + limits.max_literals * (limits.max_literal_bytes + 1) + 64);
    ImapResponse r;
    while (p.next(r)) out.responses.push_back(std::move(r));
  }
  out.error = p.error();
  return out;
}

bool same(const ImapResponse& a, const ImapResponse& b) {
  return a.kind == b.kind && a.tag == b.tag && a.text == b.text && a.literals == b.literals &&
         a.literal_sizes == b.literal_sizes && a.truncated == b.truncated;
}

// The fuzz input as the server's side of a connection.
class Replay final : public ImapTransport {
 public:
  Replay(std::string_view data, size_t step) : data_(data), step_(step) {}
  void send(std::string_view bytes) override {
    check(bytes.size() >= 2 && bytes.substr(bytes.size() - 2) == "\r\n");
    check(bytes.substr(0, bytes.size() - 2).find_first_of("\r\n") == std::string_view::npos);
  }
  size_t receive(char* buffer, size_t size) override {
    size_t n = std::min({size, step_, data_.size()});
    std::copy_n(data_.data(), n, buffer);
    data_.remove_prefix(n);
    return n;
  }

 private:
  std::string_view data_;
  size_t step_;
};

class OneProgress final : public ImapProgressStore {
 public:
  std::optional<ImapProgress> stored;
  std::optional<ImapProgress> load(const std::string&) override { return stored; }
  void save(const std::string&, const ImapProgress& p) override { stored = p; }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t step = 1 + data[0] % 97;
  const ImapLimits limits = limits_for(data[1]);
  std::string_view input(reinterpret_cast<const char*>(data) + 2, size - 2);

  Parsed whole = parse(input, input.empty() ? 1 : input.size(), limits);
  Parsed split = parse(input, step, limits);
  check(whole.error == split.error);
  check(whole.responses.size() == split.responses.size());
  for (size_t i = 0; i < whole.responses.size(); ++i)
    check(same(whole.responses[i], split.responses[i]));

  for (const ImapResponse& r : whole.responses) {
    check(r.literals.size() == r.literal_sizes.size());
    check(r.literals.size() <= limits.max_literals);
    size_t nuls = 0;
    for (char c : r.text) nuls += c == '\0';
    check(nuls == r.literals.size());
    for (size_t k = 0; k < r.literals.size(); ++k) {
      check(r.literals[k].size() <= limits.max_literal_bytes);
      check(r.literals[k].size() <= r.literal_sizes[k]);
    }
    ImapStatus s = parse_imap_status(r.text);
    (void)s;
    try {
      auto f = parse_imap_fetch(r);
      if (f && f->body)
        check(f->body->size() <= std::max<size_t>(limits.max_literal_bytes, r.text.size()));
    } catch (const ImapError&) {
    }
    try {
      if (r.text.size() >= 6) parse_imap_search(std::string_view(r.text).substr(6));
    } catch (const ImapError&) {
    }
  }

  // A whole run with these bytes as the server's answers.
  {
    Replay server(input, step);
    ImapSession session(server, limits);
    OneProgress progress;
    if (data[1] & 0x80) progress.stored = ImapProgress{1, data[0]};
    ImapAccount account;
    account.url = "imaps://fuzz.example";
    account.user = "u";
    account.spam_folders = {"Junk"};
    account.ham_folders = {"H\xc3\xa4m"};
    ImapOptions options;
    options.max_message_bytes = 1 + data[0];
    uint32_t last = 0;
    auto sink = [&](const std::string& raw, bool, const std::string& folder, uint32_t uid) {
      check(raw.size() <= options.max_message_bytes);
      if (folder == "Junk") {
        check(uid > last);
        last = uid;
      }
      return true;
    };
    try {
      learn_imap_folders(session, account, progress, sink, options);
      session.logout();
    } catch (const ImapError&) {
    }
  }

  // The input as a folder name.
  if (auto enc = imap_utf7_encode(input)) {
    auto dec = imap_utf7_decode(*enc);
    check(dec && *dec == input);
  }
  if (auto dec = imap_utf7_decode(input)) {
    auto enc = imap_utf7_encode(*dec);
    check(enc && *enc == input);
  }
  try {
    std::string arg = imap_mailbox_argument(input);
    check(arg.size() >= 2 && arg.front() == '"' && arg.back() == '"');
    for (char c : arg)
      check(static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f);
  } catch (const ImapError&) {
    check(!imap_folder_problem(input).empty());
  }
  return 0;
}
