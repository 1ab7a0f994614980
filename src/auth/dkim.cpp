#include "auth/dkim.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <algorithm>
#include <limits>
#include <map>
#include <stdexcept>
#include <utility>

#include "core/strings.h"

namespace spamward {
namespace {

bool is_wsp(char c) {
  return c == ' ' || c == '\t';
}
bool is_fws(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}
bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

std::string_view trim_fws(std::string_view s) {
  while (!s.empty() && is_fws(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_fws(s.back())) s.remove_suffix(1);
  return s;
}

// Splits on `sep`, trims folding whitespace around each item; keeps empty items.
std::vector<std::string_view> split_list(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t end = s.find(sep, start);
    out.push_back(trim_fws(s.substr(start, end == std::string_view::npos ? s.npos : end - start)));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return out;
}

const DkimTag* find_tag(const std::vector<DkimTag>& tags, std::string_view name) {
  for (const auto& t : tags) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

// 1*n DIGIT, saturating.
std::optional<uint64_t> parse_digits(std::string_view s, size_t max_digits) {
  if (s.empty() || s.size() > max_digits) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (!is_digit(c)) return std::nullopt;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) {
      v = std::numeric_limits<uint64_t>::max();
    } else {
      v = v * 10 + d;
    }
  }
  return v;
}

// A DNS name as DKIM allows it in d= and s=: labels of letters, digits, '-' and '_' (seen in
// real selectors), 1..63 bytes each, 253 in all. `min_labels` is 2 for d= (RFC 6376
// domain-name = sub-domain 1*("." sub-domain)).
bool valid_dns_name(std::string_view s, size_t min_labels) {
  if (s.empty() || s.size() > 253) return false;
  size_t labels = 0;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find('.', start);
    if (end == std::string_view::npos) end = s.size();
    std::string_view label = s.substr(start, end - start);
    if (label.empty() || label.size() > 63) return false;
    for (char c : label) {
      if (!is_alpha(c) && !is_digit(c) && c != '-' && c != '_') return false;
    }
    ++labels;
    start = end + 1;
  }
  return labels >= min_labels;
}

// dkim-quoted-printable (RFC 6376 §2.11): "=XX" escapes, whitespace ignored.
std::optional<std::string> qp_decode(std::string_view s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (is_fws(c)) continue;
    if (c == '=') {
      if (i + 2 >= s.size()) return std::nullopt;
      int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
      continue;
    }
    out += c;
  }
  return out;
}

// Whether `sub` is `domain` or a subdomain of it (both lower-case).
bool within_domain(std::string_view sub, std::string_view domain) {
  if (sub == domain) return true;
  return sub.size() > domain.size() && sub.ends_with(domain) &&
         sub[sub.size() - domain.size() - 1] == '.';
}

// The field's name as written, without trailing whitespace; npos colon: not a field.
std::string_view field_name(std::string_view raw, size_t* colon_out = nullptr) {
  size_t colon = raw.find(':');
  if (colon_out) *colon_out = colon;
  if (colon == std::string_view::npos) return {};
  std::string_view name = raw.substr(0, colon);
  while (!name.empty() && is_wsp(name.back())) name.remove_suffix(1);
  return name;
}

// The field without its final line end.
std::string_view strip_line_end(std::string_view raw) {
  if (raw.ends_with("\r\n")) {
    raw.remove_suffix(2);
  } else if (raw.ends_with("\n")) {
    raw.remove_suffix(1);
  }
  return raw;
}

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

const EVP_MD* md_of(DkimAlgorithm a) {
  return a == DkimAlgorithm::rsa_sha1 ? EVP_sha1() : EVP_sha256();
}

std::string sha256(std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out, &len, EVP_sha256(), nullptr) != 1) {
    ERR_clear_error();
    throw std::runtime_error("SHA-256 failed");
  }
  return std::string(reinterpret_cast<const char*>(out), len);
}

DkimResult make_result(const DkimSignatureParse& p, DkimStatus status, std::string reason) {
  DkimResult r;
  r.domain = p.domain;
  r.selector = p.selector;
  r.status = status;
  r.reason = std::move(reason);
  return r;
}

}  // namespace

