// SPDX-License-Identifier: MIT
// The last known instance set on disk (--state-file): written atomically on every change, read at
// start when etcd cannot be reached, so an ambassador restarted during an etcd outage serves at once.
#pragma once

#include "amb/log.hpp"
#include "amb/parsed.hpp"

#include "amb/detail/json.hpp"

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <system_error>

#include <fcntl.h>
#include <unistd.h>

namespace amb {

/// What the state file holds: the raw etcd keys and values of one service directory at a revision.
/// Raw values, not parsed instances, so that reading the file goes through the same value parser
/// (and the same warnings) as reading etcd.
struct instance_state {
  std::string directory;                   ///< "<prefix>/<service>/" it was written for
  std::int64_t revision = 0;               ///< etcd revision of the set
  std::map<std::string, std::string> kvs;  ///< key -> value, as etcd held them
};

/// Largest state file amb reads: far above any real service directory (10,000 instances of 300-byte
/// values are 3 MB), small enough that a wrong path (a log, a disk image) is refused, not loaded.
inline constexpr std::size_t max_state_file_bytes = 16 * 1024 * 1024;

/// The state as one JSON document: {"amb_state":1,"directory":...,"revision":"N","kvs":{key:value}}.
inline std::string format_instance_state(const instance_state& s) {
  picojson::object kvs;
  for (const auto& [k, v] : s.kvs) kvs.emplace(k, picojson::value(v));
  picojson::object doc;
  doc.emplace("amb_state", picojson::value(1.0));
  doc.emplace("directory", picojson::value(s.directory));
  doc.emplace("revision", picojson::value(std::to_string(s.revision)));  // a string: int64 never via double
  doc.emplace("kvs", picojson::value(std::move(kvs)));
  return picojson::value(std::move(doc)).serialize() + "\n";
}

/// Parses a state file's text; `source` names it in the error ("state file /var/lib/amb/redis.json").
inline parsed<instance_state> parse_instance_state(std::string_view text, const std::string& source) {
  parsed<instance_state> r;
  picojson::value doc;
  std::string err;
  detail::json_parse(doc, text.begin(), text.end(), &err);
  if (!err.empty()) {
    r.error = source + ": not JSON (" + log::escaped(err, 120) + ")";
    return r;
  }
  const auto* kvs = detail::json_member(doc, "kvs");
  const auto* version = detail::json_member(doc, "amb_state");
  if (!version || !version->is<double>() || version->get<double>() != 1.0 || !kvs || !kvs->is<picojson::object>()) {
    r.error = source + ": not an amb state file (version 1)";
    return r;
  }
  instance_state s;
  s.directory = detail::json_string(doc, "directory");
  const std::string revision = detail::json_string(doc, "revision", "0");
  errno = 0;
  char* end = nullptr;
  const long long rev = std::strtoll(revision.c_str(), &end, 10);
  if (revision.empty() || *end != '\0' || errno != 0 || rev < 0) {
    r.error = source + ": bad revision " + log::quoted(revision);
    return r;
  }
  s.revision = rev;
  for (const auto& [k, v] : kvs->get<picojson::object>()) {
    if (!v.is<std::string>()) {
      r.error = source + ": the value of " + log::quoted(k) + " is not a string";
      return r;
    }
    s.kvs.emplace(k, v.get<std::string>());
  }
  r.value = std::move(s);
  return r;
}

/// Reads and parses the state file at `path`; a missing, unreadable, oversized or corrupt file is an
/// error naming the path and the reason. POSIX reads, not <fstream>: iostreams would add ~590 kB to
/// a static program.
inline parsed<instance_state> read_instance_state(const std::string& path) {
  const std::string source = "state file " + log::escaped(path);
  parsed<instance_state> r;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    r.error = source + ": " + std::generic_category().message(errno);
    return r;
  }
  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      r.error = source + ": " + std::generic_category().message(errno);
      break;
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > max_state_file_bytes) {
      r.error = source + ": larger than " + std::to_string(max_state_file_bytes / (1024 * 1024)) + " MiB";
      break;
    }
  }
  ::close(fd);
  if (!r.error.empty()) return r;
  return parse_instance_state(text, source);
}

/// Writes `s` to `path` atomically: a temporary file beside it, flushed to disk, then renamed over
/// it, so a crash or a full disk leaves the old file or the new one, never half of one. Returns the
/// system's error (the temporary file is removed then).
inline std::error_code write_instance_state(const std::string& path, const instance_state& s) {
  const std::string text = format_instance_state(s);
  const std::string temporary = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return {errno, std::generic_category()};
  std::error_code ec;
  for (std::size_t done = 0; done < text.size() && !ec;) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      ec = {errno, std::generic_category()};
    else
      done += static_cast<std::size_t>(n);
  }
  if (!ec && ::fsync(fd) != 0) ec = {errno, std::generic_category()};
  if (::close(fd) != 0 && !ec) ec = {errno, std::generic_category()};
  if (!ec && ::rename(temporary.c_str(), path.c_str()) != 0) ec = {errno, std::generic_category()};
  if (ec) ::unlink(temporary.c_str());
  return ec;
}

}  // namespace amb
