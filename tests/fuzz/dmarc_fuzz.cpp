// libFuzzer target for the pure DMARC part (auth/dmarc.h) and the Authentication-Results
// rendering (auth/authentication_results.h).
//
// Input: the whole text is a DMARC record (and, split at the first newline, two domains).
// Besides the sanitizers, it checks the properties the headers promise:
// - parsing never throws; a record is only ever accepted when is_dmarc_record() holds and it
//   fits max_record; pct is within 0..100; a defaulted policy is none;
// - effective_policy() is never stricter than p= / sp=;
// - the organisational domain of a name is a suffix of the normalised name, and is its own
//   organisational domain; a name aligns with itself (strict and relaxed) unless empty, and
//   alignment is symmetric;
// - a rendered Authentication-Results value holds no control or non-ASCII byte, whatever went
//   in.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "auth/authentication_results.h"
#include "auth/dmarc.h"

using namespace spamward;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

int rank(DmarcPolicy p) {
  return static_cast<int>(p);
}

void check_domain(std::string_view d) {
  std::string n = normalize_domain(d);
  std::string org = organizational_domain(d);
  check(org.size() <= n.size());
  check(n.ends_with(org));
  check(organizational_domain(org) == org);
  check(dmarc_aligned(d, d, DmarcAlignment::strict) == !n.empty());
  check(dmarc_aligned(d, d, DmarcAlignment::relaxed) == !n.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);

  DmarcLimits limits;
  DmarcRecordParse p = parse_dmarc_record(text, limits);
  if (p.record) {
    check(is_dmarc_record(text));
    check(text.size() <= limits.max_record);
    check(p.error.empty());
    const DmarcRecord& r = *p.record;
    check(r.percent >= 0 && r.percent <= 100);
    if (r.policy_defaulted) check(r.policy == DmarcPolicy::none);
    check(rank(effective_policy(r, false)) <= rank(r.policy));
    check(rank(effective_policy(r, true)) <= rank(r.subdomain_policy.value_or(r.policy)));
  } else {
    check(!p.error.empty());
  }
  DmarcLimits small;
  small.max_record = 64;
  small.max_tags = 3;
  DmarcRecordParse q = parse_dmarc_record(text, small);
  if (q.record) check(text.size() <= 64);

  size_t nl = text.find('\n');
  std::string_view a = text.substr(0, nl);
  std::string_view b = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
  if (a.size() <= 300 && b.size() <= 300) {
    check_domain(a);
    check_domain(b);
    for (auto mode : {DmarcAlignment::strict, DmarcAlignment::relaxed}) {
      check(dmarc_aligned(a, b, mode) == dmarc_aligned(b, a, mode));
    }
  }

  std::vector<AuthResult> results = {
      {std::string(a), std::string(b), std::string(text), {{"header", "from", std::string(a)}}},
      {"dmarc", "fail", "", {{std::string(b), std::string(a), std::string(b)}}},
  };
  std::vector<Symbol> symbols(3);
  symbols[0].name = "SPF_PASS";
  symbols[0].detail = std::string(text);
  symbols[1].name = "DKIM_INVALID";
  symbols[1].detail = std::string(b);
  symbols[2].name = "DMARC_FAIL";
  symbols[2].detail = std::string(a);
  for (const auto& r : authentication_results_from_symbols(symbols)) results.push_back(r);
  std::string rendered = render_authentication_results(a, results);
  for (char ch : rendered) {
    auto c = static_cast<unsigned char>(ch);
    check(c >= 0x20 && c < 0x7F);
  }
  return 0;
}
