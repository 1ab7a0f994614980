#include "core/verdict.h"

namespace spamward {

std::string_view to_string(Action a) {
  switch (a) {
    case Action::accept:
      return "accept";
    case Action::tag:
      return "tag";
    case Action::greylist:
      return "greylist";
    case Action::tempfail:
      return "tempfail";
    case Action::reject:
      return "reject";
  }
  return "?";
}

}  // namespace spamward
