// content_load: a closed-loop load generator for the content path (issue 5): whole messages
// through the spamd protocol, the milter protocol, or an HTTP check endpoint.
//
// The messages are one split of the shared corpus (SPLIT.tsv rows with the given split, read
// from the directory the archives were unpacked into), loaded into memory once and visited in a
// fixed pseudo-random order that all connections share, cycling the split as often as needed.
// Each of --connections clients sends one message, reads the whole answer, and only then sends
// the next:
//   spamd   SPAMC/1.5 (CHECK or SYMBOLS, Content-length, User), one connection per message as
//           spamc does; the answer is read to the server's close. Verdict: the Spam: header.
//   milter  milter protocol 6 as Postfix speaks it: OPTNEG, then per message the macros and
//           CONNECT (family 4, a documentation address), HELO, MAIL, RCPT, DATA, one HEADER per
//           field, EOH, BODY chunks of at most 65,535 bytes (CRLF line ends), EOM, reading each
//           reply (at EOM every modification up to the final action); ABORT after a refusal;
//           then QUIT (a new connection per SMTP session, as Postfix's smtpd does) or, with
//           --milter-reuse 1, QUIT_NC and the next session on the same connection. Verdict:
//           the final action (tag when an X-Spam-Flag header was added).
//   http    POST PATH (default /checkv2, rspamd's) with the raw message and rspamd's envelope
//           headers (IP, Helo, Hostname, From, Rcpt, Queue-Id), Connection: close. Verdict: the
//           JSON "action".
// The envelope of a message is the same for every protocol: the client is a documentation
// address (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24: data only, never connected to), the
// sender its Return-Path (else its From), the recipient its Delivered-To (else its To).
//
// Warm-up: the first --warmup-messages (default: one pass over the split) are sent but not
// measured, so DNS answers and key caches are warm. Then --messages are measured. Latency runs
// from the connect (or, for a reused milter connection, the CONNECT command) to the final
// answer, recorded exactly (1 µs buckets below 100 ms, 1 ms above), as policy_load does. The
// rate is measured messages over the window from the first measured message's start to the
// last one's end.
//
// Output: a human summary and one line for scripts starting with "RESULT".
// Exit status: 0 when at least one message was measured, 1 otherwise, 2 on bad usage.

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <sys/resource.h>

#include <boost/asio.hpp>

#include "load_stats.h"

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

enum class Protocol { spamd, milter, http };

struct Options {
  Protocol protocol = Protocol::spamd;
  std::string target;
  std::string corpus = "/tmp/spamward-corpus";  // where ham/ and spam/ were unpacked
  std::string split_file;                       // default: CORPUS/SPLIT.tsv
  std::string split = "test";
  int connections = 8;
  uint64_t messages = 10000;
  int64_t warmup = -1;  // -1: one pass over the split
  double timeout_s = 30.0;
  uint64_t seed = 20240601;
  std::string spamd_command = "CHECK";
  bool milter_reuse = false;
  std::string http_path = "/checkv2";
};

[[noreturn]] void usage(int status) {
  std::FILE* out = status == 0 ? stdout : stderr;
  std::fputs(
      "usage: content_load --protocol spamd|milter|http --target HOST:PORT\n"
      "                    [--corpus DIR] [--split-file FILE] [--split NAME]\n"
      "                    [--connections N] [--messages N] [--warmup-messages N]\n"
      "                    [--timeout SECONDS] [--seed N]\n"
      "                    [--spamd-command CHECK|SYMBOLS] [--milter-reuse 0|1]\n"
      "                    [--http-path PATH]\n"
      "Closed-loop content load: the corpus split's messages through one protocol.\n"
      "Defaults: --corpus /tmp/spamward-corpus (ham/ and spam/ unpacked there),\n"
      "--split-file CORPUS/SPLIT.tsv, --split test, 8 connections, 10000 measured messages\n"
      "after an unmeasured warm-up of one pass over the split, 30 s per message.\n",
      out);
  std::exit(status);
}

[[noreturn]] void die_usage(const std::string& message) {
  std::cerr << "content_load: " << message << "\n";
  usage(2);
}

[[noreturn]] void die(const std::string& message) {
  std::cerr << "content_load: " << message << "\n";
  std::exit(1);
}

template <typename T>
T parse_number(std::string_view name, std::string_view text) {
  T value{};
  const char* first = text.data();
  const char* last = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(first, last, value);
  if (ec != std::errc() || ptr != last) {
    die_usage("bad value for --" + std::string(name) + ": '" + std::string(text) + "'");
  }
  return value;
}

