// DKIM verification (RFC 6376, RFC 8301, RFC 8463): the pure part, no I/O. Key lookups are
// in auth/dkim_keys.h, the symbols in checks/dkim_check.h.
//
// Contract:
// - Input is untrusted. Tag lists (signatures and key records) are bounded by DkimLimits; past
//   a limit the signature or key is a permerror, never a crash.
// - Inputs are a message's raw top-level header fields in order (HeaderField::raw: name, colon,
//   value, folding and line end, byte for byte) and the raw body bytes, fed in any chunks. Bare
//   LF is taken as CRLF everywhere (files on disk; an MTA hands CRLF to a milter).
// - Strict RFC 6376 + RFC 8301 + RFC 8463: v=1 is required; a= is rsa-sha256 or ed25519-sha256
//   (rsa-sha1 is a permerror: RFC 8301 §3.1 says it MUST NOT be considered valid); RSA keys
//   shorter than 1024 bits are a permerror (RFC 8301 §3.2); h= must name From; i= must be
//   within d=; q= must allow dns/txt; x= must not be before t=; the RFC 4871 g= key tag is
//   ignored (RFC 6376 removed it).
// - One result per signature, in header order:
//     pass       the signature verifies;
//     fail       it was checked and does not hold: body hash mismatch, signature mismatch,
//                l= longer than the body, expired (x= in the past);
//     permerror  it cannot be checked: syntax error, unsupported or forbidden algorithm or
//                canonicalisation, From not signed, no key (NXDOMAIN or no TXT record), key
//                revoked (empty p=), bad key record, key type or hash not allowed by the key,
//                key too short or too long, key not for e-mail (s=), i= not d= under t=s;
//     temperror  the key lookup timed out or failed (SERVFAIL): never an answer about the
//                signature (DESIGN §1: a timeout never becomes DKIM_INVALID).
//   RFC 6376 calls both fail and permerror PERMFAIL; they are kept apart for the logs only.
// - A signing key in testing mode (t=y) sets DkimResult::testing; RFC 6376 §3.6.1 says such
//   mail must not be treated differently from unsigned mail, so consumers ignore a failure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mail/message.h"

namespace spamward {

struct DkimLimits {
  size_t max_signatures = 8;  // DKIM-Signature fields verified per message; later ones ignored
  size_t max_tags = 64;       // tags in one tag list
  size_t max_value = 16384;   // raw bytes of one tag value (folding included)
  size_t max_signed_headers = 128;  // entries of h=
  unsigned min_rsa_bits = 1024;     // RFC 8301 §3.2
  unsigned max_rsa_bits = 8192;     // bounds the cost of one verification
};

enum class DkimAlgorithm { rsa_sha256, rsa_sha1, ed25519_sha256 };
enum class DkimCanon { simple, relaxed };
enum class DkimStatus { pass, fail, permerror, temperror };
std::string_view to_string(DkimStatus s);

// ---- Tag lists (RFC 6376 §3.2) ----

// One "name=value" of a tag list. `value` has its outer whitespace trimmed (inner folding is
// kept: callers that need base64 strip it). [raw_begin, raw_end) is the whole value region in
// the parsed text, between '=' and ';' (or the end), whitespace included: what "b= emptied"
// removes.
struct DkimTag {
  std::string_view name;
  std::string_view value;
  size_t raw_begin = 0;
  size_t raw_end = 0;
};

// Parses `text` as a tag list. Whitespace (SP, HTAB, CR, LF: folding) around names, '=' and
// values is allowed; empty segments (";;", a trailing ';') are skipped. Errors: a segment
// without '=', a bad tag name, a control byte in a value, a duplicate tag, more than
// max_tags tags, a value longer than max_value. On error returns false and sets `error`.
bool parse_dkim_tag_list(std::string_view text, const DkimLimits& limits,
                         std::vector<DkimTag>& tags, std::string& error);

// Base64 with whitespace anywhere and optional '=' padding; nullopt on any other byte or a
// bad length.
std::optional<std::string> dkim_base64_decode(std::string_view text);

// ---- Signatures ----

struct DkimSignature {
  DkimAlgorithm algorithm = DkimAlgorithm::rsa_sha256;
  DkimCanon header_canon = DkimCanon::simple;
  DkimCanon body_canon = DkimCanon::simple;
  std::string domain;                       // d=, lower-case
  std::string selector;                     // s=, lower-case
  std::string identity;                     // i= decoded; "@" + d= when absent
  std::vector<std::string> signed_headers;  // h=, lower-case, in order
  std::string body_hash;                    // bh=, decoded
  std::string signature;                    // b=, decoded
  std::optional<uint64_t> length;           // l= (saturates at UINT64_MAX)
  std::optional<int64_t> timestamp;         // t=
  std::optional<int64_t> expiration;        // x=
  std::string unsigned_field;               // the raw field with the b= value removed, as hashed

