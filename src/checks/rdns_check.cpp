#include "checks/rdns_check.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <optional>
#include <utility>
#include <vector>

#include "auth/spf_record.h"

namespace spamward {
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

std::string normalise_name(std::string_view name) {
  std::string out = to_lower(name);
  while (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t pos = s.find(sep, start);
    out.emplace_back(s.substr(start, pos == std::string_view::npos ? pos : pos - start));
    if (pos == std::string_view::npos) break;
    start = pos + 1;
  }
  return out;
}

// A token of a name: a run of letters or a run of digits; `dash_after` tells whether a '-'
// directly follows it (for the "host-12" / "ip-12" forms).
struct Token {
  std::string text;
  bool numeric = false;
  bool dash_after = false;
};

// Splits at '.', '-', '_' and at letter/digit boundaries; other characters separate too.
std::vector<Token> tokens_of(std::string_view s) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (!is_digit(c) && !is_alpha(c)) {
      if (c == '-' && !out.empty() && i > 0 && (is_digit(s[i - 1]) || is_alpha(s[i - 1]))) {
        out.back().dash_after = true;
      }
      ++i;
      continue;
    }
    bool digits = is_digit(c);
    size_t j = i;
    while (j < s.size() && (digits ? is_digit(s[j]) : is_alpha(s[j]))) ++j;
    out.push_back({std::string(s.substr(i, j - i)), digits, false});
    i = j;
  }
  return out;
}

// Rule 1: the IPv4 address's octets, written out in the name.
bool embeds_address(const std::string& name, const IpAddress& address) {
  if (!address.is_v4()) return false;
  const auto& b = address.bytes();
  std::array<int, 4> fwd{b[0], b[1], b[2], b[3]};
  std::array<int, 4> rev{b[3], b[2], b[1], b[0]};

  std::vector<Token> toks = tokens_of(name);
  std::vector<int> nums;  // numeric tokens in order; -1 breaks a run (a letter token)
  for (const auto& t : toks) {
    if (!t.numeric || t.text.size() > 3) {
      nums.push_back(-1);
      continue;
    }
    nums.push_back(std::stoi(t.text));
  }
  for (size_t i = 0; i + 4 <= nums.size(); ++i) {
    bool f = true, r = true;
    for (size_t k = 0; k < 4; ++k) {
      f = f && nums[i + k] == fwd[k];
      r = r && nums[i + k] == rev[k];
    }
    if (f || r) return true;
  }

  char padded[16];
  std::snprintf(padded, sizeof padded, "%03d%03d%03d%03d", fwd[0], fwd[1], fwd[2], fwd[3]);
  char padded_rev[16];
  std::snprintf(padded_rev, sizeof padded_rev, "%03d%03d%03d%03d", rev[0], rev[1], rev[2], rev[3]);
  for (const auto& t : toks) {
    if (t.numeric && (t.text == padded || t.text == padded_rev)) return true;
  }

  // Hex: 8 hex digits inside one label, so "c0000210" in "c0000210.pool.example" counts.
  char hex[16];
  std::snprintf(hex, sizeof hex, "%02x%02x%02x%02x", fwd[0], fwd[1], fwd[2], fwd[3]);
  for (const auto& label : split(name, '.')) {
    if (label.find(hex) != std::string::npos) return true;
  }
  return false;
}

// Second-level labels under which ccTLDs register names (example.co.uk, example.com.au).
bool is_cc_second_level(std::string_view label) {
  static constexpr std::array<std::string_view, 14> kSecond = {
      "co", "com", "net", "org", "ac", "gov", "edu", "ne", "or", "go", "gen", "ltd", "plc", "nom"};
  return std::find(kSecond.begin(), kSecond.end(), label) != kSecond.end();
}

bool is_dynamic_word(std::string_view w) {
  static constexpr std::array<std::string_view, 20> kWords = {
      "dynamic", "dyn",     "dynip",    "pool", "dsl",       "adsl",       "vdsl",
      "xdsl",    "cable",   "dhcp",     "ppp",  "pppoe",     "dialup",     "dial",
      "client",  "clients", "customer", "cust", "broadband", "residential"};
  return std::find(kWords.begin(), kWords.end(), w) != kWords.end();
}

// First labels that name a mail host: such a host is set up as a server by its owner, whatever
// its provider's zone is called.
bool is_mail_role(std::string_view w) {
  static constexpr std::array<std::string_view, 16> kRoles = {
      "mail",   "mx", "smtp",    "mta",    "relay", "out",     "outbound", "mailout",
      "mailer", "gw", "gateway", "mailgw", "mxout", "smtpout", "email",    "postfix"};
  return std::find(kRoles.begin(), kRoles.end(), w) != kRoles.end();
}

// Rule 2: a dynamic label part in the host part of the name.
std::string dynamic_label(const std::string& name) {
  std::vector<std::string> labels = split(name, '.');
  size_t domain_labels = 2;
  if (labels.size() >= 3 && labels.back().size() == 2 &&
      is_cc_second_level(labels[labels.size() - 2])) {
    domain_labels = 3;
  }
  if (labels.size() <= domain_labels) return "";
  const std::string& first = labels.front();
  if (std::none_of(first.begin(), first.end(), is_digit)) return "";
  std::vector<Token> first_tokens = tokens_of(first);
  if (!first_tokens.empty() && !first_tokens.front().numeric &&
      is_mail_role(first_tokens.front().text)) {
    return "";
  }
  for (size_t l = 0; l + domain_labels < labels.size(); ++l) {
    std::vector<Token> toks = tokens_of(labels[l]);
    for (size_t i = 0; i < toks.size(); ++i) {
      const Token& t = toks[i];
      if (t.numeric) continue;
      if (is_dynamic_word(t.text)) return t.text;
      if ((t.text == "host" || t.text == "ip") && t.dash_after && i + 1 < toks.size() &&
          toks[i + 1].numeric) {
        return t.text + "-";
      }
    }
  }
  return "";
}

