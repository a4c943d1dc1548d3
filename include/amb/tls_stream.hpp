// SPDX-License-Identifier: MIT
// TLS for the HTTP client over asio::ssl (OpenSSL), compiled only with AMB_WITH_TLS: a client context
// loaded from amb::tls_options, the host check, and certificate failures as readable error codes.
#pragma once

// Asio outside the #if: the single header inlines amb/detail/asio.hpp once, at its first include.
#include "amb/detail/asio.hpp"
#include "amb/error.hpp"
#include "amb/tls_options.hpp"

#if AMB_WITH_TLS

#include <asio/ssl.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <cerrno>
#include <fstream>
#include <memory>
#include <string>
#include <system_error>

namespace amb {
namespace detail {

/// OpenSSL's certificate verification results (X509_V_ERR_*) as error codes, so that a failed
/// handshake says why: "certificate verify failed: unable to get local issuer certificate".
class x509_verify_category_impl final : public std::error_category {
public:
  const char* name() const noexcept override { return "x509"; }
  std::string message(int value) const override {
    const char* why = X509_verify_cert_error_string(value);
    return std::string("certificate verify failed: ") + (why ? why : "unknown reason");
  }
};

/// The "x509" error category.
inline const std::error_category& x509_verify_category() noexcept {
  static const x509_verify_category_impl category;
  return category;
}

/// A TLS client configuration: TLS 1.2 or newer, the server's certificate always verified against
/// the CA file (or the system's CA paths), and a client certificate when one is given.
class tls_client_context {
public:
  /// Loads the files; throws std::system_error naming the file and what is wrong with it.
  explicit tls_client_context(const tls_options& o) : ctx_(asio::ssl::context::tls_client) {
    SSL_CTX_set_min_proto_version(ctx_.native_handle(), TLS1_2_VERSION);
    ctx_.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_compression);
    ctx_.set_verify_mode(asio::ssl::verify_peer);
    std::error_code ec;
    if (!o.ca_file.empty()) {
      readable(o.ca_file, "TLS CA file");
      ctx_.load_verify_file(o.ca_file, ec);
      if (ec) throw std::system_error(ec, "TLS CA file " + o.ca_file);
    } else {
      ctx_.set_default_verify_paths(ec);
      if (ec) throw std::system_error(ec, "TLS: the system's CA paths");
    }
    if (!o.cert_file.empty()) {
      const std::string& key = o.key_file.empty() ? o.cert_file : o.key_file;
      readable(o.cert_file, "TLS client certificate");
      readable(key, "TLS client key");
      ctx_.use_certificate_chain_file(o.cert_file, ec);
      if (ec) throw std::system_error(ec, "TLS client certificate " + o.cert_file);
      ctx_.use_private_key_file(key, asio::ssl::context::pem, ec);
      if (ec) throw std::system_error(ec, "TLS client key " + key + " (for " + o.cert_file + ")");
    } else if (!o.key_file.empty()) {
      throw std::system_error(std::make_error_code(std::errc::invalid_argument),
                              "TLS client key " + o.key_file + " given without a certificate");
    }
  }
  /// The Asio context connections are made from.
  asio::ssl::context& native() noexcept { return ctx_; }

private:
  static void readable(const std::string& path, const char* what) {
    std::ifstream in(path);
    if (!in) throw std::system_error(std::error_code(errno, std::generic_category()), std::string(what) + " " + path);
  }
  asio::ssl::context ctx_;
};

/// One connection's TLS layer over the connection's own socket (closing the socket aborts it).
using tls_stream = asio::ssl::stream<asio::generic::stream_protocol::socket&>;

/// Prepares `s` to talk to `host`: SNI for a name, and the certificate checked against the name, or
/// against an IP address SAN when `host` is numeric (OpenSSL's own checks, so failures carry a reason).
inline void tls_expect_host(tls_stream& s, const std::string& host) {
  SSL* ssl = s.native_handle();
  std::error_code ec;
  (void)asio::ip::make_address(host, ec);
  if (!ec) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl, host.c_str());
    SSL_set1_host(ssl, host.c_str());
  }
}

/// errc::tls_certificate_refused for the alerts a server sends when it rejects our client certificate
/// (or wanted one): in TLS 1.3 they arrive after our side of the handshake, at the first read; `ec` otherwise.
inline std::error_code tls_peer_error(const std::error_code& ec) {
  if (ec.category() != asio::error::get_ssl_category()) return ec;
  switch (ERR_GET_REASON(static_cast<unsigned long>(ec.value()))) {
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA: return make_error_code(errc::tls_certificate_refused);
    default: return ec;
  }
}

/// The handshake's error, made readable: a failed check of the server's certificate becomes its X509
/// reason; a refused client certificate becomes errc::tls_certificate_refused.
inline std::error_code tls_handshake_error(tls_stream& s, const std::error_code& ec) {
  const long v = SSL_get_verify_result(s.native_handle());
  if (v != X509_V_OK) return {static_cast<int>(v), x509_verify_category()};
  return tls_peer_error(ec);
}

}  // namespace detail

/// Loads a TLS client configuration for http_client_options::tls (throws std::system_error naming the file).
inline tls_context_ptr make_tls_context(const tls_options& options) {
  return std::make_shared<detail::tls_client_context>(options);
}

}  // namespace amb

#endif  // AMB_WITH_TLS
