// Bayes tokenizer: the features of one parsed Message that the classifier counts, each
// named by a 64-bit hash (bayes/token_hash.h).
//
// Contract:
// - tokenize() is a pure function of the Message and the options: the same message always
//   gives the same set of hashes, so learning, relearning and classifying agree.
// - Text is Unicode-normalised with ICU's NFKC_Casefold (compatibility forms folded, case
//   folded, default-ignorable characters such as soft hyphens and zero-width spaces removed),
//   so "ＦＲＥＥ", "Free" and "fr\u00ADee" are one word.
// - Body tokens: the words of the decoded text parts (HTML as its text), and orthogonal
//   sparse bigrams (OSB: each word paired with each of the `osb_window - 1` words before it,
//   the distance part of the pair) over the same word sequence. Han, Kana and Thai characters
//   are words of one character each (those scripts have no spaces), so OSB gives their
//   character pairs.
// - Header tokens carry the header's name: Subject words and bigrams; From/Reply-To/Sender
//   addresses, domains, registrable domains (libpsl) and display-name words; To/Cc domains and
//   counts; Received hosts, their registrable domains and IPv4 /24s; Message-ID domain and the
//   shape of its left part; Content-Type and boundary shape; X-Mailer/User-Agent and a few
//   other sender-chosen fields whole and as words; the names of all other fields present.
//   Each header token carries a group (TokenList::groups): one per field name, one for all
//   the "field present" tokens; the same field has the same group in every message.
// - Headers added by filters and mail stores are NOT evidence and give no token at all:
//   anything for which ignored_header() is true (X-Spam-*, X-Spamward-*, X-Bogosity,
//   X-Virus-*, Authentication-Results, X-DSPAM-*, X-Rspamd-*, ... and mailbox bookkeeping
//   such as Status or X-Keywords). A sender cannot pre-set them, and a learned copy that went
//   through a filter teaches the same as the original.
// - URL tokens: each URL host and its registrable domain; IP-literal and IDN hosts.
// - Meta tokens: size bucket, number of parts and URLs, attachment types and extensions,
//   transfer encodings, charsets, guessed charsets, HTML-only mail, raw 8-bit headers,
//   parser defects, truncation.
// - Hostile input is bounded: at most `max_text_bytes` of body text and `max_header_bytes` of
//   each header value are read, words longer than `max_token_bytes` are not tokens (a
//   length-bucket meta token stands for them), and at most `max_tokens` distinct tokens are
//   kept (headers and meta first, so they always count). Work is linear in the input.
// - Thread-safe; never throws (ICU failures fall back to ASCII lower-casing).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mail/message.h"

namespace spamward {

struct TokenizerOptions {
  size_t max_tokens = 8000;            // distinct tokens kept per message
  size_t max_text_bytes = 256 * 1024;  // body text read, over all parts
  size_t max_header_bytes = 4096;      // of one header value
  size_t max_token_bytes = 40;         // longer words are not tokens
  // Words per OSB window; 1 (the default) disables bigrams. On the accuracy bench (docs/
  // bayes.md) bigrams made recall at FP <= 0.1% worse: Fisher combining assumes independent
  // clues, and a bigram repeats the evidence of its two words.
  int osb_window = 1;
  // Tokens of the HTML markup ("html:font:color=#ff0000"), read from the raw body. Off: on
  // the bench they made HTML newsletters (ham) look certain spam.
  bool html_markup = false;
  bool keep_text = false;  // also return the token texts (explanations, tests)
};

struct TokenList {
  std::vector<uint64_t> hashes;    // distinct, in order of first appearance
  std::vector<std::string> texts;  // with keep_text: texts[i] names hashes[i]; else empty
  // groups[i]: the header field hashes[i] came from (a small number per field name, the same
  // for every message), or 0 for body words, subject words, URL and meta tokens. Tokens of
  // one field say one thing (a mailing list's dozen header tokens); the classifier can take
  // only the strongest few of each group (ClassifierParams::max_group_clues).
  std::vector<uint16_t> groups;
  size_t words = 0;      // body words seen (before the distinct-token limit)
  bool limited = false;  // a limit cut something
};

TokenList tokenize(const Message& message, const TokenizerOptions& options = {});

// True for header fields that filters and mail stores add, which are never evidence.
bool ignored_header(std::string_view name);

// The text form of tokens, as keep_text returns them (for tests and explanations):
//   body word "cheap"; OSB pair "cheap <2> pills" (distance 2: one word between);
//   header token "subject:cheap", "from:dom:example.org", "received:ip:192.0.2";
//   meta token "meta:size:12".
// NFKC_Casefold of UTF-8 text (the word normalisation above); exposed for tests.
std::string normalize_text(std::string_view utf8);

}  // namespace spamward
