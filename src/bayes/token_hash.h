// Token hashes: the 64-bit keys under which Bayes token counts are stored.
//
// Contract:
// - token_hash(s) is SipHash-2-4 (Aumasson and Bernstein, 2012) of the bytes of `s` under the
//   fixed key 00 01 02 ... 0f (the key of the reference test vectors), read as a
//   little-endian 64-bit number. It is a pure function of the bytes: the same on every
//   machine, compiler and version. Stored databases depend on it, so it must never change;
//   tests/unit/bayes_tokenizer_test.cpp pins it with the reference vectors.
// - The key is public on purpose: the hash is not a secret, only a well-mixed, stable name.
//   (A collision an attacker could build merges two tokens' counts, which costs accuracy for
//   two tokens and nothing else.)
// - token_pair_hash(a, b, distance) names an orthogonal sparse bigram: SipHash of the 17
//   bytes le64(a) || le64(b) || distance under the same key.
#pragma once

#include <cstdint>
#include <string_view>

namespace spamward {

uint64_t token_hash(std::string_view bytes);
uint64_t token_pair_hash(uint64_t first, uint64_t second, uint8_t distance);

}  // namespace spamward