Options parse_options(int argc, char** argv) {
  Options o;
  bool have_protocol = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") usage(0);
    if (!arg.starts_with("--")) die_usage("unexpected argument '" + std::string(arg) + "'");
    arg.remove_prefix(2);
    std::string_view name = arg;
    std::string_view value;
    if (auto eq = arg.find('='); eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    } else {
      if (i + 1 >= argc) die_usage("--" + std::string(name) + " needs a value");
      value = argv[++i];
    }
    if (name == "protocol") {
      have_protocol = true;
      if (value == "spamd") {
        o.protocol = Protocol::spamd;
      } else if (value == "milter") {
        o.protocol = Protocol::milter;
      } else if (value == "http") {
        o.protocol = Protocol::http;
      } else {
        die_usage("--protocol must be spamd, milter or http");
      }
    } else if (name == "target") {
      o.target = std::string(value);
    } else if (name == "corpus") {
      o.corpus = std::string(value);
    } else if (name == "split-file") {
      o.split_file = std::string(value);
    } else if (name == "split") {
      o.split = std::string(value);
    } else if (name == "connections") {
      o.connections = parse_number<int>(name, value);
    } else if (name == "messages") {
      o.messages = parse_number<uint64_t>(name, value);
    } else if (name == "warmup-messages") {
      o.warmup = parse_number<int64_t>(name, value);
    } else if (name == "timeout") {
      o.timeout_s = parse_number<double>(name, value);
    } else if (name == "seed") {
      o.seed = parse_number<uint64_t>(name, value);
    } else if (name == "spamd-command") {
      if (value != "CHECK" && value != "SYMBOLS") die_usage("--spamd-command: CHECK or SYMBOLS");
      o.spamd_command = std::string(value);
    } else if (name == "milter-reuse") {
      o.milter_reuse = parse_number<int>(name, value) != 0;
    } else if (name == "http-path") {
      if (!value.starts_with("/")) die_usage("--http-path must start with /");
      o.http_path = std::string(value);
    } else {
      die_usage("unknown option --" + std::string(name));
    }
  }
  if (!have_protocol) die_usage("--protocol is required");
  if (o.target.empty()) die_usage("--target is required");
  if (o.connections < 1 || o.connections > 10000) die_usage("--connections must be 1..10000");
  if (o.messages < 1) die_usage("--messages must be >= 1");
  if (!(o.timeout_s > 0)) die_usage("--timeout must be > 0");
  if (o.warmup < -1) die_usage("--warmup-messages must be >= 0");
  if (o.split_file.empty()) o.split_file = o.corpus + "/SPLIT.tsv";
  return o;
}

// splitmix64, as in policy_load: the order depends on the seed only.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) { return next() % n; }

 private:
  uint64_t state_;
};

void append_number(std::string& s, uint64_t v, int base = 10) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, base);
  (void)ec;
  s.append(buf, end);
}

// ---------------------------------------------------------------------------------------------
// The messages and their envelopes.

struct HeaderField {
  std::string name;
  std::string value;  // after the colon, leading white space included; folds joined by "\n"
};

struct Message {
  std::string path;
  bool spam = false;
  std::string raw;  // the file as it is
  // Derived once:
  std::string client_address;
  std::string client_name;  // "unknown" for a client without a verified name
  std::string helo;
  std::string sender;  // "" for a bounce
  std::string recipient;
  std::string queue_id;
  std::vector<HeaderField> headers;  // without a leading mbox "From " line
  std::string body_crlf;             // the body with CRLF line ends, as Postfix sends it
  // The protocol's pre-rendered request(s).
  std::string request;  // spamd, http
  struct Step {
    std::string bytes;  // the command, preceded by its macro frame if any
    char command = 0;
    bool reply = true;  // the server answers this command
  };
  std::vector<Step> steps;  // milter: one SMTP session (CONNECT .. EOM)
};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Splits the header block into fields (unfolded into "\n"-joined lines, CRs dropped) and
// returns where the body starts. A leading mbox "From " line is skipped. A line that is neither
// a field nor a continuation ends the header block there, as Postfix's cleanup treats it.
size_t split_headers(const std::string& raw, std::vector<HeaderField>& out) {
  size_t pos = 0;
  if (raw.starts_with("From ")) {
    auto nl = raw.find('\n');
    pos = nl == std::string::npos ? raw.size() : nl + 1;
  }
  while (pos < raw.size()) {
    size_t nl = raw.find('\n', pos);
    size_t next = nl == std::string::npos ? raw.size() : nl + 1;
    std::string_view line(raw.data() + pos, (nl == std::string::npos ? raw.size() : nl) - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) return next;  // the blank line: the body follows
    if ((line[0] == ' ' || line[0] == '\t') && !out.empty()) {
      out.back().value += '\n';
      out.back().value += line;
    } else {
      auto colon = line.find(':');
      if (colon == std::string_view::npos || colon == 0 ||
          line.substr(0, colon).find_first_of(" \t") != std::string_view::npos) {
        return pos;  // not a header field: the body starts here
      }
      out.push_back({std::string(line.substr(0, colon)), std::string(line.substr(colon + 1))});
    }
    pos = next;
  }
  return raw.size();
}

const HeaderField* find_header(const std::vector<HeaderField>& headers, std::string_view name) {
  for (const auto& h : headers) {
    if (lower(h.name) == name) return &h;
  }
  return nullptr;
}

// The first address of a header value: inside <...>, else the first word with an '@'. Returns
// nullopt when there is none that looks like local@domain.
std::optional<std::string> first_address(std::string_view value) {
  std::string candidate;
  if (auto lt = value.find('<'); lt != std::string_view::npos) {
    auto gt = value.find('>', lt);
    if (gt != std::string_view::npos) candidate = std::string(value.substr(lt + 1, gt - lt - 1));
    if (candidate.empty()) return std::string();  // "<>": a bounce
  }
  if (candidate.empty()) {
    size_t i = 0;
    while (i < value.size()) {
      while (i < value.size() &&
             std::string_view(" \t\n,;()\"").find(value[i]) != std::string_view::npos) {
        ++i;
      }
      size_t j = i;
      while (j < value.size() &&
             std::string_view(" \t\n,;()\"").find(value[j]) == std::string_view::npos) {
        ++j;
      }
      std::string_view word = value.substr(i, j - i);
      if (word.find('@') != std::string_view::npos) {
        candidate = std::string(word);
        break;
      }
      i = j;
    }
  }
  auto at = candidate.find('@');
  if (at == std::string::npos || at == 0 || at + 1 == candidate.size() ||
      candidate.find_first_of(" \t\r\n<>") != std::string::npos) {
    return std::nullopt;
  }
  return candidate;
}

