// Small string helpers shared by every layer. ASCII only on purpose: DNS names, addresses,
// header names and protocol keywords are case-insensitive in ASCII, and locale-dependent
// case folding would be both slow and wrong for them.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace spamward {

// "Example.ORG" -> "example.org"; bytes outside A-Z are kept as they are.
std::string to_lower(std::string_view s);

// {"a", "b"} with ',' -> "a,b".
std::string join(const std::vector<std::string>& parts, std::string_view separator = ",");

}  // namespace spamward
