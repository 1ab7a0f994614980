// Small helpers the JSON API handlers share: query strings and JSON error answers.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "server/http_server.h"

namespace spamward {

// application/x-www-form-urlencoded decoding; nullopt for a malformed %-escape.
std::optional<std::string> url_decode(std::string_view s);

// The decoded key=value pairs of the target's query string, in order; nullopt when one is
// malformed.
std::optional<std::vector<std::pair<std::string, std::string>>> query_parameters(
    std::string_view target);

// {"error": TEXT} with `status`.
HttpServer::Response json_error(int status, const std::string& text);

// A JSON answer (200 unless told otherwise); invalid UTF-8 is replaced, never an exception.
HttpServer::Response json_response(const nlohmann::json& body, int status = 200);

}  // namespace spamward