constexpr std::string_view kNets[] = {"192.0.2.", "198.51.100.", "203.0.113."};

void derive_envelope(Message& m, size_t index) {
  size_t body = split_headers(m.raw, m.headers);
  m.body_crlf.reserve(m.raw.size() - body + m.raw.size() / 40);
  for (size_t i = body; i < m.raw.size(); ++i) {
    char c = m.raw[i];
    if (c == '\n' && (i == body || m.raw[i - 1] != '\r')) m.body_crlf += '\r';
    m.body_crlf += c;
  }
  m.client_address = std::string(kNets[index % 3]) + std::to_string(1 + (index / 3) % 254);
  // Eight in ten clients have a verified name (the MTA's {client_name}); the rest "unknown".
  if (index % 10 < 8) {
    m.client_name =
        "mx" + std::to_string(index % 97) + ".sender" + std::to_string(index % 13) + ".example.net";
    m.helo = m.client_name;
  } else {
    m.client_name = "unknown";
    m.helo = index % 2 ? "[" + m.client_address + "]" : "mail.example.com";
  }
  std::optional<std::string> sender;
  if (auto* h = find_header(m.headers, "return-path")) sender = first_address(h->value);
  if (!sender) {
    if (auto* h = find_header(m.headers, "from")) sender = first_address(h->value);
  }
  m.sender = sender.value_or("sender@example.com");
  std::optional<std::string> rcpt;
  if (auto* h = find_header(m.headers, "delivered-to")) rcpt = first_address(h->value);
  if (!rcpt || rcpt->empty()) {
    if (auto* h = find_header(m.headers, "to")) rcpt = first_address(h->value);
  }
  m.recipient = rcpt && !rcpt->empty() ? *rcpt : "user@example.org";
  m.queue_id.clear();
  append_number(m.queue_id, 0x10000 + index, 16);
  std::transform(m.queue_id.begin(), m.queue_id.end(), m.queue_id.begin(),
                 [](char c) { return static_cast<char>(std::toupper(c)); });
}

