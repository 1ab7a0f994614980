// libFuzzer target for the spamd protocol codec (server/spamd_protocol.h).
//
// Input: byte 0 picks the read size, byte 1 the verdict and threshold for the reply checks;
// the rest is what a spamc client sends. Besides the sanitizers, it checks properties:
// - parsing is independent of how the bytes are split into reads (same status, error,
//   request), and after an error nothing more is consumed;
// - no line over the limit is buffered, the kept message never exceeds max_message_bytes, and
//   message_size counts every byte of the message;
// - every reply is well formed: a status line starting "SPAMD/1.", header lines without bare
//   control bytes, and a Content-length that is exactly the body's size; an error reply is one
//   line;
// - spamd_rewrite_message keeps the body after the header block byte for byte and leaves no
//   X-Spam-* / X-Spamward-* field of the input in the header block.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/spamd_protocol.h"

namespace {

using namespace spamward;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

struct Outcome {
  SpamdParser::Status status;
  SpamdError error;
  std::string error_text;
  SpamdCommand command;
  int major, minor;
  std::optional<uint64_t> content_length;
  std::string user;
  std::optional<bool> message_class_spam;
  bool flags[4];
  std::string message;
  uint64_t message_size;
  size_t used;
  bool operator==(const Outcome& o) const {
    return status == o.status && error == o.error && error_text == o.error_text &&
           (status != SpamdParser::Status::complete ||
            (command == o.command && major == o.major && minor == o.minor &&
             content_length == o.content_length && user == o.user &&
             message_class_spam == o.message_class_spam && flags[0] == o.flags[0] &&
             flags[1] == o.flags[1] && flags[2] == o.flags[2] && flags[3] == o.flags[3] &&
             message == o.message && message_size == o.message_size && used == o.used));
  }
};

SpamdParserLimits limits() {
  SpamdParserLimits l;
  l.max_line = 200;
  l.max_headers = 16;
  l.max_message_bytes = 1000;
  l.max_content_length = 100000;
  return l;
}

Outcome parse(std::string_view input, size_t step, SpamdParser& p) {
  size_t used = 0;
  for (size_t i = 0; i < input.size(); i += step) {
    std::string_view piece = input.substr(i, step);
    size_t n = p.feed(piece);
    check(n <= piece.size());
    used += n;
    if (p.status() != SpamdParser::Status::incomplete) {
      check(p.feed("x") == 0);
      break;
    }
    check(n == piece.size());  // while incomplete, everything is consumed
  }
  p.feed_eof();
  const SpamdRequest& r = p.request();
  check(r.message.size() <= limits().max_message_bytes);
  check(r.message_size >= r.message.size());
  // PING and SKIP have no message, whatever the headers say.
  if (r.content_length && p.status() == SpamdParser::Status::complete &&
      r.command != SpamdCommand::ping && r.command != SpamdCommand::skip)
    check(r.message_size == *r.content_length);
  return {p.status(),
          p.error(),
          p.error_text(),
          r.command,
          r.major,
          r.minor,
          r.content_length,
          r.user,
          r.message_class_spam,
          {r.set_local, r.set_remote, r.remove_local, r.remove_remote},
          r.message,
          r.message_size,
          used};
}

bool printable_line(std::string_view s) {
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

// Checks the framing of a reply.
void check_reply(const std::string& wire) {
  check(wire.starts_with("SPAMD/1."));
  size_t first = wire.find("\r\n");
  check(first != std::string::npos);
  check(printable_line(std::string_view(wire).substr(0, first)));
  if (wire.starts_with("SPAMD/1.0 ") && !wire.starts_with("SPAMD/1.0 0 ")) {
    check(first + 2 == wire.size());  // an error: one line
    return;
  }
  if (wire.starts_with("SPAMD/1.0 0 ")) return;  // protocol 1.0 PROCESS: the message follows
  size_t end = wire.find("\r\n\r\n");
  if (end == std::string::npos) return;  // PONG
  std::string_view head = std::string_view(wire).substr(0, end);
  std::string_view body = std::string_view(wire).substr(end + 4);
  std::optional<uint64_t> length;
  for (size_t pos = 0; pos <= head.size();) {
    size_t nl = head.find("\r\n", pos);
    if (nl == std::string_view::npos) nl = head.size();
    std::string_view line = head.substr(pos, nl - pos);
    check(printable_line(line));
    if (line.starts_with("Content-length: ")) length = std::stoull(std::string(line.substr(16)));
    pos = nl + 2;
  }
  if (length) check(*length == body.size());
}

Verdict make_verdict(uint8_t pick, std::string_view text) {
  Verdict v;
  static constexpr Action kActions[] = {Action::accept, Action::tag, Action::greylist,
                                        Action::tempfail, Action::reject};
  v.action = v.applied = kActions[pick % 5];
  v.score = (static_cast<int>(pick) - 100) * 0.37;
  v.reason = std::string(text.substr(0, 100));
  size_t n = (pick >> 3) % 8;
  for (size_t i = 0; i < n; ++i) {
    std::string_view name = text.substr(std::min(text.size(), i * 7), 30);
    v.symbols.push_back({std::string(name), i * 1.5 - 2.0, Family::rfc,
                         std::string(text.substr(std::min(text.size(), i * 3), 50))});
  }
  v.symbols.push_back({"GTUBE", 1000.0, Family::admin, "the GTUBE test string"});
  return v;
}

// True when a top-level field of `headers` is X-Spam-* or X-Spamward-*.
bool owned_field_in(std::string_view headers) {
  size_t pos = 0;
  while (pos < headers.size()) {
    size_t nl = headers.find('\n', pos);
    size_t end = nl == std::string_view::npos ? headers.size() : nl + 1;
    std::string_view line = headers.substr(pos, end - pos);
    if (!line.empty() && line[0] != ' ' && line[0] != '\t') {
      size_t colon = line.find(':');
      if (colon != std::string_view::npos) {
        std::string_view name = line.substr(0, colon);
        while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
        while (!name.empty() && (name.front() == ' ' || name.front() == '\t'))
          name.remove_prefix(1);
        if (is_spamd_owned_header(name)) return true;
      }
    }
    pos = end;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t step = 1 + data[0] % 64;
  const uint8_t pick = data[1];
  std::string_view input(reinterpret_cast<const char*>(data) + 2, size - 2);

  SpamdParser whole(limits());
  Outcome a = parse(input, input.size() ? input.size() : 1, whole);
  SpamdParser split(limits());
  Outcome b = parse(input, step, split);
  check(a == b);
  if (a.status == SpamdParser::Status::error) {
    check(a.error != SpamdError::none);
    check(!a.error_text.empty());
    std::string e = format_spamd_error(whole);
    check(e.starts_with("SPAMD/1.0 76 ") && e.find("\r\n") == e.size() - 2);
    check(printable_line(std::string_view(e).substr(0, e.size() - 2)));
    return 0;
  }
  check(a.status == SpamdParser::Status::complete);
  const SpamdRequest& r = whole.request();
  Verdict v = make_verdict(pick, input);
  const double threshold = (pick % 13) - 3.5;
  check_reply(format_spamd_reply(r, &v, threshold));
  check_reply(format_spamd_reply(r, nullptr, threshold));
  check_reply(format_spamd_tell_reply(pick & 1, pick & 2));

  // The rewrite on the raw message: the body after the header block is kept byte for byte;
  // without a verdict nothing is added and no X-Spam-* field of the input survives; with one,
  // our fields come after the kept ones.
  size_t blank = std::string::npos;  // the first empty line, as the rewrite defines it
  for (size_t pos = 0; pos < r.message.size();) {
    size_t nl = r.message.find('\n', pos);
    if (nl == std::string::npos) break;
    std::string_view content = std::string_view(r.message).substr(pos, nl - pos);
    if (!content.empty() && content.back() == '\r') content.remove_suffix(1);
    if (content.empty()) {
      blank = pos;
      break;
    }
    pos = nl + 1;
  }
  const SpamdOutcome outcome = spamd_outcome(&v, threshold);
  std::string bare = spamd_rewrite_message(r.message, nullptr, outcome, false);
  std::string full = spamd_rewrite_message(r.message, &v, outcome, false);
  std::string head = spamd_rewrite_message(r.message, &v, outcome, true);
  if (blank != std::string::npos) {
    std::string_view tail = std::string_view(r.message).substr(blank);
    for (const std::string* out : {&bare, &full}) {
      check(out->size() >= tail.size() &&
            std::string_view(*out).substr(out->size() - tail.size()) == tail);
    }
    std::string_view kept = std::string_view(bare).substr(0, bare.size() - tail.size());
    check(!owned_field_in(kept));
    check(std::string_view(full).starts_with(kept));
    check(std::string_view(head).starts_with(kept));
    const size_t blank_len = tail.starts_with("\r\n") ? 2 : 1;
    check(head.size() == kept.size() + (full.size() - bare.size()) + blank_len);
  } else {
    check(!owned_field_in(bare));
  }
  // Score text agrees with the verdict's side of the threshold whenever it can.
  SpamdOutcome o = spamd_outcome(&v, threshold);
  std::string text = spamd_score_text(o);
  check(text != "-0.0");
  return 0;
}
