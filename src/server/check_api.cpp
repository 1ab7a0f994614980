#include "server/check_api.h"

#include <optional>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/verdict_json.h"
#include "server/http_util.h"

namespace spamward {
namespace {

struct Envelope {
  std::string ip, helo, hostname, from;
  std::vector<std::string> rcpt;
};

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

// Fills `env` from the query string; returns an error text or "".
std::string parse_query(std::string_view target, Envelope& env, bool& has_rcpt) {
  auto params = query_parameters(target);
  if (!params) return "malformed query string";
  for (auto& [key, value] : *params) {
    if (key == "ip")
      env.ip = std::move(value);
    else if (key == "helo")
      env.helo = std::move(value);
    else if (key == "hostname")
      env.hostname = std::move(value);
    else if (key == "from")
      env.from = std::move(value);
    else if (key == "rcpt") {
      env.rcpt.push_back(std::move(value));
      has_rcpt = true;
    }
    // Unknown parameters are ignored, as unknown policy attributes are.
  }
  return "";
}

const std::string* header(const HttpServer::Request& r, const char* name) {
  auto it = r.headers.find(name);
  return it == r.headers.end() ? nullptr : &it->second;
}

boost::asio::awaitable<HttpServer::Response> handle_check(EngineSource engine_source,
                                                          MessageLimits limits,
                                                          const HttpServer::Request& request) {
  Envelope env;
  bool has_rcpt = false;
  if (std::string error = parse_query(request.target, env, has_rcpt); !error.empty()) {
    co_return json_error(400, error);
  }
  // Headers fill what the query string left out.
  auto from_header = [&](std::string& field, const char* name) {
    if (field.empty()) {
      if (const std::string* v = header(request, name)) field = trim(*v);
    }
  };
  from_header(env.ip, "ip");
  from_header(env.helo, "helo");
  from_header(env.hostname, "hostname");
  from_header(env.from, "from");
  if (!has_rcpt) {
    if (const std::string* v = header(request, "rcpt")) {
      std::string_view list = *v;
      while (!list.empty()) {
        size_t comma = list.find(',');
        std::string one = trim(list.substr(0, comma));
        if (!one.empty()) env.rcpt.push_back(one);
        list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
      }
    }
  }

  Transaction tx;
  tx.id = "http-check";
  if (!env.ip.empty()) {
    tx.client_address = IpAddress::parse(env.ip);
    if (!tx.client_address) co_return json_error(400, "ip is not an IP address");
  }
  auto strip_brackets = [](std::string s) {
    if (s.size() >= 2 && s.front() == '<' && s.back() == '>') s = s.substr(1, s.size() - 2);
    return s;
  };
  tx.helo = env.helo;
  tx.client_name = env.hostname;
  tx.reverse_client_name = env.hostname;
  tx.sender = strip_brackets(env.from);
  for (auto& r : env.rcpt) tx.recipients.push_back(strip_brackets(r));
  tx.recipient_count = static_cast<int64_t>(tx.recipients.size());
  tx.stage = Stage::eom;
  tx.size = static_cast<int64_t>(request.body.size());
  tx.message = std::make_shared<const Message>(parse_message(request.body, limits));

  std::shared_ptr<Engine> engine = engine_source();
  if (!engine) co_return json_error(503, "no engine (starting or stopping)");
  EvaluationState state;
  state.read_only = true;
  auto evaluation = engine->evaluate(tx, state);  // named first: GCC PR 100611
  Verdict verdict = co_await std::move(evaluation);

  co_return json_response(verdict_json(verdict));
}

}  // namespace

HttpServer::Handler make_check_handler(EngineSource engine_source, MessageLimits limits) {
  return [engine_source = std::move(engine_source), limits](
             const HttpServer::Request& request) -> boost::asio::awaitable<HttpServer::Response> {
    return handle_check(engine_source, limits, request);
  };
}

}  // namespace spamward
