// Unknown-recipient events from the MTA's log (DESIGN §3.3 [recipients] follow_log, issue 7).
//
// For set-ups where the MTA refuses unknown recipients itself, spamward never sees those RCPTs:
// it learns them by following the MTA's log, so the guessing tracker counts them per client.
//
// parse_mta_log_line() turns one log line into an event, or nullopt. It recognises exactly:
// - Postfix smtpd:
//     "QUEUEID: reject: RCPT from NAME[IP]: 5XX 5.1.1 <RCPT>: Recipient address rejected:
//      User unknown in TABLE; from=<S> to=<RCPT> proto=P helo=<HELO>"
//   QUEUEID is NOQUEUE or a queue id; TABLE is "local recipient table", "virtual mailbox
//   table", "virtual alias table" or "relay recipient table" (Postfix's own wording, nothing
//   else). The program is "<syslog_name>/.../smtpd", where syslog_name starts with "postfix"
//   (postfix/smtpd, postfix/smtps/smtpd, postfix/submission/smtpd, postfix-out/smtpd).
//   Not events: 4xx (soft or warn_if_reject), "reject_warning", "Relay access denied",
//   "Sender address rejected", and every other "Recipient address rejected" reason —
//   policy servers, access maps, greylisting, and spamward's own 550 5.1.1 (which spamward
//   counted already: reading it back would count each guess twice). postscreen never checks
//   recipients, so its lines are never events.
// - Exim mainlog:
//     "H=[NAME ][(HELO) ][IP][:PORT] [KEY=VALUE ...] rejected RCPT <RCPT>: REASON"
//   REASON is the whole rest of the line and one of "Unknown user", "Unrouteable address",
//   "No such user here" (ASCII case-insensitive). "temporarily rejected RCPT" (4xx) is not
//   an event. The fields between the host and "rejected" (I=, U=, F=, X=, A=, ...) must have
//   the KEY=VALUE shape.
// The line may carry a syslog prefix ("Dec  3 10:00:00 host postfix/smtpd[1]: "), an RFC 3339
// one ("2026-12-03T10:00:00.123+00:00 host exim[1]: "), Exim's own ("2026-12-03 10:00:00[.mmm]
// [+zone] [[pid]] ", also after an exim tag), journald's "MESSAGE=", or none at all
// (`journalctl -o cat`). A tagged line must come from the matching program; a trailing CR is
// ignored.
//
// Why so strict: the client address is what gets counted and later banned, and the log mixes
// it with text the client chose (HELO, sender, recipient). So the address is taken only from
// a position the client cannot forge: in Postfix, before any client text (the name must be a
// valid host name or "unknown"); in Exim, the host part must hold exactly one "[address]",
// the line exactly one "rejected RCPT", and the reason must end the line, so a HELO or sender
// crafted to look like another client's rejection makes the line no event at all. The Postfix
// recipient must appear again, the same, in the first to=<...> after from=<. The address must
// parse as an IpAddress; a recipient must be 1..1024 bytes (Exim's without '<' or '>').
// Lines refused for that are lost to the count: a missed guess costs less than a ban pinned
// on an innocent address.
// Parsing is a fixed number of linear scans (no regex), so a hostile line costs O(length).
//
// MtaLogFollower follows one log file like `tail -F` on its own thread, polling every
// poll_interval:
// - start() opens the file if it exists and starts at its end (old lines were dealt with when
//   they were written, or are too old to matter); a file that appears later (created, or the
//   new file after a rotation) is read from its beginning;
// - rotation (the path names another inode): the old file is read to its end first, then the
//   new one is followed; while the path is missing the old file is still read;
// - truncation (the file shrank below what was read, e.g. copytruncate): read from the start
//   again. As with tail, a file truncated and regrown past the old offset between two polls
//   is not noticed as truncated;
// - a line is handled when its newline arrives (a partial line waits for the rest); a CR
//   before the newline is dropped; a line longer than kMaxLineBytes (without its newline) is
//   skipped up to the next newline, never buffered whole.
// Only regular files are followed. Errors (no permission, a directory) are logged once per
// change and retried every poll. on_event runs on the follower's thread; an exception it
// throws is logged and the follower goes on. stop() (and the destructor) ends the thread
// within about one read chunk, and start() after stop() starts over at the file's end.
// start/stop are for one owner thread; the counters may be read from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "core/ip_address.h"

namespace spamward {

struct UnknownRecipientEvent {
  IpAddress client;       // the SMTP client the MTA refused
  std::string recipient;  // as logged, without <>
  std::string helo;       // may be empty (no HELO, or Exim logged none)
};

// One log line -> an event when it records an unknown-recipient refusal by Postfix or Exim;
// nullopt otherwise.
std::optional<UnknownRecipientEvent> parse_mta_log_line(std::string_view line);

class MtaLogFollower {
 public:
  static constexpr size_t kMaxLineBytes = 8192;

  MtaLogFollower(std::string path, std::function<void(const UnknownRecipientEvent&)> on_event,
                 std::chrono::milliseconds poll_interval = std::chrono::milliseconds(250));
  ~MtaLogFollower();  // stops and joins
  MtaLogFollower(const MtaLogFollower&) = delete;
  MtaLogFollower& operator=(const MtaLogFollower&) = delete;

  void start();  // no-op while running
  void stop();   // idempotent

  uint64_t lines_read() const { return lines_read_.load(); }        // complete lines parsed
  uint64_t events() const { return events_.load(); }                // lines that were events
  uint64_t lines_skipped() const { return lines_skipped_.load(); }  // over kMaxLineBytes

 private:
  void run();
  // One poll: (re)open, read what is new, notice rotation and truncation.
  void poll();
  // Opens path_; `at_end` seeks to its end. False (and logs once) when it cannot.
  bool open_file(bool at_end);
  void close_file();
  // Reads the open file to its current end (or until stop); false on a read error.
  bool drain();
  void feed(const char* data, size_t size);
  void handle_line(std::string_view line);
  void note_problem(const std::string& problem);  // logs a problem once until it changes

  const std::string path_;
  const std::function<void(const UnknownRecipientEvent&)> on_event_;
  const std::chrono::milliseconds poll_interval_;

  std::mutex mu_;  // with cv_: the wait between polls; stopping_ is set under it
  std::condition_variable cv_;
  std::atomic<bool> stopping_{false};  // also read between read chunks, without the lock
  std::thread thread_;

  // Owned by the follower thread while it runs (by start() before that).
  int fd_ = -1;
  uint64_t dev_ = 0;
  uint64_t ino_ = 0;
  uint64_t offset_ = 0;    // bytes of the open file consumed so far
  std::string partial_;    // an unfinished line (at most kMaxLineBytes)
  bool skipping_ = false;  // inside an overlong line: drop bytes up to the next newline
  std::string problem_;    // the last problem logged ("" when none)

  std::atomic<uint64_t> lines_read_{0};
  std::atomic<uint64_t> events_{0};
  std::atomic<uint64_t> lines_skipped_{0};
};

}  // namespace spamward
