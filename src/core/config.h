// Config: the whole of DESIGN §3.3 as plain values, with the documented defaults.
//
// load_config() reads TOML, rejects unknown keys, wrong types, bad durations, bad addresses
// and inconsistent thresholds, and reports the first problem as a ConfigError naming file,
// line, key and problem (the CLI prints it on one line and exits 2). A Config that loaded is
// valid: consumers never re-validate.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/duration.h"
#include "core/ip_address.h"

namespace spamward {

struct ListenConfig {
  // "HOST:PORT", "[v6]:PORT" or "unix:/path"; empty: that server is off.
  // A [listen] table in the file turns off every server it does not name; without a
  // [listen] table these loopback defaults apply.
  std::string policy = "127.0.0.1:10040";
  std::string milter = "127.0.0.1:10041";
  std::string spamd = "127.0.0.1:10042";
  std::string http = "127.0.0.1:10043";
};

struct HttpConfig {
  std::string admin_token_file;
};

struct SpamdConfig {
  bool allow_tell = false;
};

struct StoreConfig {
  std::string backend = "lmdb";
  std::string path = "var/spamward";
  std::string url;
};

struct LogConfig {
  std::string format = "text";  // "text" | "json"
  std::string file;             // empty: stderr
};

struct DnsConfig {
  std::vector<std::string> servers;  // "IP" or "IP@PORT"
  Duration timeout = Duration(2000);
};

struct EngineConfig {
  Duration stage_deadline = Duration(3000);
};

struct LimitsConfig {
  int64_t max_connections = 2000;
  int64_t max_message_bytes = 10485760;
};

struct NetworkConfig {
  std::vector<Prefix> trusted;  // default set in the constructor
  std::vector<Prefix> relays;
  std::vector<std::string> our_names;
  NetworkConfig();
};

struct ActionsConfig {
  double greylist = 3.0;
  double tag = 6.0;
  double reject = 15.0;
  int reject_min_families = 2;
  bool dry_run = false;
};

struct ExemptConfig {
  std::vector<std::string> recipients = {"postmaster@*", "abuse@*"};
};

struct ListConfig {  // [[dnsbl]] and [[dnswl]]
  std::string name;
  std::string zone;
  double weight = 1.0;
  bool ipv6 = false;
  std::map<std::string, double> codes;  // exact return code -> score
  std::vector<Prefix> blocked_codes;    // default 127.255.255.0/24 (set by the loader)
};

struct GreylistConfig {
  std::string mode = "selective";  // "selective" | "always" | "off"
  Duration min_delay = std::chrono::minutes(5);
  Duration max_wait = std::chrono::hours(48);
  int64_t auto_allow_after = 3;
  Duration auto_allow_ttl = std::chrono::hours(24 * 35);
  int64_t hammering = 10;
  int ipv4_prefix = 24;
  int ipv6_prefix = 64;
  // The compatibility allow-list (senders known to retry from pools or badly): empty means
  // the list shipped in config/greylist-compat.txt, compiled in. compat_list_line is the
  // config line of the key, for errors found when the file is read.
  std::string compat_list;
  int64_t compat_list_line = 0;
};

struct ReputationConfig {
  Duration ban_base = std::chrono::minutes(10);
  double ban_factor = 4.0;
  Duration ban_max = std::chrono::hours(24);
  Duration offence_half_life = std::chrono::hours(24 * 30);
  int64_t permanent_after = 5;
  int64_t network_after = 5;
  int ipv4_prefix = 24;
  int ipv6_prefix = 64;
};

struct RecipientsConfig {
  std::string valid;       // "file:/path" (state/recipient_list.h); empty: off
  int64_t valid_line = 0;  // config line of `valid`, for errors found when the list is read
  std::string follow_log;
  int64_t guess_threshold = 3;
  Duration guess_window = std::chrono::minutes(10);
};

struct TrapConfig {
  std::vector<IpAddress> mx_addresses;
  std::vector<std::string> mx_domains;
  std::vector<std::string> listen;
};

struct BayesConfig {
  int64_t min_learned = 200;
  bool autolearn = true;
  bool per_domain = false;         // one database per recipient domain (the global one until ready)
  std::string model = "logistic";  // "logistic" | "fisher" (docs/bayes.md)
};

struct ImapConfig {
  std::string url;
  std::string user;
  std::string password_file;
  std::vector<std::string> spam_folders;
  std::vector<std::string> ham_folders;
  std::string ca_file;
};

struct BatvConfig {
  std::vector<std::string> keys;
  Duration max_age = std::chrono::hours(24 * 7);
  bool enforce = false;
};

struct IpsConfig {
  std::string export_mode = "permanent";  // key "export": "permanent" | "all"
  std::string blocklist_file = "var/banned.txt";
  std::string rbldnsd_dir;
  std::string nft_table;
};

struct HeadersConfig {
  bool authentication_results = false;  // add an Authentication-Results header (RFC 8601)
  std::string authserv_id;              // "": the first of [network] our_names, else the host name
};

struct Config {
  std::string source;  // the file it was read from ("" for defaults)
  ListenConfig listen;
  HttpConfig http;
  SpamdConfig spamd;
  StoreConfig store;
  LogConfig log;
  DnsConfig dns;
  EngineConfig engine;
  LimitsConfig limits;
  NetworkConfig network;
  ActionsConfig actions;
  std::map<std::string, double> scores;
  ExemptConfig exempt;
  std::vector<ListConfig> dnsbl;
  std::vector<ListConfig> dnswl;
  GreylistConfig greylist;
  ReputationConfig reputation;
  RecipientsConfig recipients;
  TrapConfig trap;
  BayesConfig bayes;
  std::vector<ImapConfig> imap;
  BatvConfig batv;
  IpsConfig ips;
  HeadersConfig headers;
};

class ConfigError : public std::runtime_error {
 public:
  ConfigError(std::string file, int64_t line, std::string key, std::string problem);
  const std::string& file() const { return file_; }
  int64_t line() const { return line_; }
  const std::string& key() const { return key_; }
  const std::string& problem() const { return problem_; }

 private:
  std::string file_;
  int64_t line_;
  std::string key_;
  std::string problem_;
};

// Throws ConfigError. A missing file is a ConfigError too (line 0).
Config load_config(const std::string& path);
Config parse_config(std::string_view toml_text, const std::string& source_name);

}  // namespace spamward
