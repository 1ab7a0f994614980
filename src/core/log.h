// Logging set-up (DESIGN §3.3 [log], §3.7): spdlog for every component, one line per event.
//
// Contract:
// - Before setup_logging() runs, spdlog's default logger (spdlog::info(...) etc.) writes text
//   to stderr, so start-up errors are never lost and stdout stays free for command output.
// - setup_logging() switches every line, from the default logger and from decision_logger(),
//   to the configured format and destination:
//     text: "2024-05-01T12:00:00.123+02:00 [info] message" (local time with its offset);
//     json: one object per line, {"time":"2024-05-01T10:00:00.123Z","level":"info",
//           "logger":"spamward","msg":"..."} (UTC). Decision lines in JSON are the decision's
//           own object (see engine/decision_log.h), not wrapped in "msg".
//   `file` empty: stderr. Otherwise the file is opened for appending (created with mode 0640
//   if missing; its directory is not created). Failure throws std::runtime_error naming the
//   path, and the previous destination stays in use.
// - Lines are written with write(2) on an O_APPEND descriptor, whole lines at a time, so lines
//   from several threads or processes never interleave. By default nothing is buffered in
//   the process. The daemon turns on set_log_buffering(true): info lines (the decision log)
//   are then written in batches at most 50 ms after the first one (or at 32 KiB), which saves
//   a system call per decision at high rates; warnings and errors still go out at once, with
//   everything before them. kill -9 may lose the last 50 ms of info lines; a normal stop
//   flushes them.
// - reopen_log() reopens the configured file (after logrotate moved it; call it on SIGHUP).
//   With stderr it does nothing. On failure it throws std::runtime_error naming the path and
//   keeps writing to the old file.
// - The loggers are created once and live for the whole process: references returned by
//   decision_logger() and the default logger stay valid across setup_logging() calls.
//
// Thread-safe.
#pragma once

#include <spdlog/logger.h>

#include "core/config.h"

namespace spamward {

// Throws std::runtime_error for an unknown format or a file that cannot be opened.
void setup_logging(const LogConfig& config);

// Reopens the log file in place (logrotate). No-op when logging to stderr.
void reopen_log();

// Batches info lines (see above); false writes what is pending and stops batching.
void set_log_buffering(bool on);
// Writes every pending line now.
void flush_log();

// The logger for per-decision lines (engine/decision_log.h). Its lines carry no logger
// name or level decoration in JSON mode: the message is the whole JSON object.
spdlog::logger& decision_logger();

}  // namespace spamward
