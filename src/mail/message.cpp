#include "mail/message.h"

#include <algorithm>
#include <cstring>

#include "core/strings.h"
#include "mail/charset.h"
#include "mail/html_text.h"
#include "mail/mime_header.h"
#include "mail/rfc2047.h"
#include "mail/transfer_decode.h"
#include "mail/url_extract.h"

namespace spamward {

namespace {

constexpr size_t kMaxDefects = 64;
constexpr size_t kMaxBoundary = 200;  // RFC 2046 allows 70; some senders write more

bool is_wsp(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (is_wsp(s.front()) || s.front() == '\r' || s.front() == '\n')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (is_wsp(s.back()) || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

// A header field name: printable ASCII without ':' (whitespace before the colon, an obsolete
// form, is trimmed by the caller).
bool valid_field_name(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    const auto b = static_cast<unsigned char>(c);
    if (b < 33 || b > 126) return false;
  }
  return true;
}

// "type/subtype" with both halves present.
bool valid_media_type(std::string_view t) {
  const size_t slash = t.find('/');
  return slash != std::string_view::npos && slash > 0 && slash + 1 < t.size() &&
         t.find('/', slash + 1) == std::string_view::npos;
}

enum class Encoding { kIdentity, kBase64, kQuotedPrintable };

}  // namespace

// --- Parser state --------------------------------------------------------------------------
//
// Input is cut into lines (any chunking; a line is at most max_line bytes, the rest of a
// longer one is dropped). Each line goes to the header block being read or to the body of
// the current entity. A stack of frames holds the open multiparts (with their boundaries)
// and message/rfc822 parts; every body line starting with "--" is matched against the
// boundaries, innermost first, so a missing close boundary ends inner parts at an outer
// boundary. Leaf parts are transfer-decoded line by line; their text is converted (charset,
// HTML) when the part ends. A multipart in which no part ever opens (its boundary never
// appears) gives its body as one text/plain part, as mail clients show it, so the content
// checks still see it.

struct MessageParser::State {
  explicit State(const MessageLimits& l) : lim(l), urls(l.max_urls) {}

  struct HeaderBlock {
    bool top = true;    // the message's own header block: fields are kept in Message
    size_t fields = 0;  // fields started
    size_t bytes = 0;   // bytes of the block so far
    bool full = false;  // a limit was reached: nothing more of this block is kept
    bool in_field = false;
    std::string name, raw, unfolded;
    std::string content_type, transfer_encoding, disposition;
    bool has_content_type = false;

    void reset(bool is_top) {
      top = is_top;
      fields = bytes = 0;
      full = in_field = has_content_type = false;
      name.clear();
      raw.clear();
      unfolded.clear();
      content_type.clear();
      transfer_encoding.clear();
      disposition.clear();
    }
  };

  struct Frame {
    bool multipart = true;  // else message/rfc822 (no boundary; ends with its parent's part)
    std::string boundary;
    bool digest = false;    // multipart/digest: parts default to message/rfc822
    bool closed = false;    // the close boundary was seen (now in the epilogue)
    bool any_part = false;  // a part was opened
    // Until then the preamble: read as text if no part ever opens (a boundary that does
    // not match what the header declared, which mail clients then show as it is).
    std::string preamble;
  };

  struct Leaf {
    BodyPart part;
    bool keep = false;  // under max_parts: decoded and stored
    bool is_text = false;
    bool full = false;  // max_decoded reached
    Encoding encoding = Encoding::kIdentity;
    Base64Decoder base64;
    bool pending_newline = false;  // a line break is due before the next line's text
    std::string data;              // decoded bytes (text parts only)
  };

  enum class Mode { kHeaders, kBody };

  MessageLimits lim;
  Message msg;
  UrlCollector urls;
  bool finished = false;

  // Line assembly.
  size_t accepted = 0;  // bytes taken of max_bytes
  bool over_max_bytes = false;
  std::string pending;  // the incomplete last line (at most max_line + 1 bytes)
  bool pending_cut = false;
  bool pending_last_cr = false;
  bool first_line = true;
  bool raw_body_on = false;  // past the top-level header block: input goes to raw_body

