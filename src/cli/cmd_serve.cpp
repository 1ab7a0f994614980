// `spamward serve`: the daemon. One single-threaded Asio loop runs every server; the store's
// writer is its own thread. SIGHUP reloads the config (a bad file is refused and the old one
// stays); SIGTERM/SIGINT stop accepting, let requests in progress finish, flush the store.
#include <sys/resource.h>

#include <spdlog/spdlog.h>
#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include "bayes/bayes.h"
#include "checks/recipients_check.h"
#include "checks/registry.h"
#include "cli/cli_support.h"
#include "cli/commands.h"
#include "core/config.h"
#include "core/listen_spec.h"
#include "core/log.h"
#include "dns/cares_resolver.h"
#include "engine/engine.h"
#include "ips/exporter.h"
#include "server/check_api.h"
#include "server/http_server.h"
#include "server/learn_api.h"
#include "server/milter_server.h"
#include "server/policy_server.h"
#include "server/spamd_server.h"
#include "server/trap_server.h"
#include "state/reputation.h"
#include "state/store.h"

namespace spamward::cli {

namespace {

// 1,000+ concurrent MTA connections need more descriptors than the usual soft limit of 1024.
void raise_file_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

std::string read_token(const std::string& path) {
  if (path.empty()) return "";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read [http] admin_token_file " + path);
  std::string token;
  std::getline(in, token);
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) token.pop_back();
  if (token.size() < 16)
    throw std::runtime_error("admin token in " + path + " is shorter than 16 characters");
  return token;
}

ListenSpec must_parse(const std::string& text) {
  // The config loader validated it already.
  return *ListenSpec::parse(text);
}

}  // namespace

