// spamward: one binary, subcommands (DESIGN §3.2). This file only parses the command line;
// each command lives in its own cmd_*.cpp.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "cli/commands.h"

int main(int argc, char** argv) {
  using namespace spamward::cli;
  CLI::App app{"spamward: an anti-spam policy, milter and spamd daemon for mail servers",
               "spamward"};
  app.set_version_flag("--version", std::string("spamward ") + SPAMWARD_VERSION);
  app.require_subcommand(1);
  app.allow_windows_style_options(false);

  std::string config_path;
  auto add_config = [&](CLI::App* sub) {
    sub->add_option("-c,--config", config_path,
                    "config file (default /etc/spamward/spamward.toml, else config/spamward.toml)");
  };

  auto* serve = app.add_subcommand("serve", "run the daemon in the foreground");
  add_config(serve);

  auto* config = app.add_subcommand("config", "configuration tools");
  config->require_subcommand(1);
  auto* config_check = config->add_subcommand("check", "validate a config file");
  add_config(config_check);

  CheckOptions check_options;
  auto* check = app.add_subcommand("check", "score SMTP facts and/or messages; changes no state");
  add_config(check);
  check->add_option("--ip", check_options.ip, "client address");
  check->add_option("--helo", check_options.helo, "HELO/EHLO name");
  check->add_option("--hostname", check_options.hostname, "client host name (verified rDNS)");
  check->add_option("--from", check_options.from, "envelope sender");
  check->add_option("--rcpt", check_options.rcpt, "envelope recipient (repeatable)");
  check->add_flag("--json", check_options.json, "one JSON object per message");
  check->add_flag("--explain", check_options.explain,
                  "show the tokens behind each message's Bayes classification");
  check->add_option("paths", check_options.paths, "message files, Maildirs, mboxes, or -");

  std::string ip_address;
  LearnOptions learn_options;
  bool learn_spam = false, learn_ham = false;
  auto* learn = app.add_subcommand("learn", "teach the Bayes classifier from messages");
  add_config(learn);
  auto* spam_flag = learn->add_flag("--spam", learn_spam, "the messages are spam");
  auto* ham_flag = learn->add_flag("--ham", learn_ham, "the messages are ham (not spam)");
  spam_flag->excludes(ham_flag);
  learn->add_flag("--forget", learn_options.forget, "remove the messages from what was learned");
  learn->add_option("--domain", learn_options.domain,
                    "learn into this recipient domain's database ([bayes] per_domain)");
  learn->add_option("paths", learn_options.paths, "message files, Maildirs, mboxes, or -")
      ->required();

  auto* learn_imap =
      app.add_subcommand("learn-imap", "teach the Bayes classifier from the [[imap]] folders");
  add_config(learn_imap);

  auto* ip = app.add_subcommand("ip", "what is known about an address or network");
  add_config(ip);
  ip->add_option("address", ip_address, "address or CIDR")->required();

  auto* dnsbl = app.add_subcommand("dnsbl", "DNSBL/DNSWL tools");
  dnsbl->require_subcommand(1);
  auto* dnsbl_health =
      dnsbl->add_subcommand("health", "RFC 5782 test points of each configured list");
  add_config(dnsbl_health);

  std::string list_action, list_entry, list_comment;
  std::string list_name;
  for (const char* name : {"allow", "deny"}) {
    auto* sub = app.add_subcommand(name, std::string("manage the admin ") + name + " list");
    add_config(sub);
    sub->add_option("action", list_action, "add | del | list")
        ->required()
        ->check(CLI::IsMember({"add", "del", "list"}));
    sub->add_option("entry", list_entry, "address, CIDR, @domain or user@domain");
    sub->add_option("--comment", list_comment, "why the entry exists (shown by list)");
    sub->callback([&list_name, name] { list_name = name; });
  }

  std::string batv_address;
  auto* batv = app.add_subcommand("batv", "BATV (prvs) tools");
  batv->require_subcommand(1);
  auto* batv_sign = batv->add_subcommand("sign", "print the BATV-tagged form of an address");
  add_config(batv_sign);
  batv_sign->add_option("address", batv_address, "local@domain")->required();

  ProbeBackscatterOptions probe_options;
  auto* probe = app.add_subcommand("probe", "check other mail servers");
  probe->require_subcommand(1);
  auto* probe_backscatter = probe->add_subcommand(
      "backscatter", "does an SMTP server accept mail for unknown users? (QUITs before DATA)");
  probe_backscatter->add_option("target", probe_options.target, "HOST[:PORT] (port 25)")
      ->required();
  probe_backscatter->add_option("--domain", probe_options.domain,
                                "domain to test (default: the name in the 220 greeting)");
  probe_backscatter->add_option("--rcpt", probe_options.rcpt,
                                "nonexistent recipient (default spamward-probe-<hex>@DOMAIN)");
  probe_backscatter->add_option("--helo", probe_options.helo, "EHLO name (default: our FQDN)");
  probe_backscatter->add_option("--from", probe_options.from,
                                "envelope sender (default postmaster@HELO)");
  probe_backscatter->add_option("--timeout", probe_options.timeout_seconds,
                                "seconds for the connect and each reply (default 30)");
  probe_backscatter->add_flag("-v,--verbose", probe_options.verbose, "print the SMTP dialogue");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "spamward: " << e.what() << " (see spamward --help)\n";
    return 2;
  }

  if (serve->parsed()) return cmd_serve(resolve_config_path(config_path));
  if (config_check->parsed()) return cmd_config_check(resolve_config_path(config_path));
  if (check->parsed()) {
    check_options.config_path = resolve_config_path(config_path);
    return cmd_check(check_options);
  }
  if (learn->parsed()) {
    if (!learn_options.forget && learn_spam == learn_ham) {
      std::cerr << "spamward: learn needs --spam or --ham (see spamward learn --help)\n";
      return 2;
    }
    learn_options.spam = learn_spam;
    learn_options.config_path = resolve_config_path(config_path);
    return cmd_learn(learn_options);
  }
  if (learn_imap->parsed()) return cmd_learn_imap(resolve_config_path(config_path));
  if (ip->parsed()) return cmd_ip(resolve_config_path(config_path), ip_address);
  if (dnsbl_health->parsed()) return cmd_dnsbl_health(resolve_config_path(config_path));
  if (batv_sign->parsed()) return cmd_batv_sign(resolve_config_path(config_path), batv_address);
  if (probe_backscatter->parsed()) return cmd_probe_backscatter(probe_options);
  if (!list_name.empty()) {
    if (list_action != "list" && list_entry.empty()) {
      std::cerr << "spamward: " << list_name << " " << list_action << " needs an ENTRY\n";
      return 2;
    }
    return cmd_list(resolve_config_path(config_path), list_name, list_action, list_entry,
                    list_comment);
  }
  std::cerr << "spamward: no command (see spamward --help)\n";
  return 2;
}
