// DMARC (RFC 7489): the pure part, no I/O. Record parsing, the organisational domain (libpsl
// with the Debian `publicsuffix` list) and identifier alignment. The policy lookup and the
// symbols are in checks/dmarc_check.h.
//
// Contract:
// - Input is untrusted. A record longer than DmarcLimits::max_record bytes or with more than
//   max_tags tags is rejected (error), never a crash; nothing here throws.
// - is_dmarc_record(): the discovery filter of RFC 7489 §6.6.3: a TXT record is a DMARC record
//   only when its first tag is v=DMARC1 ("v" in any case, "DMARC1" exactly, optional WSP around
//   '='), followed by ';' or the end. Others (SPF records, "v=DMARC10") are not.
// - parse_dmarc_record() (RFC 7489 §6.3, §6.6.3 step 6), kept simple:
//   - tags are "name=value" separated by ';', WSP around names, '=' and values allowed; empty
//     segments skipped; tag names and the values of p, sp, adkim, aspf are case-insensitive;
//   - the first occurrence of a tag wins; unknown tags (fo, rf, ri, ruf, np...) are ignored;
//     a malformed segment (no '=', bad name) is ignored, as §6.3 says syntax errors in the
//     rest of the record are;
//   - p= (none|quarantine|reject) is required. A missing or invalid p=, or an invalid sp=,
//     makes the record invalid, unless rua= holds at least one URI with a scheme ("mailto:..."):
//     then the record counts as p=none (sp=none), as §6.6.3 says;
//   - adkim=, aspf= are r|s, default r (an invalid value: r); pct= is 0..100, default 100 (an
//     invalid value: 100).
// - organizational_domain(): the registrable domain of a lower-case DNS name by the Public
//   Suffix List (RFC 7489 §3.2): "a.b.example.co.uk" -> "example.co.uk". A public suffix itself
//   ("co.uk", "com") is its own organisational domain (it has none other). The list is
//   psl_latest(NULL) (the packaged /usr/share/publicsuffix list when newer than libpsl's
//   built-in one), else psl_builtin(), loaded once, thread-safe, read-only afterwards. The
//   list's private section counts too (foo.blogspot.com is its own organisation), as in
//   OpenDMARC. Without any list: the last two labels.
// - dmarc_aligned() (RFC 7489 §3.1): strict: the same name; relaxed: the same organisational
//   domain. Case-insensitive, a trailing dot ignored; an empty name never aligns.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace spamward {

struct DmarcLimits {
  size_t max_record = 2048;  // bytes of one TXT record (the strings joined)
  size_t max_tags = 32;      // tags in one record
};

enum class DmarcPolicy { none, quarantine, reject };
enum class DmarcAlignment { relaxed, strict };
std::string_view to_string(DmarcPolicy p);

struct DmarcRecord {
  DmarcPolicy policy = DmarcPolicy::none;                   // p=
  std::optional<DmarcPolicy> subdomain_policy;              // sp=, when given
  DmarcAlignment dkim_alignment = DmarcAlignment::relaxed;  // adkim=
  DmarcAlignment spf_alignment = DmarcAlignment::relaxed;   // aspf=
  int percent = 100;                                        // pct=
  // p= (or sp=) was missing or invalid and the record counts as p=none because of rua=.
  bool policy_defaulted = false;
};

struct DmarcRecordParse {
  std::optional<DmarcRecord> record;  // set when usable
  std::string error;                  // why not (for logs)
};

// True when `txt` is a DMARC record by its first tag (see above).
bool is_dmarc_record(std::string_view txt);

DmarcRecordParse parse_dmarc_record(std::string_view txt, const DmarcLimits& limits = {});

// The policy that applies to a message whose From domain got this record: p=, or sp= (when
// given) when the record was found at the organisational domain of a subdomain; then lowered
// one step when pct < 100 (RFC 7489 §6.6.4: mail outside the sample gets the next lower
// policy; a score does not sample, so it takes the lower one).
DmarcPolicy effective_policy(const DmarcRecord& record, bool from_subdomain_fallback);

// Lower case, trailing dots removed: the form the functions below compare.
std::string normalize_domain(std::string_view domain);

// The organisational domain of `domain` (normalised first); empty for empty input.
std::string organizational_domain(std::string_view domain);

// Which list organizational_domain() uses: "psl_latest", "psl_builtin" or "none".
std::string_view public_suffix_source();

bool dmarc_aligned(std::string_view a, std::string_view b, DmarcAlignment mode);

}  // namespace spamward
