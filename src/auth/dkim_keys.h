// DKIM key lookups through the Resolver, and the asynchronous verification of a whole message
// (auth/dkim.h is the pure part).
//
// Contract:
// - A key is the TXT record at "<selector>._domainkey.<domain>". ok -> found (each record's
//   strings joined, as the Resolver gives them); nxdomain/nodata -> none (the signature is a
//   permerror: no key); timeout/error (SERVFAIL) -> temperror, never an answer (DESIGN §1).
// - Caching: none here, on purpose. The daemon's Resolver is a CachingResolver (dns/dns_cache.h,
//   made by make_resolver for `serve` and `check`): answers live for their TTL, nxdomain/nodata
//   for their negative TTL, timeouts are never stored, and concurrent identical queries are
//   coalesced. A second cache of parsed keys would save only a base64 and DER decode
//   (microseconds), so keys are parsed again for each message.
// - verify_dkim() looks up every distinct key of a message concurrently and hashes the body
//   while the queries are out. It keeps `message` alive itself; the Resolver must outlive the
//   queries (like every check's resolver).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "auth/dkim.h"
#include "dns/resolver.h"
#include "mail/message.h"

namespace spamward {

// The verifier's view of a DNS answer for a key name.
DkimKeyAnswer dkim_key_answer(const DnsAnswer& answer);

// Looks up one key name ("sel._domainkey.example.org"). A resolver that throws gives temperror.
boost::asio::awaitable<DkimKeyAnswer> lookup_dkim_key(Resolver& resolver, std::string key_name);

struct DkimVerification {
  std::vector<DkimResult> results;  // one per signature considered, in header order
  size_t ignored = 0;               // DKIM-Signature fields past DkimLimits::max_signatures
};

// Verifies every DKIM-Signature of `message` (its raw header fields and raw body).
boost::asio::awaitable<DkimVerification> verify_dkim(Resolver& resolver,
                                                     std::shared_ptr<const Message> message,
                                                     int64_t now_unix, DkimLimits limits = {});

}  // namespace spamward
