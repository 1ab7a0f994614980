#include "state/recipient_list.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <spdlog/spdlog.h>

#include "core/edit_distance.h"
#include "core/strings.h"

namespace spamward {

namespace {

constexpr size_t kMaxLine = 4096;
constexpr size_t kMaxEntry = 254;  // RFC 5321 path limit, less the brackets
constexpr size_t kMaxEntries = 2'000'000;

bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\r';
}

// Local parts always valid at our domains (RFC 5321 §4.5.1, RFC 2142).
bool is_role_account(std::string_view local) {
  return local == "postmaster" || local == "abuse";
}

// How far a typo may be from the address meant.
size_t typo_distance(std::string_view local) {
  return local.size() <= 5 ? 1 : 2;
}

}  // namespace

RecipientSet RecipientSet::parse(std::string_view text) {
  RecipientSet set;
  int64_t line_no = 0;
  size_t entries = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (line.size() > kMaxLine)
      throw RecipientListError(line_no, "line longer than " + std::to_string(kMaxLine) + " bytes");
    // A Postfix map continues an entry on lines that start with whitespace: values only.
    if (line.empty() || is_blank(line[0]) || line[0] == '#') continue;
    size_t key_end = 0;
    while (key_end < line.size() && !is_blank(line[key_end]) && line[key_end] != '#') ++key_end;
    std::string key = to_lower(line.substr(0, key_end));
    if (key.size() > kMaxEntry)
      throw RecipientListError(line_no,
                               "entry longer than " + std::to_string(kMaxEntry) + " bytes");
    for (unsigned char c : key) {
      if (c < 0x21 || c == 0x7f)
        throw RecipientListError(line_no, "control character in " + printable(key));
    }
    if (++entries > kMaxEntries)
      throw RecipientListError(line_no, "more than " + std::to_string(kMaxEntries) + " entries");
    size_t at = key.rfind('@');
    if (at == std::string::npos) {
      set.bare_.insert(key);
      continue;
    }
    std::string domain = key.substr(at + 1);
    if (domain.empty() || domain.find('.') == std::string::npos ||
        domain.find('@') != std::string::npos)
      throw RecipientListError(line_no, printable(key) + " is not an address or @domain");
    if (at == 0) {
      set.catch_all_.insert(domain);
      set.by_domain_.try_emplace(domain);
      continue;
    }
    if (key.find('@') != at)
      throw RecipientListError(line_no, printable(key) + " has more than one '@'");
    if (set.exact_.insert(key).second) {
      set.by_domain_[domain].push_back(key.substr(0, at));
      ++set.addresses_;
    }
  }
  return set;
}

bool RecipientSet::is_our_domain(std::string_view domain) const {
  return by_domain_.contains(to_lower(domain));
}

RecipientLookup RecipientSet::classify(std::string_view address) const {
  RecipientLookup out;
  std::string lower = to_lower(address);
  size_t at = lower.rfind('@');
  if (at == std::string::npos || at == 0 || at + 1 == lower.size()) {
    // A bare "postmaster" (RFC 5321 allows it without a domain) is always valid.
    if (is_role_account(lower)) out.status = RecipientStatus::valid;
    return out;
  }
  std::string domain = lower.substr(at + 1);
  auto dom = by_domain_.find(domain);
  if (dom == by_domain_.end()) return out;  // not ours: not judged
  std::string local = lower.substr(0, at);
  out.status = RecipientStatus::valid;
  if (is_role_account(local) || catch_all_.contains(domain) || exact_.contains(lower) ||
      bare_.contains(local))
    return out;
  if (size_t plus = local.find('+'); plus != std::string::npos && plus > 0) {
    std::string base = local.substr(0, plus);
    if (exact_.contains(base + "@" + domain) || bare_.contains(base) || is_role_account(base))
      return out;
  }
  out.status = RecipientStatus::unknown;
  // The nearest valid local part, if it is close enough to be a typo.
  size_t limit = typo_distance(local);
  size_t best = limit + 1;
  auto consider = [&](const std::string& candidate) {
    size_t d = damerau_levenshtein(local, candidate, limit);
    if (d < best) {
      best = d;
      out.typo_of = candidate + "@" + domain;
    }
  };
  for (const auto& candidate : dom->second) consider(candidate);
  for (const auto& candidate : bare_) consider(candidate);
  return out;
}

RecipientList::RecipientList(std::string path, std::chrono::milliseconds recheck)
    : path_(std::move(path)), recheck_(recheck) {
  auto st = stamp();
  if (!st) throw RecipientListError(0, std::string("cannot read: ") + std::strerror(errno));
  set_ = read();
  loaded_ = *st;
  next_check_ = std::chrono::steady_clock::now() + recheck_;
}

std::optional<RecipientList::Stamp> RecipientList::stamp() const {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) return std::nullopt;
  if (!S_ISREG(st.st_mode)) {
    errno = EISDIR;
    return std::nullopt;
  }
  return Stamp{static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec,
               static_cast<int64_t>(st.st_size)};
}

std::shared_ptr<const RecipientSet> RecipientList::read() const {
  std::ifstream in(path_, std::ios::binary);
  if (!in) throw RecipientListError(0, std::string("cannot read: ") + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw RecipientListError(0, std::string("cannot read: ") + std::strerror(errno));
  return std::make_shared<const RecipientSet>(RecipientSet::parse(text.str()));
}

std::shared_ptr<const RecipientSet> RecipientList::current() {
  std::lock_guard lock(mu_);
  auto now = std::chrono::steady_clock::now();
  if (now < next_check_) return set_;
  next_check_ = now + recheck_;
  auto st = stamp();
  if (!st || *st == loaded_) {
    if (!st) spdlog::warn("recipients: cannot read {}; keeping the last list", path_);
    return set_;
  }
  try {
    set_ = read();
    spdlog::info("recipients: reloaded {} ({} entries)", path_, set_->size());
  } catch (const RecipientListError& e) {
    spdlog::warn("recipients: {}:{}: {}; keeping the last list", path_, e.line(), e.what());
  }
  loaded_ = *st;  // do not retry a bad file until it changes again
  return set_;
}

std::string recipient_list_path(std::string_view valid) {
  if (valid.rfind("file:", 0) != 0) return "";
  return std::string(valid.substr(5));
}

}  // namespace spamward
