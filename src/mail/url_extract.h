// URL collection for mail/message.h: URLs in plain text and in HTML link targets, with
// their host names (the input of URI blocklist and phishing checks).
//
// Contract:
// - Recognised: "http://", "https://" and "ftp://" (any case) at a word start, and hosts
//   starting with "www." at a word start (not inside an address such as a@www.example.org).
//   A "www." URL is recorded with "http://" in front.
// - In text a URL ends at whitespace, a control character or one of <>"`{}|\^; trailing
//   punctuation that ends a sentence (.,;:!?'"*) and unbalanced ')' or ']' are not part of
//   it. Link targets (add_link) are taken whole, minus what browsers ignore in them (leading
//   and trailing spaces and controls, tabs and line breaks anywhere); relative, mailto: and
//   javascript: targets are not URLs.
// - Hosts: userinfo ("user@") and port removed, %XX decoded, ASCII lower-cased, trailing dots
//   removed; IPv6 literals without brackets. Other bytes (IDN in UTF-8) are kept as they
//   are. A URL is ignored when its host holds no '.' (nor ':', for IPv6), is longer than 253
//   bytes, or is not valid UTF-8 once decoded.
// - urls() and hosts() are unique and in order of first appearance. At most `max_urls` URLs
//   are kept (each at most 4 KiB, longer ones are cut); past that, further URLs are dropped
//   and truncated() is true. Linear in the input; never throws.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace spamward {

// Host of an absolute URL ("http://User@WWW.Example.COM.:80/x" -> "www.example.com"), or of a
// "www." URL; empty when it has none.
std::string url_host(std::string_view url);

class UrlCollector {
 public:
  explicit UrlCollector(size_t max_urls) : max_urls_(max_urls) {}

  // Scans free text (UTF-8) for URLs.
  void add_text(std::string_view text);
  // One link target (an HTML href or src value, entities already decoded).
  void add_link(std::string_view target);

  bool truncated() const { return truncated_; }
  std::vector<std::string>& urls() { return urls_; }
  std::vector<std::string>& hosts() { return hosts_; }

 private:
  void add(std::string url);

  size_t max_urls_;
  bool truncated_ = false;
  std::vector<std::string> urls_;
  std::vector<std::string> hosts_;
  std::unordered_set<std::string> seen_urls_;
  std::unordered_set<std::string> seen_hosts_;
};

}  // namespace spamward
