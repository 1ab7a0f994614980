// Transaction: the facts of one SMTP transaction as the MTA reported them, the same model
// for every protocol (policy, milter, spamd, HTTP, `check`). Checks read it; only protocol
// servers fill it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/ip_address.h"
#include "core/strings.h"
#include "mail/message.h"

namespace spamward {

// SMTP stages in order. A check declares the earliest stage at which its facts exist.
enum class Stage { connect = 0, helo = 1, mail = 2, rcpt = 3, data = 4, eom = 5 };
std::string_view to_string(Stage s);

struct Transaction {
  std::string id;        // queue id when known, else the MTA's instance, else generated
  std::string instance;  // Postfix's per-message instance attribute
  std::string queue_id;
  Stage stage = Stage::connect;

  std::optional<IpAddress> client_address;
  // The MTA's own lookups (DESIGN §3.5): client_name is forward-confirmed ("unknown" when
  // not), reverse_client_name is the bare PTR ("unknown" when none). Empty: not given.
  std::string client_name;
  std::string reverse_client_name;
  std::string helo;
  std::string sender;                       // envelope sender without <>; empty for bounces
  std::vector<std::string> recipients;      // accepted so far, in order
  std::string recipient;                    // the one being decided at the rcpt stage
  std::string sasl_username;                // non-empty: the client authenticated
  std::optional<IpAddress> server_address;  // the address the client reached
  int server_port = 0;
  std::string protocol;  // "SMTP", "ESMTP"
  int64_t size = 0;      // declared or actual message size
  int64_t recipient_count = 0;

  // Authentication results, filled by the auth checks (SPF/DKIM issue). Sender entries of the
  // allow list match only when one of these vouches for the sender's domain.
  std::string spf_pass_domain;
  std::vector<std::string> dkim_valid_domains;
  // SPF gave a definite result for the SPF identity (pass, fail, softfail, neutral, none,
  // permerror: not a timeout), and DKIM for every signature (DKIM_INVALID or DKIM_NONE: each
  // signature failed for good). DMARC counts a missing aligned pass as a failure only then.
  bool spf_decided = false;
  bool dkim_decided = false;

  // The message itself, for the content checks (stage eom): the milter at end of message,
  // spamd, HTTP and `check`. Null before then, and always with the policy server.
  std::shared_ptr<const Message> message;

  // Which verdicts of this evaluation are decisions to log and count (DESIGN §3.7: one line
  // per decision). A protocol that evaluates every stage but answers only some of them (the
  // milter) marks the others, so a message makes one decision line, not six.
  enum class Report : uint8_t {
    always,    // the answer to this stage is the decision (policy, spamd, end of message)
    refusals,  // an intermediate stage: only a refusal is a decision (tempfail and up; from
               // DATA on, greylist too: a whole message is greylisted at DATA, DESIGN §3.5)
    never,     // evaluated for later stages only (the milter's CONNECT and HELO)
  };
  Report report = Report::always;

  // Set by the Engine on the copy checks see: this evaluation must change no state (Env's
  // read_only, or EvaluationState::read_only for the HTTP check API). Checks that remember
  // things (address guessing, trap hits) then only report.
  bool read_only = false;

  bool authenticated() const { return !sasl_username.empty(); }
};

// "user@Example.ORG" -> "example.org"; "" when there is no '@'.
std::string domain_of(std::string_view address);

}  // namespace spamward
