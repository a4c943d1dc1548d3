// SPDX-License-Identifier: MIT
// Program layer: raising the process's file-descriptor limit at start (a proxy needs two fds per connection).
#pragma once

#include <sys/resource.h>

#include <cerrno>
#include <cstdint>

namespace amb {

/// How many fds raise_fd_limit asks for at most: 1M is Linux's default fs.nr_open (the cap on
/// any RLIMIT_NOFILE), and ample for a proxy's two fds per connection.
inline constexpr std::uint64_t wanted_fd_limit = 1u << 20;

/// Raises RLIMIT_NOFILE (a proxy needs two fds per connection): first the hard limit up to
/// wanted_fd_limit when the process may (root, CAP_SYS_RESOURCE; fs.nr_open caps it), then the soft
/// limit to the hard one. Returns the soft limit in force afterwards.
inline std::uint64_t raise_fd_limit() noexcept {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < wanted_fd_limit) {
    // Try the largest hard limit the kernel takes, halving down to the current one.
    for (rlim_t hard = wanted_fd_limit; hard > limit.rlim_max; hard /= 2) {
      rlimit wanted{hard, hard};
      if (::setrlimit(RLIMIT_NOFILE, &wanted) == 0) {
        limit = wanted;
        break;
      }
      if (errno == EPERM) break;  // not allowed to raise the hard limit at all
    }
  }
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit wanted = limit;
    wanted.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &wanted) == 0) {
      limit = wanted;
    } else {
      // An "unlimited" hard limit is refused by Linux (fs.nr_open caps it); 1M is the usual cap.
      wanted.rlim_cur = 1u << 20;
      if (wanted.rlim_cur > limit.rlim_cur && ::setrlimit(RLIMIT_NOFILE, &wanted) == 0) limit = wanted;
    }
  }
  return static_cast<std::uint64_t>(limit.rlim_cur);
}

}  // namespace amb
