// Damerau-Levenshtein distance (the optimal-string-alignment form: insertions, deletions,
// substitutions and transpositions of adjacent characters each cost 1), bounded.
//
// Used to tell a typo from a guess: "jhon" for "john" is a typo (distance 1), "ceo" for
// "john" is not. Byte-wise: local parts are compared after ASCII case folding by the caller.
#pragma once

#include <cstddef>
#include <string_view>

namespace spamward {

// The distance between `a` and `b`, or `limit + 1` as soon as it is certain to exceed `limit`
// (cheap rejection: length difference first, then a banded row minimum). O(|a|*|b|) at
// worst; callers keep inputs short (local parts are at most 64 bytes, RFC 5321 §4.5.3.1.1).
size_t damerau_levenshtein(std::string_view a, std::string_view b, size_t limit);

}  // namespace spamward
