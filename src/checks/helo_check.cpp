#include "checks/helo_check.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "core/ip_address.h"
#include "core/strings.h"

namespace spamward {
namespace {

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && to_lower(s.substr(0, prefix.size())) == prefix;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// "[192.0.2.1]" -> 192.0.2.1, "[IPv6:2001:db8::1]" -> 2001:db8::1. A bracketed IPv6 address
// without the "IPv6:" tag is accepted too: common, and harmless.
std::optional<IpAddress> parse_literal(std::string_view s) {
  if (s.size() < 3 || s.front() != '[' || s.back() != ']') return std::nullopt;
  std::string_view inner = s.substr(1, s.size() - 2);
  if (starts_with_ci(inner, "ipv6:")) {
    auto a = IpAddress::parse(inner.substr(5));
    if (!a) return std::nullopt;
    return a;
  }
  return IpAddress::parse(inner);
}

// What the HELO is, decided without I/O.
struct HeloFacts {
  std::vector<Symbol> symbols;
  std::string lookup_name;  // a valid FQDN to look up for HELO_NO_RESOLVE; "" for none
};


class HeloCheck final : public Check {
 public:
  HeloCheck(Resolver* resolver, const std::vector<std::string>& our_names) : resolver_(resolver) {
    for (const auto& raw : our_names) {
      std::string_view n = trim(raw);
      if (auto lit = parse_literal(n)) {
        our_addresses_.push_back(*lit);
      } else if (auto a = IpAddress::parse(n)) {
        our_addresses_.push_back(*a);
      } else {
        std::string name = to_lower(n);
        while (!name.empty() && name.back() == '.') name.pop_back();
        if (!name.empty()) our_hostnames_.push_back(std::move(name));
      }
    }
  }

  std::string_view name() const override { return "helo"; }
  Stage stage() const override { return Stage::helo; }
  Family family() const override { return Family::rfc; }

  std::optional<std::vector<Symbol>> run_now(const Transaction& tx) override {
    HeloFacts facts = judge(tx);
    if (!facts.lookup_name.empty()) return std::nullopt;
    return std::move(facts.symbols);
  }

  boost::asio::awaitable<std::vector<Symbol>> run(const Transaction& tx) override {
    HeloFacts facts = judge(tx);
    if (facts.lookup_name.empty()) co_return std::move(facts.symbols);
    auto lookup = resolver_->query(facts.lookup_name, DnsType::a);
    DnsAnswer answer = co_await std::move(lookup);
    if (answer.status == DnsAnswer::Status::nxdomain) {
      facts.symbols.push_back(
          known_symbol("HELO_NO_RESOLVE", printable(facts.lookup_name, 100) + ": NXDOMAIN"));
    }
    co_return std::move(facts.symbols);
  }

 private:
  bool is_ours(const IpAddress& a) const {
    return std::find(our_addresses_.begin(), our_addresses_.end(), a) != our_addresses_.end();
  }

  HeloFacts judge(const Transaction& tx) const {
    HeloFacts facts;
    std::string_view helo = trim(tx.helo);
    if (helo.empty() || tx.authenticated()) return facts;
    if (tx.client_address && tx.client_address->is_loopback()) return facts;
    // Our own host (not in trusted) may of course call itself by our name.
    const bool client_is_us = tx.client_address && is_ours(*tx.client_address);
    auto& out = facts.symbols;

    std::optional<IpAddress> address;
    if (helo.front() == '[') {
      address = parse_literal(helo);
      if (!address) {
        out.push_back(
            known_symbol("HELO_NOT_FQDN", printable(helo, 100) + ": malformed address literal"));
        return facts;
      }
    } else if ((address = IpAddress::parse(helo))) {
      out.push_back(known_symbol("HELO_BARE_IP", printable(helo, 100) + ": address not in [brackets]"));
    }
    if (address) {
      if (!client_is_us && is_ours(*address)) {
        out.push_back(known_symbol("HELO_FORGED", printable(helo, 100) + ": one of our addresses"));
      }
      return facts;
    }

    std::string name = to_lower(helo);
    if (!name.empty() && name.back() == '.') name.pop_back();
    bool forged = false;
    if (!client_is_us &&
        std::find(our_hostnames_.begin(), our_hostnames_.end(), name) != our_hostnames_.end()) {
      out.push_back(known_symbol("HELO_FORGED", printable(helo, 100) + ": one of our names"));
      forged = true;
    }
    if (!is_fqdn_hostname(name)) {
      out.push_back(
          known_symbol("HELO_NOT_FQDN", printable(helo, 100) + ": not a fully qualified host name"));
      return facts;
    }
    // A forged name is likely ours and resolves; the lookup would add nothing useful.
    if (resolver_ && !forged) facts.lookup_name = name;
    return facts;
  }

  Resolver* resolver_;
  std::vector<IpAddress> our_addresses_;
  std::vector<std::string> our_hostnames_;
};

}  // namespace

bool is_fqdn_hostname(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty() || name.size() > 253) return false;
  size_t dots = 0;
  std::string_view last_label;
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('.', start);
    if (end == std::string_view::npos) end = name.size();
    std::string_view label = name.substr(start, end - start);
    if (label.empty() || label.size() > 63) return false;
    if (label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      if (!is_alnum(c) && c != '-') return false;
    }
    last_label = label;
    if (end == name.size()) break;
    ++dots;
    start = end + 1;
  }
  if (dots == 0) return false;
  // An all-numeric top label is an address fragment ("1.2.3"), never a host name.
  return std::any_of(last_label.begin(), last_label.end(),
                     [](char c) { return c < '0' || c > '9'; });
}

std::unique_ptr<Check> make_helo_check(const Env& env, std::vector<std::string> our_names) {
  return std::make_unique<HeloCheck>(env.resolver, our_names);
}

}  // namespace spamward
