// RecipientList: which recipient addresses exist ([recipients] valid, issue 7), read from a
// text file the admin keeps (or the source file of a Postfix lookup table).
//
// Format, one entry per line; '#' starts a comment; blank lines are ignored:
//   user@example.org      an address that exists
//   @example.org          every address at the domain exists (a catch-all)
//   user                  the local part exists at every domain of the list (Postfix's
//                         virtual(5) bare-user form)
// Only the first whitespace-separated field counts, so a Postfix map source
// ("user@example.org  example.org/user/") is read as it is; lines that start with
// whitespace continue the previous entry's value in Postfix maps and are skipped.
// Keys are compared case-insensitively (ASCII). Domains named by any entry are "our domains";
// a recipient at any other domain is not judged (relaying is the MTA's business).
//
// Lookups (classify):
// - postmaster@ and abuse@ exist at every domain (RFC 5321 §4.5.1, RFC 2142);
// - "user+ext@domain" exists when "user@domain" does ('+' is the common recipient delimiter);
// - an unknown recipient carries the nearest valid local part of its domain when it is a
//   likely typo: Damerau-Levenshtein distance 1 for local parts of up to 5 characters, 2 for
//   longer ones.
//
// Limits: lines over 4,096 bytes, entries over 254 bytes and files over 2,000,000 entries are
// errors. load() throws RecipientListError naming the line.
//
// Reloading: current() re-reads the file when its modification time or size changed, at most
// once per `recheck` interval; a file that became unreadable or invalid keeps the last good
// list (and logs why), so an admin's half-written edit never turns every recipient unknown.
// Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace spamward {

class RecipientListError : public std::runtime_error {
 public:
  RecipientListError(int64_t line, const std::string& problem)
      : std::runtime_error(problem), line_(line) {}
  int64_t line() const { return line_; }  // 0: the file as a whole

 private:
  int64_t line_;
};

enum class RecipientStatus { not_ours, valid, unknown };

struct RecipientLookup {
  RecipientStatus status = RecipientStatus::not_ours;
  std::string typo_of;  // unknown only: the valid address it is probably a typo of
};

class RecipientSet {
 public:
  // Parses the text of a list. Throws RecipientListError.
  static RecipientSet parse(std::string_view text);

  RecipientLookup classify(std::string_view address) const;
  size_t size() const { return addresses_ + catch_all_.size() + bare_.size(); }
  bool is_our_domain(std::string_view domain) const;

 private:
  // domain -> its valid local parts (kept per domain for the typo search)
  std::unordered_map<std::string, std::vector<std::string>> by_domain_;
  std::unordered_set<std::string> exact_;      // "user@domain"
  std::unordered_set<std::string> catch_all_;  // "domain"
  std::unordered_set<std::string> bare_;       // "user"
  size_t addresses_ = 0;
};

class RecipientList {
 public:
  // Reads `path` now; throws RecipientListError (line 0 for an unreadable file).
  explicit RecipientList(std::string path,
                         std::chrono::milliseconds recheck = std::chrono::seconds(5));

  // The list as of now (re-read if the file changed; see the header comment).
  std::shared_ptr<const RecipientSet> current();
  const std::string& path() const { return path_; }

 private:
  struct Stamp {
    int64_t mtime_ns = 0;
    int64_t size = 0;
    bool operator==(const Stamp&) const = default;
  };
  std::optional<Stamp> stamp() const;
  std::shared_ptr<const RecipientSet> read() const;

  std::string path_;
  std::chrono::milliseconds recheck_;
  std::mutex mu_;
  std::shared_ptr<const RecipientSet> set_;
  Stamp loaded_;
  std::chrono::steady_clock::time_point next_check_;
};

// "file:/path" -> "/path"; "" when `valid` is not a file source.
std::string recipient_list_path(std::string_view valid);

}  // namespace spamward