  Mode mode = Mode::kHeaders;
  HeaderBlock hb;
  std::vector<Frame> frames;
  Leaf leaf;
  bool leaf_active = false;  // body lines belong to `leaf` (else preamble or epilogue)
  size_t decoded_total = 0;
  std::string scratch;

  void defect(std::string_view what) {
    if (msg.defects.size() >= kMaxDefects) return;
    for (const auto& d : msg.defects) {
      if (d == what) return;
    }
    msg.defects.emplace_back(what);
  }
  void limit(std::string_view what) {
    msg.truncated = true;
    defect(what);
  }

  // --- input ---

  void feed(std::string_view chunk) {
    if (finished) return;
    msg.raw_size += chunk.size();
    const size_t room = lim.max_bytes > accepted ? lim.max_bytes - accepted : 0;
    if (chunk.size() > room) {
      chunk = chunk.substr(0, room);
      msg.truncated = true;
      over_max_bytes = true;  // the defect is recorded by finish(), whatever the chunking
    }
    accepted += chunk.size();
    bool in_raw_body = false;
    while (!chunk.empty()) {
      if (raw_body_on && !in_raw_body) {
        msg.raw_body.append(chunk);
        in_raw_body = true;
      }
      const void* nl = std::memchr(chunk.data(), '\n', chunk.size());
      if (nl == nullptr) {
        add_pending(chunk);
        return;
      }
      const size_t len = static_cast<size_t>(static_cast<const char*>(nl) - chunk.data());
      const std::string_view text = chunk.substr(0, len);
      chunk.remove_prefix(len + 1);
      if (pending.empty() && !pending_cut) {
        std::string_view content = text;
        std::string_view eol = "\n";
        if (!content.empty() && content.back() == '\r') {
          content.remove_suffix(1);
          eol = "\r\n";
        }
        if (content.size() > lim.max_line) {
          content = content.substr(0, lim.max_line);
          limit("line longer than max_line");
        }
        line(content, eol);
      } else {
        add_pending(text);
        complete_pending(true);
      }
    }
  }

  void add_pending(std::string_view bytes) {
    if (bytes.empty()) return;
    pending_last_cr = bytes.back() == '\r';
    const size_t cap = lim.max_line + 1;  // one more for a CR
    const size_t room = cap > pending.size() ? cap - pending.size() : 0;
    if (bytes.size() > room) {
      pending.append(bytes.data(), room);
      pending_cut = true;
    } else {
      pending.append(bytes);
    }
  }

  void complete_pending(bool newline) {
    std::string_view content = pending;
    std::string_view eol = newline ? "\n" : "";
    if (pending_last_cr) {
      if (!content.empty() && content.back() == '\r') content.remove_suffix(1);
      eol = newline ? "\r\n" : "\r";
    }
    if (pending_cut || content.size() > lim.max_line) {
      content = content.substr(0, std::min(content.size(), lim.max_line));
      limit("line longer than max_line");
    }
    line(content, eol);
    pending.clear();
    pending_cut = false;
    pending_last_cr = false;
  }

  // One line without its end (`eol` is "\r\n", "\n", or at the end of input "" or "\r").
  void line(std::string_view content, std::string_view eol) {
    if (first_line) {
      first_line = false;
      if (content.starts_with("From ")) return;  // mbox envelope line
    }
    if (mode == Mode::kHeaders) {
      size_t k;
      bool close;
      if (!frames.empty() && match_boundary(content, k, close)) {
        // A part that ends inside its header block: an empty part.
        end_header_block();
        on_boundary(k, close);
        return;
      }
      header_line(content, eol);
    } else {
      body_line(content);
    }
  }

  // --- header blocks ---

  bool account(size_t bytes) {
    hb.bytes += bytes;
    if (hb.bytes <= lim.max_header_bytes) return true;
    hb.full = true;
    hb.in_field = false;
    limit("header block larger than max_header_bytes");
    return false;
  }

