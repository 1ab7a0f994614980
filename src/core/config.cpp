// The config loader (DESIGN §3.3). toml++ is confined to this file: it is a heavy header and
// nothing else needs to know how the config is spelled on disk.
//
// How validation is organised:
// - Every table is walked in file order (toml++ keeps keys in a sorted map, so we sort by
//   source position), and every key is handled by one handler or reported as unknown. The
//   first problem met is thrown, so "the first problem" means the first in the file, except
//   for a few cross-key rules (threshold order, redis needs url, ...) that are checked when
//   their table is finished and are reported on the later of the keys involved.
// - [scores] needs the names of the configured lists, which may come later in the file; a
//   pre-pass collects them (without validating them) so [scores] is still checked in order.
#include "core/config.h"

#include <toml++/toml.h>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <set>
#include <sstream>
#include <string_view>
#include <utility>

#include "core/listen_spec.h"
#include "core/symbol.h"

namespace spamward {

namespace {

std::string format_error(const std::string& file, int64_t line, const std::string& key,
                         const std::string& problem) {
  std::string out = file + ":" + std::to_string(line) + ": ";
  if (!key.empty()) out += "key '" + key + "': ";
  return out + problem;
}

}  // namespace

ConfigError::ConfigError(std::string file, int64_t line, std::string key, std::string problem)
    : std::runtime_error(format_error(file, line, key, problem)),
      file_(std::move(file)),
      line_(line),
      key_(std::move(key)),
      problem_(std::move(problem)) {}

NetworkConfig::NetworkConfig()
    : trusted{*Prefix::parse("127.0.0.0/8"), *Prefix::parse("::1/128")} {}

namespace {

constexpr int64_t kSecond = 1000;
constexpr int64_t kDay = 86'400'000;

bool is_bare_key(std::string_view k) {
  if (k.empty()) return false;
  return std::all_of(k.begin(), k.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

// A key as the admin would write it in TOML, so the message can be pasted back.
std::string toml_key(std::string_view k) {
  if (is_bare_key(k)) return std::string(k);
  std::string out = "\"";
  for (char c : k) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string join(const std::string& path, std::string_view key) {
  return path.empty() ? toml_key(key) : path + "." + toml_key(key);
}

std::string type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::date:
    case toml::node_type::time:
    case toml::node_type::date_time:
      return "a date/time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

std::string fmt_number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

std::string in_quotes(std::string_view s) {
  return "\"" + std::string(s) + "\"";
}

// Edit distance counting an adjacent transposition as one edit ("stroe" -> "store"), for
// "did you mean" hints on misspelt keys and symbols.
size_t distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

// The candidate `name` was most likely meant as, or "" when none is close: a misspelling
// (short names allow one edit, longer ones two) or a truncation ("timeout" for "timeout_ms").
std::string closest(std::string_view name, const std::vector<std::string_view>& candidates) {
  size_t allowed = name.size() <= 4 ? 1 : 2;
  std::string_view best;
  size_t best_distance = allowed + 1;
  for (std::string_view c : candidates) {
    size_t d = distance(name, c);
    if (name.size() >= 4 && c.rfind(name, 0) == 0) d = std::min(d, allowed);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  return std::string(best);
}

// A DNS name as written in a zone or domain list: labels of letters, digits, '-' and '_'
// (some DNSBL zones use '_'), at most 63 bytes each and 253 in all; one trailing dot allowed.
bool is_dns_name(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty() || name.size() > 253) return false;
  size_t start = 0;
  while (true) {
    size_t dot = name.find('.', start);
    std::string_view label =
        name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    if (!is_bare_key(label)) return false;  // same alphabet: [A-Za-z0-9_-]
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

int64_t line_of(const toml::node& n) {
  return static_cast<int64_t>(n.source().begin.line);
}

struct Entry {
  const toml::key* key;
  const toml::node* node;
};

// A table's entries in the order they appear in the file.
std::vector<Entry> in_file_order(const toml::table& t) {
  std::vector<Entry> out;
  for (auto&& [k, v] : t) out.push_back({&k, &v});
  std::stable_sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) {
    const auto& sa = a.key->source().begin;
    const auto& sb = b.key->source().begin;
    return std::pair(sa.line, sa.column) < std::pair(sb.line, sb.column);
  });
  return out;
}

class Loader {
 public:
  explicit Loader(std::string file) : file_(std::move(file)) {}

  Config load(const toml::table& root);

 private:
  using Handler = std::function<void(const toml::node&, const std::string&)>;
  struct Rule {
    std::string_view key;
    Handler handle;
  };
  // Lines of the keys a walk saw, for cross-key rules.
  using Seen = std::map<std::string, int64_t, std::less<>>;

  [[noreturn]] void fail(int64_t line, const std::string& key, const std::string& problem) const {
    throw ConfigError(file_, line, key, problem);
  }
  [[noreturn]] void fail(const toml::node& n, const std::string& key,
                         const std::string& problem) const {
    fail(line_of(n), key, problem);
  }

  // Calls the handler of every key of `t` in file order; an unknown key is an error.
  Seen walk(const toml::table& t, const std::string& path, const std::vector<Rule>& rules) const;

  const toml::table& table(const toml::node& n, const std::string& key) const;
  const toml::array& array(const toml::node& n, const std::string& key) const;
  std::string string(const toml::node& n, const std::string& key) const;
  bool boolean(const toml::node& n, const std::string& key) const;
  double number(const toml::node& n, const std::string& key) const;
  int64_t integer(const toml::node& n, const std::string& key, int64_t min, int64_t max) const;
  Duration duration(const toml::node& n, const std::string& key, Duration min,
                    Duration max = Duration::max()) const;
  std::string choice(const toml::node& n, const std::string& key,
                     std::initializer_list<std::string_view> allowed) const;
  [[maybe_unused]] std::vector<std::string> strings(const toml::node& n,
                                                    const std::string& key) const;
  // Calls `each` with every element (a string) and its node, for per-element validation.
  void for_each_string(
      const toml::node& n, const std::string& key,
      const std::function<void(const std::string&, const toml::node&)>& each) const;
  std::vector<Prefix> prefixes(const toml::node& n, const std::string& key,
                               bool allow_everything) const;

  void listen(const toml::node& n, const std::string& path, ListenConfig& out) const;
  void store(const toml::node& n, const std::string& path, StoreConfig& out) const;
  void dns(const toml::node& n, const std::string& path, DnsConfig& out) const;
  void network(const toml::node& n, const std::string& path, NetworkConfig& out) const;
  void actions(const toml::node& n, const std::string& path, ActionsConfig& out) const;
  void scores(const toml::node& n, const std::string& path,
              std::map<std::string, double>& out) const;
  void lists(const toml::node& n, const std::string& path, const char* symbol_prefix,
             std::vector<ListConfig>& out) const;
  void greylist(const toml::node& n, const std::string& path, GreylistConfig& out) const;
  void reputation(const toml::node& n, const std::string& path, ReputationConfig& out) const;
  void recipients(const toml::node& n, const std::string& path, RecipientsConfig& out) const;
  void trap(const toml::node& n, const std::string& path, TrapConfig& out) const;
  void imap(const toml::node& n, const std::string& path, std::vector<ImapConfig>& out) const;
  void batv(const toml::node& n, const std::string& path, BatvConfig& out) const;
  void ips(const toml::node& n, const std::string& path, IpsConfig& out) const;

  // Symbols of the configured lists, collected before [scores] is checked.
  void collect_list_symbols(const toml::table& root);

  std::string file_;
  std::set<std::string, std::less<>> list_symbols_;
};

Loader::Seen Loader::walk(const toml::table& t, const std::string& path,
                          const std::vector<Rule>& rules) const {
  Seen seen;
  for (const Entry& e : in_file_order(t)) {
    std::string_view name = e.key->str();
    std::string key = join(path, name);
    auto rule =
        std::find_if(rules.begin(), rules.end(), [&](const Rule& r) { return r.key == name; });
    if (rule == rules.end()) {
      std::string problem = e.node->is_table() ? "unknown table" : "unknown key";
      std::vector<std::string_view> names;
      for (const Rule& r : rules) names.push_back(r.key);
      std::string hint = closest(name, names);
      if (!hint.empty()) problem += " (did you mean '" + join(path, hint) + "'?)";
      int64_t line = static_cast<int64_t>(e.key->source().begin.line);
      fail(line ? line : line_of(*e.node), key, problem);
    }
    seen.emplace(std::string(name), line_of(*e.node));
    rule->handle(*e.node, key);
  }
  return seen;
}

const toml::table& Loader::table(const toml::node& n, const std::string& key) const {
  if (const auto* t = n.as_table()) return *t;
  fail(n, key, "must be a table, not " + type_name(n));
}

const toml::array& Loader::array(const toml::node& n, const std::string& key) const {
  if (const auto* a = n.as_array()) return *a;
  fail(n, key, "must be an array, not " + type_name(n));
}

std::string Loader::string(const toml::node& n, const std::string& key) const {
  if (const auto* s = n.as_string()) return s->get();
  fail(n, key, "must be a string, not " + type_name(n));
}

bool Loader::boolean(const toml::node& n, const std::string& key) const {
  if (const auto* b = n.as_boolean()) return b->get();
  fail(n, key, "must be true or false, not " + type_name(n));
}

double Loader::number(const toml::node& n, const std::string& key) const {
  double v;
  if (const auto* i = n.as_integer()) {
    v = static_cast<double>(i->get());
  } else if (const auto* f = n.as_floating_point()) {
    v = f->get();
  } else {
    fail(n, key, "must be a number, not " + type_name(n));
  }
  if (!std::isfinite(v)) fail(n, key, "must be a finite number");
  return v;
}

int64_t Loader::integer(const toml::node& n, const std::string& key, int64_t min,
                        int64_t max) const {
  const auto* i = n.as_integer();
  if (!i) fail(n, key, "must be an integer, not " + type_name(n));
  int64_t v = i->get();
  if (v < min || v > max) {
    fail(n, key,
         "must be from " + std::to_string(min) + " to " + std::to_string(max) + ", not " +
             std::to_string(v));
  }
  return v;
}

Duration Loader::duration(const toml::node& n, const std::string& key, Duration min,
                          Duration max) const {
  const auto* s = n.as_string();
  if (!s) {
    fail(n, key,
         "must be a duration string such as \"30s\", \"5m\" or \"48h\", not " + type_name(n));
  }
  auto d = parse_duration(s->get());
  if (!d) {
    fail(n, key,
         in_quotes(s->get()) +
             " is not a duration: write a number and a unit (ms, s, m, h, d, w), e.g. \"5m\"");
  }
  if (*d < min) {
    // Callers pass a minimum of 1ms to mean "not zero".
    fail(n, key,
         min == Duration(1) ? "must be longer than 0"
                            : "must be at least " + format_duration(min) + ", not " + s->get());
  }
  if (*d > max) fail(n, key, "must be at most " + format_duration(max) + ", not " + s->get());
  return *d;
}

std::string Loader::choice(const toml::node& n, const std::string& key,
                           std::initializer_list<std::string_view> allowed) const {
  std::string v = string(n, key);
  if (std::find(allowed.begin(), allowed.end(), v) != allowed.end()) return v;
  std::string list;
  for (auto a : allowed) list += (list.empty() ? "" : ", ") + in_quotes(a);
  fail(n, key, in_quotes(v) + " is not one of " + list);
}

void Loader::for_each_string(
    const toml::node& n, const std::string& key,
    const std::function<void(const std::string&, const toml::node&)>& each) const {
  const toml::array& a = array(n, key);
  size_t index = 0;
  for (const toml::node& e : a) {
    ++index;
    const auto* s = e.as_string();
    if (!s) {
      fail(line_of(e) ? line_of(e) : line_of(n), key,
           "element " + std::to_string(index) + " must be a string, not " + type_name(e));
    }
    each(s->get(), e);
  }
}

std::vector<std::string> Loader::strings(const toml::node& n, const std::string& key) const {
  std::vector<std::string> out;
  for_each_string(n, key, [&](const std::string& s, const toml::node& e) {
    if (s.empty()) fail(e, key, "an element is an empty string");
    out.push_back(s);
  });
  return out;
}

std::vector<Prefix> Loader::prefixes(const toml::node& n, const std::string& key,
                                     bool allow_everything) const {
  std::vector<Prefix> out;
  for_each_string(n, key, [&](const std::string& s, const toml::node& e) {
    auto p = Prefix::parse(s);
    if (!p) {
      fail(e, key,
           in_quotes(s) + " is not an address or prefix (e.g. 192.0.2.0/24, 2001:db8::/32)");
    }
    if (p->length() == 0 && !allow_everything) {
      fail(e, key, in_quotes(s) + " matches every address; list the networks you mean");
    }
    out.push_back(*p);
  });
  return out;
}

void Loader::listen(const toml::node& n, const std::string& path, ListenConfig& out) const {
  // A [listen] table names the servers to run: a server it leaves out is off (DESIGN §3.3).
  out = ListenConfig{"", "", "", ""};
  std::vector<std::pair<std::string, std::string>> bound;  // key, canonical endpoint
  auto spec = [&](std::string& field) {
    return [&, field_ptr = &field](const toml::node& v, const std::string& key) {
      std::string text = string(v, key);
      if (!text.empty()) {
        std::string why;
        auto parsed = ListenSpec::parse(text, &why);
        if (!parsed) fail(v, key, in_quotes(text) + " is not a listen address: " + why);
        // Port 0 asks the kernel for a free port, so two of them never clash.
        if (parsed->is_unix || parsed->port != 0) {
          std::string canonical = parsed->to_string();
          for (const auto& [other_key, other] : bound) {
            if (other == canonical) fail(v, key, in_quotes(text) + " is also used by " + other_key);
          }
          bound.emplace_back(key, canonical);
        }
      }
      *field_ptr = text;
    };
  };
  walk(table(n, path), path,
       {{"policy", spec(out.policy)},
        {"milter", spec(out.milter)},
        {"spamd", spec(out.spamd)},
        {"http", spec(out.http)}});
}

void Loader::store(const toml::node& n, const std::string& path, StoreConfig& out) const {
  Seen seen = walk(table(n, path), path,
                   {{"backend",
                     [&](auto& v, auto& k) {
                       out.backend = choice(v, k, {"lmdb", "redis"});
                     }},
                    {"path", [&](auto& v, auto& k) { out.path = string(v, k); }},
                    {"url", [&](auto& v, auto& k) {
                       out.url = string(v, k);
                       if (!out.url.empty() && out.url.rfind("redis://", 0) != 0) {
                         fail(v, k, in_quotes(out.url) + " must start with redis://");
                       }
                     }}});
  int64_t line = seen.count("backend") ? seen["backend"] : line_of(n);
  if (out.backend == "redis" && out.url.empty()) {
    fail(line, join(path, "url"),
         "backend \"redis\" needs a url, e.g. \"redis://127.0.0.1:6379/0\"");
  }
  if (out.backend == "lmdb" && out.path.empty()) {
    fail(seen.count("path") ? seen["path"] : line, join(path, "path"),
         "backend \"lmdb\" needs a directory path");
  }
}

void Loader::dns(const toml::node& n, const std::string& path, DnsConfig& out) const {
  walk(table(n, path), path,
       {{"servers",
         [&](auto& v, auto& k) {
           out.servers.clear();
           for_each_string(v, k, [&](const std::string& s, const toml::node& e) {
             // "IP" or "IP@PORT"; '@' (as in dig) keeps IPv6 colons unambiguous.
             std::string_view text = s;
             auto at = text.rfind('@');
             std::string_view host = text.substr(0, at);
             if (!IpAddress::parse(host)) {
               fail(e, k,
                    in_quotes(s) + " is not \"IP\" or \"IP@PORT\" (the host must be an address)");
             }
             if (at != std::string_view::npos) {
               std::string_view port = text.substr(at + 1);
               bool digits = !port.empty() && port.size() <= 5 &&
                             std::all_of(port.begin(), port.end(),
                                         [](char c) { return c >= '0' && c <= '9'; });
               int value = digits ? std::stoi(std::string(port)) : 0;
               if (value < 1 || value > 65535) {
                 fail(e, k, in_quotes(s) + ": the port must be from 1 to 65535");
               }
             }
             out.servers.push_back(s);
           });
         }},
        {"timeout_ms",
         [&](auto& v, auto& k) { out.timeout = Duration(integer(v, k, 1, 60 * kSecond)); }}});
}

void Loader::network(const toml::node& n, const std::string& path, NetworkConfig& out) const {
  walk(table(n, path), path,
       {{"trusted", [&](auto& v, auto& k) { out.trusted = prefixes(v, k, false); }},
        {"relays", [&](auto& v, auto& k) { out.relays = prefixes(v, k, false); }},
        {"our_names", [&](auto& v, auto& k) {
           out.our_names.clear();
           for_each_string(v, k, [&](const std::string& s, const toml::node& e) {
             if (!IpAddress::parse(s) && !is_dns_name(s)) {
               fail(e, k, in_quotes(s) + " is neither a host name nor an address");
             }
             out.our_names.push_back(s);
           });
         }}});
}

void Loader::actions(const toml::node& n, const std::string& path, ActionsConfig& out) const {
  // A mail with no symbols scores 0, so a threshold at or below 0 would act on every mail.
  auto threshold = [&](double& field) {
    return [&, f = &field](const toml::node& v, const std::string& k) {
      *f = number(v, k);
      if (*f <= 0) fail(v, k, "must be above 0, not " + fmt_number(*f));
    };
  };
  Seen seen = walk(
      table(n, path), path,
      {{"greylist", threshold(out.greylist)},
       {"tag", threshold(out.tag)},
       {"reject", threshold(out.reject)},
       {"reject_min_families",
        [&](auto& v, auto& k) { out.reject_min_families = static_cast<int>(integer(v, k, 1, 5)); }},
       {"dry_run", [&](auto& v, auto& k) { out.dry_run = boolean(v, k); }}});
  // Report an order problem on the key that breaks it: the one set in the file, or the later
  // of the two when both are.
  auto below_reject = [&](const char* name, double value) {
    if (value < out.reject) return;
    bool has_it = seen.count(name) != 0, has_reject = seen.count("reject") != 0;
    bool blame_reject = has_reject && (!has_it || seen["reject"] > seen[name]);
    int64_t line = blame_reject ? seen["reject"] : has_it ? seen[name] : line_of(n);
    fail(line, join(path, blame_reject ? "reject" : name),
         std::string(name) + " threshold " + fmt_number(value) +
             " must be below the reject threshold " + fmt_number(out.reject));
  };
  below_reject("greylist", out.greylist);
  below_reject("tag", out.tag);
}

void Loader::scores(const toml::node& n, const std::string& path,
                    std::map<std::string, double>& out) const {
  for (const Entry& e : in_file_order(table(n, path))) {
    std::string name(e.key->str());
    std::string key = join(path, name);
    if (!find_symbol(name) && !list_symbols_.count(name)) {
      std::string problem = "unknown symbol";
      std::vector<std::string_view> names(list_symbols_.begin(), list_symbols_.end());
      for (const SymbolInfo& s : known_symbols()) names.push_back(s.name);
      std::string hint = closest(name, names);
      if (!hint.empty()) {
        problem += " (did you mean " + hint + "?)";
      } else if (name.rfind("RBL_", 0) == 0 || name.rfind("DNSWL_", 0) == 0) {
        problem += " (no configured [[dnsbl]]/[[dnswl]] list has this symbol)";
      }
      int64_t line = static_cast<int64_t>(e.key->source().begin.line);
      fail(line ? line : line_of(*e.node), key, problem);
    }
    double value = number(*e.node, key);
    // A timeout is not an answer (DESIGN §1): the temporary-error symbols only report it.
    if (name.size() > 10 && name.compare(name.size() - 10, 10, "_TEMPERROR") == 0 && value != 0.0) {
      fail(line_of(*e.node), key, "must stay 0: a temporary DNS error is not evidence");
    }
    out[name] = value;
  }
}

void Loader::collect_list_symbols(const toml::table& root) {
  for (auto [kind, prefix] : {std::pair{"dnsbl", "RBL_"}, std::pair{"dnswl", "DNSWL_"}}) {
    const auto* arr = root[kind].as_array();
    if (!arr) continue;
    for (const toml::node& e : *arr) {
      if (const auto* t = e.as_table()) {
        if (const auto* name = (*t)["name"].as_string()) {
          list_symbols_.insert(list_symbol_name(prefix, name->get()));
        }
      }
    }
  }
}

void Loader::lists(const toml::node& n, const std::string& path, const char* symbol_prefix,
                   std::vector<ListConfig>& out) const {
  const auto* arr = n.as_array();
  if (!arr)
    fail(n, path, "must be written [[" + path + "]] (an array of tables), not " + type_name(n));
  static const Prefix kRefused = *Prefix::parse("127.255.255.0/24");
  static const Prefix kLoopback = *Prefix::parse("127.0.0.0/8");
  std::map<std::string, std::string> symbols;  // symbol -> key of the list that has it
  size_t index = 0;
  for (const toml::node& e : *arr) {
    ++index;
    std::string item = path + "[" + std::to_string(index) + "]";
    const toml::table& t = table(e, item);
    ListConfig list;
    list.blocked_codes = {kRefused};
    Seen seen = walk(
        t, item,
        {{"name",
          [&](auto& v, auto& k) {
            list.name = string(v, k);
            if (!is_bare_key(list.name)) {
              fail(v, k, in_quotes(list.name) + " must be letters, digits, '-' and '_' only");
            }
            std::string symbol = list_symbol_name(symbol_prefix, list.name);
            if (auto it = symbols.find(symbol); it != symbols.end()) {
              fail(v, k,
                   "duplicate list name " + in_quotes(list.name) + " (symbol " + symbol +
                       " is already used by " + it->second + ")");
            }
            symbols.emplace(symbol, item);
          }},
         {"zone",
          [&](auto& v, auto& k) {
            list.zone = string(v, k);
            if (!is_dns_name(list.zone)) fail(v, k, in_quotes(list.zone) + " is not a DNS name");
            if (list.zone.back() == '.') list.zone.pop_back();
          }},
         {"weight",
          [&](auto& v, auto& k) {
            list.weight = number(v, k);
            if (list.weight <= 0) {
              fail(v, k,
                   "must be above 0, not " + fmt_number(list.weight) +
                       " (DNSWL weights are written positive and subtract)");
            }
          }},
         {"ipv6", [&](auto& v, auto& k) { list.ipv6 = boolean(v, k); }},
         {"codes",
          [&](auto& v, auto& k) {
            list.codes.clear();
            for (const Entry& c : in_file_order(table(v, k))) {
              std::string code(c.key->str());
              std::string code_key = join(k, code);
              auto addr = IpAddress::parse(code);
              if (!addr || !addr->is_v4() || !kLoopback.contains(*addr)) {
                int64_t line = static_cast<int64_t>(c.key->source().begin.line);
                fail(line ? line : line_of(*c.node), code_key,
                     "a return code must be an IPv4 address in 127.0.0.0/8");
              }
              list.codes[addr->to_string()] = number(*c.node, code_key);
            }
          }},
         {"blocked_codes", [&](auto& v, auto& k) { list.blocked_codes = prefixes(v, k, false); }}});
    if (!seen.count("name")) fail(line_of(t) ? line_of(t) : line_of(n), item, "needs a name");
    if (!seen.count("zone")) fail(line_of(t) ? line_of(t) : line_of(n), item, "needs a zone");
    out.push_back(std::move(list));
  }
}

void Loader::greylist(const toml::node& n, const std::string& path, GreylistConfig& out) const {
  Seen seen =
      walk(table(n, path), path,
           {{"mode",
             [&](auto& v, auto& k) {
               out.mode = choice(v, k, {"selective", "always", "off"});
             }},
            // 0 is allowed: the first attempt is still deferred, any retry passes.
            {"min_delay", [&](auto& v, auto& k) { out.min_delay = duration(v, k, Duration(0)); }},
            {"max_wait", [&](auto& v, auto& k) { out.max_wait = duration(v, k, Duration(1)); }},
            {"auto_allow_after",
             [&](auto& v, auto& k) { out.auto_allow_after = integer(v, k, 0, 1'000'000); }},
            {"auto_allow_ttl",
             [&](auto& v, auto& k) { out.auto_allow_ttl = duration(v, k, Duration(1)); }},
            {"hammering", [&](auto& v, auto& k) { out.hammering = integer(v, k, 1, 1'000'000); }},
            {"ipv4_prefix",
             [&](auto& v, auto& k) { out.ipv4_prefix = static_cast<int>(integer(v, k, 1, 32)); }},
            {"ipv6_prefix",
             [&](auto& v, auto& k) { out.ipv6_prefix = static_cast<int>(integer(v, k, 1, 128)); }},
            {"compat_list", [&](auto& v, auto& k) {
               out.compat_list = string(v, k);
               out.compat_list_line = line_of(v);
             }}});
  if (out.max_wait <= out.min_delay) {
    bool blame_max = seen.count("max_wait") &&
                     (!seen.count("min_delay") || seen["max_wait"] > seen["min_delay"]);
    int64_t line = blame_max                 ? seen["max_wait"]
                   : seen.count("min_delay") ? seen["min_delay"]
                                             : line_of(n);
    fail(line, join(path, blame_max ? "max_wait" : "min_delay"),
         "max_wait " + format_duration(out.max_wait) + " must be longer than min_delay " +
             format_duration(out.min_delay));
  }
}

void Loader::reputation(const toml::node& n, const std::string& path, ReputationConfig& out) const {
  // A 4xx ban must never outlast a sender's queue lifetime (Postfix: 5 days), or a
  // legitimate mail that was misjudged would bounce instead of getting through (DESIGN §1).
  const Duration kQueueLifetime(5 * kDay);
  Seen seen = walk(
      table(n, path), path,
      {{"ban_base", [&](auto& v, auto& k) { out.ban_base = duration(v, k, Duration(1)); }},
       {"ban_factor",
        [&](auto& v, auto& k) {
          out.ban_factor = number(v, k);
          if (out.ban_factor < 1)
            fail(v, k, "must be at least 1, not " + fmt_number(out.ban_factor));
        }},
       {"ban_max",
        [&](auto& v, auto& k) { out.ban_max = duration(v, k, Duration(1), kQueueLifetime); }},
       {"offence_half_life",
        [&](auto& v, auto& k) { out.offence_half_life = duration(v, k, Duration(1)); }},
       {"permanent_after", [&](auto& v, auto& k) { out.permanent_after = integer(v, k, 1, 1000); }},
       // One offending address never condemns its neighbours (DESIGN §1).
       {"network_after",
        [&](auto& v, auto& k) { out.network_after = integer(v, k, 2, 1'000'000); }},
       {"ipv4_prefix",
        [&](auto& v, auto& k) { out.ipv4_prefix = static_cast<int>(integer(v, k, 1, 32)); }},
       {"ipv6_prefix",
        [&](auto& v, auto& k) { out.ipv6_prefix = static_cast<int>(integer(v, k, 1, 128)); }}});
  if (out.ban_max < out.ban_base) {
    bool blame_max =
        seen.count("ban_max") && (!seen.count("ban_base") || seen["ban_max"] > seen["ban_base"]);
    int64_t line = blame_max                ? seen["ban_max"]
                   : seen.count("ban_base") ? seen["ban_base"]
                                            : line_of(n);
    fail(line, join(path, blame_max ? "ban_max" : "ban_base"),
         "ban_max " + format_duration(out.ban_max) + " must be at least ban_base " +
             format_duration(out.ban_base));
  }
}

void Loader::recipients(const toml::node& n, const std::string& path, RecipientsConfig& out) const {
  walk(table(n, path), path,
       {{"valid",
         [&](auto& v, auto& k) {
           out.valid = string(v, k);
           out.valid_line = line_of(v);
           if (!out.valid.empty() && (out.valid.rfind("file:", 0) != 0 || out.valid.size() == 5)) {
             fail(v, k, in_quotes(out.valid) + " must be \"file:/path/to/list\" (or empty: off)");
           }
         }},
        {"follow_log", [&](auto& v, auto& k) { out.follow_log = string(v, k); }},
        // 1 would count a single typo as address guessing.
        {"guess_threshold",
         [&](auto& v, auto& k) { out.guess_threshold = integer(v, k, 2, 1'000'000); }},
        {"guess_window",
         [&](auto& v, auto& k) { out.guess_window = duration(v, k, Duration(1)); }}});
}

void Loader::trap(const toml::node& n, const std::string& path, TrapConfig& out) const {
  walk(table(n, path), path,
       {{"mx_addresses",
         [&](auto& v, auto& k) {
           out.mx_addresses.clear();
           for_each_string(v, k, [&](const std::string& s, const toml::node& e) {
             auto a = IpAddress::parse(s);
             if (!a) fail(e, k, in_quotes(s) + " is not an IP address");
             out.mx_addresses.push_back(*a);
           });
         }},
        {"mx_domains",
         [&](auto& v, auto& k) {
           out.mx_domains.clear();
           for_each_string(v, k, [&](const std::string& s, const toml::node& e) {
             if (!is_dns_name(s)) fail(e, k, in_quotes(s) + " is not a domain name");
             out.mx_domains.push_back(s);
           });
         }},
        {"listen", [&](auto& v, auto& k) {
           out.listen.clear();
           for_each_string(v, k, [&](const std::string& s, const toml::node& e) {
             std::string why;
             if (!ListenSpec::parse(s, &why))
               fail(e, k, in_quotes(s) + " is not a listen address: " + why);
             out.listen.push_back(s);
           });
         }}});
}

// Why an [[imap]] url cannot be used, or "" when it can: "imaps://HOST[:PORT]" or
// "imap://HOST[:PORT]" (then STARTTLS is required), at most a trailing '/'. Folders have their
// own keys, and the password its own file, so a path, a query or user info is refused.
std::string imap_url_problem(const std::string& url) {
  std::string_view rest(url);
  if (rest.starts_with("imaps://")) {
    rest.remove_prefix(8);
  } else if (rest.starts_with("imap://")) {
    rest.remove_prefix(7);
  } else {
    return "must start with imaps:// or imap://";
  }
  if (rest.ends_with("/")) rest.remove_suffix(1);
  if (rest.empty()) return "names no host";
  if (rest.find('@') != std::string_view::npos)
    return "must not hold a user or password: use the keys user and password_file";
  if (rest.find_first_of("/?#") != std::string_view::npos)
    return "must be imaps://HOST[:PORT] with no folder or query: name folders in spam_folders "
           "and ham_folders";
  std::string_view host = rest, port;
  if (rest.starts_with("[")) {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) return "has an unclosed '[' in the host";
    host = rest.substr(0, close + 1);
    port = rest.substr(close + 1);
    if (!port.empty() && !port.starts_with(":")) return "has text after the ']' of the host";
    if (!IpAddress::parse(std::string(host.substr(1, host.size() - 2))))
      return "has no IPv6 address inside [...]";
  } else {
    size_t colon = rest.find(':');
    if (colon != std::string_view::npos) {
      host = rest.substr(0, colon);
      port = rest.substr(colon);
    }
    if (host.empty()) return "names no host";
    if (!is_dns_name(host) && !IpAddress::parse(std::string(host)))
      return "has a host that is neither a DNS name nor an address";
  }
  if (!port.empty()) {
    port.remove_prefix(1);
    int64_t p = 0;
    bool digits =
        !port.empty() && port.size() <= 5 &&
        std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (digits) p = std::stoll(std::string(port));
    if (!digits || p < 1 || p > 65535) return "has a port that is not 1-65535";
  }
  return "";
}

// Why a folder name cannot be used, or "" when it can (bayes/imap_source.cpp checks the same
// again before it sends one): no control characters (a CR or LF would end the IMAP command),
// valid UTF-8 (sent as modified UTF-7).
std::string imap_folder_problem(const std::string& folder) {
  for (char ch : folder) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '\r' || c == '\n') return "contains a line break";
    if (c < 0x20 || c == 0x7F) return "contains a control character";
  }
  if (folder.size() > 1024) return "is longer than 1024 bytes";
  size_t i = 0;
  while (i < folder.size()) {
    auto c = static_cast<unsigned char>(folder[i]);
    size_t n = c < 0x80             ? 1
               : (c & 0xE0) == 0xC0 ? 2
               : (c & 0xF0) == 0xE0 ? 3
               : (c & 0xF8) == 0xF0 ? 4
                                    : 0;
    if (n == 0 || i + n > folder.size()) return "is not valid UTF-8";
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < n; ++k) {
      auto cc = static_cast<unsigned char>(folder[i + k]);
      if ((cc & 0xC0) != 0x80) return "is not valid UTF-8";
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return "is not valid UTF-8";
    i += n;
  }
  return "";
}

void Loader::imap(const toml::node& n, const std::string& path,
                  std::vector<ImapConfig>& out) const {
  const auto* arr = n.as_array();
  if (!arr)
    fail(n, path, "must be written [[" + path + "]] (an array of tables), not " + type_name(n));
  size_t index = 0;
  for (const toml::node& e : *arr) {
    ++index;
    std::string item = path + "[" + std::to_string(index) + "]";
    const toml::table& t = table(e, item);
    ImapConfig box;
    std::map<std::string, std::string> folder_keys;  // folder -> the key that named it first
    auto folders = [&](const toml::node& v, const std::string& k) {
      std::vector<std::string> list;
      for_each_string(v, k, [&](const std::string& f, const toml::node& el) {
        if (f.empty()) fail(el, k, "an element is an empty string");
        std::string problem = imap_folder_problem(f);
        if (!problem.empty()) fail(el, k, "folder " + in_quotes(f) + " " + problem);
        auto [it, fresh] = folder_keys.emplace(f, k);
        if (!fresh)
          fail(el, k, "folder " + in_quotes(f) + " is listed twice (also in " + it->second + ")");
        list.push_back(f);
      });
      return list;
    };
    Seen seen =
        walk(t, item,
             {{"url",
               [&](auto& v, auto& k) {
                 box.url = string(v, k);
                 std::string problem = imap_url_problem(box.url);
                 if (!problem.empty()) fail(v, k, in_quotes(box.url) + " " + problem);
               }},
              {"user",
               [&](auto& v, auto& k) {
                 box.user = string(v, k);
                 if (std::any_of(box.user.begin(), box.user.end(), [](char ch) {
                       auto c = static_cast<unsigned char>(ch);
                       return c < 0x20 || c == 0x7F;
                     }))
                   fail(v, k, "must not contain control characters");
               }},
              {"password_file", [&](auto& v, auto& k) { box.password_file = string(v, k); }},
              {"spam_folders", [&](auto& v, auto& k) { box.spam_folders = folders(v, k); }},
              {"ham_folders", [&](auto& v, auto& k) { box.ham_folders = folders(v, k); }},
              {"ca_file", [&](auto& v, auto& k) { box.ca_file = string(v, k); }}});
    int64_t line = line_of(t) ? line_of(t) : line_of(n);
    if (box.url.empty()) {
      fail(seen.count("url") ? seen["url"] : line, join(item, "url"),
           "is missing; every [[imap]] needs one");
    }
    if (box.user.empty()) {
      fail(seen.count("user") ? seen["user"] : line, join(item, "user"),
           "is missing; every [[imap]] needs one");
    }
    if (box.password_file.empty()) {
      fail(seen.count("password_file") ? seen["password_file"] : line, join(item, "password_file"),
           "is missing; every [[imap]] needs one (a file holding the password, mode 0600)");
    }
    if (box.spam_folders.empty() && box.ham_folders.empty()) {
      fail(line, item, "names no spam_folders and no ham_folders: there is nothing to learn");
    }
    // Progress is kept per URL, user and folder: a second table for the same mailbox would
    // learn the same folders twice over.
    auto bare = [](std::string u) {
      while (!u.empty() && u.back() == '/') u.pop_back();
      return u;
    };
    for (size_t i = 0; i < out.size(); ++i) {
      if (bare(out[i].url) == bare(box.url) && out[i].user == box.user) {
        fail(seen.count("user") ? seen["user"] : line, join(item, "user"),
             "the same account as " + path + "[" + std::to_string(i + 1) +
                 "]: put all its folders in one [[imap]]");
      }
    }
    out.push_back(std::move(box));
  }
}

void Loader::batv(const toml::node& n, const std::string& path, BatvConfig& out) const {
  Seen seen =
      walk(table(n, path), path,
           {{"keys",
             [&](auto& v, auto& k) {
               out.keys.clear();
               for_each_string(v, k, [&](const std::string& s, const toml::node& e) {
                 // A short key lets a spammer forge tags and slip bounces past `enforce`.
                 if (s.size() < 16) fail(e, k, "a key must be at least 16 characters long");
                 out.keys.push_back(s);
               });
             }},
            // prvs tags carry the day number modulo 1000, so older tags cannot be told apart.
            {"max_age",
             [&](auto& v, auto& k) {
               out.max_age = duration(v, k, Duration(kDay), Duration(999 * kDay));
             }},
            {"enforce", [&](auto& v, auto& k) { out.enforce = boolean(v, k); }}});
  if (out.enforce && out.keys.empty()) {
    bool blame_keys = seen.count("keys") && seen["keys"] > seen["enforce"];
    fail(blame_keys ? seen["keys"] : seen["enforce"], join(path, blame_keys ? "keys" : "enforce"),
         "enforce = true needs at least one key in keys");
  }
}

void Loader::ips(const toml::node& n, const std::string& path, IpsConfig& out) const {
  walk(table(n, path), path,
       {{"export",
         [&](auto& v, auto& k) {
           out.export_mode = choice(v, k, {"permanent", "all"});
         }},
        {"blocklist_file", [&](auto& v, auto& k) { out.blocklist_file = string(v, k); }},
        {"rbldnsd_dir", [&](auto& v, auto& k) { out.rbldnsd_dir = string(v, k); }},
        {"nft_table", [&](auto& v, auto& k) {
           out.nft_table = string(v, k);
           if (out.nft_table.empty()) return;
           // "FAMILY NAME", as `nft list table` spells it.
           auto space = out.nft_table.find(' ');
           std::string family = out.nft_table.substr(0, space);
           std::string name = space == std::string::npos ? "" : out.nft_table.substr(space + 1);
           // NAME as the exporter accepts it (ips/nftables.cpp): a letter, then up to 31
           // letters, digits or '_'.
           bool name_ok = !name.empty() && name.size() <= 32 &&
                          std::isalpha(static_cast<unsigned char>(name[0])) &&
                          std::all_of(name.begin(), name.end(), [](char ch) {
                            return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_';
                          });
           bool ok = (family == "ip" || family == "ip6" || family == "inet") && name_ok;
           if (!ok) {
             fail(v, k,
                  in_quotes(out.nft_table) +
                      " must be \"FAMILY NAME\" with FAMILY ip, ip6 or inet and NAME a letter "
                      "followed by at most 31 letters, digits or '_', e.g. \"inet spamward\"");
           }
         }}});
}

Config Loader::load(const toml::table& root) {
  Config c;
  c.source = file_;
  collect_list_symbols(root);
  walk(
      root, "",
      {{"listen", [&](auto& v, auto& k) { listen(v, k, c.listen); }},
       {"http",
        [&](auto& v, auto& k) {
          walk(table(v, k), k, {{"admin_token_file", [&](auto& x, auto& xk) {
                                   c.http.admin_token_file = string(x, xk);
                                 }}});
        }},
       {"spamd",
        [&](auto& v, auto& k) {
          walk(table(v, k), k,
               {{"allow_tell", [&](auto& x, auto& xk) { c.spamd.allow_tell = boolean(x, xk); }}});
        }},
       {"store", [&](auto& v, auto& k) { store(v, k, c.store); }},
       {"log",
        [&](auto& v, auto& k) {
          walk(table(v, k), k,
               {{"format",
                 [&](auto& x, auto& xk) {
                   c.log.format = choice(x, xk, {"text", "json"});
                 }},
                {"file", [&](auto& x, auto& xk) { c.log.file = string(x, xk); }}});
        }},
       {"dns", [&](auto& v, auto& k) { dns(v, k, c.dns); }},
       {"engine",
        [&](auto& v, auto& k) {
          walk(table(v, k), k, {{"stage_deadline_ms", [&](auto& x, auto& xk) {
                                   c.engine.stage_deadline =
                                       Duration(integer(x, xk, 1, 300 * kSecond));
                                 }}});
        }},
       {"limits",
        [&](auto& v, auto& k) {
          walk(table(v, k), k,
               {{"max_connections",
                 [&](auto& x, auto& xk) {
                   c.limits.max_connections = integer(x, xk, 1, 1'000'000);
                 }},
                {"max_message_bytes", [&](auto& x, auto& xk) {
                   c.limits.max_message_bytes = integer(x, xk, 1, int64_t{1} << 30);
                 }}});
        }},
       {"network", [&](auto& v, auto& k) { network(v, k, c.network); }},
       {"actions", [&](auto& v, auto& k) { actions(v, k, c.actions); }},
       {"scores", [&](auto& v, auto& k) { scores(v, k, c.scores); }},
       {"exempt",
        [&](auto& v, auto& k) {
          walk(table(v, k), k,
               {{"recipients", [&](auto& x, auto& xk) {
                   c.exempt.recipients.clear();
                   for_each_string(x, xk, [&](const std::string& s, const toml::node& e) {
                     if (s.find('@') == std::string::npos) {
                       fail(e, xk,
                            in_quotes(s) + " must be an address pattern such as \"postmaster@*\"");
                     }
                     c.exempt.recipients.push_back(s);
                   });
                 }}});
        }},
       {"dnsbl", [&](auto& v, auto& k) { lists(v, k, "RBL_", c.dnsbl); }},
       {"dnswl", [&](auto& v, auto& k) { lists(v, k, "DNSWL_", c.dnswl); }},
       {"greylist", [&](auto& v, auto& k) { greylist(v, k, c.greylist); }},
       {"reputation", [&](auto& v, auto& k) { reputation(v, k, c.reputation); }},
       {"recipients", [&](auto& v, auto& k) { recipients(v, k, c.recipients); }},
       {"trap", [&](auto& v, auto& k) { trap(v, k, c.trap); }},
       {"bayes",
        [&](auto& v, auto& k) {
          walk(
              table(v, k), k,
              {{"min_learned",
                [&](auto& x, auto& xk) { c.bayes.min_learned = integer(x, xk, 1, 1'000'000'000); }},
               {"autolearn", [&](auto& x, auto& xk) { c.bayes.autolearn = boolean(x, xk); }},
               {"per_domain", [&](auto& x, auto& xk) { c.bayes.per_domain = boolean(x, xk); }},
               {"model", [&](auto& x, auto& xk) {
                  c.bayes.model = choice(x, xk, {"logistic", "fisher"});
                }}});
        }},
       {"imap", [&](auto& v, auto& k) { imap(v, k, c.imap); }},
       {"batv", [&](auto& v, auto& k) { batv(v, k, c.batv); }},
       {"ips", [&](auto& v, auto& k) { ips(v, k, c.ips); }},
       {"headers", [&](auto& v, auto& k) {
          walk(table(v, k), k,
               {{"authentication_results",
                 [&](auto& x, auto& xk) { c.headers.authentication_results = boolean(x, xk); }},
                {"authserv_id", [&](auto& x, auto& xk) {
                   c.headers.authserv_id = string(x, xk);
                   // Written bare into every Authentication-Results header: a host or domain
                   // name, nothing that needs quoting (RFC 8601 §2.5).
                   const std::string& id = c.headers.authserv_id;
                   if (!id.empty() && (!is_dns_name(id) || id.back() == '.')) {
                     std::string shown;
                     for (char ch : id.substr(0, 100)) {
                       auto u = static_cast<unsigned char>(ch);
                       shown += u < 0x20 || u >= 0x7F ? '?' : ch;
                     }
                     fail(x, xk,
                          in_quotes(shown) +
                              " must be a host or domain name such as \"mx.example.org\" "
                              "(letters, digits, '-', '_' and dots, no trailing dot)");
                   }
                 }}});
        }}});
  return c;
}

}  // namespace

Config parse_config(std::string_view toml_text, const std::string& source_name) {
  toml::table root;
  try {
    root = toml::parse(toml_text, std::string_view(source_name));
  } catch (const toml::parse_error& e) {
    throw ConfigError(source_name, static_cast<int64_t>(e.source().begin.line), "",
                      "TOML syntax error: " + std::string(e.description()));
  }
  return Loader(source_name).load(root);
}

Config load_config(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw ConfigError(path, 0, "", "is a directory, not a config file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path, 0, "", std::string("cannot open: ") + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ConfigError(path, 0, "", std::string("cannot read: ") + std::strerror(errno));
  return parse_config(text.str(), path);
}

}  // namespace spamward
