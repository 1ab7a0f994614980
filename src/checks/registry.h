// make_checks: builds the checks the config asks for, in a stable order. Every new technique
// registers here and nowhere else.
#pragma once

#include <memory>
#include <vector>

#include "core/config.h"
#include "engine/check.h"
#include "engine/env.h"

namespace spamward {

std::vector<std::unique_ptr<Check>> make_checks(const Config& config, const Env& env);

}  // namespace spamward