std::string_view to_string(DkimStatus s) {
  switch (s) {
    case DkimStatus::pass:
      return "pass";
    case DkimStatus::fail:
      return "fail";
    case DkimStatus::permerror:
      return "permerror";
    case DkimStatus::temperror:
      return "temperror";
  }
  return "permerror";
}

bool dkim_field_is(std::string_view raw_field, std::string_view name) {
  size_t colon = 0;
  std::string_view n = field_name(raw_field, &colon);
  return colon != std::string_view::npos && iequals(n, name);
}

// ---- Tag lists ----

bool parse_dkim_tag_list(std::string_view text, const DkimLimits& limits,
                         std::vector<DkimTag>& tags, std::string& error) {
  tags.clear();
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find(';', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view segment = text.substr(pos, end - pos);
    if (!trim_fws(segment).empty()) {
      size_t eq = segment.find('=');
      if (eq == std::string_view::npos) {
        error = "tag without '=': " + printable(trim_fws(segment), 20);
        return false;
      }
      std::string_view name = trim_fws(segment.substr(0, eq));
      if (name.empty() || !is_alpha(name.front())) {
        error = "bad tag name";
        return false;
      }
      for (char c : name) {
        if (!is_alpha(c) && !is_digit(c) && c != '_') {
          error = "bad tag name";
          return false;
        }
      }
      size_t raw_begin = pos + eq + 1;
      std::string_view raw_value = text.substr(raw_begin, end - raw_begin);
      if (raw_value.size() > limits.max_value) {
        error = "tag " + std::string(name) + "= too long";
        return false;
      }
      for (char c : raw_value) {
        auto u = static_cast<unsigned char>(c);
        if (u < 0x20 && !is_fws(c)) {
          error = "control character in tag " + std::string(name) + "=";
          return false;
        }
        if (u == 0x7f) {
          error = "control character in tag " + std::string(name) + "=";
          return false;
        }
      }
      if (find_tag(tags, name)) {
        error = "duplicate tag " + std::string(name) + "=";
        return false;
      }
      if (tags.size() >= limits.max_tags) {
        error = "too many tags";
        return false;
      }
      tags.push_back({name, trim_fws(raw_value), raw_begin, end});
    }
    pos = end + 1;
  }
  return true;
}