std::vector<Message> load_split(const Options& o) {
  std::ifstream tsv(o.split_file);
  if (!tsv) die("cannot read " + o.split_file);
  std::vector<Message> out;
  std::string line;
  bool header = true;
  while (std::getline(tsv, line)) {
    if (header) {
      header = false;
      continue;
    }
    std::vector<std::string_view> cols;
    std::string_view rest(line);
    while (true) {
      auto tab = rest.find('\t');
      cols.push_back(rest.substr(0, tab));
      if (tab == std::string_view::npos) break;
      rest.remove_prefix(tab + 1);
    }
    if (cols.size() < 3 || cols[2] != o.split) continue;
    Message m;
    m.path = std::string(cols[0]);
    m.spam = cols[1] == "spam";
    std::string file = o.corpus + "/" + m.path;
    std::ifstream in(file, std::ios::binary);
    if (!in) die("cannot read " + file + " (unpack the corpus archives into " + o.corpus + ")");
    std::ostringstream ss;
    ss << in.rdbuf();
    m.raw = ss.str();
    out.push_back(std::move(m));
  }
  if (out.empty()) die("no message of split '" + o.split + "' in " + o.split_file);
  // A fixed shuffle: the file is sorted by path, so all ham would come first.
  Rng rng(o.seed ^ 0x5bd1e995ULL);
  for (size_t i = out.size(); i > 1; --i) std::swap(out[i - 1], out[rng.below(i)]);
  for (size_t i = 0; i < out.size(); ++i) derive_envelope(out[i], i);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Rendering.

void render_spamd(const Options& o, Message& m) {
  std::string& r = m.request;
  r = o.spamd_command + " SPAMC/1.5\r\nContent-length: ";
  append_number(r, m.raw.size());
  r += "\r\nUser: bench\r\n\r\n";
  r += m.raw;
}

void render_http(const Options& o, Message& m, std::string_view host) {
  std::string& r = m.request;
  r = "POST " + o.http_path + " HTTP/1.1\r\nHost: " + std::string(host) + "\r\n";
  r += "Connection: close\r\nIP: " + m.client_address + "\r\nHelo: " + m.helo + "\r\n";
  if (m.client_name != "unknown") r += "Hostname: " + m.client_name + "\r\n";
  r += "From: " + m.sender + "\r\nRcpt: " + m.recipient + "\r\nQueue-Id: " + m.queue_id + "\r\n";
  r += "Content-Length: ";
  append_number(r, m.raw.size());
  r += "\r\n\r\n";
  r += m.raw;
}

namespace milter {
// Protocol bits (SMFIP_*) that change what the client sends.
constexpr uint32_t kNoConnect = 0x1, kNoHelo = 0x2, kNoMail = 0x4, kNoRcpt = 0x8, kNoBody = 0x10,
                   kNoHeaders = 0x20, kNoEoh = 0x40, kNrHeader = 0x80, kNoData = 0x200,
                   kNrConnect = 0x1000, kNrHelo = 0x2000, kNrMail = 0x4000, kNrRcpt = 0x8000,
                   kNrData = 0x10000, kNrEoh = 0x40000, kNrBody = 0x80000,
                   kHeaderLeadSpace = 0x100000;
// What Postfix 3.x offers: every action, every protocol step bit it knows.
constexpr uint32_t kOfferedActions = 0x1ff;
constexpr uint32_t kOfferedProtocol = 0x1fffff;
constexpr size_t kBodyChunk = 65535;
}  // namespace milter

void put32(std::string& s, uint32_t v) {
  s += static_cast<char>((v >> 24) & 0xff);
  s += static_cast<char>((v >> 16) & 0xff);
  s += static_cast<char>((v >> 8) & 0xff);
  s += static_cast<char>(v & 0xff);
}

void frame(std::string& out, char command, std::string_view data) {
  put32(out, static_cast<uint32_t>(data.size() + 1));
  out += command;
  out += data;
}

std::string nul_strings(std::initializer_list<std::string_view> parts) {
  std::string s;
  for (auto p : parts) {
    s += p;
    s += '\0';
  }
  return s;
}

std::string optneg_frame() {
  std::string data;
  put32(data, 6);
  put32(data, milter::kOfferedActions);
  put32(data, milter::kOfferedProtocol);
  std::string out;
  frame(out, 'O', data);
  return out;
}

// One SMTP session with one message, as Postfix's smtpd sends it to a milter, honouring the
// protocol bits the filter negotiated (steps it asked to skip are not sent; steps it asked not
// to answer are not awaited).
void render_milter(Message& m, uint32_t protocol) {
  auto has = [protocol](uint32_t bit) { return (protocol & bit) != 0; };
  auto step = [&m](char command, bool reply, std::string bytes) {
    m.steps.push_back({std::move(bytes), command, reply});
  };
  auto macros = [](char stage, std::initializer_list<std::string_view> pairs) {
    std::string out;
    std::string data(1, stage);
    data += nul_strings(pairs);
    frame(out, 'D', data);
    return out;
  };
  const std::string qid = m.queue_id;
  const bool verified = m.client_name != "unknown";
  const std::string hostname = verified ? m.client_name : "[" + m.client_address + "]";
  m.steps.clear();
  if (!has(milter::kNoConnect)) {
    std::string b = macros(
        'C', {"j", "mx.bench.test", "_", hostname + " [" + m.client_address + "]", "{daemon_name}",
              "smtpd", "{daemon_addr}", "127.0.0.1", "{daemon_port}", "25", "{client_name}",
              m.client_name, "{client_ptr}", verified ? m.client_name : "unknown"});
    std::string data = hostname;
    data += '\0';
    data += '4';
    const uint16_t port = static_cast<uint16_t>(1024 + std::hash<std::string>{}(qid) % 60000);
    data += static_cast<char>(port >> 8);
    data += static_cast<char>(port & 0xff);
    data += m.client_address;
    data += '\0';
    frame(b, 'C', data);
    step('C', !has(milter::kNrConnect), std::move(b));
  }
  if (!has(milter::kNoHelo)) {
    std::string b;
    frame(b, 'H', nul_strings({m.helo}));
    step('H', !has(milter::kNrHelo), std::move(b));
  }
  if (!has(milter::kNoMail)) {
    std::string b = macros('M', {"i", qid});
    std::string size = "SIZE=" + std::to_string(m.raw.size());
    frame(b, 'M', nul_strings({"<" + m.sender + ">", size}));
    step('M', !has(milter::kNrMail), std::move(b));
  }
  if (!has(milter::kNoRcpt)) {
    std::string b = macros('R', {"i", qid});
    frame(b, 'R', nul_strings({"<" + m.recipient + ">"}));
    step('R', !has(milter::kNrRcpt), std::move(b));
  }
  if (!has(milter::kNoData)) {
    std::string b = macros('T', {"i", qid});
    frame(b, 'T', {});
    step('T', !has(milter::kNrData), std::move(b));
  }
  if (!has(milter::kNoHeaders)) {
    const bool lead = has(milter::kHeaderLeadSpace);
    for (const auto& h : m.headers) {
      std::string_view value = h.value;
      if (!lead) {
        // Without SMFIP_HDR_LEADSPC Postfix drops the white space after the colon.
        while (!value.empty() && (value[0] == ' ' || value[0] == '\t')) value.remove_prefix(1);
      }
      std::string b;
      std::string data = h.name;
      data += '\0';
      data += value;
      data += '\0';
      frame(b, 'L', data);
      step('L', !has(milter::kNrHeader), std::move(b));
    }
  }
  if (!has(milter::kNoEoh)) {
    std::string b;
    frame(b, 'N', {});
    step('N', !has(milter::kNrEoh), std::move(b));
  }
  if (!has(milter::kNoBody)) {
    for (size_t off = 0; off < m.body_crlf.size(); off += milter::kBodyChunk) {
      std::string b;
      frame(b, 'B', std::string_view(m.body_crlf).substr(off, milter::kBodyChunk));
      step('B', !has(milter::kNrBody), std::move(b));
    }
  }
  std::string b = macros('E', {"i", qid});
  frame(b, 'E', {});
  step('E', true, std::move(b));
}

// ---------------------------------------------------------------------------------------------
// Measurement (the histogram of policy_load).

using bench::ErrorKind;
using bench::Histogram;
using bench::kErrorKinds;
using bench::kErrorNames;

struct Shared {
  Options options;
  tcp::endpoint endpoint;
  std::vector<Message> messages;
  uint64_t warmup = 0;
  uint64_t total = 0;  // warmup + measured
  uint64_t next = 0;   // the next message number (one thread: no atomics needed)
  std::optional<Clock::time_point> measure_start;
};

struct Stats {
  Histogram histogram;
  uint64_t errors[kErrorKinds] = {};
  // Verdicts of the measured messages, by the message's label.
  std::map<std::string, uint64_t, std::less<>> verdicts[2];  // [0] ham, [1] spam
  Clock::time_point last_completion{};
  uint64_t answered = 0;  // warm-up included
  uint64_t measured_bytes = 0;
};

struct Connection {
  int id = 0;
  std::unique_ptr<tcp::socket> socket;
  bool negotiated = false;  // milter with --milter-reuse: OPTNEG done on this socket
  Clock::time_point busy_since{};
  bool busy = false;
  bool timed_out = false;
  bool done = false;
};

struct Client {
  Shared& shared;
  asio::io_context io{1};
  Stats stats;
  std::vector<std::unique_ptr<Connection>> connections;
  int live = 0;
  explicit Client(Shared& s) : shared(s) {}
};

// The outcome of one message.
struct Outcome {
  bool ok = false;
  ErrorKind error = ErrorKind::io;
  std::string verdict;
};

const auto kToken = asio::as_tuple(asio::use_awaitable);

void close_socket(Connection& c) {
  if (!c.socket) return;
  boost::system::error_code ec;
  c.socket->close(ec);
  c.negotiated = false;
}

ErrorKind io_kind(const Connection& c, const boost::system::error_code& ec) {
  if (c.timed_out) return ErrorKind::timeout;
  if (ec == asio::error::eof || ec == asio::error::connection_reset) return ErrorKind::closed;
  return ErrorKind::io;
}

asio::awaitable<std::optional<ErrorKind>> connect(Shared& s, Connection& c) {
  auto executor = co_await asio::this_coro::executor;
  c.socket = std::make_unique<tcp::socket>(executor);
  auto [ec] = co_await c.socket->async_connect(s.endpoint, kToken);
  if (ec) {
    close_socket(c);
    co_return c.timed_out ? ErrorKind::timeout : ErrorKind::connect;
  }
  boost::system::error_code opt_ec;
  c.socket->set_option(tcp::no_delay(true), opt_ec);
  co_return std::nullopt;
}

// Writes the request, then reads to the server's close.
asio::awaitable<Outcome> request_to_close(Shared& s, Connection& c, const std::string& request,
                                          std::string& reply) {
  Outcome out;
  if (auto err = co_await connect(s, c)) {
    out.error = *err;
    co_return out;
  }
  auto [wec, written] = co_await asio::async_write(*c.socket, asio::buffer(request), kToken);
  (void)written;
  if (wec) {
    out.error = io_kind(c, wec);
    close_socket(c);
    co_return out;
  }
  if (s.options.protocol == Protocol::spamd) {
    // spamc half-closes after the message.
    boost::system::error_code sec;
    c.socket->shutdown(tcp::socket::shutdown_send, sec);
  }
  reply.clear();
  auto [rec, len] = co_await asio::async_read(*c.socket, asio::dynamic_buffer(reply, 1 << 24),
                                              asio::transfer_all(), kToken);
  (void)len;
  close_socket(c);
  if (rec && rec != asio::error::eof) {
    out.error = io_kind(c, rec);
    co_return out;
  }
  out.ok = true;
  co_return out;
}

std::string_view header_value(std::string_view head, std::string_view name) {
  // Case-insensitive search for "\nName:" in a header block.
  size_t pos = 0;
  while ((pos = head.find('\n', pos)) != std::string_view::npos) {
    ++pos;
    if (head.size() - pos > name.size() && head[pos + name.size()] == ':' &&
        lower(head.substr(pos, name.size())) == lower(name)) {
      auto v = head.substr(pos + name.size() + 1);
      v = v.substr(0, v.find_first_of("\r\n"));
      while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
      return v;
    }
  }
  return {};
}

asio::awaitable<Outcome> run_spamd(Shared& s, Connection& c, const Message& m, std::string& reply) {
  Outcome out = co_await request_to_close(s, c, m.request, reply);
  if (!out.ok) co_return out;
  // "SPAMD/1.1 0 EX_OK\r\n...Spam: True ; 7.0 / 6.0\r\n\r\n[body]"
  std::string_view r(reply);
  if (!r.starts_with("SPAMD/") || r.find(" 0 ") == std::string_view::npos ||
      r.find(" 0 ") > r.find('\n')) {
    out.ok = false;
    out.error = reply.empty() ? ErrorKind::closed : ErrorKind::bad_reply;
    co_return out;
  }
  auto spam = header_value(r, "Spam");
  if (spam.starts_with("True") || spam.starts_with("Yes")) {
    out.verdict = "spam";
  } else if (spam.starts_with("False") || spam.starts_with("No")) {
    out.verdict = "ham";
  } else {
    out.ok = false;
    out.error = ErrorKind::bad_reply;
  }
  co_return out;
}

asio::awaitable<Outcome> run_http(Shared& s, Connection& c, const Message& m, std::string& reply) {
  Outcome out = co_await request_to_close(s, c, m.request, reply);
  if (!out.ok) co_return out;
  std::string_view r(reply);
  auto head_end = r.find("\r\n\r\n");
  if (!r.starts_with("HTTP/1.") || r.size() < 12 || r.substr(9, 3) != "200" ||
      head_end == std::string_view::npos) {
    out.ok = false;
    out.error = reply.empty() ? ErrorKind::closed : ErrorKind::bad_reply;
    co_return out;
  }
  std::string_view body = r.substr(head_end + 4);
  auto key = body.find("\"action\"");
  if (key == std::string_view::npos) {
    out.ok = false;
    out.error = ErrorKind::bad_reply;
    co_return out;
  }
  auto q1 = body.find('"', body.find(':', key) + 1);
  auto q2 = q1 == std::string_view::npos ? q1 : body.find('"', q1 + 1);
  if (q2 == std::string_view::npos) {
    out.ok = false;
    out.error = ErrorKind::bad_reply;
    co_return out;
  }
  out.verdict = std::string(body.substr(q1 + 1, q2 - q1 - 1));
  for (char& ch : out.verdict) {
    if (ch == ' ') ch = '_';
  }
  co_return out;
}

// Reads one milter frame into `frame_data` (command byte first).
asio::awaitable<boost::system::error_code> read_frame(Connection& c, std::string& buffer,
                                                      std::string& frame_data) {
  while (true) {
    if (buffer.size() >= 4) {
      const auto* p = reinterpret_cast<const unsigned char*>(buffer.data());
      const uint32_t len =
          (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
      if (len == 0 || len > (1u << 24)) co_return asio::error::message_size;
      if (buffer.size() >= 4 + size_t{len}) {
        frame_data.assign(buffer, 4, len);
        buffer.erase(0, 4 + size_t{len});
        co_return boost::system::error_code{};
      }
    }
    const size_t old = buffer.size();
    buffer.resize(old + 4096);
    auto [ec, n] =
        co_await c.socket->async_read_some(asio::buffer(buffer.data() + old, 4096), kToken);
    buffer.resize(old + n);
    if (ec) co_return ec;
  }
}

std::string refusal_verdict(std::string_view text) {
  // SMFIR_REPLYCODE data: "451 4.7.1 text\0".
  if (text.starts_with("451")) return "greylist";
  if (text.starts_with("4")) return "tempfail";
  if (text.starts_with("5")) return "reject";
  return "replycode?";
}

std::string_view stage_name(char command) {
  switch (command) {
    case 'C':
      return "connect";
    case 'H':
      return "helo";
    case 'M':
      return "mail";
    case 'R':
      return "rcpt";
    case 'T':
      return "data";
    case 'L':
      return "header";
    case 'N':
      return "eoh";
    case 'B':
      return "body";
    default:
      return "eom";
  }
}

// Option negotiation on a new connection; returns the protocol bits the filter asked for.
asio::awaitable<std::optional<uint32_t>> milter_optneg(Connection& c, std::string& buffer,
                                                       std::string& frame_data,
                                                       boost::system::error_code& ec) {
  static const std::string optneg = optneg_frame();
  auto [wec, n] = co_await asio::async_write(*c.socket, asio::buffer(optneg), kToken);
  (void)n;
  if (wec) {
    ec = wec;
    co_return std::nullopt;
  }
  ec = co_await read_frame(c, buffer, frame_data);
  if (ec) co_return std::nullopt;
  if (frame_data.size() < 13 || frame_data[0] != 'O') co_return std::nullopt;
  const auto* p = reinterpret_cast<const unsigned char*>(frame_data.data() + 9);
  co_return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) |
      uint32_t{p[3]};
}

asio::awaitable<Outcome> run_milter(Shared& s, Connection& c, const Message& m, std::string& buffer,
                                    std::string& frame_data) {
  Outcome out;
  boost::system::error_code ec;
  if (!c.socket || !c.socket->is_open() || !c.negotiated) {
    buffer.clear();
    if (auto err = co_await connect(s, c)) {
      out.error = *err;
      co_return out;
    }
    auto protocol = co_await milter_optneg(c, buffer, frame_data, ec);
    if (!protocol) {
      out.error = ec ? io_kind(c, ec) : ErrorKind::bad_reply;
      close_socket(c);
      co_return out;
    }
    c.negotiated = true;
  }
  bool tagged = false;
  bool refused = false;
  size_t i = 0;
  while (i < m.steps.size()) {
    const auto& step = m.steps[i];
    auto [wec, n] = co_await asio::async_write(*c.socket, asio::buffer(step.bytes), kToken);
    (void)n;
    if (wec) {
      out.error = io_kind(c, wec);
      close_socket(c);
      co_return out;
    }
    if (!step.reply) {
      ++i;
      continue;
    }
    bool next_step = false;
    while (!next_step) {
      ec = co_await read_frame(c, buffer, frame_data);
      if (ec) {
        out.error = ec == asio::error::message_size ? ErrorKind::bad_reply : io_kind(c, ec);
        close_socket(c);
        co_return out;
      }
      const char code = frame_data[0];
      std::string_view data(frame_data.data() + 1, frame_data.size() - 1);
      switch (code) {
        case 'c':  // continue
          next_step = true;
          ++i;
          break;
        case 's':  // skip: no more body chunks
          next_step = true;
          ++i;
          while (i < m.steps.size() && m.steps[i].command == 'B') ++i;
          break;
        case 'p':  // progress: keep waiting
          break;
        case 'h':  // add header
        case 'i':  // insert header
          if (data.starts_with(std::string_view("X-Spam-Flag\0", 12)) &&
              data.substr(12).find("YES") != std::string_view::npos) {
            tagged = true;
          }
          break;
        case 'm':
        case '+':
        case '-':
        case 'b':
        case 'e':
        case 'f':
        case 'q':
        case '2':
        case 'l':
          break;   // other modifications, only valid at EOM
        case 'a':  // accept
          out.verdict = step.command == 'E' ? (tagged ? "tag" : "accept")
                                            : "accept@" + std::string(stage_name(step.command));
          next_step = true;
          refused = step.command != 'E';  // the rest of the message is not sent: ABORT
          i = m.steps.size();
          break;
        case 'y':
          out.verdict = refusal_verdict(data);
          [[fallthrough]];
        case 'r':
        case 't':
        case 'd':
          if (code == 'r') out.verdict = "reject";
          if (code == 't') out.verdict = "tempfail";
          if (code == 'd') out.verdict = "discard";
          if (step.command != 'E') out.verdict += "@" + std::string(stage_name(step.command));
          next_step = true;
          refused = step.command != 'E';
          i = m.steps.size();
          break;
        default:
          out.error = ErrorKind::bad_reply;
          close_socket(c);
          co_return out;
      }
    }
  }
  if (out.verdict.empty()) out.verdict = "continue@eom";  // no final action: odd, but an answer
  // End the session: ABORT after a refusal before EOM (Postfix ends the transaction), then
  // QUIT_NC to keep the connection, or QUIT.
  std::string tail;
  if (refused) frame(tail, 'A', {});
  frame(tail, s.options.milter_reuse ? 'K' : 'Q', {});
  auto [wec, n] = co_await asio::async_write(*c.socket, asio::buffer(tail), kToken);
  (void)n;
  if (!s.options.milter_reuse || wec) close_socket(c);
  out.ok = true;
  co_return out;
}

asio::awaitable<void> run_connection(Client& w, Connection& c) {
  Shared& s = w.shared;
  auto executor = co_await asio::this_coro::executor;
  std::string reply;
  std::string buffer;
  std::string frame_data;
  asio::steady_timer backoff(executor);
  while (s.next < s.total) {
    const uint64_t n = s.next++;
    const bool measured = n >= s.warmup;
    const Message& m = s.messages[n % s.messages.size()];
    const auto start = Clock::now();
    if (measured && !s.measure_start) s.measure_start = start;
    c.busy_since = start;
    c.busy = true;
    c.timed_out = false;
    Outcome out;
    switch (s.options.protocol) {
      case Protocol::spamd:
        out = co_await run_spamd(s, c, m, reply);
        break;
      case Protocol::http:
        out = co_await run_http(s, c, m, reply);
        break;
      case Protocol::milter:
        out = co_await run_milter(s, c, m, buffer, frame_data);
        break;
    }
    const auto finish = Clock::now();
    c.busy = false;
    if (!out.ok) {
      ++w.stats.errors[static_cast<size_t>(out.error)];
      if (out.error == ErrorKind::connect) {
        // Back off so a dead server does not turn the run into a connect storm.
        backoff.expires_after(std::chrono::milliseconds(20));
        auto [wait_ec] = co_await backoff.async_wait(kToken);
        (void)wait_ec;
      }
      continue;
    }
    ++w.stats.answered;
    if (measured) {
      auto us = std::chrono::duration_cast<std::chrono::microseconds>(finish - start).count();
      w.stats.histogram.record(static_cast<uint64_t>(us));
      w.stats.last_completion = std::max(w.stats.last_completion, finish);
      w.stats.measured_bytes += m.raw.size();
      ++w.stats.verdicts[m.spam ? 1 : 0][out.verdict];
    }
  }
  close_socket(c);
  c.done = true;
  --w.live;
}

// Closes the socket of any message outstanding longer than --timeout.
asio::awaitable<void> watchdog(Client& w) {
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer timer(executor);
  const auto limit = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(w.shared.options.timeout_s));
  while (w.live > 0) {
    timer.expires_after(std::chrono::milliseconds(100));
    auto [ec] = co_await timer.async_wait(kToken);
    (void)ec;
    const auto now = Clock::now();
    for (auto& c : w.connections) {
      if (c->done || !c->socket || !c->busy) continue;
      if (now - c->busy_since > limit) {
        c->timed_out = true;
        boost::system::error_code close_ec;
        c->socket->close(close_ec);
      }
    }
  }
}