  void header_line(std::string_view content, std::string_view eol) {
    if (content.empty()) {
      end_header_block();
      return;
    }
    if (is_wsp(content.front())) {  // folded continuation
      if (hb.top && !msg.header_8bit && !is_ascii(content)) msg.header_8bit = true;
      if (!hb.in_field) {
        if (!hb.full) defect("header continuation line without a field");
        return;
      }
      if (!account(content.size() + eol.size())) return;
      if (hb.top) {
        hb.raw += content;
        hb.raw += eol;
      }
      hb.unfolded += content;
      return;
    }
    const size_t colon = content.find(':');
    std::string_view name;
    if (colon != std::string_view::npos) {
      name = content.substr(0, colon);
      while (!name.empty() && is_wsp(name.back())) name.remove_suffix(1);
    }
    if (!valid_field_name(name)) {
      // Not a header field: the block ended without its blank line; this is body.
      defect("header block not ended by a blank line");
      const bool top = hb.top;
      end_header_block();
      if (top) {
        msg.raw_body += content;
        msg.raw_body += eol;
      }
      body_line(content);
      return;
    }
    if (hb.top && !msg.header_8bit && !is_ascii(content)) msg.header_8bit = true;
    end_field();
    if (hb.full) return;
    if (hb.fields >= lim.max_headers) {
      hb.full = true;
      limit("more header fields than max_headers");
      return;
    }
    if (!account(content.size() + eol.size())) return;
    ++hb.fields;
    hb.in_field = true;
    hb.name.assign(name);
    if (hb.top) {
      hb.raw.assign(content);
      hb.raw += eol;
    }
    hb.unfolded.assign(content.substr(colon + 1));
  }

  void end_field() {
    if (!hb.in_field) return;
    hb.in_field = false;
    if (iequals(hb.name, "content-type")) {
      if (!hb.has_content_type) {
        hb.has_content_type = true;
        hb.content_type = hb.unfolded;
      }
    } else if (iequals(hb.name, "content-transfer-encoding")) {
      if (hb.transfer_encoding.empty()) hb.transfer_encoding = hb.unfolded;
    } else if (iequals(hb.name, "content-disposition")) {
      if (hb.disposition.empty()) hb.disposition = hb.unfolded;
    }
    if (hb.top) {
      HeaderField f;
      f.name = std::move(hb.name);
      f.raw = std::move(hb.raw);
      f.value = std::string(trim(decode_rfc2047(hb.unfolded)));
      msg.headers.push_back(std::move(f));
    }
    hb.name.clear();
    hb.raw.clear();
    hb.unfolded.clear();
  }

  // The block is complete: decides what the entity is and starts its body.
  void end_header_block() {
    end_field();
    if (hb.top) raw_body_on = true;
    mode = Mode::kBody;
    const bool digest_child = !frames.empty() && frames.back().multipart && frames.back().digest;
    std::string type = digest_child ? "message/rfc822" : "text/plain";
    MimeHeaderValue ct;
    if (hb.has_content_type) {
      ct = parse_mime_header(hb.content_type);
      if (valid_media_type(ct.value)) {
        type = ct.value;
      } else {
        defect("invalid Content-Type");
      }
    }
    const std::string cte = parse_mime_header(hb.transfer_encoding).value;
    Encoding encoding = Encoding::kIdentity;
    if (cte == "base64") {
      encoding = Encoding::kBase64;
    } else if (cte == "quoted-printable") {
      encoding = Encoding::kQuotedPrintable;
    }
    const bool room = frames.size() < static_cast<size_t>(std::max(lim.max_depth, 0));

    if (type.starts_with("multipart/")) {
      const std::string* boundary = ct.param("boundary");
      if (boundary == nullptr || boundary->empty() || boundary->size() > kMaxBoundary) {
        defect("multipart without a usable boundary");
        type = "text/plain";
      } else if (!room) {
        limit("nesting deeper than max_depth");
      } else {
        frames.push_back({true, *boundary, type == "multipart/digest", false, false, {}});
        leaf_active = false;
        return;
      }
    } else if ((type == "message/rfc822" || type == "message/global") &&
               encoding == Encoding::kIdentity) {
      if (!room) {
        limit("nesting deeper than max_depth");
      } else {
        frames.push_back({false, {}, false, false, false, {}});
        leaf_active = false;
        mode = Mode::kHeaders;
        hb.reset(false);
        return;
      }
    }
    start_leaf(std::move(type), ct, cte, encoding, hb.disposition);
  }

