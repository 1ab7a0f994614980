// Mailbox lists of From:, Sender:, Reply-To: (RFC 5322 §3.4), for header sanity and DMARC.
//
// Contract: parse_mailbox_list splits a decoded header value into mailboxes, honouring
// quoted strings, comments, angle brackets and groups ("undisclosed:;" yields none). Each
// mailbox has its display name (quotes and comments removed, whitespace collapsed) and its
// address (as written between the brackets, or the bare addr-spec), with `valid` telling
// whether the address has the local@domain shape with a dotted, host-name-like domain (an
// address literal "[192.0.2.1]" also counts). It never throws; at most `max` mailboxes are
// returned (the rest are ignored), and the result is empty for empty input.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace spamward {

struct Mailbox {
  std::string display;
  std::string address;
  bool valid = false;
};

std::vector<Mailbox> parse_mailbox_list(std::string_view value, size_t max = 100);

// The mailboxes of a whole header field as received (HeaderField::raw: "From: ..." with its
// folding). The list is split BEFORE RFC 2047 decoding, and only display names are decoded
// afterwards: RFC 2047 §5 forbids encoded words in an addr-spec, and decoding first would let
// an encoded "<admin@bank.example>" in the display name take over the address (a sender could
// hide its real From domain from DMARC that way). Same limits and guarantees as above.
std::vector<Mailbox> parse_mailbox_field(std::string_view raw_field, size_t max = 100);

// True when `address` is local@domain with a plausible domain (see above).
bool plausible_address(std::string_view address);

// The first thing in `text` that looks like an e-mail address (local@domain.tld), or empty.
// For display names that show an address ("PayPal service@paypal.com" <x@evil.example>).
std::string address_in_text(std::string_view text);

}  // namespace spamward
