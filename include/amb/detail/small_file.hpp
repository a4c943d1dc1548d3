// SPDX-License-Identifier: MIT
// Reading a whole small file with POSIX read: the static programs stay smaller without <fstream>.
#pragma once

#include <cerrno>
#include <cstddef>
#include <string>
#include <system_error>

#include <fcntl.h>
#include <unistd.h>

namespace amb::detail {

/// Reads the whole file at `path` into `out`; fails with file_too_large past `max_bytes`, since a
/// bigger file than expected means a wrong file was named.
inline std::error_code read_small_file(const std::string& path, std::string& out, std::size_t max_bytes = 64 * 1024) {
  out.clear();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {errno, std::generic_category()};
  char buf[4096];
  std::error_code ec;
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      ec = {errno, std::generic_category()};
      break;
    }
    if (out.size() + static_cast<std::size_t>(n) > max_bytes) {
      ec = std::make_error_code(std::errc::file_too_large);
      break;
    }
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return ec;
}

}  // namespace amb::detail