  void start_leaf(std::string type, const MimeHeaderValue& ct, const std::string& cte,
                  Encoding encoding, std::string_view disposition_field) {
    leaf_active = true;
    if (msg.parts.size() >= lim.max_parts) {
      leaf.keep = false;
      limit("more parts than max_parts");
      return;
    }
    leaf.keep = true;
    leaf.full = false;
    leaf.encoding = encoding;
    leaf.base64 = Base64Decoder();
    leaf.pending_newline = false;
    leaf.data.clear();
    leaf.is_text = type.starts_with("text/");

    BodyPart& p = leaf.part;
    p = BodyPart();
    p.content_type = std::move(type);
    if (const std::string* cs = ct.param("charset")) p.charset = to_lower(trim(*cs));
    p.transfer_encoding = cte;
    const std::string* filename = nullptr;
    MimeHeaderValue disposition;
    if (!disposition_field.empty()) {
      disposition = parse_mime_header(disposition_field);
      if (disposition.value == "attachment") p.attachment = true;
      filename = disposition.param("filename");
    }
    if (filename == nullptr || filename->empty()) filename = ct.param("name");
    if (filename != nullptr) p.filename = std::string(trim(decode_rfc2047(*filename)));
    if (!p.filename.empty()) p.attachment = true;
  }

  // --- bodies ---

  // A boundary line of an open multipart: "--boundary" or "--boundary--", then only
  // whitespace. `k` is the frame's index.
  bool match_boundary(std::string_view content, size_t& k, bool& close) const {
    if (content.size() < 2 || content[0] != '-' || content[1] != '-') return false;
    const std::string_view rest = content.substr(2);
    for (size_t i = frames.size(); i-- > 0;) {
      const Frame& f = frames[i];
      if (!f.multipart || !rest.starts_with(f.boundary)) continue;
      std::string_view tail = rest.substr(f.boundary.size());
      const bool c = tail.starts_with("--");
      if (c) tail.remove_prefix(2);
      if (!std::all_of(tail.begin(), tail.end(), is_wsp)) continue;
      k = i;
      close = c;
      return true;
    }
    return false;
  }

  void on_boundary(size_t k, bool close) {
    if (leaf_active) end_leaf();
    while (frames.size() > k + 1) {
      if (frames.back().multipart && !frames.back().closed) defect("missing close boundary");
      preamble_as_part(frames.back());
      frames.pop_back();
    }
    Frame& f = frames[k];
    if (close) {
      preamble_as_part(f);
    } else {
      f.any_part = true;
      std::string().swap(f.preamble);
    }
    f.closed = close;
    if (close) {
      mode = Mode::kBody;  // the epilogue, ignored
    } else {
      mode = Mode::kHeaders;
      hb.reset(false);
    }
  }

  void body_line(std::string_view content) {
    size_t k;
    bool close;
    if (!frames.empty() && match_boundary(content, k, close)) {
      on_boundary(k, close);
      return;
    }
    if (leaf_active) {
      leaf_line(content);
    } else if (!frames.empty()) {
      Frame& f = frames.back();
      if (f.multipart && !f.any_part && !f.closed) {
        const size_t cap = std::min(lim.max_decoded, lim.max_bytes);
        if (f.preamble.size() < cap) {
          f.preamble.append(content.substr(0, cap - f.preamble.size()));
          f.preamble += '\n';
        }
      }
    }
  }

