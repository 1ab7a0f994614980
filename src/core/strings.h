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

// Untrusted text for logs, details and headers: control and non-ASCII bytes become '?', and
// more than `max` bytes are cut with "..." appended.
std::string printable(std::string_view s, size_t max = 64);

// Case-insensitive (ASCII) equality.
bool iequals(std::string_view a, std::string_view b);

}  // namespace spamward
