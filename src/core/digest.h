// Message digests for keys and identifiers (OpenSSL's EVP interface).
//
// Contract: sha256_hex returns the 64 lower-case hex digits of SHA-256(data). It throws
// std::runtime_error only if OpenSSL itself fails (callers on the decision path fail open).
#pragma once

#include <string>
#include <string_view>

namespace spamward {

std::string sha256_hex(std::string_view data);

}  // namespace spamward
