// libFuzzer target for the greylisting compatibility list (engine/greylist_compat.h):
// GreylistCompatList::parse and match.
//
// Input: the list text, optionally followed by a NUL byte and probes, one per line:
// "ADDRESS NAME" (either may be missing; an unparsable address probes 192.0.2.1). Besides the
// sanitizers, it checks properties:
// - parse either returns or throws std::invalid_argument whose message starts with the source
//   name; nothing else escapes;
// - match never throws, and what it returns is an entry as written in the list;
// - every entry of an accepted list matches what it names: the address of a network entry,
//   an exact name (with or without a trailing dot, in upper case too), a name below a
//   wildcard zone;
// - match is case-insensitive and ignores one trailing dot of the name.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "engine/greylist_compat.h"

// greylist_compat.cpp refers to the generated list text (for builtin(), which the fuzzer never
// calls); src/CMakeLists.txt generates its definition for the library only.
namespace spamward::detail {
std::string_view shipped_greylist_compat_text() {
  return "";
}
}  // namespace spamward::detail

namespace {

using namespace spamward;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

constexpr std::string_view kSource = "fuzz-list";
constexpr size_t kMaxName = 253;

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

std::string_view trim(std::string_view s) {
  auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
  while (!s.empty() && blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && blank(s.back())) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> lines(std::string_view text) {
  std::vector<std::string_view> out;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = std::min(text.find('\n', pos), text.size());
    out.push_back(text.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

// The entries of an accepted list, as the format describes them (first token of each line
// that is neither blank nor a comment).
std::vector<std::string_view> entries(std::string_view text) {
  std::vector<std::string_view> out;
  for (std::string_view line : lines(text)) {
    line = trim(line);
    if (line.empty() || line.front() == '#') continue;
    out.push_back(line.substr(0, line.find_first_of(" \t")));
  }
  return out;
}

std::string_view without_dot(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  return name;
}

// match(), checked: no exception, and an answer is an entry of the list.
std::optional<std::string> match(const GreylistCompatList& list, std::string_view text,
                                 const IpAddress& client, std::string_view name) {
  std::optional<std::string> m;
  try {
    m = list.match(client, name);
  } catch (...) {
    check(false);
  }
  if (m) check(!m->empty() && text.find(*m) != std::string_view::npos);
  return m;
}

void probe(const GreylistCompatList& list, std::string_view text, const IpAddress& client,
           std::string_view name) {
  auto m = match(list, text, client, name);
  check(match(list, text, client, upper(name)) == m);
  // One trailing dot is ignored, whatever the name (an empty name matches no name entry).
  if (without_dot(name).size() == name.size()) {
    check(match(list, text, client, std::string(name) + ".") == m);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  size_t nul = input.find('\0');
  std::string_view text = input.substr(0, nul);
  std::string_view probes = nul == std::string_view::npos ? "" : input.substr(nul + 1);

  GreylistCompatList list;
  try {
    list = GreylistCompatList::parse(text, kSource);
  } catch (const std::invalid_argument& e) {
    check(std::string_view(e.what()).starts_with(std::string(kSource) + ":"));
    return 0;
  } catch (...) {
    check(false);  // e.g. a std::regex exception that parse does not turn into its error
  }
  check(list.size() <= GreylistCompatList::kMaxEntries);

  const IpAddress fallback = *IpAddress::parse("192.0.2.1");
  const std::vector<std::string_view> written = entries(text);
  check(list.size() == written.size());
  for (std::string_view entry : written) {
    if (entry.front() == '/') continue;  // a regular expression: nothing to derive
    if (auto prefix = Prefix::parse(entry)) {
      check(match(list, text, prefix->address(), "").has_value());
      continue;
    }
    if (entry.starts_with("*.")) {
      std::string name = "a." + std::string(entry.substr(2));
      if (without_dot(name).size() <= kMaxName) {
        check(match(list, text, fallback, name).has_value());
        check(match(list, text, fallback, upper(name)).has_value());
      }
      continue;
    }
    check(match(list, text, fallback, entry).has_value());
    check(match(list, text, fallback, upper(entry)).has_value());
  }

  for (std::string_view line : lines(probes)) {
    size_t space = line.find(' ');
    std::string_view address = line.substr(0, space);
    std::string_view name = space == std::string_view::npos ? "" : line.substr(space + 1);
    probe(list, text, IpAddress::parse(address).value_or(fallback), name);
  }
  return 0;
}