int cmd_serve(const std::string& config_path) {
  std::shared_ptr<const Config> config;
  try {
    config = std::make_shared<const Config>(load_config(config_path));
  } catch (const ConfigError& e) {
    std::cerr << "spamward: config error: " << e.what() << "\n";
    return 2;
  }

  try {
    setup_logging(config->log);
  } catch (const std::exception& e) {
    std::cerr << "spamward: " << e.what() << "\n";
    return 1;
  }
  raise_file_limit();
  set_log_buffering(true);
  struct StopBuffering {
    ~StopBuffering() { set_log_buffering(false); }
  } stop_buffering;  // every return path writes the last lines

  SystemClock clock;
  std::unique_ptr<Store> store;
  try {
    store = open_store(config->store, clock, StoreUser::daemon);
  } catch (const StoreError& e) {
    spdlog::critical("cannot open the store: {}", e.what());
    return 1;
  }

  Metrics& metrics = Metrics::global();
  boost::asio::io_context io(1);  // before the resolver: it must outlive it
  std::unique_ptr<Resolver> resolver;
  try {
    resolver = make_resolver(io.get_executor(), config->dns, clock, &metrics);
  } catch (const std::exception& e) {
    spdlog::critical("cannot start the DNS resolver: {}", e.what());
    return 1;
  }
  // Reputation and the ban exports outlive config reloads: the ban snapshot is theirs.
  Reputation reputation(*store, clock, config->reputation);
  ExportService exports(reputation, clock, &metrics, config->ips);
  reputation.on_change([&exports] { exports.notify(); });
  struct DetachExports {  // runs before `exports` is destroyed: no callback into a dead object
    Reputation& reputation;
    ~DetachExports() { reputation.on_change({}); }
  } detach_exports{reputation};
  exports.start();

  Env env{&clock, resolver.get(), store.get(), &metrics, io.get_executor()};
  env.reputation = &reputation;
  // The Bayes databases outlive config reloads too ([bayes] per_domain and min_learned take
  // effect at restart; autolearn at reload).
  Bayes bayes(*store, clock, bayes_options(config->bayes));
  env.bayes = &bayes;
  std::shared_ptr<Engine> engine;
  try {
    engine = std::make_shared<Engine>(config, env, make_checks(*config, env));
  } catch (const ConfigError& e) {
    std::cerr << "spamward: config error: " << e.what() << "\n";
    return 2;
  }
  EngineSource engine_source = [&engine] { return engine; };
  // [recipients] follow_log: the MTA's own unknown-recipient refusals count toward address
  // guessing (read at start; a change needs a restart).
  std::unique_ptr<MtaLogFollower> mta_log;
  try {
    mta_log = follow_mta_log(*config, env, load_recipient_list(*config));
  } catch (const ConfigError& e) {
    std::cerr << "spamward: config error: " << e.what() << "\n";
    return 2;
  }

  // Table sizes for the dashboard and alerts (DESIGN §3.7), refreshed every 10 s on a thread
  // of their own: counting scans a table (~0.2 s at a million entries), which must never
  // stall the event loop.
  metrics.describe("spamward_state_entries", Metrics::Type::gauge,
                   "Live entries per state table (greylist, greylist_net, ban, offence, "
                   "bayes_tokens)");
  struct TableGauges {
    std::mutex mu;
    std::condition_variable cv;
    bool stop = false;
    std::thread thread;
    ~TableGauges() {
      {
        std::lock_guard lock(mu);
        stop = true;
      }
      cv.notify_all();
      if (thread.joinable()) thread.join();
    }
  } table_gauges;
  // The same thread expires rare, stale Bayes tokens once a day (autolearning grows the
  // databases; `spamward learn` expires what it taught) and rebuilds the logistic models:
  // within the hour after this daemon learned (TELL, the HTTP API, autolearning), and daily.
  table_gauges.thread = std::thread([&] {
    std::unique_lock lock(table_gauges.mu);
    auto next_expiry = std::chrono::steady_clock::now() + std::chrono::hours(1);
    auto next_rebuild = std::chrono::steady_clock::now() + std::chrono::hours(1);
    while (!table_gauges.stop) {
      lock.unlock();
      const auto now = std::chrono::steady_clock::now();
      if (now >= next_expiry || now >= next_rebuild) {
        const bool daily = now >= next_expiry;
        if (daily) next_expiry += std::chrono::hours(24);
        next_rebuild = now + std::chrono::hours(1);
        try {
          if (daily) bayes.expire_open();
          bayes.rebuild_changed(daily);
        } catch (const StoreError& e) {
          spdlog::warn("bayes: expiring old tokens or rebuilding the model failed: {}", e.what());
        }
      }
      for (std::string_view table :
           {"greylist", "greylist_net", "ban", "offence", "bayes_tokens"}) {
        try {
          metrics.set("spamward_state_entries", {{"table", std::string(table)}},
                      static_cast<double>(store->count(table)));
        } catch (const StoreError& e) {
          spdlog::warn("cannot count table {}: {}", table, e.what());
        }
      }
      lock.lock();
      table_gauges.cv.wait_for(lock, std::chrono::seconds(10), [&] { return table_gauges.stop; });
    }
  });

  std::unique_ptr<PolicyServer> policy;
  std::unique_ptr<MilterServer> milter;
  std::unique_ptr<SpamdServer> spamd;
  std::unique_ptr<HttpServer> http;
  std::unique_ptr<TrapServer> trap;
  try {
    if (!config->trap.listen.empty()) {
      TrapOptions options;
      options.trusted = config->network.trusted;
      options.record_offences = !config->actions.dry_run;
      if (!config->network.our_names.empty()) options.hostname = config->network.our_names[0];
      trap = std::make_unique<TrapServer>(io.get_executor(), &reputation, options, metrics);
      for (const auto& spec : config->trap.listen) trap->listen(must_parse(spec));
      trap->start();
      spdlog::info("trap responder listening on {}", join(config->trap.listen, ", "));
    }
    if (!config->listen.policy.empty()) {
      PolicyLimits limits;
      limits.max_connections = config->limits.max_connections;
      policy = std::make_unique<PolicyServer>(io.get_executor(), engine_source, limits, metrics);
      policy->listen(must_parse(config->listen.policy));
      policy->start();
      spdlog::info("policy server listening on {}", config->listen.policy);
    }
    if (!config->listen.milter.empty()) {
      MilterLimits limits;
      limits.max_connections = config->limits.max_connections;
      limits.max_message_bytes = config->limits.max_message_bytes;
      milter = std::make_unique<MilterServer>(io.get_executor(), engine_source, limits, metrics);
      milter->listen(must_parse(config->listen.milter));
      milter->start();
      spdlog::info("milter server listening on {}", config->listen.milter);
    }
    if (!config->listen.spamd.empty()) {
      SpamdLimits limits;
      limits.max_connections = config->limits.max_connections;
      limits.max_message_bytes = config->limits.max_message_bytes;
      auto learner = make_spamd_learner(bayes);
      LearnerSource learner_source = [learner] { return learner; };
      spamd = std::make_unique<SpamdServer>(io.get_executor(), engine_source, limits, metrics,
                                            learner_source);
      spamd->listen(must_parse(config->listen.spamd));
      spamd->start();
      spdlog::info("spamd server listening on {}", config->listen.spamd);
    }
    if (!config->listen.http.empty()) {
      http = std::make_unique<HttpServer>(io.get_executor(), metrics);
      HttpServer::Limits http_limits;
      http_limits.max_connections = static_cast<size_t>(config->limits.max_connections);
      // POST /api/v1/check carries a whole message.
      http_limits.max_body_bytes =
          std::max(http_limits.max_body_bytes,
                   static_cast<size_t>(config->limits.max_message_bytes) + 64 * 1024);
      http->set_limits(http_limits);
      MessageLimits message_limits;
      message_limits.max_bytes = static_cast<size_t>(config->limits.max_message_bytes);
      http->route("POST", kCheckApiPath, make_check_handler(engine_source, message_limits),
                  /*read_only=*/true);
      http->route("POST", kLearnSpamPath,
                  make_learn_handler(bayes, MessageClass::spam, message_limits));
      http->route("POST", kLearnHamPath,
                  make_learn_handler(bayes, MessageClass::ham, message_limits));
      http->set_admin_token(read_token(config->http.admin_token_file));
      http->listen(must_parse(config->listen.http));
      http->start();
      spdlog::info("http server listening on {}", config->listen.http);
    }
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return 1;
  }

  boost::asio::signal_set reload_signals(io, SIGHUP);
  boost::asio::signal_set stop_signals(io, SIGTERM, SIGINT);
  std::function<void()> wait_reload = [&] {
    reload_signals.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      // Reopen the log first and on its own: logrotate sends SIGHUP too, and a bad config
      // must not keep writing to a rotated-away file.
      try {
        reopen_log();
      } catch (const std::exception& e) {
        spdlog::error("cannot reopen the log: {}", e.what());
      }
      try {
        auto fresh = std::make_shared<const Config>(load_config(config_path));
        if (fresh->listen.policy != config->listen.policy ||
            fresh->listen.milter != config->listen.milter ||
            fresh->listen.spamd != config->listen.spamd ||
            fresh->listen.http != config->listen.http || fresh->store.path != config->store.path ||
            fresh->store.url != config->store.url ||
            fresh->store.backend != config->store.backend ||
            fresh->dns.servers != config->dns.servers ||
            fresh->dns.timeout != config->dns.timeout) {
          spdlog::warn(
              "config reload: [listen], [store] and [dns] changes take effect only after a "
              "restart");
        }
        if (fresh->log.format != config->log.format || fresh->log.file != config->log.file) {
          setup_logging(fresh->log);
        }
        auto fresh_engine = std::make_shared<Engine>(fresh, env, make_checks(*fresh, env));
        config = fresh;
        engine = std::move(fresh_engine);
        reputation.reconfigure(config->reputation);
        exports.reconfigure(config->ips);
        spdlog::info("config reloaded from {}", config_path);
      } catch (const ConfigError& e) {
        spdlog::error("config reload refused, the old config stays in force: {}", e.what());
      } catch (const std::exception& e) {
        spdlog::error("config reload failed, the old config stays in force: {}", e.what());
      }
      wait_reload();
    });
  };
  wait_reload();
  boost::asio::steady_timer drain_deadline(io);
  std::function<void()> drain_poll;
  std::chrono::steady_clock::time_point give_up;
  stop_signals.async_wait([&](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    spdlog::info("signal {}: stopping", signo);
    reload_signals.cancel();
    if (policy) policy->stop();
    if (milter) milter->stop();
    if (spamd) spamd->stop();
    if (http) http->stop();
    if (trap) trap->stop();
    // Requests in progress get up to 5 s to finish; the loop stops as soon as the policy,
    // milter and spamd connections are gone (HTTP requests are short and need no drain).
    give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    drain_poll = [&] {
      if (((!policy || policy->open_connections() == 0) &&
           (!milter || milter->open_connections() == 0) &&
           (!spamd || spamd->open_connections() == 0)) ||
          std::chrono::steady_clock::now() >= give_up) {
        io.stop();
        return;
      }
      drain_deadline.expires_after(std::chrono::milliseconds(20));
      drain_deadline.async_wait([&](const boost::system::error_code& wait_ec) {
        if (!wait_ec) drain_poll();
      });
    };
    drain_poll();
  });

  spdlog::info("spamward {} serving (config {})", SPAMWARD_VERSION, config_path);
  try {
    io.run();
  } catch (const std::exception& e) {
    spdlog::critical("event loop failed: {}", e.what());
    store->flush();
    return 1;
  }
  store->flush();
  spdlog::info("stopped");
  return 0;
}

}  // namespace spamward::cli
