// libFuzzer target for the pure DKIM verifier (auth/dkim.h): tag lists, signatures, key
// records, canonicalisation, and a whole message verified against a fixed key.
//
// Input: first byte picks the mode, the rest is the text. Besides the sanitizers, it checks
// the properties the header promises:
// - the parsers never throw; tags stay within max_tags, values within max_value, and each
//   tag's value lies inside its raw region, which lies inside the input;
// - a parsed signature's unsigned_field is the input with only bytes removed;
// - canonical headers end in CRLF; relaxed header values and bodies have no WSP before a
//   CRLF, no WSP runs and no tabs; canonical bodies never end in two CRLFs and only hold CRLF line
//   ends;
// - any split of the body into two chunks gives the same canonical body and body hash;
// - verifying a message never throws, and gives one result per signature up to the limit.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "auth/dkim.h"

using namespace spamward;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

void check_canonical_body(const std::string& out, DkimCanon canon) {
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == '\n') check(i > 0 && out[i - 1] == '\r');
    if (canon == DkimCanon::relaxed && (out[i] == ' ' || out[i] == '\t')) {
      check(out[i] == ' ');
      check(i + 1 < out.size() && out[i + 1] != ' ');
      check(out.compare(i + 1, 2, "\r\n") != 0);
    }
  }
  check(!out.ends_with("\r\n\r\n"));
  if (!out.empty()) check(out.ends_with("\r\n"));
  if (canon == DkimCanon::simple) check(!out.empty());
}

void fuzz_tags(std::string_view text) {
  DkimLimits limits;
  std::vector<DkimTag> tags;
  std::string error;
  if (parse_dkim_tag_list(text, limits, tags, error)) {
    check(tags.size() <= limits.max_tags);
    for (const auto& t : tags) {
      check(t.raw_begin <= t.raw_end && t.raw_end <= text.size());
      check(t.raw_end - t.raw_begin <= limits.max_value);
      check(t.value.data() >= text.data() + t.raw_begin);
      check(t.value.data() + t.value.size() <= text.data() + t.raw_end);
      check(!t.name.empty());
    }
  } else {
    check(!error.empty());
  }
  (void)dkim_base64_decode(text);
}

void fuzz_signature(std::string_view text) {
  std::string field = "DKIM-Signature:" + std::string(text);
  auto p = parse_dkim_signature(field);
  if (p.signature) {
    check(p.error.empty());
    const std::string& u = p.signature->unsigned_field;
    check(u.size() < field.size());
    // A prefix and a suffix of the input.
    size_t k = 0;
    while (k < u.size() && u[k] == field[k]) ++k;
    check(field.ends_with(std::string_view(u).substr(k)));
    check(!p.signature->signed_headers.empty());
  } else {
    check(!p.error.empty());
  }
}

void fuzz_key(std::string_view text) {
  auto k = parse_dkim_key(text);
  check(k.key.has_value() == k.error.empty());
  if (k.revoked) check(!k.key);
}

void fuzz_canon(std::string_view text) {
  for (DkimCanon c : {DkimCanon::simple, DkimCanon::relaxed}) {
    std::string h = dkim_canon_header(c, text);
    check(h.ends_with("\r\n"));
    if (c == DkimCanon::relaxed) {  // the value: no WSP runs, none at the end
      std::string_view value = std::string_view(h).substr(h.find(':') + 1);
      check(value.find(" \r\n") == std::string_view::npos);
      check(value.find("  ") == std::string_view::npos);
      check(value.find('\t') == std::string_view::npos);
    }
    std::string whole = dkim_canon_body(c, text);
    check_canonical_body(whole, c);
    size_t cut = text.empty() ? 0 : static_cast<unsigned char>(text[0]) % (text.size() + 1);
    DkimBodyCanonicalizer split(c);
    std::string out;
    split.feed(text.substr(0, cut), out);
    split.feed(text.substr(cut), out);
    split.finish(out);
    check(out == whole);

    std::optional<uint64_t> limit;
    if (text.size() > 1 && (text[1] & 1)) limit = static_cast<unsigned char>(text[1]);
    DkimBodyHasher a(c, DkimAlgorithm::rsa_sha256, limit), b(c, DkimAlgorithm::rsa_sha256, limit);
    a.feed(text);
    a.finish();
    b.feed(text.substr(0, cut));
    b.feed(text.substr(cut));
    b.finish();
    check(a.digest() == b.digest());
    check(a.canonical_length() == whole.size());
  }
}

void fuzz_message(std::string_view raw) {
  // Header fields by a minimal splitter, the rest as the body.
  std::vector<HeaderField> headers;
  size_t pos = 0;
  while (pos < raw.size()) {
    size_t nl = raw.find('\n', pos);
    size_t end = nl == std::string_view::npos ? raw.size() : nl + 1;
    std::string_view line = raw.substr(pos, end - pos);
    pos = end;
    if (line == "\n" || line == "\r\n") break;
    if ((line[0] == ' ' || line[0] == '\t') && !headers.empty()) {
      headers.back().raw += line;
    } else {
      headers.push_back({"", std::string(line), ""});
    }
  }
  DkimLimits limits;
  limits.max_signatures = 4;
  auto lookup = [](const std::string& name) {
    DkimKeyAnswer a;
    if (name.size() % 3 == 0) {
      a.status = DkimKeyAnswer::Status::found;
      a.records = {"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
                   "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6"
                   "NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8u"
                   "BsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w"
                   "3QIDAQAB"};
    } else {
      a.status =
          name.size() % 3 == 1 ? DkimKeyAnswer::Status::none : DkimKeyAnswer::Status::temperror;
    }
    return a;
  };
  size_t sigs = 0;
  for (const auto& h : headers) {
    if (dkim_field_is(h.raw, "DKIM-Signature")) ++sigs;
  }
  auto results =
      dkim_verify(headers, raw.substr(std::min(pos, raw.size())), 1700000000, lookup, limits);
  check(results.size() == std::min(sigs, limits.max_signatures));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    switch (data[0] % 5) {
      case 0:
        fuzz_tags(text);
        break;
      case 1:
        fuzz_signature(text);
        break;
      case 2:
        fuzz_key(text);
        break;
      case 3:
        fuzz_canon(text);
        break;
      case 4:
        fuzz_message(text);
        break;
    }
  } catch (...) {
    check(false);  // nothing here is documented to throw on input
  }
  return 0;
}