bool is_bracketed_or_unknown(std::string_view s) {
  return s.empty() || s == "unknown" || s.front() == '[';
}

void add_dynamic(std::vector<Symbol>& out, const std::string& name, const IpAddress& address) {
  std::string reason = dynamic_name_reason(name, address);
  if (!reason.empty()) out.push_back(known_symbol("RDNS_DYNAMIC", name + ": " + reason));
}

Symbol rdns_none(const IpAddress& address, std::string detail) {
  return known_symbol("RDNS_NONE", std::move(detail), address.is_v6() ? kRdnsNoneV6MaxScore : -1.0);
}

// What the MTA's facts decide, or nullopt when they are absent and a lookup is needed.
std::optional<std::vector<Symbol>> from_mta_facts(const Transaction& tx, const IpAddress& address) {
  std::string client_name = normalise_name(tx.client_name);
  std::string reverse = normalise_name(tx.reverse_client_name);
  std::vector<Symbol> out;
  if (!reverse.empty()) {
    if (is_bracketed_or_unknown(reverse)) {
      out.push_back(rdns_none(address, "MTA: no PTR for " + address.to_string()));
      return out;
    }
    if (is_bracketed_or_unknown(client_name)) {
      out.push_back(
          known_symbol("FCRDNS_MISMATCH",
                       "MTA: PTR " + reverse + " does not resolve to " + address.to_string()));
      add_dynamic(out, reverse, address);
      return out;
    }
    add_dynamic(out, client_name, address);
    return out;
  }
  if (!is_bracketed_or_unknown(client_name)) {
    add_dynamic(out, client_name, address);
    return out;
  }
  return std::nullopt;
}

bool skip(const Transaction& tx) {
  return !tx.client_address || tx.authenticated() || tx.client_address->is_loopback();
}

class RdnsCheck final : public Check {
 public:
  explicit RdnsCheck(Resolver* resolver) : resolver_(resolver) {}

  std::string_view name() const override { return "rdns"; }
  Stage stage() const override { return Stage::connect; }
  Family family() const override { return Family::rfc; }

  std::optional<std::vector<Symbol>> run_now(const Transaction& tx) override {
    if (skip(tx)) return std::vector<Symbol>{};
    auto facts = from_mta_facts(tx, *tx.client_address);
    if (facts) return facts;
    if (!resolver_) return std::vector<Symbol>{};
    return std::nullopt;  // run() looks it up
  }

  boost::asio::awaitable<std::vector<Symbol>> run(const Transaction& tx) override {
    std::vector<Symbol> out;
    if (skip(tx)) co_return out;
    const IpAddress address = *tx.client_address;
    auto facts = from_mta_facts(tx, address);
    if (facts) co_return std::move(*facts);
    if (!resolver_) co_return out;

    auto ptr_query = resolver_->query(spf_reverse_name(address), DnsType::ptr);
    DnsAnswer ptr = co_await std::move(ptr_query);
    if (!ptr.definitive()) co_return out;  // a timeout is not an answer
    std::vector<std::string> names;
    for (const auto& r : ptr.records) {
      std::string n = normalise_name(r);
      if (!n.empty() && std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
    }
    if (names.empty()) {
      out.push_back(rdns_none(address, "no PTR for " + address.to_string()));
      co_return out;
    }

    const DnsType forward_type = address.is_v4() ? DnsType::a : DnsType::aaaa;
    std::string confirmed;
    bool all_answered = true;
    for (size_t i = 0; i < names.size() && i < kMaxPtrNames; ++i) {
      auto forward_query = resolver_->query(names[i], forward_type);
      DnsAnswer forward = co_await std::move(forward_query);
      if (!forward.definitive()) {
        // DNS in trouble: further names would likely fail too, and the stage deadline is
        // better spent elsewhere.
        all_answered = false;
        break;
      }
      for (const auto& rec : forward.records) {
        auto a = IpAddress::parse(rec);
        if (a && *a == address) confirmed = names[i];
      }
      if (!confirmed.empty()) break;
    }
    if (confirmed.empty() && all_answered) {
      out.push_back(
          known_symbol("FCRDNS_MISMATCH",
                       "PTR " + names.front() + " does not resolve to " + address.to_string()));
    }
    add_dynamic(out, confirmed.empty() ? names.front() : confirmed, address);
    co_return out;
  }

 private:
  Resolver* resolver_;
};

}  // namespace

std::string dynamic_name_reason(std::string_view raw, const IpAddress& address) {
  std::string name = normalise_name(raw);
  if (name.empty() || name == "unknown" || name.front() == '[') return "";
  if (embeds_address(name, address)) return "embeds the address";
  std::string label = dynamic_label(name);
  if (!label.empty()) return "dynamic label '" + label + "'";
  return "";
}

std::unique_ptr<Check> make_rdns_check(const Env& env) {
  return std::make_unique<RdnsCheck>(env.resolver);
}

}  // namespace spamward
