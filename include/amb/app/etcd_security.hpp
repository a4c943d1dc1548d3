// SPDX-License-Identifier: MIT
// etcd's TLS files and user/password from etcdctl-style flags and environment (ETCDCTL_CACERT, ETCDCTL_USER, ...).
#pragma once

#include "amb/address.hpp"
#include "amb/detail/small_file.hpp"
#include "amb/tls_options.hpp"

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace amb {

/// The programs' etcd security flags as given (nullopt = not given).
struct etcd_security_flags {
  std::optional<std::string> cacert;         ///< --etcd-cacert FILE
  std::optional<std::string> cert;           ///< --etcd-cert FILE
  std::optional<std::string> key;            ///< --etcd-key FILE
  std::optional<std::string> user;           ///< --etcd-user USER[:PASSWORD]
  std::optional<std::string> password_file;  ///< --etcd-password-file FILE
};

/// What the flags and environment decided.
struct etcd_security {
  tls_options tls;       ///< files for https:// endpoints
  std::string user;      ///< empty = no auth
  std::string password;  ///< secret: never print it
  std::string
      description;  ///< one line for the log, without the password, e.g. "user root (password from ETCDCTL_PASSWORD)"
};

namespace detail {
/// The value of `name` in a "KEY=VALUE" list; nullopt when unset or empty (as a shell's `NAME= prog` means).
inline std::optional<std::string> env_value(const std::vector<std::string>& env, std::string_view name) {
  for (const auto& kv : env)
    if (kv.size() > name.size() + 1 && kv.compare(0, name.size(), name) == 0 && kv[name.size()] == '=')
      return kv.substr(name.size() + 1);
  return std::nullopt;
}
}  // namespace detail

/// Chooses etcd's TLS files and credentials as etcdctl does: each flag wins over its variable
/// (--etcd-cacert / ETCDCTL_CACERT, --etcd-cert / ETCDCTL_CERT, --etcd-key / ETCDCTL_KEY,
/// --etcd-user / ETCDCTL_USER). USER:PASSWORD splits at the first ':'; a bare USER takes its password from
/// --etcd-password-file (the whole file, one trailing newline dropped), else ETCDCTL_PASSWORD. A mistake
/// is an error line naming its source; the password never appears in it.
inline parsed<etcd_security> find_etcd_security(const etcd_security_flags& flags, const std::vector<std::string>& env) {
  // Written with appends and one loop: this runs once, and the static programs should stay small.
  parsed<etcd_security> r;
  etcd_security s;
  std::string tls_text;
  struct source {
    const std::optional<std::string>* flag;
    const char* flag_name;
    const char* var;
    std::string* out;
    const char* what;
  };
  const source files[] = {{&flags.cacert, "--etcd-cacert", "ETCDCTL_CACERT", &s.tls.ca_file, ", TLS CA "},
                          {&flags.cert, "--etcd-cert", "ETCDCTL_CERT", &s.tls.cert_file, ", client certificate "},
                          {&flags.key, "--etcd-key", "ETCDCTL_KEY", &s.tls.key_file, ", key "}};
  for (const auto& f : files) {
    const char* from = f.flag_name;
    if (*f.flag) {
      if ((*f.flag)->empty()) {
        r.error = f.flag_name;
        r.error += ": empty file name";
        return r;
      }
      *f.out = **f.flag;
    } else if (auto v = detail::env_value(env, f.var)) {
      *f.out = std::move(*v);
      from = f.var;
    }
    if (f.out->empty()) continue;
    ((((tls_text += f.what) += *f.out) += " (from ") += from) += ')';
  }
  if (s.tls.cert_file.empty() != s.tls.key_file.empty()) {
    r.error = s.tls.key_file.empty() ? "a client certificate needs its key: give --etcd-key FILE (or ETCDCTL_KEY)"
                                     : "a client key needs its certificate: give --etcd-cert FILE (or ETCDCTL_CERT)";
    return r;
  }

  const char* user_from = "--etcd-user";
  std::optional<std::string> user = flags.user;
  if (!user) {
    user = detail::env_value(env, "ETCDCTL_USER");
    user_from = "ETCDCTL_USER";
  }
  if (flags.password_file && !user) {
    r.error = "--etcd-password-file needs --etcd-user USER (or ETCDCTL_USER)";
    return r;
  }
  if (user) {
    const char* password_from = "ETCDCTL_PASSWORD";
    const auto colon = user->find(':');
    s.user = user->substr(0, colon);
    if (s.user.empty()) {
      (r.error = user_from) += ": empty user name (expected USER or USER:PASSWORD)";
      return r;
    }
    if (colon != std::string::npos) {
      if (flags.password_file) {
        ((r.error = "--etcd-password-file and a password in ") += user_from) += " USER:PASSWORD: give only one";
        return r;
      }
      s.password = user->substr(colon + 1);
      password_from = user_from;
    } else if (flags.password_file) {
      if (auto ec = detail::read_small_file(*flags.password_file, s.password)) {
        (((r.error = "--etcd-password-file ") += *flags.password_file) += ": ") += ec.message();
        return r;
      }
      if (!s.password.empty() && s.password.back() == '\n') s.password.pop_back();
      if (!s.password.empty() && s.password.back() == '\r') s.password.pop_back();
      password_from = "--etcd-password-file";
    } else if (auto v = detail::env_value(env, "ETCDCTL_PASSWORD")) {
      s.password = std::move(*v);
    }
    if (s.password.empty()) {
      ((((r.error = user_from) += ' ') += s.user) +=
       ": no password (give USER:PASSWORD, --etcd-password-file FILE or ETCDCTL_PASSWORD)");
      return r;
    }
    (((((s.description = "user ") += s.user) += " (from ") += user_from) += ", password from ") += password_from;
    s.description += ')';
  }
  s.description += s.description.empty() && !tls_text.empty() ? tls_text.substr(2) : tls_text;
  r.value = std::move(s);
  return r;
}

/// Overwrites the PASSWORD of "--etcd-user USER:PASSWORD" (or "--etcd-user=USER:PASSWORD") in argv with
/// 'x's, so that ps and /proc/PID/cmdline stop showing it once the program has read it. Call after parsing.
inline void hide_etcd_password(int argc, char** argv) noexcept {
  auto hide = [](char* value) {
    if (char* colon = std::strchr(value, ':'))
      for (char* p = colon + 1; *p; ++p) *p = 'x';
  };
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) return;
    if (std::strcmp(argv[i], "--etcd-user") == 0 && i + 1 < argc)
      hide(argv[++i]);
    else if (std::strncmp(argv[i], "--etcd-user=", 12) == 0)
      hide(argv[i] + 12);
  }
}

}  // namespace amb