  // A multipart that ends without any part: its body (the preamble) becomes a text part.
  void preamble_as_part(Frame& f) {
    if (!f.multipart || f.any_part) return;
    f.any_part = true;
    defect("multipart without parts (read as text)");
    if (!f.preamble.empty()) f.preamble.pop_back();  // the last line's '\n'
    start_leaf("text/plain", MimeHeaderValue(), std::string(), Encoding::kIdentity, {});
    if (leaf.keep) emit(f.preamble);
    end_leaf();
    std::string().swap(f.preamble);
  }

  void leaf_line(std::string_view content) {
    if (!leaf.keep || leaf.full) return;
    switch (leaf.encoding) {
      case Encoding::kBase64:
        scratch.clear();
        leaf.base64.decode(content, scratch);
        emit(scratch);
        break;
      case Encoding::kQuotedPrintable: {
        if (leaf.pending_newline) emit("\n");
        scratch.clear();
        const bool soft = decode_qp_line(content, scratch);
        emit(scratch);
        leaf.pending_newline = !soft;
        break;
      }
      case Encoding::kIdentity:
        if (leaf.pending_newline) emit("\n");
        emit(content);
        leaf.pending_newline = true;
        break;
    }
  }

  // Decoded bytes of the current leaf, within max_decoded.
  void emit(std::string_view bytes) {
    if (leaf.full) return;
    const size_t room = lim.max_decoded > decoded_total ? lim.max_decoded - decoded_total : 0;
    if (bytes.size() > room) {
      bytes = bytes.substr(0, room);
      leaf.full = true;
      limit("decoded parts larger than max_decoded");
    }
    if (leaf.is_text) leaf.data.append(bytes);
    leaf.part.decoded_size += bytes.size();
    decoded_total += bytes.size();
  }

  void end_leaf() {
    leaf_active = false;
    if (!leaf.keep) return;
    leaf.keep = false;
    BodyPart& p = leaf.part;
    if (leaf.is_text) {
      bool guessed = false;
      std::string_view charset = p.charset;
      std::string declared_in_html;
      if (p.content_type == "text/html" && (charset.empty() || charset == "us-ascii") &&
          !is_ascii(leaf.data)) {
        declared_in_html = sniff_html_charset(leaf.data);
        if (!declared_in_html.empty()) charset = declared_in_html;
      }
      std::string text = to_utf8(leaf.data, charset, &guessed);
      p.charset_guessed = guessed;
      if (p.content_type == "text/html") {
        p.html = true;
        text = html_to_text(text, [this](std::string_view link) { urls.add_link(link); });
      }
      urls.add_text(text);
      p.text = std::move(text);
    }
    msg.parts.push_back(std::move(p));
  }

  Message finish() {
    if (finished) return {};
    finished = true;
    if (over_max_bytes) limit("message larger than max_bytes");
    if (!pending.empty() || pending_cut) complete_pending(false);
    if (mode == Mode::kHeaders && (hb.top || hb.fields > 0)) {
      end_header_block();
      // An empty inner message/rfc822 at the end has no part of its own.
    }
    if (leaf_active) end_leaf();
    for (size_t i = frames.size(); i-- > 0;) {
      if (frames[i].multipart && !frames[i].closed) defect("missing close boundary");
      preamble_as_part(frames[i]);
    }
    if (urls.truncated()) limit("more URLs than max_urls");
    msg.urls = std::move(urls.urls());
    msg.url_hosts = std::move(urls.hosts());
    return std::move(msg);
  }
};

// --- MessageParser -------------------------------------------------------------------------

MessageParser::MessageParser(MessageLimits limits) : state_(std::make_unique<State>(limits)) {}

MessageParser::~MessageParser() = default;

void MessageParser::feed(std::string_view chunk) {
  state_->feed(chunk);
}

Message MessageParser::finish() {
  return state_->finish();
}

Message parse_message(std::string_view raw, const MessageLimits& limits) {
  MessageParser parser(limits);
  parser.feed(raw);
  return parser.finish();
}

}  // namespace spamward