std::optional<std::string> dkim_base64_decode(std::string_view text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  size_t chars = 0, pad = 0;
  for (char c : text) {
    if (is_fws(c)) continue;
    if (c == '=') {
      ++pad;
      continue;
    }
    if (pad > 0) return std::nullopt;  // data after padding
    int v = value(c);
    if (v < 0) return std::nullopt;
    ++chars;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  if (pad > 2) return std::nullopt;
  if (chars % 4 == 1) return std::nullopt;
  if (pad > 0 && (chars + pad) % 4 != 0) return std::nullopt;
  return out;
}

// ---- Signatures ----

DkimSignatureParse parse_dkim_signature(std::string_view raw_field, const DkimLimits& limits) {
  DkimSignatureParse out;
  size_t colon = 0;
  field_name(raw_field, &colon);
  if (colon == std::string_view::npos) {
    out.error = "not a header field";
    return out;
  }
  std::string_view content = strip_line_end(raw_field);
  std::string_view text = content.substr(colon + 1);
  std::vector<DkimTag> tags;
  std::string error;
  if (!parse_dkim_tag_list(text, limits, tags, error)) {
    out.error = "syntax error: " + error;
    return out;
  }
  auto value = [&](std::string_view name) -> std::optional<std::string_view> {
    const DkimTag* t = find_tag(tags, name);
    if (!t) return std::nullopt;
    return t->value;
  };
  // What the logs can name, even for a broken signature.
  if (auto d = value("d")) out.domain = printable(to_lower(*d), 253);
  if (auto s = value("s")) out.selector = printable(to_lower(*s), 64);

  auto v = value("v");
  if (!v || *v != "1") {
    out.error = "v= missing or not 1";
    return out;
  }
  for (const char* required : {"a", "b", "bh", "d", "h", "s"}) {
    if (!value(required)) {
      out.error = std::string("missing ") + required + "=";
      return out;
    }
  }
  DkimSignature sig;
  std::string a = to_lower(*value("a"));
  if (a == "rsa-sha256") {
    sig.algorithm = DkimAlgorithm::rsa_sha256;
  } else if (a == "ed25519-sha256") {
    sig.algorithm = DkimAlgorithm::ed25519_sha256;
  } else if (a == "rsa-sha1") {
    out.error = "a=rsa-sha1 is not allowed (RFC 8301)";
    return out;
  } else {
    out.error = "unsupported algorithm a=" + printable(a, 32);
    return out;
  }

  if (auto c = value("c")) {
    std::string cs = to_lower(*c);
    size_t slash = cs.find('/');
    std::string h = cs.substr(0, slash);
    std::string b = slash == std::string::npos ? "simple" : cs.substr(slash + 1);
    auto canon = [](const std::string& s) -> std::optional<DkimCanon> {
      if (s == "simple") return DkimCanon::simple;
      if (s == "relaxed") return DkimCanon::relaxed;
      return std::nullopt;
    };
    auto hc = canon(h), bc = canon(b);
    if (!hc || !bc) {
      out.error = "unsupported canonicalization c=" + printable(cs, 32);
      return out;
    }
    sig.header_canon = *hc;
    sig.body_canon = *bc;
  }

  if (auto q = value("q")) {
    bool dns = false;
    for (auto m : split_list(*q, ':')) {
      if (iequals(m, "dns/txt")) dns = true;
    }
    if (!dns) {
      out.error = "unsupported query method q=" + printable(*q, 32);
      return out;
    }
  }

  sig.domain = to_lower(*value("d"));
  if (!valid_dns_name(sig.domain, 2)) {
    out.error = "bad d= domain";
    return out;
  }
  sig.selector = to_lower(*value("s"));
  if (!valid_dns_name(sig.selector, 1) || sig.selector.size() + sig.domain.size() + 12 > 253) {
    out.error = "bad s= selector";
    return out;
  }

  auto h_items = split_list(*value("h"), ':');
  if (h_items.size() > limits.max_signed_headers) {
    out.error = "too many h= entries";
    return out;
  }
  bool from = false;
  for (auto item : h_items) {
    if (item.empty()) {
      out.error = "empty h= entry";
      return out;
    }
    for (char c : item) {
      auto u = static_cast<unsigned char>(c);
      if (u <= 0x20 || u >= 0x7f || c == ':') {
        out.error = "bad h= entry";
        return out;
      }
    }
    sig.signed_headers.push_back(to_lower(item));
    if (sig.signed_headers.back() == "from") from = true;
  }
  if (!from) {
    out.error = "From not signed (h= lacks from)";
    return out;
  }

  if (auto i = value("i")) {
    auto decoded = qp_decode(*i);
    size_t at = decoded ? decoded->rfind('@') : std::string::npos;
    if (!decoded || at == std::string::npos) {
      out.error = "bad i= identity";
      return out;
    }
    std::string i_domain = to_lower(decoded->substr(at + 1));
    if (!within_domain(i_domain, sig.domain)) {
      out.error = "i= domain not within d=";
      return out;
    }
    sig.identity = *decoded;
  } else {
    sig.identity = "@" + sig.domain;
  }

  if (auto l = value("l")) {
    auto n = parse_digits(*l, 76);
    if (!n) {
      out.error = "bad l= value";
      return out;
    }
    sig.length = *n;
  }
  for (const char* name : {"t", "x"}) {
    if (auto t = value(name)) {
      auto n = parse_digits(*t, 18);
      if (!n) {
        out.error = std::string("bad ") + name + "= value";
        return out;
      }
      (name[0] == 't' ? sig.timestamp : sig.expiration) = static_cast<int64_t>(*n);
    }
  }
  if (sig.timestamp && sig.expiration && *sig.expiration < *sig.timestamp) {
    out.error = "x= before t=";
    return out;
  }

  auto bh = dkim_base64_decode(*value("bh"));
  if (!bh || bh->empty()) {
    out.error = "bad bh= value";
    return out;
  }
  sig.body_hash = std::move(*bh);
  auto b = dkim_base64_decode(*value("b"));
  if (!b || b->empty()) {
    out.error = "bad b= value";
    return out;
  }
  sig.signature = std::move(*b);

  // The field as hashed: the b= value (with its surrounding whitespace) removed.
  const DkimTag* bt = find_tag(tags, "b");
  size_t offset = colon + 1;
  sig.unsigned_field = std::string(raw_field.substr(0, offset + bt->raw_begin));
  sig.unsigned_field += raw_field.substr(offset + bt->raw_end);

  out.signature = std::move(sig);
  return out;
}

// ---- Key records ----

DkimKeyParse parse_dkim_key(std::string_view record, const DkimLimits& limits) {
  DkimKeyParse out;
  std::vector<DkimTag> tags;
  std::string error;
  if (!parse_dkim_tag_list(record, limits, tags, error)) {
    out.error = "key record syntax error: " + error;
    return out;
  }
  if (const DkimTag* v = find_tag(tags, "v")) {
    // RFC 6376 says v= comes first; a record that only misorders it is still read (a
    // publisher's slip must not make its mail look forged).
    if (v->value != "DKIM1") {
      out.error = "key record v= is not DKIM1";
      return out;
    }
  }
  DkimKey key;
  if (const DkimTag* k = find_tag(tags, "k")) {
    std::string type = to_lower(k->value);
    if (type == "rsa") {
      key.type = DkimKeyType::rsa;
    } else if (type == "ed25519") {
      key.type = DkimKeyType::ed25519;
    } else {
      out.error = "unknown key type k=" + printable(type, 32);
      return out;
    }
  }
  if (const DkimTag* h = find_tag(tags, "h")) {
    for (auto item : split_list(h->value, ':')) {
      if (!item.empty()) key.hashes.push_back(to_lower(item));
    }
  }
  if (const DkimTag* s = find_tag(tags, "s")) {
    bool email = false;
    for (auto item : split_list(s->value, ':')) {
      if (item == "*" || iequals(item, "email")) email = true;
    }
    if (!email) {
      out.error = "key not for e-mail (s=" + printable(s->value, 32) + ")";
      return out;
    }
  }
  if (const DkimTag* t = find_tag(tags, "t")) {
    for (auto item : split_list(t->value, ':')) {
      if (iequals(item, "y")) key.testing = true;
      if (iequals(item, "s")) key.strict_identity = true;
    }
  }
  const DkimTag* p = find_tag(tags, "p");
  if (!p) {
    out.error = "key record without p=";
    return out;
  }
  auto material = dkim_base64_decode(p->value);
  if (!material) {
    out.error = "bad key data in p=";
    return out;
  }
  if (material->empty()) {
    out.revoked = true;
    out.error = "key revoked";
    return out;
  }
  key.public_key = std::move(*material);
  out.key = std::move(key);
  return out;
}

// ---- Canonicalisation ----

std::string dkim_canon_header(DkimCanon canon, std::string_view raw_field) {
  std::string out;
  if (canon == DkimCanon::simple) {
    std::string_view content = strip_line_end(raw_field);
    out.reserve(content.size() + 8);
    for (size_t i = 0; i < content.size(); ++i) {
      if (content[i] == '\n' && (i == 0 || content[i - 1] != '\r')) out += '\r';
      out += content[i];
    }
    out += "\r\n";
    return out;
  }
  size_t colon = 0;
  std::string_view name = field_name(raw_field, &colon);
  if (colon == std::string_view::npos) {
    // Not a field (no colon): the whole line, relaxed as a value.
    name = {};
    colon = static_cast<size_t>(-1);
  }
  std::string_view value = strip_line_end(raw_field).substr(colon + 1);
  out.reserve(raw_field.size() + 2);
  out += to_lower(name);
  out += ':';
  bool space = false, any = false;
  for (size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (c == '\r' && i + 1 < value.size() && value[i + 1] == '\n') continue;
    if (c == '\n') continue;
    if (is_wsp(c)) {
      space = true;
      continue;
    }
    if (space && any) out += ' ';
    space = false;
    any = true;
    out += c;
  }
  out += "\r\n";
  return out;
}

void DkimBodyCanonicalizer::content(char c, std::string& out) {
  if (canon_ == DkimCanon::relaxed && is_wsp(c)) {
    wsp_pending_ = true;
    return;
  }
  for (; empty_lines_ > 0; --empty_lines_) out += "\r\n";
  if (wsp_pending_) {
    out += ' ';
    wsp_pending_ = false;
  }
  out += c;
  line_open_ = true;
  wrote_any_ = true;
}

void DkimBodyCanonicalizer::line_end(std::string& out) {
  wsp_pending_ = false;  // relaxed: trailing whitespace goes
  if (line_open_) {
    out += "\r\n";
    line_open_ = false;
  } else {
    ++empty_lines_;
  }
}

void DkimBodyCanonicalizer::feed(std::string_view chunk, std::string& out) {
  for (char c : chunk) {
    if (cr_pending_) {
      cr_pending_ = false;
      if (c == '\n') {
        line_end(out);
        continue;
      }
      content('\r', out);  // a bare CR is data
    }
    if (c == '\r') {
      cr_pending_ = true;
    } else if (c == '\n') {
      line_end(out);  // bare LF taken as CRLF
    } else {
      content(c, out);
    }
  }
}

void DkimBodyCanonicalizer::finish(std::string& out) {
  if (cr_pending_) {
    cr_pending_ = false;
    content('\r', out);
  }
  if (line_open_) {
    out += "\r\n";
    line_open_ = false;
  }
  if (!wrote_any_ && canon_ == DkimCanon::simple) out += "\r\n";
  wrote_any_ = true;
  empty_lines_ = 0;
}

std::string dkim_canon_body(DkimCanon canon, std::string_view body) {
  DkimBodyCanonicalizer c(canon);
  std::string out;
  c.feed(body, out);
  c.finish(out);
  return out;
}

struct DkimBodyHasher::Ctx {
  MdCtx md;
};

DkimBodyHasher::DkimBodyHasher(DkimCanon canon, DkimAlgorithm algorithm,
                               std::optional<uint64_t> limit)
    : ctx_(std::make_unique<Ctx>()),
      canon_(canon),
      canon_kind_(canon),
      algorithm_(algorithm),
      limit_(limit) {
  ctx_->md.reset(EVP_MD_CTX_new());
  if (!ctx_->md || EVP_DigestInit_ex(ctx_->md.get(), md_of(algorithm), nullptr) != 1) {
    ERR_clear_error();
    throw std::runtime_error("digest init failed");
  }
}

DkimBodyHasher::~DkimBodyHasher() = default;
DkimBodyHasher::DkimBodyHasher(DkimBodyHasher&&) noexcept = default;
DkimBodyHasher& DkimBodyHasher::operator=(DkimBodyHasher&&) noexcept = default;

bool DkimBodyHasher::matches(DkimCanon canon, DkimAlgorithm algorithm,
                             std::optional<uint64_t> limit) const {
  return canon == canon_kind_ && md_of(algorithm) == md_of(algorithm_) && limit == limit_;
}

void DkimBodyHasher::hash(std::string_view canonical) {
  uint64_t before = length_;
  length_ += canonical.size();
  if (limit_) {
    if (before >= *limit_) return;
    canonical = canonical.substr(
        0, static_cast<size_t>(std::min<uint64_t>(canonical.size(), *limit_ - before)));
  }
  if (!canonical.empty() &&
      EVP_DigestUpdate(ctx_->md.get(), canonical.data(), canonical.size()) != 1) {
    ERR_clear_error();
    throw std::runtime_error("digest update failed");
  }
}

void DkimBodyHasher::feed(std::string_view chunk) {
  buffer_.clear();
  canon_.feed(chunk, buffer_);
  hash(buffer_);
}

void DkimBodyHasher::finish() {
  buffer_.clear();
  canon_.finish(buffer_);
  hash(buffer_);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx_->md.get(), out, &len) != 1) {
    ERR_clear_error();
    throw std::runtime_error("digest final failed");
  }
  digest_.assign(reinterpret_cast<const char*>(out), len);
}

