// The subcommands of the one spamward binary (DESIGN §3.2). main.cpp parses the command line
// with CLI11 and calls one of these; each returns the process exit code:
// 0 ok, 1 runtime failure or the documented negative answer, 2 bad usage or bad config.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace spamward::cli {

// -c FILE resolution: the given path, else /etc/spamward/spamward.toml, else
// config/spamward.toml (source tree).
std::string resolve_config_path(const std::string& given);

int cmd_serve(const std::string& config_path);
int cmd_config_check(const std::string& config_path);

struct CheckOptions {
  std::string config_path;
  std::string ip, helo, hostname, from;
  std::vector<std::string> rcpt;
  bool json = false;
  bool explain = false;  // also explain each message's Bayes classification
  std::vector<std::string> paths;
};
int cmd_check(const CheckOptions& options);

struct LearnOptions {
  std::string config_path;
  bool spam = false;    // --spam (else --ham)
  bool forget = false;  // --forget: remove the messages instead
  std::string domain;   // --domain: that recipient domain's database ([bayes] per_domain)
  std::vector<std::string> paths;
};
// `learn`: exit 0 ok, 1 a path could not be read or the store failed, 2 bad usage or config.
int cmd_learn(const LearnOptions& options);

// `learn-imap`: exit 0 every account and folder read, 1 one was not, 2 bad config.
int cmd_learn_imap(const std::string& config_path);

int cmd_ip(const std::string& config_path, const std::string& address);
// `dnsbl health`: exit 0 every list healthy (or none configured), 1 one is not, 2 bad config.
int cmd_dnsbl_health(const std::string& config_path);
// `probe backscatter HOST[:PORT]` (cli/smtp_probe.h): exit 0 the server refuses unknown
// recipients in the SMTP dialogue, 1 it accepts them (a backscatter source), 2 could not tell
// or bad usage. Empty strings take the probe's defaults.
struct ProbeBackscatterOptions {
  std::string target;  // HOST[:PORT], [IPv6]:PORT
  std::string domain, rcpt, helo, from;
  double timeout_seconds = 30;
  bool verbose = false;  // print the SMTP transcript
};
int cmd_probe_backscatter(const ProbeBackscatterOptions& options);

// `batv sign ADDRESS`: prints the BATV-tagged address (auth/batv.h); exit 0, or 2 when
// [batv] has no keys, the ADDRESS is not local@domain, or the config is bad.
int cmd_batv_sign(const std::string& config_path, const std::string& address);

// list: "allow" | "deny"; action: "add" | "del" | "list"
int cmd_list(const std::string& config_path, const std::string& list, const std::string& action,
             const std::string& entry, const std::string& comment);

}  // namespace spamward::cli
