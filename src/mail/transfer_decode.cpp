#include "mail/transfer_decode.h"

#include <array>

namespace spamward {

namespace {

// -1: skipped, -2: padding, else the 6-bit value.
constexpr std::array<int8_t, 256> make_base64_table() {
  std::array<int8_t, 256> t{};
  for (auto& v : t) v = -1;
  for (int i = 0; i < 26; ++i) {
    t['A' + i] = static_cast<int8_t>(i);
    t['a' + i] = static_cast<int8_t>(26 + i);
  }
  for (int i = 0; i < 10; ++i) t['0' + i] = static_cast<int8_t>(52 + i);
  t['+'] = 62;
  t['/'] = 63;
  t['='] = -2;
  return t;
}

constexpr std::array<int8_t, 256> kBase64 = make_base64_table();

bool is_wsp(char c) {
  return c == ' ' || c == '\t';
}

}  // namespace

void Base64Decoder::decode(std::string_view in, std::string& out) {
  uint32_t bits = bits_;
  int nbits = nbits_;
  for (char ch : in) {
    const int v = kBase64[static_cast<unsigned char>(ch)];
    if (v >= 0) {
      bits = (bits << 6) | static_cast<uint32_t>(v);
      nbits += 6;
      if (nbits >= 8) {
        nbits -= 8;
        out += static_cast<char>((bits >> nbits) & 0xFF);
      }
    } else if (v == -2) {
      nbits = 0;
      bits = 0;
    }
  }
  bits_ = bits & 0xFFFF;
  nbits_ = nbits;
}

std::string decode_base64(std::string_view in) {
  std::string out;
  out.reserve(in.size() / 4 * 3 + 3);
  Base64Decoder d;
  d.decode(in, out);
  return out;
}

bool decode_qp_line(std::string_view line, std::string& out) {
  while (!line.empty() && (is_wsp(line.back()) || line.back() == '\r')) line.remove_suffix(1);
  bool soft = false;
  if (!line.empty() && line.back() == '=') {
    soft = true;
    line.remove_suffix(1);
  }
  const size_t n = line.size();
  size_t i = 0;
  while (i < n) {
    const size_t eq = line.find('=', i);
    if (eq == std::string_view::npos) {
      out.append(line.data() + i, n - i);
      break;
    }
    out.append(line.data() + i, eq - i);
    i = eq + 1;
    if (i + 2 <= n) {
      const int hi = hex_value(line[i]);
      const int lo = hex_value(line[i + 1]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += '=';  // not an escape: kept as written
  }
  return soft;
}

std::string decode_q(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '_') {
      out += ' ';
    } else if (c == '=' && i + 2 < in.size() && hex_value(in[i + 1]) >= 0 &&
               hex_value(in[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(in[i + 1]) * 16 + hex_value(in[i + 2]));
      i += 2;
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace spamward