std::string dkim_signed_data(const DkimSignature& sig, const std::vector<HeaderField>& headers,
                             size_t signature_index) {
  // Candidates per lower-case name, top to bottom; chosen from the back.
  std::map<std::string, std::vector<size_t>, std::less<>> by_name;
  for (const auto& wanted : sig.signed_headers) by_name.try_emplace(wanted);
  for (size_t i = 0; i < headers.size(); ++i) {
    if (i == signature_index) continue;
    size_t colon = 0;
    std::string_view name = field_name(headers[i].raw, &colon);
    if (colon == std::string_view::npos) continue;
    auto it = by_name.find(to_lower(name));
    if (it != by_name.end()) it->second.push_back(i);
  }
  std::string data;
  for (const auto& wanted : sig.signed_headers) {
    auto& candidates = by_name[wanted];
    if (candidates.empty()) continue;  // a null string (RFC 6376 §5.4.2)
    data += dkim_canon_header(sig.header_canon, headers[candidates.back()].raw);
    candidates.pop_back();
  }
  std::string own = dkim_canon_header(sig.header_canon, sig.unsigned_field);
  own.resize(own.size() - 2);  // no final CRLF
  data += own;
  return data;
}

// ---- Verification ----

DkimVerifier::DkimVerifier(const std::vector<HeaderField>& headers, int64_t now_unix,
                           DkimLimits limits)
    : headers_(headers), limits_(limits) {
  for (size_t i = 0; i < headers.size(); ++i) {
    if (!dkim_field_is(headers[i].raw, "DKIM-Signature")) continue;
    if (sigs_.size() >= limits_.max_signatures) {
      ++ignored_;
      continue;
    }
    Sig s;
    s.header_index = i;
    s.parse = parse_dkim_signature(headers[i].raw, limits_);
    if (!s.parse.signature) {
      s.decided = make_result(s.parse, DkimStatus::permerror, s.parse.error);
    } else {
      const DkimSignature& sig = *s.parse.signature;
      if (now_unix > 0 && sig.expiration && *sig.expiration < now_unix) {
        s.decided = make_result(s.parse, DkimStatus::fail, "signature expired");
      } else {
        // One body hash per (canonicalisation, hash, l=): signatures usually share it.
        size_t k = 0;
        for (; k < hashers_.size(); ++k) {
          if (hashers_[k].matches(sig.body_canon, sig.algorithm, sig.length)) break;
        }
        if (k == hashers_.size()) hashers_.emplace_back(sig.body_canon, sig.algorithm, sig.length);
        s.hasher = k;
      }
    }
    sigs_.push_back(std::move(s));
  }
}

