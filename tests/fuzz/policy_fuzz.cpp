// libFuzzer target for the Postfix policy protocol (server/policy_protocol.h).
//
// Input: byte 0 picks the limits (default or tiny ones, to reach every limit path), byte 1 the
// read size; the rest is what a client sends. Besides the sanitizers, it checks properties:
// - parsing is independent of how the bytes are split into reads (same requests, same error,
//   same error position);
// - every request maps to a Transaction and every reply is one line of at most
//   kMaxPolicyReplyLine bytes ending in "\n\n", whatever the verdict text holds.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "server/policy_protocol.h"

namespace {

using namespace spamward;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

struct Outcome {
  std::vector<std::string> requests;  // each request's lines, re-serialised
  PolicyParser::Status status = PolicyParser::Status::incomplete;
  PolicyError error = PolicyError::none;
  size_t consumed = 0;
  bool operator==(const Outcome&) const = default;
};

void check_reply(const PolicyRequest& request, uint8_t flags) {
  Transaction tx = from_policy_request(request);
  check(tx.id == (!tx.queue_id.empty() ? tx.queue_id : tx.instance));
  Verdict v;
  v.action = static_cast<Action>(flags % 5);
  v.applied = static_cast<Action>((flags >> 3) % 5);
  v.permanent_ban = flags & 0x40;
  v.standalone = flags & 0x80 ? Standalone::unknown_recipient : Standalone::none;
  // Hostile text: whatever the client sent (the engine may echo parts of a request).
  v.reply_text = std::string(request.value("recipient"));
  v.reason = std::string(request.value("helo_name"));
  std::string reply = format_policy_reply(v, tx.stage);
  check(reply.size() >= 2 && reply.compare(reply.size() - 2, 2, "\n\n") == 0);
  std::string_view line(reply.data(), reply.size() - 2);
  check(line.size() <= kMaxPolicyReplyLine);
  check(line.rfind("action=", 0) == 0);
  for (char c : line) check(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f);
}

Outcome parse(std::string_view input, const PolicyParserLimits& limits, size_t step,
              uint8_t flags) {
  Outcome out;
  PolicyParser parser(limits);
  size_t pos = 0;
  while (pos < input.size()) {
    size_t n = step ? std::min(step, input.size() - pos) : input.size() - pos;
    std::string_view piece = input.substr(pos, n);
    size_t used = parser.feed(piece);
    check(used <= piece.size());
    pos += used;
    if (parser.status() == PolicyParser::Status::complete) {
      const PolicyRequest& r = parser.request();
      check(r.size() > 0 && r.size() <= limits.max_attributes);
      std::string text;
      for (size_t i = 0; i < r.size(); ++i) {
        check(!r.name_at(i).empty());
        check(r.name_at(i).find('=') == std::string_view::npos);
        check(r.value_at(i).find('\n') == std::string_view::npos);
        check(r.name_at(i).size() + 1 + r.value_at(i).size() <= limits.max_line);
        text.append(r.name_at(i)).append("=").append(r.value_at(i)).append("\n");
      }
      check(text.size() + 1 <= limits.max_request_bytes);
      if (step == 0) check_reply(r, flags);
      out.requests.push_back(std::move(text));
      parser.next();
    } else if (parser.status() == PolicyParser::Status::error) {
      break;
    } else {
      check(used == piece.size());
    }
  }
  out.status = parser.status();
  out.error = parser.error();
  out.consumed = pos;
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t flags = data[0];
  const uint8_t step = data[1];
  std::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);

  PolicyParserLimits limits;
  if (flags & 1) {  // tiny limits, so short inputs reach every limit
    limits.max_line = 1 + (flags >> 1) % 40;
    limits.max_attributes = 1 + step % 8;
    limits.max_request_bytes = 4 + step;
  }
  Outcome whole = parse(input, limits, 0, flags);
  Outcome split = parse(input, limits, 1 + step % 13, flags);
  check(whole == split);

  // The one-shot builder used by tests and callers with whole lines must not crash either.
  Transaction tx = from_policy_request(PolicyRequest::from_lines(input));
  (void)tx;
  return 0;
}
