// libFuzzer target for the Bayes tokenizer (bayes/tokenizer.h) on messages MessageParser
// builds from arbitrary bytes.
//
// Input: byte 0 picks the tokenizer limits (defaults, or tiny ones so every limit path runs)
// and the OSB window; the rest is the message. Besides the sanitizers, it checks the
// properties the header promises:
// - tokenize() never throws; the hashes are distinct and at most max_tokens;
// - with keep_text, texts[i] names hashes[i] (same count) and no text is longer than the
//   longest a token can be (bounded by the limits, not by the input);
// - the same message gives the same hashes, with and without keep_text;
// - the set of tokens does not change when filter headers (X-Spam-Status) are prepended;
// - normalize_text() gives valid UTF-8 for valid UTF-8 input.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "bayes/tokenizer.h"
#include "mail/charset.h"
#include "mail/message.h"

namespace {

using namespace spamward;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t selector = data[0];
  const std::string_view raw(reinterpret_cast<const char*>(data + 1), size - 1);

  TokenizerOptions o;
  o.osb_window = 1 + selector % 6;
  o.html_markup = (selector & 0x40) != 0;
  if (selector & 0x80) {
    o.max_tokens = 1 + selector % 50;
    o.max_text_bytes = selector % 200;
    o.max_header_bytes = 1 + selector % 64;
    o.max_token_bytes = 1 + selector % 16;
  }

  const Message m = parse_message(raw);
  TokenList plain, with_text;
  try {
    plain = tokenize(m, o);
    TokenizerOptions k = o;
    k.keep_text = true;
    with_text = tokenize(m, k);
  } catch (...) {
    check(false);  // documented as never throwing
  }
  check(plain.hashes.size() <= o.max_tokens);
  check(plain.hashes == with_text.hashes);
  check(with_text.texts.size() == with_text.hashes.size());
  check(plain.texts.empty());
  std::vector<uint64_t> sorted = plain.hashes;
  std::sort(sorted.begin(), sorted.end());
  check(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
  for (const auto& t : with_text.texts) {
    // Header names are cut to 64 bytes, values and words to their limits; a pair is two of them.
    check(t.size() <= 2 * (64 + 2 * o.max_header_bytes + 4 * o.max_token_bytes + 300));
  }

  // Filter headers are no evidence: prepending one changes nothing, when it parses as a field
  // of the same header block (inputs starting with a header line).
  if (!raw.empty() && !m.headers.empty() && m.defects.empty() && !raw.starts_with("From ") &&
      raw.size() < 4096 && !(selector & 0x80)) {
    std::string filtered = "X-Spam-Status: Yes, score=99 spammy words\n" + std::string(raw);
    const Message f = parse_message(filtered);
    if (f.headers.size() == m.headers.size() + 1 && f.defects.empty()) {
      std::vector<uint64_t> a = tokenize(f, o).hashes, b = plain.hashes;
      std::sort(a.begin(), a.end());
      std::sort(b.begin(), b.end());
      check(a == b);
    }
  }

  if (is_valid_utf8(raw)) check(is_valid_utf8(normalize_text(raw.substr(0, 4096))));
  return 0;
}
