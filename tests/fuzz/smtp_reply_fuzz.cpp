// libFuzzer target for the SMTP reply parser of `spamward probe backscatter`
// (cli/smtp_probe.h), and the small text helpers beside it.
//
// Input: byte 0 picks the read size, byte 1 the limits; the rest is what an SMTP server sends.
// Besides the sanitizers, it checks properties:
// - the replies and the error do not depend on how the bytes are split;
// - every reply has a code 200-559 with a first digit 2-5 and a second 0-5, 1 to max_lines
//   lines, each shorter than max_line_bytes, without CR, LF or NUL;
// - what the parser holds besides untaken replies stays within the limits, and nothing comes
//   out after an error;
// - parse_host_port() of the input either fails with a reason or gives a non-empty host and a
//   port 1-65535; printable() output is printable ASCII and bounded; smtp_argument_problem()
//   never accepts a value with CR, LF, space, '<' or '>'.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cli/smtp_probe.h"

namespace {

using namespace spamward::cli;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

struct Parsed {
  std::vector<SmtpReply> replies;
  std::string error;
};

Parsed parse(std::string_view input, size_t step, const SmtpReplyLimits& limits) {
  SmtpReplyParser p(limits);
  Parsed out;
  for (size_t i = 0; i < input.size(); i += step) {
    p.feed(input.substr(i, step));
    SmtpReply r;
    while (p.next(r)) out.replies.push_back(std::move(r));
    // With every complete reply taken, all that is held is one reply being built (each line
    // counted with 6 bytes of framing) plus a partial line.
    check(p.buffered() <= (limits.max_line_bytes + 6) * (limits.max_lines + 1));
    if (!p.error().empty()) check(p.buffered() == 0);
  }
  out.error = p.error();
  SmtpReply r;
  if (!out.error.empty()) check(!p.next(r));
  return out;
}

void check_reply(const SmtpReply& r, const SmtpReplyLimits& limits) {
  int d1 = r.code / 100, d2 = (r.code / 10) % 10;
  check(d1 >= 2 && d1 <= 5 && d2 >= 0 && d2 <= 5);
  check(!r.lines.empty() && r.lines.size() <= limits.max_lines);
  for (const std::string& l : r.lines) {
    check(l.size() + 5 <= limits.max_line_bytes);
    check(l.find_first_of(std::string_view("\r\n\0", 3)) == std::string::npos);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  size_t step = 1 + data[0] % 64;
  SmtpReplyLimits limits;
  limits.max_line_bytes = 8 + (data[1] & 0x0F) * 32;
  limits.max_lines = 1 + (data[1] >> 4);
  std::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);

  Parsed split = parse(input, step, limits);
  Parsed whole = parse(input, input.size() + 1, limits);
  check(split.error == whole.error);
  check(split.replies.size() == whole.replies.size());
  for (size_t i = 0; i < split.replies.size(); ++i) {
    check(split.replies[i].code == whole.replies[i].code);
    check(split.replies[i].lines == whole.replies[i].lines);
    check_reply(split.replies[i], limits);
  }

  std::string error;
  auto hp = parse_host_port(input, &error);
  if (hp) {
    check(!hp->host.empty() && hp->port >= 1);
  } else {
    check(!error.empty());
  }

  std::string shown = printable(input, 64);
  check(shown.size() <= 64 + 4 + 3);
  for (unsigned char c : shown) check(c >= 0x20 && c <= 0x7e);

  for (const char* kind : {"domain", "address", "helo"}) {
    if (smtp_argument_problem(input, kind).empty()) {
      check(!input.empty() && input.size() <= 255);
      check(input.find_first_of(std::string_view("\r\n\0 <>", 6)) == std::string_view::npos);
    }
  }
  return 0;
}
