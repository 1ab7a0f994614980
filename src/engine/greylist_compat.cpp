#include "engine/greylist_compat.h"

#include <spdlog/spdlog.h>

#include <functional>
#include <map>
#include <stdexcept>

#include "core/strings.h"

namespace spamward {

namespace detail {
// config/greylist-compat.txt as it was at build time; defined in a .cpp that
// src/CMakeLists.txt generates from it.
std::string_view shipped_greylist_compat_text();
}  // namespace detail

namespace {

constexpr size_t kMaxNameBytes = 253;

bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\r';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

std::string network_key(const IpAddress& a) {
  const auto& b = a.bytes();
  return std::string(reinterpret_cast<const char*>(b.data()), a.is_v4() ? 4 : 16);
}

// Something the author meant as an address: digits and dots only ("195.235.39", a postgrey
// partial address we do not take), or anything with ':', '/' or '['.
bool looks_like_address(std::string_view s) {
  if (s.find_first_of(":/[") != std::string_view::npos) return true;
  return s.find_first_not_of("0123456789.") == std::string_view::npos;
}

// A DNS name of letters, digits, '-' and '_'; lower-cased, without a trailing dot. Returns
// an empty string and says why when it is not one.
std::string valid_name(std::string_view name, std::string& why) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty()) {
    why = "empty pattern";
    return {};
  }
  if (name.size() > kMaxNameBytes) {
    why = "a name is at most 253 characters";
    return {};
  }
  for (size_t start = 0; start <= name.size();) {
    size_t dot = std::min(name.find('.', start), name.size());
    std::string_view label = name.substr(start, dot - start);
    if (label.empty() || label.size() > 63) {
      why = "empty label or label longer than 63 characters in \"" + std::string(name) + "\"";
      return {};
    }
    for (char c : label) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '_';
      if (!ok) {
        why = "'" + std::string(1, c) + "' in \"" + std::string(name) +
              "\" (a name is letters, digits, '-' and '_'; a pattern is \"*.zone\" or /regex/)";
        return {};
      }
    }
    start = dot + 1;
  }
  return to_lower(name);
}

}  // namespace

GreylistCompatList GreylistCompatList::parse(std::string_view text, std::string_view source) {
  GreylistCompatList list;
  std::map<int, std::unordered_map<std::string, std::string>, std::greater<>> v4, v6;
  size_t line_number = 0;
  auto error = [&](const std::string& problem) {
    return std::invalid_argument(std::string(source) + ":" + std::to_string(line_number) + ": " +
                                 problem);
  };

  for (size_t pos = 0; pos < text.size();) {
    size_t end = std::min(text.find('\n', pos), text.size());
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // CRLF files
    if (line.size() > kMaxLineBytes) {
      throw error("line longer than " + std::to_string(kMaxLineBytes) + " bytes");
    }
    line = trim(line);
    if (line.empty() || line.front() == '#') continue;

    size_t blank = line.find_first_of(" \t");
    std::string_view entry = line.substr(0, blank);
    if (blank != std::string_view::npos) {
      std::string_view rest = trim(line.substr(blank));
      if (!rest.empty() && rest.front() != '#') {
        throw error("unexpected \"" + std::string(rest) +
                    "\" after the entry (one entry per line; a comment starts with '#')");
      }
    }
    if (++list.entries_ > kMaxEntries) {
      throw error("more than " + std::to_string(kMaxEntries) + " entries");
    }
    const std::string written(entry);

    if (entry.front() == '/') {
      if (entry.size() < 2 || entry.back() != '/') {
        throw error("a regular expression is written /regex/ (no closing '/' in \"" + written +
                    "\")");
      }
      std::string_view body = entry.substr(1, entry.size() - 2);
      if (body.empty()) throw error("empty pattern //");
      if (body.size() > kMaxRegexBytes) {
        throw error("regular expression longer than " + std::to_string(kMaxRegexBytes) + " bytes");
      }
      // Numbers in a pattern (repeat counts, back-references) are at most 3 digits: larger
      // ones overflow inside GCC 12's regex compiler. Matching runs in polynomial mode
      // (libstdc++'s breadth-first executor), so a pattern like /^(a|a)*$/ cannot make a
      // sender-chosen host name cost exponential time; that mode has no back-references.
      int digits = 0;
      for (char ch : body) {
        digits = (ch >= '0' && ch <= '9') ? digits + 1 : 0;
        if (digits > 3) throw error("a number longer than 3 digits in " + written);
      }
      try {
        list.regexes_.emplace_back(std::regex(body.begin(), body.end(),
                                              std::regex::ECMAScript | std::regex::icase |
                                                  std::regex_constants::__polynomial),
                                   written);
      } catch (const std::regex_error& e) {
        throw error("bad regular expression " + written + ": " + e.what());
      }
      continue;
    }

    if (looks_like_address(entry)) {
      auto prefix = Prefix::parse(entry);
      if (!prefix) throw error("bad address or CIDR \"" + written + "\"");
      auto& by_length = prefix->address().is_v4() ? v4 : v6;
      by_length[prefix->length()].try_emplace(network_key(prefix->address()), written);
      continue;
    }

    std::string why;
    if (entry.starts_with("*.")) {
      std::string zone = valid_name(entry.substr(2), why);
      if (zone.empty()) throw error("bad wildcard \"" + written + "\": " + why);
      list.wildcard_zones_.try_emplace(std::move(zone), written);
      continue;
    }
    if (entry.find('*') != std::string_view::npos) {
      throw error("'*' is allowed only as a whole first label, as in \"*.example.org\" (got \"" +
                  written + "\")");
    }
    std::string name = valid_name(entry, why);
    if (name.empty()) throw error("bad host name \"" + written + "\": " + why);
    list.exact_names_.try_emplace(std::move(name), written);
  }

  list.v4_.assign(std::make_move_iterator(v4.begin()), std::make_move_iterator(v4.end()));
  list.v6_.assign(std::make_move_iterator(v6.begin()), std::make_move_iterator(v6.end()));
  return list;
}

const GreylistCompatList& GreylistCompatList::builtin() {
  static const GreylistCompatList list =
      parse(detail::shipped_greylist_compat_text(), "built-in config/greylist-compat.txt");
  return list;
}

std::optional<std::string> GreylistCompatList::match(const IpAddress& client,
                                                     std::string_view verified_name) const {
  for (const auto& [length, networks] : client.is_v4() ? v4_ : v6_) {
    auto it = networks.find(network_key(Prefix(client, length).address()));
    if (it != networks.end()) return it->second;
  }

  if (!verified_name.empty() && verified_name.back() == '.') verified_name.remove_suffix(1);
  if (verified_name.empty() || verified_name.size() > kMaxNameBytes) return std::nullopt;
  const std::string name = to_lower(verified_name);
  if (auto it = exact_names_.find(name); it != exact_names_.end()) return it->second;
  if (!wildcard_zones_.empty()) {
    for (size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.', dot + 1)) {
      auto it = wildcard_zones_.find(name.substr(dot + 1));
      if (it != wildcard_zones_.end()) return it->second;
    }
  }
  for (const auto& [re, written] : regexes_) {
    try {
      if (std::regex_search(name, re)) return written;
    } catch (const std::regex_error& e) {
      // libstdc++ gives up on a pathological pattern with error_complexity or error_stack;
      // the mail is then greylisted as usual, which delays it but loses nothing.
      spdlog::warn("greylist compatibility list: {} on \"{}\": {}", written, name, e.what());
    }
  }
  return std::nullopt;
}

}  // namespace spamward
