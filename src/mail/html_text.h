// HTML to text for mail/message.h (text/html parts), with the link targets collected.
//
// Contract:
// - Input is UTF-8 (already converted from the part's charset); output is UTF-8 text.
// - Tags are dropped; comments, doctypes and processing instructions are dropped; the
//   content of <script> and <style> is skipped. Block elements (p, div, br, li, tr, h1-h6,
//   table, blockquote, ...) become line breaks, table cells a space; other whitespace runs
//   collapse to one space, and lines carry no leading or trailing space.
// - Character references are decoded: numeric ones (&#NNN; &#xHH;, with the WHATWG
//   windows-1252 reading of 128-159; invalid ones become U+FFFD) and the HTML 4 named ones
//   plus &apos; (the legacy Latin-1 names also without ';', as browsers do). A no-break
//   space is a space; zero-width characters and soft hyphens (word-splitting tricks) are
//   removed.
// - on_link is called with each href, src, background and action attribute value, entities
//   decoded, in document order.
// - A tokenizer of our own, not libxml2: one linear pass with no tree, no global state and
//   no recursion, so hostile markup (deep nesting, huge attribute lists, unclosed tags) costs
//   time linear in its size and can neither exhaust the stack nor print to stderr. An
//   unterminated tag or quoted attribute at the end hides the rest, as it does in browsers.
//   Never throws.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace spamward {

// The charset an HTML document declares in a <meta> tag (charset=... or http-equiv
// content="...; charset=..."), looked for in its first 4 KiB of raw bytes; empty when none.
// For text/html parts whose MIME header declares no charset.
std::string sniff_html_charset(std::string_view html);

std::string html_to_text(std::string_view html,
                         const std::function<void(std::string_view)>& on_link = {});

}  // namespace spamward
