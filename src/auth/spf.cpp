// check_host() (RFC 7208 §4): the evaluator. Record syntax and macros live in spf_record.cpp.
//
// GCC 12 coroutine bug (PR 100611): every co_await below awaits a named variable, never a
// temporary built in the same expression.
#include "auth/spf.h"
#include "core/strings.h"

#include <ctime>
#include <utility>
#include <vector>

#include "auth/spf_record.h"

namespace spamward {
namespace {

namespace asio = boost::asio;

// RFC 7208 §4.3: a <domain> we may evaluate at all. Malformed names and single labels give
// "none" without a query; so do address literals ("[192.0.2.1]"), which are not names.
bool valid_check_domain(std::string_view d) {
  if (!d.empty() && d.back() == '.') d.remove_suffix(1);
  if (d.empty() || d.size() > 253 || d.front() == '[') return false;
  size_t labels = 0;
  size_t start = 0;
  for (size_t i = 0; i <= d.size(); ++i) {
    if (i < d.size() && (d[i] < 0x21 || d[i] > 0x7e)) return false;
    if (i == d.size() || d[i] == '.') {
      size_t len = i - start;
      if (len == 0 || len > 63) return false;
      ++labels;
      start = i + 1;
    }
  }
  return labels >= 2;
}

// State shared by one check_host() call and every include/redirect under it: the limits of
// §4.6.4 count over the whole evaluation.
struct Session {
  Session(Resolver& r, const IpAddress& a, std::string h, SpfOptions o)
      : dns(r), ip(a), helo(std::move(h)), opt(std::move(o)) {}
  Resolver& dns;
  IpAddress ip;
  std::string sender;
  std::string local_part;
  std::string sender_domain;
  std::string helo;
  SpfOptions opt;
  int64_t now = 0;
  int dns_terms = 0;
  int voids = 0;
  std::optional<std::vector<std::string>> validated;  // %{p}: computed on first use
};

SpfResult make(SpfCode code, std::string domain, std::string problem = {}) {
  SpfResult r;
  r.code = code;
  r.domain = std::move(domain);
  r.problem = std::move(problem);
  return r;
}

// What a mechanism did: matched, did not, or ended the evaluation with an error result.
struct Match {
  enum class State { no, yes, error } state = State::no;
  SpfResult error;
  static Match yes() { return Match{State::yes, {}}; }
  static Match no() { return Match{State::no, {}}; }
  static Match fail(SpfResult r) { return Match{State::error, std::move(r)}; }
};

DnsType address_type(const IpAddress& ip) {
  return ip.is_v4() ? DnsType::a : DnsType::aaaa;
}

bool prefix_match(const IpAddress& ip, const std::array<uint8_t, 16>& net, int bits) {
  const auto& b = ip.bytes();
  size_t full = static_cast<size_t>(bits / 8);
  for (size_t i = 0; i < full; ++i) {
    if (b[i] != net[i]) return false;
  }
  int rest = bits % 8;
  if (rest == 0) return true;
  auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (b[full] & mask) == (net[full] & mask);
}

// Whether any address record text matches the client within the CIDR length for its family.
bool any_address_matches(const std::vector<std::string>& records, const IpAddress& ip, int cidr4,
                         int cidr6) {
  for (const auto& text : records) {
    auto a = IpAddress::parse(text);
    if (!a || a->family() != ip.family()) continue;
    if (prefix_match(ip, a->bytes(), ip.is_v4() ? cidr4 : cidr6)) return true;
  }
  return false;
}

bool is_timeout_or_error(const DnsAnswer& a) {
  return !a.definitive();
}

std::string dns_problem(const std::string& name, const DnsAnswer& a) {
  return "DNS " + std::string(a.status == DnsAnswer::Status::timeout ? "timeout" : "failure") +
         " for " + name;
}

// The client's validated names (§5.5): PTR names whose A/AAAA records include the client.
// Only the first max_ptr_names are tried; names whose lookup fails are skipped. When
// `suffix` is set, only names equal to it or under it are validated (the ptr mechanism needs
// no others, and it saves queries).
asio::awaitable<std::vector<std::string>> validated_names(Session& s, const std::string* suffix) {
  std::vector<std::string> out;
  std::string reverse = spf_reverse_name(s.ip);
  auto ptr_query = s.dns.query(reverse, DnsType::ptr);
  DnsAnswer ptrs = co_await std::move(ptr_query);
  if (!ptrs.ok()) co_return out;
  int tried = 0;
  for (const auto& raw : ptrs.records) {
    if (tried >= s.opt.max_ptr_names) break;
    ++tried;
    auto name = spf_target_name(raw);
    if (!name) continue;
    if (suffix && *name != *suffix &&
        !(name->size() > suffix->size() && name->ends_with("." + *suffix))) {
      continue;
    }
    auto addr_query = s.dns.query(*name, address_type(s.ip));
    DnsAnswer addrs = co_await std::move(addr_query);
    if (!addrs.ok()) continue;
    if (any_address_matches(addrs.records, s.ip, 32, 128)) out.push_back(*name);
  }
  co_return out;
}

// %{p} for the current domain (§7.3): a validated name equal to the domain, else one under it,
// else any validated name, else "unknown".
std::string pick_validated(const std::vector<std::string>& names, const std::string& domain) {
  std::string d = to_lower(domain);
  if (!d.empty() && d.back() == '.') d.pop_back();
  for (const auto& n : names) {
    if (n == d) return n;
  }
  for (const auto& n : names) {
    if (n.size() > d.size() && n.ends_with("." + d)) return n;
  }
  return names.empty() ? "unknown" : names.front();
}

asio::awaitable<std::optional<std::string>> expand(Session& s, std::string_view spec,
                                                   const std::string& domain, MacroMode mode) {
  MacroContext ctx;
  ctx.sender = s.sender;
  ctx.local_part = s.local_part;
  ctx.sender_domain = s.sender_domain;
  ctx.domain = domain;
  ctx.ip = s.ip;
  ctx.helo = s.helo;
  ctx.receiver = s.opt.receiver;
  ctx.now_unix = s.now;
  if (uses_p_macro(spec)) {
    if (!s.validated) {
      auto lookup = validated_names(s, nullptr);
      s.validated = co_await std::move(lookup);
    }
    ctx.validated = pick_validated(*s.validated, domain);
  }
  co_return expand_spf_macros(spec, ctx, mode);
}

// The query name for a mechanism's domain-spec (the current domain when empty). nullopt when
// the expansion is not a usable name: RFC 7208 leaves that case open, and treating it as a
// non-existent name (no match) is what §4.3 does for the initial domain.
asio::awaitable<std::optional<std::string>> target_of(Session& s, const std::string& spec,
                                                      const std::string& domain) {
  if (spec.empty()) co_return spf_target_name(domain);
  auto expansion = expand(s, spec, domain, MacroMode::domain);
  std::optional<std::string> expanded = co_await std::move(expansion);
  if (!expanded) co_return std::nullopt;
  co_return spf_target_name(*expanded);
}

// §6.2: the explanation for a fail. Any problem with exp= (expansion, DNS, not exactly one
// record, a bad explain-string) falls back to the default explanation.
asio::awaitable<std::string> explain(Session& s, const std::optional<std::string>& exp,
                                     const std::string& domain) {
  std::string text;
  if (exp) {
    auto target_lookup = target_of(s, *exp, domain);
    std::optional<std::string> target = co_await std::move(target_lookup);
    if (target) {
      auto txt_query = s.dns.query(*target, DnsType::txt);
      DnsAnswer txt = co_await std::move(txt_query);
      if (txt.ok() && txt.records.size() == 1) {
        auto expansion = expand(s, txt.records.front(), domain, MacroMode::explanation);
        std::optional<std::string> expanded = co_await std::move(expansion);
        if (expanded) text = std::move(*expanded);
      }
    }
  }
  if (text.empty()) {
    auto expansion = expand(s, s.opt.default_explanation, domain, MacroMode::explanation);
    std::optional<std::string> expanded = co_await std::move(expansion);
    text = expanded ? std::move(*expanded) : s.opt.default_explanation;
  }
  if (text.size() > s.opt.max_explanation_length) text.resize(s.opt.max_explanation_length);
  co_return text;
}

asio::awaitable<SpfResult> evaluate(Session& s, std::string domain, int depth, bool want_exp);

// Counts a DNS-querying term; false once the §4.6.4 limit is passed.
bool count_dns_term(Session& s) {
  return ++s.dns_terms <= s.opt.max_dns_terms;
}

// Counts a void lookup; false once the §4.6.4 void limit is passed.
bool count_void(Session& s) {
  return ++s.voids <= s.opt.max_void_lookups;
}

asio::awaitable<Match> match_mechanism(Session& s, const SpfMechanism& m, const std::string& domain,
                                       int depth) {
  using Kind = SpfMechanismKind;
  switch (m.kind) {
    case Kind::all:
      co_return Match::yes();
    case Kind::ip4:
      co_return s.ip.is_v4() && prefix_match(s.ip, m.network, m.cidr4) ? Match::yes() : Match::no();
    case Kind::ip6:
      co_return s.ip.is_v6() && prefix_match(s.ip, m.network, m.cidr6) ? Match::yes() : Match::no();
    default:
      break;
  }

  if (!count_dns_term(s)) {
    co_return Match::fail(
        make(SpfCode::permerror, domain,
             "more than " + std::to_string(s.opt.max_dns_terms) + " DNS-querying terms"));
  }
  auto target_lookup = target_of(s, m.domain_spec, domain);
  std::optional<std::string> target = co_await std::move(target_lookup);

  if (m.kind == Kind::include) {
    // An unusable target evaluates as a malformed domain: none, hence permerror below.
    std::string name = target ? *target : std::string();
    auto sub_eval = evaluate(s, name, depth + 1, false);
    SpfResult sub = co_await std::move(sub_eval);
    switch (sub.code) {
      case SpfCode::pass:
        co_return Match::yes();
      case SpfCode::fail:
      case SpfCode::softfail:
      case SpfCode::neutral:
        co_return Match::no();
      case SpfCode::temperror:
        co_return Match::fail(std::move(sub));
      case SpfCode::permerror:
        co_return Match::fail(std::move(sub));
      case SpfCode::none:
        co_return Match::fail(
            make(SpfCode::permerror, domain, "include of " + name + " without SPF record"));
    }
    co_return Match::no();
  }

  if (!target) co_return Match::no();

  if (m.kind == Kind::ptr) {
    // §5.5: a failed PTR lookup is no match, and missing PTRs are the client's business, not
    // the publisher's, so they do not count as void lookups.
    auto lookup = validated_names(s, &*target);
    std::vector<std::string> names = co_await std::move(lookup);
    co_return names.empty() ? Match::no() : Match::yes();
  }

  DnsType type = m.kind == Kind::mx       ? DnsType::mx
                 : m.kind == Kind::exists ? DnsType::a
                                          : address_type(s.ip);
  auto query = s.dns.query(*target, type);
  DnsAnswer answer = co_await std::move(query);
  if (is_timeout_or_error(answer)) {
    co_return Match::fail(make(SpfCode::temperror, domain, dns_problem(*target, answer)));
  }
  if (!answer.ok() || answer.records.empty()) {
    if (!count_void(s)) {
      co_return Match::fail(
          make(SpfCode::permerror, domain,
               "more than " + std::to_string(s.opt.max_void_lookups) + " void lookups"));
    }
    co_return Match::no();
  }

  if (m.kind == Kind::exists) co_return Match::yes();
  if (m.kind == Kind::a) {
    co_return any_address_matches(answer.records, s.ip, m.cidr4, m.cidr6) ? Match::yes()
                                                                          : Match::no();
  }

  // mx: §4.6.4 — more than max_mx_names exchanges is permerror; a null MX ("" or ".") is no
  // exchange at all.
  if (answer.records.size() > static_cast<size_t>(s.opt.max_mx_names)) {
    co_return Match::fail(
        make(SpfCode::permerror, domain,
             "more than " + std::to_string(s.opt.max_mx_names) + " MX names for " + *target));
  }
  for (const auto& raw : answer.records) {
    auto exchange = spf_target_name(raw);
    if (!exchange) continue;
    auto addr_query = s.dns.query(*exchange, address_type(s.ip));
    DnsAnswer addrs = co_await std::move(addr_query);
    if (is_timeout_or_error(addrs)) {
      co_return Match::fail(make(SpfCode::temperror, domain, dns_problem(*exchange, addrs)));
    }
    if (addrs.ok() && any_address_matches(addrs.records, s.ip, m.cidr4, m.cidr6)) {
      co_return Match::yes();
    }
  }
  co_return Match::no();
}

SpfCode code_of(SpfQualifier q) {
  switch (q) {
    case SpfQualifier::pass:
      return SpfCode::pass;
    case SpfQualifier::fail:
      return SpfCode::fail;
    case SpfQualifier::softfail:
      return SpfCode::softfail;
    case SpfQualifier::neutral:
      return SpfCode::neutral;
  }
  return SpfCode::neutral;
}

asio::awaitable<SpfResult> evaluate(Session& s, std::string domain, int depth, bool want_exp) {
  if (depth > s.opt.max_depth) {
    co_return make(SpfCode::permerror, domain, "include/redirect nested too deep");
  }
  if (!valid_check_domain(domain)) co_return make(SpfCode::none, domain, "malformed domain");
  if (domain.back() == '.') domain.pop_back();
  std::string name = to_lower(domain);

  auto txt_query = s.dns.query(name, DnsType::txt);
  DnsAnswer txt = co_await std::move(txt_query);
  if (is_timeout_or_error(txt)) co_return make(SpfCode::temperror, domain, dns_problem(name, txt));

  const std::string* found = nullptr;
  for (const auto& record : txt.records) {
    if (!is_spf_record(record)) continue;
    if (found) co_return make(SpfCode::permerror, domain, "more than one SPF record");
    found = &record;
  }
  if (!found) co_return make(SpfCode::none, domain, "no SPF record");
  if (found->size() > s.opt.max_record_length) {
    co_return make(SpfCode::permerror, domain,
                   "SPF record longer than " + std::to_string(s.opt.max_record_length));
  }
  SpfParse parsed = parse_spf_record(*found);
  if (!parsed.record) co_return make(SpfCode::permerror, domain, parsed.error);
  const SpfRecord& record = *parsed.record;

  for (const auto& m : record.mechanisms) {
    auto matching = match_mechanism(s, m, domain, depth);
    Match result = co_await std::move(matching);
    if (result.state == Match::State::error) co_return std::move(result.error);
    if (result.state == Match::State::no) continue;
    SpfResult r = make(code_of(m.qualifier), domain);
    r.mechanism = m.text;
    if (r.code == SpfCode::fail && want_exp) {
      auto explanation = explain(s, record.exp, domain);
      r.explanation = co_await std::move(explanation);
    }
    co_return r;
  }

  if (record.redirect) {
    if (!count_dns_term(s)) {
      co_return make(SpfCode::permerror, domain,
                     "more than " + std::to_string(s.opt.max_dns_terms) + " DNS-querying terms");
    }
    auto target_lookup = target_of(s, *record.redirect, domain);
    std::optional<std::string> target = co_await std::move(target_lookup);
    std::string next = target ? *target : std::string();
    // The redirect target's result, explanation included, replaces ours (§6.1, §6.2).
    auto sub_eval = evaluate(s, next, depth + 1, want_exp);
    SpfResult sub = co_await std::move(sub_eval);
    if (sub.code == SpfCode::none) {
      co_return make(SpfCode::permerror, domain, "redirect to " + next + " without SPF record");
    }
    co_return sub;
  }
  co_return make(SpfCode::neutral, domain);  // §4.7: no match, no redirect
}

}  // namespace

std::string_view to_string(SpfCode code) {
  switch (code) {
    case SpfCode::none:
      return "none";
    case SpfCode::neutral:
      return "neutral";
    case SpfCode::pass:
      return "pass";
    case SpfCode::fail:
      return "fail";
    case SpfCode::softfail:
      return "softfail";
    case SpfCode::temperror:
      return "temperror";
    case SpfCode::permerror:
      return "permerror";
  }
  return "?";
}

SpfIdentity spf_identity(std::string_view mail_from, std::string_view helo) {
  SpfIdentity id;
  if (mail_from.empty()) {
    id.domain = std::string(helo);
    id.sender = "postmaster@" + std::string(helo);
    id.is_helo = true;
    return id;
  }
  size_t at = mail_from.rfind('@');
  id.domain = std::string(at == std::string_view::npos ? mail_from : mail_from.substr(at + 1));
  id.sender = std::string(mail_from);
  return id;
}

asio::awaitable<SpfResult> check_host(Resolver& resolver, IpAddress ip, std::string domain,
                                      std::string sender, std::string helo, SpfOptions options) {
  // Identities longer than SMTP allows (RFC 5321 §4.5.3.1: 64 + 255) are not worth a query.
  constexpr size_t kMaxIdentity = 320;
  if (sender.size() > kMaxIdentity || helo.size() > kMaxIdentity) {
    co_return make(SpfCode::none, domain, "identity too long");
  }
  Session s(resolver, ip, std::move(helo), std::move(options));
  // §4.3: an empty local part (or none) is "postmaster".
  size_t at = sender.rfind('@');
  s.local_part = at == std::string::npos ? std::string() : sender.substr(0, at);
  s.sender_domain = at == std::string::npos ? domain : sender.substr(at + 1);
  if (s.local_part.empty()) s.local_part = "postmaster";
  s.sender = s.local_part + "@" + s.sender_domain;
  s.now = s.opt.now_unix ? *s.opt.now_unix : static_cast<int64_t>(std::time(nullptr));

  auto evaluation = evaluate(s, domain, 0, true);
  SpfResult result = co_await std::move(evaluation);
  if (result.domain.empty()) result.domain = domain;
  co_return result;
}

}  // namespace spamward
