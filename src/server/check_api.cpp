#include "server/check_api.h"

#include <optional>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/verdict_json.h"

namespace spamward {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded decoding; nullopt for a malformed %-escape.
std::optional<std::string> url_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

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
  size_t q = target.find('?');
  if (q == std::string_view::npos) return "";
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    auto key = url_decode(pair.substr(0, eq));
    auto value = url_decode(eq == std::string_view::npos ? "" : pair.substr(eq + 1));
    if (!key || !value) return "malformed query string";
    if (*key == "ip")
      env.ip = *value;
    else if (*key == "helo")
      env.helo = *value;
    else if (*key == "hostname")
      env.hostname = *value;
    else if (*key == "from")
      env.from = *value;
    else if (*key == "rcpt") {
      env.rcpt.push_back(*value);
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

HttpServer::Response json_error(int status, const std::string& text) {
  HttpServer::Response r;
  r.status = status;
  r.content_type = "application/json";
  r.body = nlohmann::json{{"error", text}}.dump(-1, ' ', false,
                                                nlohmann::json::error_handler_t::replace) +
           "\n";
  return r;
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

  HttpServer::Response r;
  r.content_type = "application/json";
  r.body =
      verdict_json(verdict).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  co_return r;
}

}  // namespace

HttpServer::Handler make_check_handler(EngineSource engine_source, MessageLimits limits) {
  return [engine_source = std::move(engine_source), limits](
             const HttpServer::Request& request) -> boost::asio::awaitable<HttpServer::Response> {
    return handle_check(engine_source, limits, request);
  };
}

}  // namespace spamward
