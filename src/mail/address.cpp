#include "mail/address.h"

#include <cstddef>

#include "core/strings.h"

namespace spamward {
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_alnum(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z');
}

// A BATV tag is "KDDDSSSSSS" (key number, day, hash) in the standard; real signers vary the
// length, so any run of letters and digits of a plausible size is taken as one. Requiring
// alphanumerics keeps a local part like "prvs=bob=smith" from losing "bob".
bool looks_like_tag(std::string_view tag) {
  if (tag.size() < 4 || tag.size() > 64) return false;
  for (char c : tag) {
    if (!is_alnum(c)) return false;
  }
  return true;
}

// "prvs=TAG=local", "prvs=local/TAG", "msprvs1=TAG=local", "btv1==TAG==local" -> "local".
// Anything else is returned unchanged.
std::string_view strip_batv(std::string_view local) {
  auto tag_then_local = [](std::string_view rest, std::string_view separator) {
    size_t end = rest.find(separator);
    if (end == std::string_view::npos || !looks_like_tag(rest.substr(0, end))) {
      return std::string_view();
    }
    return rest.substr(end + separator.size());
  };
  std::string_view rest;
  if (local.starts_with("prvs=")) {
    rest = local.substr(5);
    if (auto stripped = tag_then_local(rest, "="); !stripped.empty()) return stripped;
    // The older form puts the tag last: "prvs=local/TAG".
    size_t slash = rest.rfind('/');
    if (slash != std::string_view::npos && slash > 0 && looks_like_tag(rest.substr(slash + 1))) {
      return rest.substr(0, slash);
    }
    return local;
  }
  if (local.starts_with("msprvs1=")) {
    auto stripped = tag_then_local(local.substr(8), "=");
    return stripped.empty() ? local : stripped;
  }
  if (local.starts_with("btv1==")) {
    auto stripped = tag_then_local(local.substr(6), "==");
    return stripped.empty() ? local : stripped;
  }
  return local;
}

bool is_srs_separator(char c) {
  return c == '=' || c == '+' || c == '-';
}

// Splits off the text before the next '='; false when there is none or it is empty.
bool take_field(std::string_view& rest, std::string_view& field) {
  size_t eq = rest.find('=');
  if (eq == std::string_view::npos || eq == 0) return false;
  field = rest.substr(0, eq);
  rest.remove_prefix(eq + 1);
  return true;
}

// The body of an SRS0 address after its separator: "HHH=TT=orig.domain=orig-local".
bool parse_srs0_body(std::string_view body, std::string_view& domain, std::string_view& local) {
  std::string_view hash, timestamp;
  if (!take_field(body, hash) || !take_field(body, timestamp) || !take_field(body, domain)) {
    return false;
  }
  local = body;  // may itself contain '='
  return !local.empty();
}

// SRS0 and SRS1 (libsrs2's forms, with '=', '+' or '-' after "SRS0"/"SRS1") give the original
// sender; anything else is left alone.
bool decode_srs(std::string_view local, std::string_view& orig_domain,
                std::string_view& orig_local) {
  if (local.size() < 5 || !is_srs_separator(local[4])) return false;
  if (local.starts_with("srs0")) return parse_srs0_body(local.substr(5), orig_domain, orig_local);
  if (local.starts_with("srs1")) {
    // "SRS1=HHH=fwd1==HHH=TT=orig.domain=orig-local": after the first forwarder's domain
    // comes the separator of the SRS0 address it made, then that address's body.
    std::string_view rest = local.substr(5), hash, first_forwarder;
    if (!take_field(rest, hash) || !take_field(rest, first_forwarder)) return false;
    if (rest.empty() || !is_srs_separator(rest.front())) return false;
    return parse_srs0_body(rest.substr(1), orig_domain, orig_local);
  }
  return false;
}

// "+extension" removal and VERP number folding, applied to the final local part.
std::string fold_local(std::string_view local) {
  if (size_t plus = local.find('+'); plus != std::string_view::npos && plus > 0) {
    local = local.substr(0, plus);
  }
  std::string out;
  out.reserve(local.size());
  for (size_t i = 0; i < local.size(); ++i) {
    if (!is_digit(local[i])) {
      out += local[i];
      continue;
    }
    out += '#';
    while (i + 1 < local.size() && is_digit(local[i + 1])) ++i;
  }
  return out;
}

}  // namespace

std::string normalize_sender(std::string_view sender) {
  // MTAs hand the sender over with or without its angle brackets.
  if (sender.size() >= 2 && sender.front() == '<' && sender.back() == '>') {
    sender = sender.substr(1, sender.size() - 2);
  }
  if (sender.empty()) return "<>";
  const std::string lowered = to_lower(sender);
  std::string_view address = lowered;

  size_t at = address.rfind('@');
  std::string_view local = at == std::string_view::npos ? address : address.substr(0, at);
  std::string_view domain = at == std::string_view::npos ? std::string_view() : address.substr(at);

  // BATV before SRS (a forwarder may sign its own SRS address) and again after it (the
  // original sender's address inside SRS is often BATV-signed). Each step runs once, so the
  // work stays linear.
  local = strip_batv(local);
  std::string_view orig_domain, orig_local;
  if (decode_srs(local, orig_domain, orig_local)) {
    local = strip_batv(orig_local);
    domain = orig_domain;
  }
  std::string out = fold_local(local);
  if (domain.empty()) return out;
  if (domain.front() != '@') out += '@';
  if (domain.size() > 1 && domain.back() == '.') domain.remove_suffix(1);
  out += domain;
  return out;
}

}  // namespace spamward
