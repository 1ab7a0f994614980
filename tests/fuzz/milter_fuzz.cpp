// libFuzzer target for the milter protocol codec (server/milter_protocol.h).
//
// Input: byte 0 picks the read size, byte 1 the verdict for the reply checks; the rest is what
// an MTA sends. Besides the sanitizers, it checks properties:
// - framing is independent of how the bytes are split into reads (same frames, same error);
// - no frame over the limit is ever buffered: an error comes right after the length field;
// - every decoded command maps to facts, header lines and replies without crashing, and every
//   reply spamward encodes is a well-formed frame whose strings hold no bare control bytes
//   (a REPLYCODE is "ddd d.d.d text\0" and its text never carries a single '%').
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "server/milter_protocol.h"

namespace {

using namespace spamward;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

constexpr size_t kFuzzMaxFrame = 70000;  // just over the 64 KiB floor, to reach the limit

struct Frame {
  char cmd;
  std::string data;
  bool operator==(const Frame&) const = default;
};

struct Outcome {
  std::vector<Frame> frames;
  MilterError error = MilterError::none;
  bool operator==(const Outcome&) const = default;
};

Outcome read_frames(std::string_view input, size_t step) {
  Outcome out;
  MilterFrameReader reader(kFuzzMaxFrame);
  size_t pos = 0;
  while (pos < input.size()) {
    size_t n = step ? std::min(step, input.size() - pos) : input.size() - pos;
    size_t used = reader.feed(input.substr(pos, n));
    check(used <= n);
    pos += used;
    if (reader.status() == MilterFrameReader::Status::complete) {
      out.frames.push_back({reader.command(), std::string(reader.data())});
      check(reader.data().size() + 1 <= reader.max_frame());
      reader.next();
    } else if (reader.status() == MilterFrameReader::Status::error) {
      out.error = reader.error();
      check(reader.declared_length() == 0 || reader.declared_length() > reader.max_frame());
      break;
    } else {
      check(used == n);  // incomplete: everything offered was taken
    }
  }
  return out;
}

// Every frame in `out` parses back; returns them.
std::vector<Frame> replies(std::string_view out) {
  std::vector<Frame> frames;
  MilterFrameReader reader(1 << 24);
  while (!out.empty()) {
    size_t used = reader.feed(out);
    out.remove_prefix(used);
    check(reader.status() == MilterFrameReader::Status::complete);
    frames.push_back({reader.command(), std::string(reader.data())});
    reader.next();
  }
  return frames;
}

void check_reply_text(const std::string& data) {
  // "ddd d.d.d text\0"
  check(data.size() >= 11 && data.back() == '\0');
  std::string_view text(data.data(), data.size() - 1);
  for (size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    check(c >= 0x20 && c != 0x7f);
    if (c == '%') {
      check(i + 1 < text.size() && text[i + 1] == '%');
      ++i;
    }
  }
  check(text.size() <= 10 + 2 * kMaxMilterReplyText);
}

void exercise(const Frame& f, uint8_t flags, MilterMacros& macros, SpamHeaderTracker& spam) {
  Transaction tx;
  switch (f.cmd) {
    case milter::kOptneg:
      if (auto o = decode_optneg(f.data)) {
        if (auto n = negotiate(*o)) {
          check(n->version >= milter::kMinVersion && n->version <= milter::kVersion);
          check((n->actions & ~o->actions & ~milter::kActSetSymList) == 0);
          std::string out;
          append_optneg_reply(out, *n);
          check(replies(out).size() == 1);
        }
      }
      break;
    case milter::kMacro:
      if (auto m = decode_macros(f.data)) macros.set(*m);
      break;
    case milter::kConnect:
      if (auto c = decode_connect(f.data)) apply_connect_facts(*c, macros, tx);
      break;
    case milter::kHeader:
      if (auto h = decode_header(f.data)) {
        spam.observe(h->name);
        std::string line = header_line(h->name, h->value, flags & 1);
        check(line.size() >= 3 && line.compare(line.size() - 2, 2, "\r\n") == 0);
        for (size_t i = 0; i < line.size(); ++i)
          if (line[i] == '\n') check(i > 0 && line[i - 1] == '\r');
      }
      break;
    case milter::kMail:
    case milter::kRcpt:
    case milter::kHelo:
    case milter::kUnknown:
      if (auto args = decode_strings(f.data)) {
        check(!args->empty());
        tx.sender = strip_angle_brackets((*args)[0]);
        check(declared_size(*args) >= 0);
      }
      apply_envelope_macros(macros, tx);
      break;
    default:
      break;
  }

  // Replies built from hostile text.
  Verdict v;
  v.applied = v.action = static_cast<Action>(flags % 5);
  v.permanent_ban = flags & 0x20;
  v.standalone = flags & 0x40 ? Standalone::unknown_recipient : Standalone::none;
  v.reply_text = flags & 0x80 ? f.data : std::string();
  v.reason = f.data;
  v.score = static_cast<double>(f.data.size()) / 7.0;
  v.symbols.push_back({f.data.substr(0, 300), 1.5, Family::rfc, "", false});
  std::string out;
  bool refused = append_refusal(v, static_cast<Stage>((flags >> 3) % 6), out);
  if (refused) {
    auto r = replies(out);
    check(r.size() == 1 && r[0].cmd == milter::kReplyCode);
    check_reply_text(r[0].data);
  }
  out.clear();
  MilterNegotiated n = *negotiate({6, 0x1ff, flags & 2 ? 0x100400u : 0u});
  append_eom_edits(flags & 4 ? nullptr : &v, spam, n, out);
  for (const auto& r : replies(out)) {
    check(r.cmd == milter::kReplyAddHeader || r.cmd == milter::kReplyChangeHeader);
    check(!r.data.empty() && r.data.back() == '\0');
    for (size_t i = 0; i < r.data.size(); ++i) {
      auto c = static_cast<unsigned char>(r.data[i]);
      if (c == '\n')
        check(i + 1 < r.data.size() && (r.data[i + 1] == '\t' || r.data[i + 1] == ' '));
      else if (i >= 4 || r.cmd == milter::kReplyAddHeader)
        check(c == 0 || c >= 0x20 || c == '\t');
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t step = data[0] % 17;  // 0: all at once
  const uint8_t flags = data[1];
  std::string_view input(reinterpret_cast<const char*>(data) + 2, size - 2);

  Outcome whole = read_frames(input, 0);
  Outcome split = read_frames(input, step == 0 ? 1 : step);
  check(whole == split);

  MilterMacros macros;
  SpamHeaderTracker spam;
  for (const auto& f : whole.frames) exercise(f, flags, macros, spam);
  return 0;
}
