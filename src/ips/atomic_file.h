// Atomic file replacement for the ban exports (ips/exporter.h).
//
// Contract:
// - write_file_atomically(path, content) leaves `path` holding either its old content or
//   `content`, never a mix: it writes "PATH.tmp.PID" in the same directory (so rename(2)
//   stays on one filesystem), fsyncs it, renames it over `path`, then fsyncs the directory
//   so the rename survives a crash.
// - A missing parent directory is created first.
// - On failure it removes its temporary file and throws ExportError
//   "cannot write PATH: <strerror>"; `path` is untouched.
// - The PID in the temporary name keeps two processes (the daemon, `spamward ip --export`)
//   from writing one temporary file; callers serialize writers within a process.
#pragma once

#include <string>
#include <string_view>

namespace spamward {

void write_file_atomically(const std::string& path, std::string_view content);

}  // namespace spamward