  // "<selector>._domainkey.<domain>": the TXT name of the key.
  std::string key_name() const { return selector + "._domainkey." + domain; }
};

struct DkimSignatureParse {
  std::optional<DkimSignature> signature;  // set when valid
  std::string domain;                      // d= and s= as far as they could be read (for logs)
  std::string selector;
  std::string error;  // why it is a permerror
};

// Parses and validates one raw DKIM-Signature field (name, colon, value, line end). Checks
// everything that needs no key and no clock (RFC 6376 §6.1.1).
DkimSignatureParse parse_dkim_signature(std::string_view raw_field, const DkimLimits& limits = {});

// ---- Key records (RFC 6376 §3.6.1, RFC 8463) ----

enum class DkimKeyType { rsa, ed25519 };

struct DkimKey {
  DkimKeyType type = DkimKeyType::rsa;
  std::string public_key;  // p= decoded: DER SubjectPublicKeyInfo (or PKCS#1) / raw 32 bytes
  std::vector<std::string> hashes;  // h=, lower-case; empty: any
  bool testing = false;             // t=y
  bool strict_identity = false;     // t=s: i= must be exactly d=, not a subdomain
};

struct DkimKeyParse {
  std::optional<DkimKey> key;
  bool revoked = false;  // p= present and empty
  std::string error;     // set unless `key`
};

// Parses one key record (the TXT strings joined). v=, when present, must be exactly "DKIM1"
// (RFC 6376 also wants it first; a misordered v= is tolerated); k= defaults to rsa; s= must allow
// "email" or "*"; unknown tags and flags are ignored. The key material itself is checked when
// verifying.
DkimKeyParse parse_dkim_key(std::string_view record, const DkimLimits& limits = {});

// What a key lookup found, as the verifier needs it.
struct DkimKeyAnswer {
  enum class Status { found, none, temperror };
  Status status = Status::temperror;
  std::vector<std::string> records;  // TXT records, each with its strings joined
  std::string detail;                // for temperror: what went wrong ("timeout", "SERVFAIL")
};

// ---- Canonicalisation (RFC 6376 §3.4) ----

// The canonical form of one header field (name, colon, value, CRLF). `raw_field` may end in
// CRLF, LF or nothing; the result always ends in CRLF.
std::string dkim_canon_header(DkimCanon canon, std::string_view raw_field);

// Streaming body canonicalisation: feed() any chunks (a CRLF may be split between two), then
// finish(). Output is appended to `out`. Simple: trailing empty lines removed, an empty body
// becomes CRLF. Relaxed: whitespace runs become one SP, trailing whitespace of lines removed,
// trailing empty lines removed, an empty body stays empty.
class DkimBodyCanonicalizer {
 public:
  explicit DkimBodyCanonicalizer(DkimCanon canon) : canon_(canon) {}
  void feed(std::string_view chunk, std::string& out);
  void finish(std::string& out);

