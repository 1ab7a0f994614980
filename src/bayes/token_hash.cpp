#include "bayes/token_hash.h"

#include <cstring>

namespace spamward {
namespace {

// Key 00 01 .. 0f as two little-endian words.
constexpr uint64_t kK0 = 0x0706050403020100ULL;
constexpr uint64_t kK1 = 0x0f0e0d0c0b0a0908ULL;

inline uint64_t rotl(uint64_t x, int b) {
  return (x << b) | (x >> (64 - b));
}

inline uint64_t load_le64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];  // byte order fixed, whatever the CPU's
  return v;
}

struct SipState {
  uint64_t v0 = kK0 ^ 0x736f6d6570736575ULL;
  uint64_t v1 = kK1 ^ 0x646f72616e646f6dULL;
  uint64_t v2 = kK0 ^ 0x6c7967656e657261ULL;
  uint64_t v3 = kK1 ^ 0x7465646279746573ULL;

  void round() {
    v0 += v1;
    v1 = rotl(v1, 13);
    v1 ^= v0;
    v0 = rotl(v0, 32);
    v2 += v3;
    v3 = rotl(v3, 16);
    v3 ^= v2;
    v0 += v3;
    v3 = rotl(v3, 21);
    v3 ^= v0;
    v2 += v1;
    v1 = rotl(v1, 17);
    v1 ^= v2;
    v2 = rotl(v2, 32);
  }
  void compress(uint64_t m) {
    v3 ^= m;
    round();
    round();
    v0 ^= m;
  }
  uint64_t finish() {
    v2 ^= 0xff;
    round();
    round();
    round();
    round();
    return v0 ^ v1 ^ v2 ^ v3;
  }
};

uint64_t siphash24(const unsigned char* p, size_t n) {
  SipState s;
  const size_t whole = n & ~size_t{7};
  for (size_t i = 0; i < whole; i += 8) s.compress(load_le64(p + i));
  uint64_t last = static_cast<uint64_t>(n & 0xff) << 56;
  for (size_t i = 0; i < (n & 7); ++i) last |= static_cast<uint64_t>(p[whole + i]) << (8 * i);
  s.compress(last);
  return s.finish();
}

}  // namespace

uint64_t token_hash(std::string_view bytes) {
  return siphash24(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
}

uint64_t token_pair_hash(uint64_t first, uint64_t second, uint8_t distance) {
  unsigned char buf[17];
  for (int i = 0; i < 8; ++i) {
    buf[i] = static_cast<unsigned char>(first >> (8 * i));
    buf[8 + i] = static_cast<unsigned char>(second >> (8 * i));
  }
  buf[16] = distance;
  return siphash24(buf, sizeof buf);
}

}  // namespace spamward