DkimVerifier::~DkimVerifier() = default;

std::string DkimVerifier::key_name(size_t i) const {
  const Sig& s = sigs_.at(i);
  if (s.decided) return {};
  return s.parse.signature->key_name();
}

void DkimVerifier::feed_body(std::string_view chunk) {
  for (auto& h : hashers_) h.feed(chunk);
}

void DkimVerifier::finish_body() {
  if (finished_) return;
  finished_ = true;
  for (auto& h : hashers_) h.finish();
}

DkimResult DkimVerifier::verify(size_t i, const DkimKeyAnswer& answer) const {
  const Sig& s = sigs_.at(i);
  if (s.decided) return *s.decided;
  if (!finished_) throw std::logic_error("DkimVerifier::verify before finish_body");
  const DkimSignature& sig = *s.parse.signature;
  auto result = [&](DkimStatus status, std::string reason) {
    return make_result(s.parse, status, std::move(reason));
  };

  switch (answer.status) {
    case DkimKeyAnswer::Status::temperror:
      return result(DkimStatus::temperror,
                    "key lookup failed" + (answer.detail.empty() ? "" : ": " + answer.detail));
    case DkimKeyAnswer::Status::none:
      return result(DkimStatus::permerror, "no key");
    case DkimKeyAnswer::Status::found:
      break;
  }
  if (answer.records.empty()) return result(DkimStatus::permerror, "no key");
  // RFC 6376 §3.6.2.2: one record per selector; with several, the first usable one counts.
  DkimKeyParse parsed;
  for (const auto& record : answer.records) {
    DkimKeyParse p = parse_dkim_key(record, limits_);
    if (p.key) {
      parsed = std::move(p);
      break;
    }
    if (parsed.error.empty()) parsed = std::move(p);
  }
  if (!parsed.key) return result(DkimStatus::permerror, parsed.error);
  const DkimKey& key = *parsed.key;

  bool ed = sig.algorithm == DkimAlgorithm::ed25519_sha256;
  if ((key.type == DkimKeyType::ed25519) != ed) {
    return result(DkimStatus::permerror, "key type does not match a=");
  }
  if (!key.hashes.empty() &&
      std::find(key.hashes.begin(), key.hashes.end(), "sha256") == key.hashes.end()) {
    return result(DkimStatus::permerror, "key does not allow sha256 (h=)");
  }
  if (key.strict_identity) {
    size_t at = sig.identity.rfind('@');
    if (to_lower(sig.identity.substr(at + 1)) != sig.domain) {
      return result(DkimStatus::permerror, "i= domain is not d= (key t=s)");
    }
  }

  // The key material.
  Pkey pkey;
  if (ed) {
    if (key.public_key.size() != 32) return result(DkimStatus::permerror, "bad Ed25519 key length");
    pkey.reset(EVP_PKEY_new_raw_public_key(
        EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(key.public_key.data()),
        key.public_key.size()));
  } else {
    const auto* der = reinterpret_cast<const unsigned char*>(key.public_key.data());
    const unsigned char* p = der;
    auto len = static_cast<long>(key.public_key.size());
    pkey.reset(d2i_PUBKEY(nullptr, &p, len));
    if (!pkey) {  // some publish a bare PKCS#1 RSAPublicKey
      p = der;
      pkey.reset(d2i_PublicKey(EVP_PKEY_RSA, nullptr, &p, len));
    }
    if (pkey && !EVP_PKEY_is_a(pkey.get(), "RSA")) pkey.reset();
  }
  ERR_clear_error();
  if (!pkey) return result(DkimStatus::permerror, "bad key data");
  if (!ed) {
    int bits = EVP_PKEY_get_bits(pkey.get());
    if (bits < static_cast<int>(limits_.min_rsa_bits)) {
      return result(DkimStatus::permerror, "key too short (" + std::to_string(bits) + " bits)");
    }
    if (bits > static_cast<int>(limits_.max_rsa_bits)) {
      return result(DkimStatus::permerror, "key too long (" + std::to_string(bits) + " bits)");
    }
  }

  auto finish = [&](DkimResult r) {
    r.testing = key.testing;
    return r;
  };

  // The body (RFC 6376 §6.1.3).
  const DkimBodyHasher& hasher = hashers_[s.hasher];
  if (sig.length && *sig.length > hasher.canonical_length()) {
    DkimResult r = result(DkimStatus::fail, "l= longer than the body");
    r.body_mismatch = true;
    return finish(std::move(r));
  }
  if (hasher.digest() != sig.body_hash) {
    DkimResult r = result(DkimStatus::fail, "body hash mismatch");
    r.body_mismatch = true;
    return finish(std::move(r));
  }

  // The header signature.
  std::string data = dkim_signed_data(sig, headers_, s.header_index);
  MdCtx ctx(EVP_MD_CTX_new());
  if (!ctx) throw std::runtime_error("EVP_MD_CTX_new failed");
  bool ok = false;
  const auto* sigbytes = reinterpret_cast<const unsigned char*>(sig.signature.data());
  if (ed) {
    // RFC 8463 §3: PureEdDSA over the SHA-256 hash of the data.
    std::string digest = sha256(data);
    ok =
        EVP_DigestVerifyInit_ex(ctx.get(), nullptr, nullptr, nullptr, nullptr, pkey.get(),
                                nullptr) == 1 &&
        EVP_DigestVerify(ctx.get(), sigbytes, sig.signature.size(),
                         reinterpret_cast<const unsigned char*>(digest.data()), digest.size()) == 1;
  } else {
    ok = EVP_DigestVerifyInit_ex(ctx.get(), nullptr, "SHA256", nullptr, nullptr, pkey.get(),
                                 nullptr) == 1 &&
         EVP_DigestVerify(ctx.get(), sigbytes, sig.signature.size(),
                          reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
  }
  ERR_clear_error();
  if (!ok) return finish(result(DkimStatus::fail, "signature mismatch"));
  return finish(result(DkimStatus::pass, ""));
}

std::vector<DkimResult> dkim_verify(
    const std::vector<HeaderField>& headers, std::string_view body, int64_t now_unix,
    const std::function<DkimKeyAnswer(const std::string& key_name)>& lookup,
    const DkimLimits& limits) {
  DkimVerifier v(headers, now_unix, limits);
  v.feed_body(body);
  v.finish_body();
  std::map<std::string, DkimKeyAnswer> keys;
  std::vector<DkimResult> out;
  for (size_t i = 0; i < v.size(); ++i) {
    DkimKeyAnswer answer;
    if (v.needs_key(i)) {
      std::string name = v.key_name(i);
      auto it = keys.find(name);
      if (it == keys.end()) it = keys.emplace(name, lookup(name)).first;
      answer = it->second;
    }
    out.push_back(v.verify(i, answer));
  }
  return out;
}

}  // namespace spamward