tcp::endpoint resolve_target(const std::string& target) {
  auto colon = target.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == target.size()) {
    die_usage("--target must be HOST:PORT, got '" + target + "'");
  }
  std::string host = target.substr(0, colon);
  std::string port = target.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  asio::io_context io;
  tcp::resolver resolver(io);
  boost::system::error_code ec;
  auto results = resolver.resolve(host, port, ec);
  if (ec || results.empty()) die("cannot resolve " + target + ": " + ec.message());
  return results.begin()->endpoint();
}

// Learns the milter protocol bits the filter asks for (one negotiation, then QUIT), so that
// every session can be rendered once before the run.
uint32_t probe_milter(const tcp::endpoint& endpoint) {
  asio::io_context io;
  tcp::socket socket(io);
  boost::system::error_code ec;
  for (int attempt = 0; attempt < 50; ++attempt) {
    socket.connect(endpoint, ec);
    if (!ec) break;
    socket.close();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (ec)
    die("cannot connect to the milter at " + endpoint.address().to_string() + ": " + ec.message());
  asio::write(socket, asio::buffer(optneg_frame()), ec);
  unsigned char len_bytes[4];
  if (!ec) asio::read(socket, asio::buffer(len_bytes), ec);
  if (ec) die("milter option negotiation failed: " + ec.message());
  const uint32_t len = (uint32_t{len_bytes[0]} << 24) | (uint32_t{len_bytes[1]} << 16) |
                       (uint32_t{len_bytes[2]} << 8) | uint32_t{len_bytes[3]};
  if (len < 13 || len > (1u << 20)) die("milter option negotiation: bad reply length");
  std::string data(len, '\0');
  asio::read(socket, asio::buffer(data), ec);
  if (ec || data[0] != 'O') die("milter option negotiation: bad reply");
  const auto* p = reinterpret_cast<const unsigned char*>(data.data() + 9);
  std::string quit;
  frame(quit, 'Q', {});
  asio::write(socket, asio::buffer(quit), ec);
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

std::string verdict_text(const std::map<std::string, uint64_t, std::less<>>& v) {
  std::string s;
  for (auto& [word, count] : v) s += (s.empty() ? "" : ",") + word + ":" + std::to_string(count);
  return s.empty() ? "-" : s;
}

}  // namespace

int main(int argc, char** argv) {
  Shared shared;
  shared.options = parse_options(argc, argv);
  const Options& o = shared.options;
  shared.endpoint = resolve_target(o.target);
  shared.messages = load_split(o);
  uint32_t milter_protocol = 0;
  if (o.protocol == Protocol::milter) milter_protocol = probe_milter(shared.endpoint);
  size_t spam = 0;
  uint64_t bytes = 0;
  for (auto& m : shared.messages) {
    spam += m.spam;
    bytes += m.raw.size();
    switch (o.protocol) {
      case Protocol::spamd:
        render_spamd(o, m);
        break;
      case Protocol::http:
        render_http(o, m, o.target);
        break;
      case Protocol::milter:
        render_milter(m, milter_protocol);
        break;
    }
  }
  shared.warmup = o.warmup < 0 ? shared.messages.size() : static_cast<uint64_t>(o.warmup);
  shared.total = shared.warmup + o.messages;

  Client client(shared);
  for (int i = 0; i < o.connections; ++i) {
    auto c = std::make_unique<Connection>();
    c->id = i;
    client.connections.push_back(std::move(c));
    ++client.live;
  }
  const auto start = Clock::now();
  for (auto& c : client.connections) {
    asio::co_spawn(client.io, run_connection(client, *c), asio::detached);
  }
  asio::co_spawn(client.io, watchdog(client), asio::detached);
  client.io.run();
  const auto end = Clock::now();

  const Stats& st = client.stats;
  const Histogram& h = st.histogram;
  const double window_s =
      h.count() && shared.measure_start
          ? std::chrono::duration<double>(st.last_completion - *shared.measure_start).count()
          : 0.0;
  const double rate = window_s > 0 ? static_cast<double>(h.count()) / window_s : 0.0;
  const double mib_s =
      window_s > 0 ? static_cast<double>(st.measured_bytes) / window_s / 1048576 : 0.0;
  uint64_t errors = 0;
  for (auto e : st.errors) errors += e;
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const double cpu_s = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                       static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  const char* proto = o.protocol == Protocol::spamd    ? "spamd"
                      : o.protocol == Protocol::milter ? "milter"
                                                       : "http";

  std::printf(
      "target %s (%s)  connections %d  split '%s': %zu messages (%zu spam), %.1f MiB  "
      "warm-up %llu messages  run %.1f s, window %.2f s\n",
      o.target.c_str(), proto, o.connections, o.split.c_str(), shared.messages.size(), spam,
      static_cast<double>(bytes) / 1048576, static_cast<unsigned long long>(shared.warmup),
      std::chrono::duration<double>(end - start).count(), window_s);
  std::printf("messages %llu  errors %llu  rate %.1f msg/s (%.2f MiB/s)\n",
              static_cast<unsigned long long>(h.count()), static_cast<unsigned long long>(errors),
              rate, mib_s);
  std::printf("latency µs: p50 %llu  p90 %llu  p99 %llu  p99.9 %llu  max %llu  mean %.1f\n",
              static_cast<unsigned long long>(h.percentile(0.50)),
              static_cast<unsigned long long>(h.percentile(0.90)),
              static_cast<unsigned long long>(h.percentile(0.99)),
              static_cast<unsigned long long>(h.percentile(0.999)),
              static_cast<unsigned long long>(h.max_us()), h.mean_us());
  std::printf("verdicts, ham: %s\n", verdict_text(st.verdicts[0]).c_str());
  std::printf("verdicts, spam: %s\n", verdict_text(st.verdicts[1]).c_str());
  std::printf("generator: %.2f CPU s, %.1f µs per message (%llu answered, warm-up included)\n",
              cpu_s, st.answered ? cpu_s * 1e6 / static_cast<double>(st.answered) : 0.0,
              static_cast<unsigned long long>(st.answered));
  if (errors) {
    std::string detail;
    for (size_t k = 0; k < kErrorKinds; ++k) {
      if (st.errors[k]) {
        detail += std::string(detail.empty() ? "" : ", ") + std::string(kErrorNames[k]) + " " +
                  std::to_string(st.errors[k]);
      }
    }
    std::printf("errors: %s\n", detail.c_str());
  }
  std::printf(
      "RESULT protocol=%s target=%s conns=%d messages=%llu errors=%llu rate=%.1f mib_s=%.2f "
      "p50_us=%llu p90_us=%llu p99_us=%llu p999_us=%llu max_us=%llu mean_us=%.1f answered=%llu "
      "client_cpu_s=%.2f verdicts_ham=%s verdicts_spam=%s\n",
      proto, o.target.c_str(), o.connections, static_cast<unsigned long long>(h.count()),
      static_cast<unsigned long long>(errors), rate, mib_s,
      static_cast<unsigned long long>(h.percentile(0.50)),
      static_cast<unsigned long long>(h.percentile(0.90)),
      static_cast<unsigned long long>(h.percentile(0.99)),
      static_cast<unsigned long long>(h.percentile(0.999)),
      static_cast<unsigned long long>(h.max_us()), h.mean_us(),
      static_cast<unsigned long long>(st.answered), cpu_s, verdict_text(st.verdicts[0]).c_str(),
      verdict_text(st.verdicts[1]).c_str());
  return h.count() > 0 ? 0 : 1;
}
