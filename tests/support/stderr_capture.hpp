// SPDX-License-Identifier: MIT
// Test support: what a piece of code writes to stderr (amb::log's lines), captured through a file.
#pragma once

#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

#include <unistd.h>

namespace amb::test {

/// What `f` writes to stderr (fd 2), captured through an unlinked temporary file. Takes its two fds
/// before `f` runs, so `f` may lower the fd limit.
template <class F>
std::string stderr_of(F f) {
  char path[] = "/tmp/amb-stderr-XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  ::unlink(path);
  const int saved = ::dup(2);
  REQUIRE(saved >= 0);
  ::dup2(fd, 2);
  f();
  ::dup2(saved, 2);
  ::close(saved);
  std::string out;
  char buf[4096];
  ::lseek(fd, 0, SEEK_SET);
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return out;
}

}  // namespace amb::test