 private:
  void content(char c, std::string& out);
  void line_end(std::string& out);
  DkimCanon canon_;
  bool cr_pending_ = false;   // a CR whose LF may be in the next chunk
  bool line_open_ = false;    // the current line has content
  bool wsp_pending_ = false;  // relaxed: whitespace not yet written
  bool wrote_any_ = false;    // anything written at all
  uint64_t empty_lines_ = 0;  // empty lines not yet written (maybe trailing)
};

std::string dkim_canon_body(DkimCanon canon, std::string_view body);

// Body hash over the canonical body, limited to `limit` canonical bytes (l=) when given.
class DkimBodyHasher {
 public:
  DkimBodyHasher(DkimCanon canon, DkimAlgorithm algorithm, std::optional<uint64_t> limit);
  ~DkimBodyHasher();
  DkimBodyHasher(DkimBodyHasher&&) noexcept;
  DkimBodyHasher& operator=(DkimBodyHasher&&) noexcept;
  void feed(std::string_view chunk);
  void finish();
  const std::string& digest() const { return digest_; }  // raw bytes, after finish()
  uint64_t canonical_length() const { return length_; }  // whole canonical body
  bool matches(DkimCanon canon, DkimAlgorithm algorithm, std::optional<uint64_t> limit) const;

 private:
  void hash(std::string_view canonical);
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
  DkimBodyCanonicalizer canon_;
  DkimCanon canon_kind_;
  DkimAlgorithm algorithm_;
  std::optional<uint64_t> limit_;
  uint64_t length_ = 0;
  std::string buffer_;
  std::string digest_;
};

// The bytes the signature covers (RFC 6376 §3.7): the fields named by h=, chosen bottom-up
// (a name listed n times takes the n last fields of that name; a name with no field left
// adds nothing), each canonicalised with its CRLF, then the signature field itself
// (`headers[signature_index]`, excluded from the choice) with b= emptied and no final CRLF.
std::string dkim_signed_data(const DkimSignature& sig, const std::vector<HeaderField>& headers,
                             size_t signature_index);

// ---- Verification ----

struct DkimResult {
  std::string domain;  // d=, lower-case (empty when unreadable)
  std::string selector;
  DkimStatus status = DkimStatus::permerror;
  std::string reason;          // short, e.g. "body hash mismatch"; "" on pass
  bool testing = false;        // the key says t=y
  bool body_mismatch = false;  // the body hash (or l=) failed: meaningless for a truncated body
};

// Verifies the DKIM signatures of one message. Lifetime: `headers` must outlive the verifier.
//   DkimVerifier v(message.headers, now);
//   for i < v.size(): if v.needs_key(i), look up v.key_name(i)
//   v.feed_body(chunk)...; v.finish_body();
//   v.verify(i, key_answer)
// now_unix 0 skips the x= expiry check.
class DkimVerifier {
 public:
  DkimVerifier(const std::vector<HeaderField>& headers, int64_t now_unix, DkimLimits limits = {});
  ~DkimVerifier();
  DkimVerifier(const DkimVerifier&) = delete;
  DkimVerifier& operator=(const DkimVerifier&) = delete;

  size_t size() const { return sigs_.size(); }  // signatures considered
  size_t ignored() const { return ignored_; }   // DKIM-Signature fields past max_signatures
  // Whether signature i needs its key (false when already decided without one).
  bool needs_key(size_t i) const { return !sigs_[i].decided; }
  // The TXT name of its key ("" when needs_key is false).
  std::string key_name(size_t i) const;

  void feed_body(std::string_view chunk);
  void finish_body();

  // The result of signature i given its key lookup (ignored when !needs_key(i)). Call after
  // finish_body().
  DkimResult verify(size_t i, const DkimKeyAnswer& key) const;

 private:
  struct Sig {
    size_t header_index = 0;
    DkimSignatureParse parse;
    std::optional<DkimResult> decided;
    size_t hasher = 0;
  };
  const std::vector<HeaderField>& headers_;
  DkimLimits limits_;
  std::vector<Sig> sigs_;
  std::vector<DkimBodyHasher> hashers_;
  size_t ignored_ = 0;
  bool finished_ = false;
};

// One-shot form: every signature of a message, keys from `lookup` (called once per needed key
// name). For tests and tools.
std::vector<DkimResult> dkim_verify(
    const std::vector<HeaderField>& headers, std::string_view body, int64_t now_unix,
    const std::function<DkimKeyAnswer(const std::string& key_name)>& lookup,
    const DkimLimits& limits = {});

// True when the header field's name (before the colon, trailing whitespace ignored) is `name`
// (case-insensitive).
bool dkim_field_is(std::string_view raw_field, std::string_view name);

}  // namespace spamward
