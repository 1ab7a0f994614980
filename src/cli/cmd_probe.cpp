// `spamward probe backscatter HOST[:PORT]` (DESIGN §3.2): checks the options, runs the probe
// (cli/smtp_probe.h) and prints its verdict. Output on stdout: with --verbose, the SMTP
// transcript as it happens ("C: ..." what we sent, "S: ..." what the server answered); then
// always the one-line verdict and the advice, each paragraph a "  - " item wrapped at 100
// columns. Exit 0 safe, 1 vulnerable, 2 could not tell or bad usage (one line on stderr).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>

#include "cli/commands.h"
#include "cli/smtp_probe.h"

namespace spamward::cli {
namespace {

// `text` wrapped at spaces into lines of at most `width` characters (a longer word stays
// whole); the first line starts with `first`, the others with `indent`.
std::string wrap(const std::string& text, size_t width, const std::string& first,
                 const std::string& indent) {
  const std::string* prefix = &first;
  std::string out, line;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t space = text.find(' ', pos);
    if (space == std::string::npos) space = text.size();
    std::string word = text.substr(pos, space - pos);
    pos = space + 1;
    if (!line.empty() && prefix->size() + line.size() + 1 + word.size() > width) {
      out += *prefix + line + "\n";
      prefix = &indent;
      line.clear();
    }
    line += (line.empty() ? "" : " ") + word;
  }
  if (!line.empty()) out += *prefix + line + "\n";
  return out;
}

}  // namespace

int cmd_probe_backscatter(const ProbeBackscatterOptions& options) {
  auto usage = [](const std::string& why) {
    std::cerr << "spamward: probe backscatter: " << why << "\n";
    return 2;
  };
  std::string error;
  auto target = parse_host_port(options.target, &error);
  if (!target) return usage("HOST[:PORT] \"" + printable(options.target) + "\": " + error);
  if (!(options.timeout_seconds > 0) || options.timeout_seconds > 3600 ||
      std::isnan(options.timeout_seconds)) {
    return usage("--timeout must be more than 0 and at most 3600 seconds");
  }
  struct Check {
    const std::string& value;
    const char* kind;
    const char* option;
  };
  for (const Check& c :
       {Check{options.domain, "domain", "--domain"}, Check{options.rcpt, "address", "--rcpt"},
        Check{options.helo, "helo", "--helo"}, Check{options.from, "address", "--from"}}) {
    if (c.value.empty()) continue;
    if (std::string why = smtp_argument_problem(c.value, c.kind); !why.empty()) {
      return usage(std::string(c.option) + " \"" + printable(c.value) + "\": " + why);
    }
  }

  ProbeOptions probe;
  probe.target = *target;
  probe.domain = options.domain;
  probe.rcpt = options.rcpt;
  probe.helo = options.helo;
  probe.from = options.from;
  probe.timeout = std::chrono::milliseconds(
      std::max<long long>(1, std::llround(options.timeout_seconds * 1000.0)));
  if (options.verbose) {
    probe.trace = [](const std::string& line) { std::cout << line << std::endl; };
  }
  ProbeResult result = run_backscatter_probe(probe);
  std::cout << result.summary << "\n";
  for (const std::string& paragraph : result.advice)
    std::cout << wrap(paragraph, 100, "  - ", "    ");
  std::cout.flush();
  return static_cast<int>(result.verdict);
}

}  // namespace spamward::cli
