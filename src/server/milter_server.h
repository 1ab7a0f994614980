// MilterServer: spamward as a Sendmail/Postfix mail filter (milter protocol version 6, our own
// implementation on Asio; codec in server/milter_protocol.h). It translates milter events to
// Transactions, asks the current Engine at every SMTP stage and at end of message, and answers
// per DESIGN §3.5 (milter column); it never scores anything itself.
//
// Contract:
// - One coroutine per MTA connection; the MTA sends one command and waits for its reply, and
//   the replies go out in order. TCP and unix sockets share one code path.
// - Stages: CONNECT, HELO, MAIL, each RCPT, DATA and end of message are evaluated through the
//   Engine with one EvaluationState per message (checks of a stage run once per message; the
//   connection's CONNECT and HELO results are reused by every message of the connection).
//   Header fields and body chunks are fed to a MessageParser; at end of message the parsed
//   Message goes with the transaction (tx.message), so SMTP-stage and content signals
//   combine in one score.
// - Answers: a refusal (tempfail, reject: a ban or deny entry, an unknown recipient, a score)
//   is SMFIR_REPLYCODE with the 4xx/5xx text. CONNECT and HELO always continue: a refusal the
//   Engine decided there is answered at MAIL (like Postfix's smtpd_delay_reject), because
//   MTAs replace a connect-stage rejection's text with their own. CONNECT, HELO, UNKNOWN,
//   headers and end of headers get no reply at all when the MTA agreed to the SMFIP_NR_* bits
//   (MilterNegotiated::replies_to). Greylisting is never
//   answered at RCPT: the message is deferred as a whole, once, at DATA or end of message.
//   An accepted message gets its incoming X-Spam-* and X-Spamward-* fields deleted, then
//   X-Spam-Score and X-Spamward-Symbols (and X-Spam-Flag: YES when tagged) added, then
//   SMFIR_ACCEPT. dry_run verdicts only add headers.
// - Authentication-Results (RFC 8601), when the current config has [headers]
//   authentication_results: after those edits, the incoming Authentication-Results fields that
//   carry our authserv-id (effective_authserv_id(), case-insensitive) are deleted by index and
//   ours (SPF, DKIM, DMARC results of the verdict's symbols) is added; fields with other
//   authserv-ids stay. Nothing for a trusted client (verdict.trusted, or its address in
//   [network] trusted when the engine failed); deletions only when the engine failed.
// - BATV signing (issue 7, auth/batv.h): when the current config has [batv] keys, spamward asks
//   for SMFIF_CHGFROM at negotiation; an accepted message whose client authenticated
//   ({auth_authen}) or is in [network] trusted, with a non-empty sender not yet tagged, gets
//   SMFIR_CHGFROM with the tagged sender before SMFIR_ACCEPT (batv_signed_sender). It does
//   not depend on the score; a signing error logs a warning and leaves the sender alone.
// - Limits (DESIGN §3.5): a frame whose length field is 0 or over max_frame (default 1 MiB;
//   64 KiB + 1 is the floor) closes the connection, as does a malformed command, an unknown
//   command code, or any command before option negotiation; each with one log line
//   "milter: closing connection from PEER: REASON" and a count in
//   spamward_protocol_errors_total{server="milter",reason}. Other connections are never
//   affected. Header fields past max_headers are not stored (one warning per message, counted
//   with reason="too_many_headers"); the connection stays open. Past max_message_bytes
//   (headers + body) the server stops storing, answers SMFIR_SKIP when the MTA offered
//   SMFIP_SKIP (else CONTINUE), and scores what it saw: a large message is never refused or
//   deferred for its size (counted in spamward_milter_truncated_total).
// - Timeouts: idle_timeout between commands (the MTA waits for its SMTP client meanwhile),
//   frame_timeout from a frame's first byte to its last, and for writing a reply.
// - SMFIC_ABORT ends the message (state reset, no reply); SMFIC_QUIT_NC ends the SMTP
//   session but keeps the connection for a new one (CONNECT, or a new OPTNEG, follows);
//   SMFIC_QUIT closes.
// - Fail open: when the engine throws or there is none, the answer is CONTINUE (ACCEPT at
//   end of message, with the incoming X-Spam-* fields still deleted) and a log line says why.
// - Metrics: gauge spamward_open_connections{server="milter"}, counters
//   spamward_protocol_errors_total{server="milter",reason}, spamward_milter_truncated_total.
//
// Threading: as PolicyServer (one thread or a strand runs the executor; stop() may be called
// from any thread; destroy it after the executor stopped running its handlers).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/duration.h"
#include "core/listen_spec.h"
#include "core/metrics.h"
#include "engine/engine.h"
#include "server/milter_protocol.h"
#include "server/policy_server.h"  // EngineSource

namespace spamward {

namespace detail {
struct MilterServerState;  // shared with the coroutines, so they may outlive the server object
}

struct MilterLimits {
  size_t max_frame = kDefaultMaxMilterFrame;          // length field (command byte + data)
  size_t max_headers = 1000;                          // header fields stored per message
  int64_t max_message_bytes = 10485760;               // [limits] max_message_bytes
  Duration idle_timeout = std::chrono::hours(1);      // between commands
  Duration frame_timeout = std::chrono::seconds(60);  // first byte to last; per reply write
  int64_t max_connections = 2000;  // open at once; further ones are closed at accept
};

// The tagged envelope sender for an accepted message of tx (its client facts, sender and
// sasl_username), or nullopt: no [batv] keys, empty or already tagged sender, a client neither
// authenticated nor trusted, or the sender cannot be signed. Never throws.
std::optional<std::string> batv_signed_sender(const Config& config, const Transaction& tx,
                                              TimePoint now);

class MilterServer {
 public:
  MilterServer(boost::asio::any_io_executor ex, EngineSource engine, MilterLimits limits,
               Metrics& metrics);
  ~MilterServer();
  MilterServer(const MilterServer&) = delete;
  MilterServer& operator=(const MilterServer&) = delete;

  // Binds now; throws std::runtime_error("cannot listen on SPEC: REASON"). A stale unix socket
  // file is replaced (never a live one or a non-socket); the socket gets mode 0660.
  void listen(const ListenSpec& spec);
  // The bound port of the first TCP listener (the kernel's pick for port 0); 0 if none.
  uint16_t port() const;
  void start();
  // Stops accepting and closes connections between commands now; a command being answered
  // is answered first. Idempotent.
  void stop();
  size_t open_connections() const;

 private:
  std::shared_ptr<detail::MilterServerState> state_;
};

}  // namespace spamward
