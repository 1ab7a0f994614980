// VersionedWriter / VersionedReader: the compact binary values of the state tables
// (reputation, address guessing). A value is a version byte, then little-endian fixed-width
// fields and u16-length-prefixed text. A value that does not decode is treated by its owner
// as absent, never as an error: the reader's ok() turns false on any shortfall or on a
// version it was not built for, and every read after that returns zero or empty.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "core/clock.h"

namespace spamward {

class VersionedWriter {
 public:
  explicit VersionedWriter(uint8_t version) { u8(version); }
  void u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u16(uint16_t v) {
    u8(static_cast<uint8_t>(v));
    u8(static_cast<uint8_t>(v >> 8));
  }
  void u64(uint64_t v) {
    for (int i = 0; i < 8; ++i) u8(static_cast<uint8_t>(v >> (8 * i)));
  }
  void i64(int64_t v) { u64(static_cast<uint64_t>(v)); }
  void f64(double v) { u64(std::bit_cast<uint64_t>(v)); }
  void time(TimePoint t) { i64(to_unix_ms(t)); }
  // Callers bound `s` (details, reasons) well below 64 KiB.
  void text(std::string_view s) {
    s = s.substr(0, 0xffff);
    u16(static_cast<uint16_t>(s.size()));
    out_.append(s);
  }
  void raw(const uint8_t* data, size_t size) {
    out_.append(reinterpret_cast<const char*>(data), size);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

// Reads what VersionedWriter wrote. Any shortfall or bad version clears ok(); reads then return
// zeros, so decoders check ok() once at the end.
class VersionedReader {
 public:
  VersionedReader(std::string_view in, uint8_t version) : in_(in) { ok_ = u8() == version; }
  bool ok() const { return ok_; }
  // ok() and every byte consumed: trailing bytes mean the value is not what we wrote.
  bool complete() const { return ok_ && in_.empty(); }

  uint8_t u8() {
    if (!take(1)) return 0;
    return static_cast<uint8_t>(taken_[0]);
  }
  uint16_t u16() {
    if (!take(2)) return 0;
    return static_cast<uint16_t>(byte(0) | (byte(1) << 8));
  }
  uint64_t u64() {
    if (!take(8)) return 0;
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{byte(i)} << (8 * i);
    return v;
  }
  int64_t i64() { return static_cast<int64_t>(u64()); }
  double f64() { return std::bit_cast<double>(u64()); }
  TimePoint time() { return from_unix_ms(i64()); }
  std::string text() {
    uint16_t size = u16();
    if (!take(size)) return {};
    return std::string(taken_);
  }
  bool raw(uint8_t* out, size_t size) {
    if (!take(size)) return false;
    std::memcpy(out, taken_.data(), size);
    return true;
  }

 private:
  bool take(size_t n) {
    if (!ok_ || in_.size() < n) {
      ok_ = false;
      taken_ = {};
      return false;
    }
    taken_ = in_.substr(0, n);
    in_.remove_prefix(n);
    return true;
  }
  unsigned byte(size_t i) const { return static_cast<unsigned char>(taken_[i]); }

  std::string_view in_;
  std::string_view taken_;
  bool ok_ = true;
};

}  // namespace spamward
